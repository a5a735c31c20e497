"""What runs on the host around the hardware, exactly as the graph computes it (golden executor): the prologue
(graph input -> the input quantizer's levels, which the hardware takes) and the epilogue (float ops after the
last integer tensor: an output scale, BatchNorm on the logits)."""

from __future__ import annotations

from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.ir import cleanup, extract_chain
from qdeploy.ops import AFFINE_OPS

PROLOGUE_FILE = "prologue.onnx"
EPILOGUE_FILE = "epilogue.onnx"


def _keep(model: ModelWrapper, names: set[str], output: str) -> ModelWrapper:
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


def prologue(model: ModelWrapper, nodes: list[str], output: str) -> ModelWrapper:
    """The graph from its input to ``output`` (the input quantizer's), made of ``nodes``."""
    return _keep(model, set(nodes), output)


def split_float_epilogue(model: ModelWrapper) -> tuple[ModelWrapper, ModelWrapper | None]:
    """Cut float ops with constant operands after the last integer tensor (a quantizer's scale after thresholds,
    BatchNorm on logits) into an epilogue; the hardware then outputs that integer tensor. A graph ending in a
    quantizer or a layer keeps everything."""
    output = model.graph.output[0].name
    tail, tensor = [], output
    while True:
        producer = model.find_producer(tensor)
        if producer is None or producer.op_type not in AFFINE_OPS:
            break
        if any(model.get_initializer(name) is None for name in producer.input[1:] if name):
            break
        if tensor != output and len(model.find_consumers(tensor) or []) != 1:
            break
        tail.insert(0, producer)
        tensor = producer.input[0]
    if not tail or not any(node.op_type == "MultiThreshold" for node in model.graph.node):
        return model, None
    shape = model.get_tensor_shape(tensor)
    epilogue = extract_chain(model, tail, tensor, output, shape, model.get_tensor_shape(output))
    names = {node.name for node in model.graph.node} - {node.name for node in tail}
    return _keep(model, names, tensor), cleanup(epilogue)
