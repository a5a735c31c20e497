"""QONNX IR helpers: loading files from any producer, and small queries used by every target."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import ModelLoadError
from qdeploy.ops import AFFINE_OPS, HOST_ONLY_OPS, LAYOUT_OPS, QONNX_QUANTIZER_OPS

log = logging.getLogger(__name__)


def load_model(model: str | Path | onnx.ModelProto | ModelWrapper, clean: bool = True) -> ModelWrapper:
    """Load a QONNX model from a path (external ``.onnx.data`` beside it is read too), a ModelProto or a wrapper.

    With ``clean`` the graph goes through qonnx's ``cleanup_model`` (shape inference, constant folding of
    non-quantizer nodes, unique readable names), which every producer's output needs before lowering.
    """
    if isinstance(model, ModelWrapper):
        proto = onnx.ModelProto.FromString(model.model.SerializeToString())
    elif isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto.FromString(model.SerializeToString())
    else:
        path = Path(model)
        if not path.exists():
            raise ModelLoadError(f"model file {path} does not exist")
        if path.is_dir():
            raise ModelLoadError(f"model path {path} is a folder; pass the .onnx file")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ModelLoadError(
                f"{path} is not a readable ONNX model ({type(exc).__name__}); pass a .onnx file (QONNX or ONNX)"
            ) from exc
        _check_external_data(proto, path)
        try:
            # brevitas dynamo's `<name>.onnx.data` beside the model (every location checked above to be inside)
            onnx.load_external_data_for_model(proto, str(path.parent))
        except Exception as exc:
            raise ModelLoadError(
                f"{path}: its external weight data cannot be read ({type(exc).__name__}: {exc}); keep the model's "
                ".onnx.data file beside it, as exported"
            ) from exc
        if len(proto.graph.node) == 0:
            raise ModelLoadError(f"{path} has no graph nodes; is it an ONNX model?")
    # the names in this file are the ones to report: drop a record of an earlier cleanup's renaming saved with it
    for prop in [p for p in proto.metadata_props if p.key == FILE_NAMES_KEY]:
        proto.metadata_props.remove(prop)
    initializers = {init.name for init in proto.graph.initializer}
    runtime_inputs = [i.name for i in proto.graph.input if i.name not in initializers]
    if len(runtime_inputs) != 1 or len(proto.graph.output) != 1:
        raise ModelLoadError(
            f"model has {len(runtime_inputs)} inputs and {len(proto.graph.output)} outputs; "
            "qdeploy handles single-input single-output graphs"
        )
    from qdeploy.validation import validate_domains, validate_structure

    # on the file as given, before cleanup renames nodes: errors name the node as the user's file does; the domains
    # first, before anything could import one
    validate_domains(proto)
    validate_structure(proto)  # the quantizers' QONNX rules included
    wrapper = ModelWrapper(proto)
    if clean:
        wrapper = cleanup(wrapper)
    return wrapper


def _check_external_data(proto: onnx.ModelProto, path: Path) -> None:
    """A model file is data: the external data its initializers name must be files inside the model's folder (an
    absolute path, ``..`` or a link out would make qdeploy read elsewhere), and must exist."""
    root = path.parent.resolve()
    for init in proto.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((entry.value for entry in init.external_data if entry.key == "location"), "")
        target = (root / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(root):
            raise ModelLoadError(
                f"initializer {init.name} stores its values in {location!r}, outside the model's folder {path.parent}; "
                "keep external data beside the model (re-export it)"
            )
        if not target.is_file():
            raise ModelLoadError(
                f"initializer {init.name} stores its values in {location!r}, which is not in {path.parent}; copy the "
                "model together with that file"
            )


def reference_of(model: ModelWrapper) -> ModelWrapper:
    """The specification a compile is verified against: the user's graph as loaded (``load_model(clean=False)``),
    with only what qonnx's executor needs and nothing that changes a value: quantizers in qonnx's domain and every
    tensor's shape inferred. Cleanup (constant folding, renaming) is for the targets' copy, never for this one: folding
    a float subgraph may round differently from executing it."""
    from qonnx.transformation.infer_shapes import InferShapes

    reference = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString()))
    for node in reference.graph.node:
        if node.op_type in QONNX_QUANTIZER_OPS:
            node.domain = "qonnx.custom_op.general"  # as qonnx's cleanup_model: older exports use other domains
    # Exporters leave stale or shapeless annotations: infer every shape afresh. qonnx's custom ops (channels-last
    # Conv, ...) need their input shapes during inference, so where that fails keep the file's annotations.
    fresh = ModelWrapper(onnx.ModelProto.FromString(reference.model.SerializeToString()))
    del fresh.graph.value_info[:]
    try:
        return fresh.transform(InferShapes())
    except Exception:
        log.debug("shape inference without the file's annotations failed; inferring with them", exc_info=True)
    try:
        return reference.transform(InferShapes())
    except Exception as exc:
        raise ModelLoadError(_cleanup_failure(InferShapes(), exc)) from exc


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def cleanup(model: ModelWrapper) -> ModelWrapper:
    """qonnx's ``cleanup_model``, but node and tensor names survive when they are already unique identifiers.

    qonnx renumbers every node on each cleanup, so a second cleanup of a clean graph renames nodes and error
    messages would name nodes the user's file does not have. Names that are missing, duplicated or not C
    identifiers (brevitas's ``/0/Gemm``; hls4ml turns names into C++ identifiers) are still replaced.
    """
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.general import (
        GiveUniqueNodeNames,
        GiveUniqueParameterTensors,
        RemoveUnusedTensors,
    )
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

    for node in model.graph.node:
        if node.op_type in QONNX_QUANTIZER_OPS:
            node.domain = "qonnx.custom_op.general"  # as qonnx's cleanup_model: older exports use other domains
        for attribute in node.attribute:
            if attribute.name == "rounding_mode" and attribute.s != attribute.s.upper():
                # qonnx reads the mode case-insensitively, hls4ml's converter only upper-case (brevitas exports
                # a quantizer configured with float_to_int_impl_type="floor" as "floor")
                attribute.s = attribute.s.upper()
    # before RemoveUnusedTensors: an unused initializer that older exporters also list as a graph input would
    # otherwise lose its value and stay behind as a second runtime input
    _remove_static_inputs(model)
    for transformation in (
        InferShapes(),
        GiveUniqueParameterTensors(),
        FoldConstants(exclude_op_types=["Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear"]),
        FoldTransposeIntoQuantInit(),
        RemoveUnusedTensors(),
    ):
        try:
            model = model.transform(transformation)
        except Exception as exc:  # qonnx, onnx and ORT (constant folding) raise many types on malformed graphs
            raise ModelLoadError(_cleanup_failure(transformation, exc)) from exc
    node_names = [node.name for node in model.graph.node]
    if not all(_IDENTIFIER.fullmatch(n) for n in node_names if n):
        model = model.transform(GiveUniqueNodeNames())  # foreign naming scheme: renumber all, as qonnx does
        _record_file_names(model, node_names)
    else:
        _name_new_nodes(model)
    _remove_static_inputs(model)
    runtime_inputs = [i.name for i in model.graph.input]
    if len(runtime_inputs) != 1:
        raise ModelLoadError(
            f"after cleanup the graph has runtime inputs {runtime_inputs}, not one: an input the graph declares has "
            "no value and no producer; re-export the model with one input and every constant as an initializer"
        )
    tensor_names = {t for node in model.graph.node for t in (*node.input, *node.output) if t}
    if not all(_IDENTIFIER.fullmatch(t) for t in tensor_names):
        model = _give_readable_tensor_names(model)
    return model


def _rename_tensor(model: ModelWrapper, old: str, new: str) -> None:
    """qonnx's ``rename_tensor``, and every further use of ``old`` by a node: qonnx replaces only a node's first
    (``torch.cat([a, b, a])`` takes ``a`` twice; its second use kept the old name and lost its shape)."""
    model.rename_tensor(old, new)
    for node in model.graph.node:
        for index, name in enumerate(node.input):
            if name == old:
                node.input[index] = new


def _give_readable_tensor_names(model: ModelWrapper) -> ModelWrapper:
    """qonnx's ``GiveReadableTensorNames`` (the same names: ``<node>_out<k>``, ``<node>_param<k>``, ``global_in``,
    ``global_out``) with a rename that reaches a tensor's every use (see ``_rename_tensor``)."""
    for index, name in enumerate(model.get_all_tensor_names()):
        _rename_tensor(model, name, f"tensor_{index}")  # unique first, so no rename below meets an existing name
    for node in model.graph.node:
        for out_index, name in enumerate(list(node.output)):
            _rename_tensor(model, name, f"{node.name}_out{out_index}")
        params = 0
        for name in list(node.input):
            if model.get_initializer(name) is not None and not name.startswith(f"{node.name}_param"):
                _rename_tensor(model, name, f"{node.name}_param{params}")
                params += 1
    for index, tensor in enumerate(list(model.graph.input)):
        _rename_tensor(model, tensor.name, "global_in" if index == 0 else f"global_in_{index}")
    for index, tensor in enumerate(list(model.graph.output)):
        _rename_tensor(model, tensor.name, "global_out" if index == 0 else f"global_out_{index}")
    return model


