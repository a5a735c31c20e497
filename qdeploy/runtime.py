"""The one place qdeploy opens ONNX Runtime sessions (targets' artefacts, classical parts of hybrid models)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qdeploy.deps import require

#: graph optimization level of every session qdeploy opens (written to reports, so others can reproduce the numbers)
OPTIMIZATION_LEVEL = "ORT_ENABLE_ALL"

#: intra-op threads of the sessions qdeploy opens (the CLI's --threads); None: ONNX Runtime's own default
_session_threads: int | None = None


def set_session_threads(threads: int | None) -> None:
    """Thread count of every session opened from now on (None: ONNX Runtime's default, one per physical core)."""
    global _session_threads
    _session_threads = threads


def session_threads() -> int | None:
    """The intra-op thread count sessions are opened with (None: ONNX Runtime's default)."""
    return _session_threads


def ort_session(
    model: str | Path | bytes,
    config: Mapping[str, str] | None = None,
    optimized_path: str | Path | None = None,
    what: str = "running ONNX models",
) -> Any:
    """A CPU ``InferenceSession`` on ``model`` (a path or serialized bytes) at OPTIMIZATION_LEVEL, with the session
    ``config`` entries given; ``optimized_path`` saves ORT's optimized graph there."""
    ort = require("onnxruntime", "onnxruntime", what)
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVEL)
    options.log_severity_level = 3
    if _session_threads is not None:
        options.intra_op_num_threads = _session_threads
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
