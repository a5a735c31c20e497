"""``qdeploy.compile``: lower a QONNX graph to a target, verify it against the golden executor, write the folder.

The output folder is staged in a temporary sibling and moved into place only when everything succeeded, so a
failure never leaves a half-written folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.artifact import GOLDEN_FILE, INPUTS_FILE, REPORT_FILE, Artifact
from qdeploy.config import CompileConfig, from_mapping, to_jsonable
from qdeploy.data import check_array
from qdeploy.errors import QDeployError
from qdeploy.ir import check_datatype, load_model, sample_shape
from qdeploy.pipeline import DumpModels, RunContext, Timing
from qdeploy.target import get_target
from qdeploy.verify import random_inputs, verify_against_golden

log = logging.getLogger(__name__)

CONFIG_FILE = "qdeploy_config.json"


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success replace ``out`` with it, on failure delete it."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / REPORT_FILE).exists())):
        raise QDeployError(f"output folder {out} exists and is not a qdeploy output; choose another -o")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _model_label(model: Any) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    return getattr(getattr(model, "graph", None), "name", None) or type(model).__name__


def compile(  # noqa: A001 - the public verb users expect: qdeploy.compile
    model: str | Path | ModelWrapper | onnx.ModelProto,
    target: str = "onnxruntime",
    out: str | Path = "build/qdeploy",
    data: np.ndarray | None = None,
    config: CompileConfig | None = None,
    **options: Any,
) -> Artifact:
    """Compile ``model`` (QONNX file or graph) for ``target`` into ``out`` and verify it bit for bit.

    ``data`` (batch first) are real inputs added to the verification set; ``options`` are CompileConfig
    fields (``board``, ``backend``, ``io_type``, ``strategy``, ``reuse_factor``, ``verify_samples``, ``hls4ml``...).
    Returns the Artifact; its ``report`` holds ``bit_exact`` and the counts.
    """
    cfg = config or from_mapping(CompileConfig, {"target": target, **options}, "compile()")
    target_impl = get_target(cfg.target)
    target_impl.check_available()
    graph = load_model(model)
    shape = sample_shape(graph)
    user_x = check_array(data, shape, "verification data") if data is not None else np.zeros((0, *shape), np.float32)
    check_datatype(graph, user_x, "verification data")
    timing = Timing()
    with staged_folder(Path(out)) as folder:
        ctx = RunContext(instruments=[timing, DumpModels(folder / "ir")])
        graph.save(str(folder / GOLDEN_FILE))
        facts = target_impl.lower(graph, cfg, folder, ctx)
        x = np.concatenate([user_x, random_inputs(graph, shape, cfg.verify_samples, cfg.seed)])
        if len(x) == 0:
            raise QDeployError("nothing to verify: give --data or verify_samples > 0")
        np.save(folder / INPUTS_FILE, x)
        result = ctx.timed(
            "verify", lambda: verify_against_golden(graph, target_impl.runner(folder), x, target_impl.tolerance)
        )
        report = {
            "target": cfg.target,
            "model": _model_label(model),
            **result,
            "verification_inputs": {"user": int(len(user_x)), "random": int(len(x) - len(user_x))},
            **facts,
            "time_per_step": {k: round(v, 4) for k, v in timing.seconds.items()},
        }
        (folder / REPORT_FILE).write_text(json.dumps(report, indent=2))
        (folder / CONFIG_FILE).write_text(json.dumps(to_jsonable(cfg), indent=2))
    return Artifact(Path(out))