#: metadata key of the cleaned graph: {node name after cleanup: node name in the user's file}
FILE_NAMES_KEY = "qdeploy.file_node_names"


def _record_file_names(model: ModelWrapper, before: list[str]) -> None:
    """Remember the file's node names across a renumbering (GiveUniqueNodeNames keeps the node order), composed with
    an earlier cleanup's record, so a refusal from a step can name the node as the user's file does."""
    earlier = file_node_names(model)
    renamed = zip(model.graph.node, before, strict=True)
    mapping = {node.name: earlier.get(old, old) for node, old in renamed if old and old != node.name}
    onnx.helper.set_model_props(
        model.model, {**{p.key: p.value for p in model.model.metadata_props}, FILE_NAMES_KEY: json.dumps(mapping)}
    )


def file_node_names(model: ModelWrapper) -> dict[str, str]:
    """{node name after cleanup: its name in the user's file} (empty when cleanup kept the file's names)."""
    for prop in model.model.metadata_props:
        if prop.key == FILE_NAMES_KEY:
            return dict(json.loads(prop.value))
    return {}


def with_file_names(message: str, mapping: dict[str, str]) -> str:
    """``message`` with each cleaned node name replaced by the name the user's file gives that node. A node a pass
    derived from one (``Quant_0_scale``: the scale Mul the threshold lowering wrote for ``Quant_0``) is named after
    the file's node it came from, with what it is."""
    if not mapping:
        return message
    names = "|".join(re.escape(name) for name in sorted(mapping, key=len, reverse=True))
    pattern = re.compile(rf"(?<![\w/.])({names})(_[A-Za-z]\w*)?(?!\w)")

    def file_name(match: re.Match) -> str:
        derived = match.group(2)
        if derived and re.fullmatch(r"_(out|param)\d+", derived):  # a tensor of that node (readable tensor names)
            return mapping[match.group(1)] + derived
        return mapping[match.group(1)] + (f" ({derived[1:]} qdeploy derived from it)" if derived else "")

    return pattern.sub(file_name, message)


