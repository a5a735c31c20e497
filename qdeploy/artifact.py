"""An output folder written by ``qdeploy.compile``: its report, and re-verification against the golden model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from qdeploy.errors import QDeployError

REPORT_FILE = "report.json"
GOLDEN_FILE = "golden.onnx"  # the specification the artefact was verified against
INPUTS_FILE = "verify_inputs.npy"


def file_in_folder(folder: str | Path, name: Any, what: str) -> Path:
    """``folder / name`` for a file an output folder's own manifest names, refused when it would lead outside the
    folder (an absolute path, ``..``, a link out): a folder is data, and data must not make qdeploy read elsewhere."""
    root = Path(folder).resolve()
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        raise QDeployError(f"{what} names {name!r}; a folder's files are named relative to it; recompile the folder")
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise QDeployError(f"{what} names {name!r}, which is outside {folder}; recompile the folder")
    return path


class Artifact:
    """A compiled, verified deployment folder (``report.json``, ``golden.onnx``, the target's files)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        report_path = self.path / REPORT_FILE
        if not report_path.exists():
            raise QDeployError(f"{self.path} is not a qdeploy output folder (no {REPORT_FILE}); run qdeploy compile first")
        self.report: dict[str, Any] = json.loads(report_path.read_text())

    @property
    def target(self) -> str:
        return self.report["target"]

    @property
    def bit_exact(self) -> bool:
        return bool(self.report["bit_exact"])

    @property
    def verified(self) -> bool:
        """Bit-exact, or within the bound derived from the graph's float arithmetic after its last quantizer."""
        return bool(self.report.get("verified", self.report["bit_exact"]))

    def _golden_and_inputs(self, x: np.ndarray, what: str):
        from qdeploy.data import check_array
        from qdeploy.ir import check_datatype, load_model, sample_shape

        golden = load_model(self.path / GOLDEN_FILE, clean=False)
        x = check_array(x, sample_shape(golden), what)
        check_datatype(golden, x, what)
        return golden, x

    def _runner(self, run_options: Mapping[str, Any] | None = None):
        from qdeploy.target import get_target

        target = get_target(self.target)
        options = target.run_options(run_options)
        target.check_available()
        return target.runner(self.path, options)

    def predict(self, x: np.ndarray, run_options: Mapping[str, Any] | None = None) -> np.ndarray:
        """Run the deployed artefact (ORT session, hls4ml C simulation, ...) on ``x``. ``run_options`` are the
        target's run settings (``qdeploy run`` flags, e.g. ``{"shots": 1000}`` for the quantum target)."""
        _, x = self._golden_and_inputs(x, "input data")
        return self._runner(run_options)(x)

    def verify(self, x: np.ndarray | None = None) -> dict[str, Any]:
        """Re-run the artefact against the golden executor on ``x`` (default: the stored verification inputs).

        Returns the comparison dict (``bit_exact``, ``outputs_equal``/``outputs_compared``, ...), also written to
        ``verify.json`` in the folder.
        """
        from qdeploy.verify import verify_against_golden

        golden, x = self._golden_and_inputs(np.load(self.path / INPUTS_FILE) if x is None else x, "verification data")
        result = {"target": self.target, **verify_against_golden(golden, self._runner(), x)}
        (self.path / "verify.json").write_text(json.dumps(result, indent=2))
        return result

    def summary(self) -> str:
        return format_summary(self.report)


def format_summary(report: dict[str, Any]) -> str:
    """Short human summary of a compile or verify report."""
    lines = [f"target: {report['target']}"]
    if report.get("board"):
        lines[0] += f"  board: {report['board']} ({report.get('part')})"
    if report.get("input_quant"):
        lines.append(f"input precision declared: {report['input_quant']['declared']} (a Quant added to golden.onnx)")
    lines.append(
        f"bit-exact: {report['outputs_equal']}/{report['outputs_compared']} outputs"
        f"  (max abs error {report['max_abs_error']:.3g}, argmax agreement {100 * report['argmax_agreement']:.2f} %)"
    )
    one = report.get("batch_one")
    if one and one["outputs_equal"] != one["outputs_compared"]:
        note = "" if one.get("golden_batch_invariant", True) else "; the golden executor itself rounds differently there"
        lines.append(
            f"batch 1: {one['outputs_equal']}/{one['outputs_compared']} outputs bit-exact (max abs error "
            f"{one['max_abs_error']:.3g}{note})"
        )
    bound = report.get("bound") or {}
    if report["bit_exact"]:
        lines.append("result: EXACT")
    elif report.get("verified") and bound.get("kind") == "derived":
        lines.append(
            f"verified within the derived bound: max abs error {report['max_abs_error']:.3g} <= bound "
            f"(max {bound['max']:.3g}) on every output element; float tail after the last quantizer: "
            f"{', '.join(dict.fromkeys(bound.get('float_tail_ops', [])))}"
        )
        lines.append("result: VERIFIED WITHIN DERIVED BOUND (float arithmetic past the last quantizer)")
    else:
        lines.append("result: NOT EXACT" + ("" if bound.get("kind") != "derived" else " (outside the derived bound)"))
        lines.extend(_mismatch_lines(report.get("mismatches") or []))
    return "\n".join(lines)


def _mismatch_lines(mismatches: list[dict[str, Any]]) -> list[str]:
    """Whether the listed mismatching samples are the target's bug or the golden's own summation order."""
    if not mismatches:
        return []
    dependent = [m for m in mismatches if m["golden_order_dependent_at"]]
    where = sorted({name for m in dependent for name in m["golden_order_dependent_at"]})
    lines = []
    if len(dependent) < len(mismatches):
        lines.append(
            f"{len(mismatches) - len(dependent)} of {len(mismatches)} listed mismatching samples: the golden executor "
            "does not depend on summation order there, so the target's lowering is wrong (please report it)"
        )
    if dependent:
        lines.append(
            f"{len(dependent)} of {len(mismatches)} listed mismatching samples: the golden executor's own level depends "
            f"on float32 summation order at {', '.join(where)}"
        )
    return lines
