"""The golden executor: qonnx's own ``execute_onnx`` (the reference for QONNX semantics), run batched.

``execute_onnx`` builds one ONNX Runtime session per node, so calling it per sample costs ~16 ms each; running
the whole batch through one call at a time costs the same per call. We resize the graph's batch dimension to
the chunk size (qonnx ``ChangeBatchSize``) and execute chunk by chunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.data import check_array
from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import input_name, output_name, sample_shape

DEFAULT_CHUNK = 2048


def _with_batch(model: ModelWrapper, batch: int) -> ModelWrapper:
    """``model`` at batch size ``batch``; unchanged when it already has it (qonnx cannot re-infer some graphs'
    shapes after ChangeBatchSize, e.g. its channels-last Conv: those run at their own batch size, ``chunk=1``).
    As qonnx's ChangeBatchSize, but only Reshapes of batch-carrying data take the batch (``qdeploy.batch_axis``: it
    writes the batch into a pad computation's Reshape of constants too, which then fails)."""
    from qonnx.transformation.infer_shapes import InferShapes

    from qdeploy.batch_axis import batch_carrying, with_batch_reshapes

    if (model.get_tensor_shape(input_name(model)) or [None])[0] == batch:
        return model

    old_batch = (model.get_tensor_shape(input_name(model)) or [None])[0]
    resized = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString()))
    # a symbolic batch (a ``dim_param``, or the 0 qonnx writes for one) is unambiguous in every intermediate shape:
    # those shapes take the batch and keep their other axes, so ops whose shapes qonnx cannot infer from scratch (its
    # channels-last Conv reads its input's shape) still find them; a shape with a fixed first axis goes (a 1 may be
    # the batch or an axis: inferred again)
    first = resized.graph.input[0].type.tensor_type.shape.dim[0]
    symbolic = bool(first.dim_param) or first.dim_value <= 0
    resized.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    resized.graph.output[0].type.tensor_type.shape.dim[0].dim_value = batch
    kept = []
    carrying = batch_carrying(resized) if symbolic else set()  # a constant's unknown first axis is no batch
    for info in resized.graph.value_info:
        dims = info.type.tensor_type.shape.dim
        if info.name in carrying and len(dims) and (dims[0].dim_param or dims[0].dim_value <= 0):
            dims[0].dim_value = batch
            kept.append(info)
    del resized.graph.value_info[:]
    resized.graph.value_info.extend(kept)
    with_batch_reshapes(resized, batch)
    _resize_sizes_follow_batch(resized, old_batch, batch)
    return resized.transform(InferShapes())