def _remove_static_inputs(model: ModelWrapper) -> None:
    """Graph inputs that are initializers become value_info, as qonnx's RemoveStaticGraphInputs does; by hand because
    that pass removes from the list it iterates, so it skips every second one of consecutive static inputs."""
    initializers = {init.name for init in model.graph.initializer}
    for info in list(model.graph.input):
        if info.name in initializers:
            if not any(known.name == info.name for known in model.graph.value_info):
                model.graph.value_info.append(info)
            model.graph.input.remove(info)


#: what each cleanup pass needs from the graph, and what to do when it fails (advice for the one-line refusal)
_CLEANUP_ADVICE = {
    "InferShapes": (
        "ONNX shape inference found the graph inconsistent",
        "the declared shapes or element types contradict the ops: re-export the model, or drop the stale value_info "
        "annotations and check each node's attributes and input shapes",
    ),
    "FoldConstants": (
        "evaluating the graph's constant subgraphs with ONNX Runtime failed",
        "a node computing from constants only has inputs, attributes or an opset ONNX Runtime cannot run: re-export "
        "the model (fold constants in the exporter) with a supported opset",
    ),
    "FoldTransposeIntoQuantInit": (
        "folding a Transpose into a quantizer's weights failed",
        "check the Transpose's perm attribute against its input's rank, then re-export the model",
    ),
}


