"""The golden executor: qonnx's own ``execute_onnx`` (the reference for QONNX semantics), run batched.

``execute_onnx`` builds one ONNX Runtime session per node, so calling it per sample costs ~16 ms each; running
the whole batch through one call at a time costs the same per call. We resize the graph's batch dimension to
the chunk size (qonnx ``ChangeBatchSize``) and execute chunk by chunk.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.data import check_array
from qdeploy.ir import input_name, output_name, sample_shape

DEFAULT_CHUNK = 2048


def _with_batch(model: ModelWrapper, batch: int) -> ModelWrapper:
    """``model`` at batch size ``batch``; unchanged when it already has it (qonnx cannot re-infer some graphs'
    shapes after ChangeBatchSize, e.g. its channels-last Conv: those run at their own batch size, ``chunk=1``)."""
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    if (model.get_tensor_shape(input_name(model)) or [None])[0] == batch:
        return model

    resized = model.transform(ChangeBatchSize(batch))
    return resized.transform(InferShapes())


def run_golden(model: ModelWrapper, x: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Execute ``model`` on ``x`` (batch first) with QONNX reference semantics; returns the output array.

    ``chunk=1`` on a batch-1 graph runs sample by sample on the graph as it is, for graphs whose shapes qonnx
    cannot re-infer at another batch size (its channels-last Conv after ChangeBatchSize): slow, for a few samples.
    """
    return run_golden_context(model, x, chunk, keep_all=False)[output_name(model)]


def run_golden_context(
    model: ModelWrapper, x: np.ndarray, chunk: int = DEFAULT_CHUNK, keep_all: bool = True
) -> dict[str, np.ndarray]:
    """Like ``run_golden``, but returns every tensor of the execution (batch first; constants as they are), as
    error-bound derivation needs the magnitudes inside the graph (``qdeploy.bounds``)."""
    import onnxruntime
    from qonnx.core.onnx_exec import execute_onnx

    # qonnx runs its channels-last ops through one-node models stamped opset 1; ORT warns on each (noise, not errors)
    onnxruntime.set_default_logger_severity(3)
    x = check_array(x, sample_shape(model), "golden executor input")
    constants = {init.name for init in model.graph.initializer}
    parts: dict[str, list[np.ndarray]] = {}
    fixed: dict[str, np.ndarray] = {}
    resized: dict[int, ModelWrapper] = {}
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        if len(part) not in resized:
            resized[len(part)] = _with_batch(model, len(part))
        graph = resized[len(part)]
        result = execute_onnx(graph, {input_name(graph): part}, return_full_exec_context=keep_all)
        if not keep_all:
            result = {output_name(model): result[output_name(graph)]}
        for name, value in result.items():
            value = np.asarray(value)
            if name in constants or value.ndim == 0 or value.shape[0] != len(part):
                fixed.setdefault(name, value)  # not batched: constants, shapes
            else:
                parts.setdefault(name, []).append(value)
    return {**fixed, **{name: np.concatenate(values, axis=0) for name, values in parts.items()}}