def _resize_sizes_follow_batch(model: ModelWrapper, old_batch: int | None, batch: int) -> None:
    """A Resize whose constant ``sizes`` spell out the exported batch (``[1, C, H, W]``, as torch exports a fixed-size
    ``interpolate``) resizes each sample alike at any batch: its batch entry follows the new batch, as qonnx's
    ChangeBatchSize does for Reshape shapes (it leaves Resize alone, and shape inference then fails)."""
    for node in model.get_nodes_by_op_type("Resize"):
        sizes = model.get_initializer(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        if sizes is not None and np.size(sizes) > 1 and int(np.asarray(sizes).ravel()[0]) == old_batch:
            sizes = np.array(sizes, copy=True)
            sizes[0] = batch
            model.set_initializer(node.input[3], sizes)


#: the golden executor holds every tensor of a chunk at once: chunks are sized to stay within this many bytes
CHUNK_BYTES = 512 * 2**20


def _bytes_per_sample(model: ModelWrapper) -> int:
    """Bytes every tensor of one sample takes (float32 assumed where a shape is unknown: a lower bound then)."""
    total = 0
    for info in [*model.graph.input, *model.graph.value_info, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim
        values = 1
        for dim in list(dims)[1:]:
            values *= dim.dim_value if dim.dim_value > 0 else 1
        total += 4 * values
    return max(total, 1)


def chunk_size(model: ModelWrapper, chunk: int = DEFAULT_CHUNK) -> int:
    """At most ``chunk`` samples per execution, fewer when a sample's tensors are large (a super-resolution net's
    feature maps): the whole execution context of a chunk must fit in CHUNK_BYTES."""
    return max(1, min(chunk, CHUNK_BYTES // _bytes_per_sample(model)))


def run_golden(model: ModelWrapper, x: np.ndarray, chunk: int = DEFAULT_CHUNK) -> np.ndarray:
    """Execute ``model`` on ``x`` (batch first) with QONNX reference semantics; returns the output array.

    ``chunk=1`` on a batch-1 graph runs sample by sample on the graph as it is, for graphs whose shapes qonnx
    cannot re-infer at another batch size (its channels-last Conv after ChangeBatchSize): slow, for a few samples.
    """
    return run_golden_context(model, x, chunk, keep=())[output_name(model)]


#: qonnx modules that open their own ONNX Runtime sessions (one per standard node, wrapped channels-last ops,
#: QuantAvgPool2d), each through its module-level ``rt``
_QONNX_SESSION_MODULES = (
    "qonnx.core.onnx_exec",
    "qonnx.custom_op.channels_last.base_wrapped_op",
    "qonnx.custom_op.general.quantavgpool2d",
)


class _OrtAtThreads:
    """``onnxruntime`` as qonnx sees it, except that sessions get ``intra_op_num_threads``."""

    def __init__(self, module: Any, threads: int) -> None:
        self._module, self._threads = module, threads

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def InferenceSession(self, model: Any, sess_options: Any = None, **kwargs: Any) -> Any:  # noqa: N802 - ORT's name
        options = sess_options if sess_options is not None else self._module.SessionOptions()
        options.intra_op_num_threads = self._threads
        return self._module.InferenceSession(model, options, **kwargs)


@contextlib.contextmanager
def _qonnx_sessions_at_session_threads() -> Iterator[None]:
    """qonnx's sessions run at the thread count of qdeploy's own sessions (``qdeploy.runtime``) while inside.

    ORT's float GEMM partitions its work by thread count, and the partition changes the last bit of a float Gemm on
    unquantized data (seen: a Gemm at 1 thread vs 2 differing in the last bit, then across a quantizer's rounding
    point). qonnx opens its sessions with ORT's default thread count; the target with ``--threads``. Verification
    compares the same kernel at the same thread count, so both must use one count."""
    import importlib

    from qdeploy.runtime import session_threads

    threads = session_threads()
    if threads is None:
        yield
        return
    modules = []
    for name in _QONNX_SESSION_MODULES:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:  # an older qonnx without this op: nothing of it runs
            continue
    saved = [module.rt for module in modules]
    try:
        for module, ort in zip(modules, saved, strict=True):
            module.rt = _OrtAtThreads(ort, threads)
        yield
    finally:
        for module, ort in zip(modules, saved, strict=True):
            module.rt = ort


def _refuse_nan(graph: ModelWrapper, context: dict[str, Any], start: int, samples: int) -> None:
    """Refuse a graph that computes NaN from finite inputs, naming the first node that does (nodes are in
    topological order, so its inputs held none). NaN is no number a target can match: qonnx's quantizers keep it
    (its clamp is ``np.where``), ONNX Clip and QuantizeLinear turn it into a bound, and a BipolarQuant downstream
    maps it to -1; whether an artefact equals the graph there is a property of the lowering, not of the graph."""
    for index, node in enumerate(graph.graph.node):
        for name in node.output:
            value = np.asarray(context.get(name, 0.0))
            if not np.issubdtype(value.dtype, np.floating) or not np.isnan(value).any():
                continue
            batched = value.ndim > 0 and value.shape[0] == samples
            where = (
                f"verification sample {start + int(np.argmax(np.isnan(value.reshape(samples, -1)).any(axis=1)))}"
                if batched
                else "every sample"
            )
            label = node.name or f"#{index} ({node.op_type}, unnamed)"
            raise UnsupportedModelError(
                f"node {label} ({node.op_type}) computes NaN on {where} from a finite input (a negative variance, "
                "0/0, 0 x inf, inf-inf, the square root or log of a negative); no target reproduces NaN: fix the model, or "
                "verify on inputs from its domain (--data)"
            )


def golden_graph_contexts(
    model: ModelWrapper, x: np.ndarray, chunk: int = DEFAULT_CHUNK
) -> Iterator[tuple[int, ModelWrapper, dict[str, np.ndarray]]]:
    """The golden executor's whole execution context per chunk of ``x``: (first sample's index, the graph at the
    chunk's batch size, every tensor). Anything run on such a graph while iterating sees qonnx's sessions at the
    verification thread count, as the golden executor did (``qdeploy.order_dependence`` re-runs single nodes)."""
    import onnxruntime
    from qonnx.core.onnx_exec import execute_onnx

    # qonnx runs its channels-last ops through one-node models stamped opset 1; ORT warns on each (noise, not errors)
    onnxruntime.set_default_logger_severity(3)
    x = check_array(x, sample_shape(model), "golden executor input")
    resized: dict[int, ModelWrapper] = {}
    chunk = chunk_size(model, chunk)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        if len(part) not in resized:
            resized[len(part)] = _with_batch(model, len(part))
        graph = resized[len(part)]
        with _qonnx_sessions_at_session_threads():
            result = execute_onnx(graph, {input_name(graph): part}, return_full_exec_context=True)
            _refuse_nan(graph, result, start, len(part))
            if output_name(graph) != output_name(model):
                result[output_name(model)] = result[output_name(graph)]
            yield start, graph, result


def run_golden_context(
    model: ModelWrapper, x: np.ndarray, chunk: int = DEFAULT_CHUNK, keep: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Like ``run_golden``, but also returns the tensors named in ``keep`` (all of them when None), batch first
    (constants as they are): error-bound derivation needs magnitudes inside the graph (``qdeploy.bounds``)."""
    wanted = None if keep is None else {*keep, output_name(model)}
    constants = {init.name for init in model.graph.initializer}
    parts: dict[str, list[np.ndarray]] = {}
    fixed: dict[str, np.ndarray] = {}
    for _start, _graph, result in golden_graph_contexts(model, x, chunk):
        # the whole context (qonnx holds it either way): a NaN inside was looked for, then only ``wanted`` kept
        samples = len(result[input_name(model)]) if input_name(model) in result else None
        for name, value in result.items():
            if wanted is not None and name not in wanted:
                continue
            value = np.asarray(value)
            if name in constants or value.ndim == 0 or value.shape[0] != samples:
                fixed.setdefault(name, value)  # not batched: constants, shapes
            else:
                parts.setdefault(name, []).append(value)
    return {**fixed, **{name: np.concatenate(values, axis=0) for name, values in parts.items()}}