def _cleanup_failure(transformation: object, exc: Exception) -> str:
    """One line for a failed cleanup pass: what went wrong (the library's own words, naming the node where it does)
    and what to do."""
    name = type(transformation).__name__
    what, advice = _CLEANUP_ADVICE.get(
        name, (f"qonnx's {name} pass failed on the graph", "the graph is malformed there: re-export the model")
    )
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if len(detail) > 240:
        detail = detail[:240] + "..."
    return f"{what} ({type(exc).__name__}: {detail}); {advice}"


def _name_new_nodes(model: ModelWrapper) -> None:
    """Name unnamed or duplicate nodes ``<OpType>_<n>`` with unused numbers, leaving existing names alone."""
    taken: set[str] = set()
    pending = []
    for node in model.graph.node:
        if node.name and node.name not in taken:
            taken.add(node.name)
        else:
            pending.append(node)
    for node in pending:
        index = 0
        while f"{node.op_type}_{index}" in taken:
            index += 1
        node.name = f"{node.op_type}_{index}"
        taken.add(node.name)


def extract_chain(
    model: ModelWrapper,
    nodes: list,
    source: str | tuple[str, ...],
    output: str,
    source_shape: list[int],
    output_shape: list[int],
) -> ModelWrapper:
    """A standalone graph of ``nodes`` (each reading runtime tensors from ``source``, one name or several of one
    shape, or from each other; the rest constants) to ``output``, with copies of the nodes and of the constants
    they read, under the model's opsets."""
    import copy

    sources = (source,) if isinstance(source, str) else tuple(source)
    constants = {name for node in nodes for name in node.input[1:] if name}
    graph = onnx.helper.make_graph(
        [copy.deepcopy(node) for node in nodes],
        f"{sources[0]}_to_{output}",
        [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, source_shape) for name in sources],
        [onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, output_shape)],
        initializer=[init for init in model.graph.initializer if init.name in constants],
    )
    return ModelWrapper(onnx.helper.make_model(graph, opset_imports=model.model.opset_import))


def keep_nodes(model: ModelWrapper, names: set[str], output: str) -> ModelWrapper:
    """A cleaned copy of ``model`` with only the nodes named ``names``, ending at tensor ``output``."""
    from onnx import TensorProto, helper

    copy = ModelWrapper(model.model, make_deepcopy=True)
    shape = copy.get_tensor_shape(output)
    keep = [node for node in copy.graph.node if node.name in names]
    del copy.graph.node[:]
    copy.graph.node.extend(keep)
    del copy.graph.output[:]
    for value_info in list(copy.graph.value_info):
        if value_info.name == output:
            copy.graph.value_info.remove(value_info)
    copy.graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, shape))
    return cleanup(copy)


def split_float_epilogue(model: ModelWrapper) -> tuple[ModelWrapper, ModelWrapper | None]:
    """Cut the float ops with constant operands after the last integer tensor of a thresholded graph (a
    quantizer's scale, BatchNorm on the logits), and a classifier's closing Softmax/LogSoftmax in any graph, into an
    epilogue for the host (run by the golden executor); the hardware then outputs the tensor before them. Graphs
    ending in a quantizer or a layer, and fixed-point graphs ending in ops the hardware computes exactly, keep
    everything (the epilogue is None)."""
    output = model.graph.output[0].name
    tail, tensor = [], output
    while True:
        producer = model.find_producer(tensor)
        if producer is None or producer.op_type not in (*AFFINE_OPS, *HOST_ONLY_OPS):
            break
        if any(model.get_initializer(name) is None for name in producer.input[1:] if name):
            break
        if tensor != output and len(model.find_consumers(tensor) or []) != 1:
            break
        tail.insert(0, producer)
        tensor = producer.input[0]
    thresholded = any(node.op_type == "MultiThreshold" for node in model.graph.node)
    if not tail or not (thresholded or any(node.op_type in HOST_ONLY_OPS for node in tail)):
        return model, None
    epilogue = extract_chain(model, tail, tensor, output, model.get_tensor_shape(tensor), model.get_tensor_shape(output))
    names = {node.name for node in model.graph.node} - {node.name for node in tail}
    return keep_nodes(model, names, tensor), cleanup(epilogue)


