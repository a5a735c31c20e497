"""The host epilogue: float ops after the last integer tensor of a thresholded graph run on the host."""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.ir import cleanup, extract_chain
from qdeploy.ops import AFFINE_OPS

EPILOGUE_FILE = "epilogue.onnx"


def split_float_epilogue(model: ModelWrapper) -> tuple[ModelWrapper, ModelWrapper | None]:
    """Cut float ops after the last integer tensor of a thresholded graph (a quantizer's scale, BatchNorm on the
    logits) into a host-side epilogue; the firmware then outputs that integer tensor. Graphs without
    MultiThreshold keep everything in firmware."""
    from onnx import TensorProto, helper

    if not any(node.op_type == "MultiThreshold" for node in model.graph.node):
        return model, None
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
    if not tail:
        return model, None
    boundary, shape = tensor, model.get_tensor_shape(tensor)
    epilogue = extract_chain(model, tail, boundary, output, shape, model.get_tensor_shape(output))
    firmware = ModelWrapper(model.model, make_deepcopy=True)
    names = {node.name for node in tail}
    keep = [node for node in firmware.graph.node if node.name not in names]
    del firmware.graph.node[:]
    firmware.graph.node.extend(keep)
    del firmware.graph.output[:]
    for value_info in list(firmware.graph.value_info):
        if value_info.name == boundary:
            firmware.graph.value_info.remove(value_info)
    firmware.graph.output.append(helper.make_tensor_value_info(boundary, TensorProto.FLOAT, shape))
    return cleanup(firmware), cleanup(epilogue)