def input_name(model: ModelWrapper) -> str:
    return model.graph.input[0].name


def output_name(model: ModelWrapper) -> str:
    return model.graph.output[0].name


def sample_shape(model: ModelWrapper) -> tuple[int, ...]:
    """The model's input shape without the batch dimension."""
    shape = model.get_tensor_shape(input_name(model))
    if shape is None or any((not isinstance(d, int)) or d <= 0 for d in shape[1:]):
        raise ModelLoadError(
            f"model input {input_name(model)} has a dynamic or unknown shape {shape}; export with fixed shapes"
        )
    return tuple(int(d) for d in shape[1:])


def power_of_two_mask(values: np.ndarray) -> np.ndarray:
    """Element-wise: is the value a finite, positive power of two?"""
    values = np.asarray(values, dtype=np.float64)
    mantissa, _ = np.frexp(values)
    return np.isfinite(values) & (values > 0) & (mantissa == 0.5)


def is_power_of_two(values: np.ndarray) -> bool:
    """True when every value is a finite, positive power of two (scales that are plain fixed-point types)."""
    mask = power_of_two_mask(values)
    return bool(mask.size and mask.all())


def const_input(model: ModelWrapper, node: onnx.NodeProto, index: int) -> np.ndarray | None:
    """Initializer feeding input ``index`` of ``node`` (None when it is a runtime tensor or absent)."""
    if index >= len(node.input) or node.input[index] == "":
        return None
    return model.get_initializer(node.input[index])


def node_attr(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            value = onnx.helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def check_datatype(model: ModelWrapper, x: np.ndarray, what: str) -> None:
    """Reject inputs the graph's declared input datatype does not allow (e.g. non-±1 values for BIPOLAR)."""
    from qdeploy.errors import InputDataError

    datatype = model.get_tensor_datatype(input_name(model))
    if datatype.name == "FLOAT32" or x.size == 0:
        return
    values = np.unique(x)
    allowed = np.array([datatype.allowed(v) for v in values[:4096]])
    if not allowed.all():
        bad = values[:4096][~allowed][0]
        raise InputDataError(
            f"{what} holds {bad!r}, not allowed by the model input's declared datatype {datatype.name}; "
            f"give {datatype.name} values"
        )


def first_downstream(model: ModelWrapper, tensor: str, found, through: tuple[str, ...]):
    """The first node downstream of ``tensor`` for which ``found(node)`` holds, passing only through ``through`` ops."""
    frontier, seen = [tensor], set()
    while frontier:
        current = frontier.pop()
        if current in seen:
            continue
        seen.add(current)
        for consumer in model.find_consumers(current) or []:
            if found(consumer):
                return consumer
            if consumer.op_type in through:
                frontier.extend(consumer.output)
    return None


def is_constant(model: ModelWrapper, tensor: str) -> bool:
    """An initializer, or computed from initializers only (a Quant on weights before folding)."""
    if model.get_initializer(tensor) is not None:
        return True
    producer = model.find_producer(tensor)
    return producer is not None and all(is_constant(model, name) for name in producer.input if name)


def first_runtime_combiner(model: ModelWrapper, tensor: str):
    """The first element-wise node downstream of ``tensor`` (through single-input ops) that takes two runtime
    tensors (a layer's weights, even behind a Quant on a constant, are not runtime tensors)."""

    def combines_runtime_tensors(node) -> bool:
        runtime = [name for name in node.input if name and not is_constant(model, name)]
        return node.op_type in (*AFFINE_OPS, "Concat") and len(runtime) >= 2

    through = (*LAYOUT_OPS, *AFFINE_OPS, "Relu", "MaxPool", "Resize", "Upsample")
    return first_downstream(model, tensor, combines_runtime_tensors, through)
