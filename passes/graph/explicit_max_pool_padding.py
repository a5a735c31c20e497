"""A channels-last ``MaxPool``'s padding and ``ceil_mode`` windows as an explicit ``Pad`` in front of it.

ONNX max pooling ignores its padding (as if it held -inf), and ``ceil_mode`` adds partial windows past the bottom/
right edge, which it pools over their real elements only. hls4ml pools whole windows of an unpadded image in
io_stream (its streaming pooling asserts that there is no padding), and in io_parallel it pads with the type's value
whose top bit alone is set: the most negative value of a signed type, but a large positive one of an unsigned type.
When every value the pooling can see is ``>= lowest``, padding with ``lowest`` computes the same maximum (every
window keeps at least one real element, and ``max(window, lowest) = max(window)``). ``lowest`` is 0 for a
non-negative input (after a ReLU, an unsigned quantizer): the ``Pad`` is hls4ml's zero padding and the pooling a
whole-window one, exact on both I/O types. A ``ceil_mode`` pooling then takes the extra bottom/right padding that
makes floor mode give the same number of windows.

An input that may be negative keeps its pooling as it is: in io_parallel hls4ml pads a signed type with its most
negative value (the target's pooling parser turns ``ceil_mode`` into end padding there); in io_stream the target
refuses it naming the node.
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.ir import node_attr
from qdeploy.passes.graph.value_range import lowest_value

CHANNELS_LAST_DOMAIN = "qonnx.custom_op.channels_last"

__all__ = ["ExplicitMaxPoolPadding", "ceil_end_padding", "lowest_value"]


def ceil_end_padding(model: ModelWrapper, node) -> list[int] | None:
    """Per spatial axis, the end padding (the file's plus what ``ceil_mode`` adds) that gives floor-mode pooling
    the node's number of output pixels; None when a window would hold no real element (then no padding value
    makes the two agree) or the shapes are unknown. ``node`` is channels-last: N, spatial..., C."""
    shape, out = model.get_tensor_shape(node.input[0]), model.get_tensor_shape(node.output[0])
    kernel = [int(k) for k in node_attr(node, "kernel_shape", [])]
    if shape is None or out is None or not kernel:
        return None
    spatial = len(kernel)
    strides = [int(s) for s in node_attr(node, "strides", None) or [1] * spatial]
    dilations = [int(d) for d in node_attr(node, "dilations", None) or [1] * spatial]
    pads = [int(p) for p in node_attr(node, "pads", None) or [0] * (2 * spatial)]
    ends = []
    for axis in range(spatial):
        size, count = int(shape[1 + axis]), int(out[1 + axis])
        extent = (kernel[axis] - 1) * dilations[axis] + 1
        begin, end = pads[axis], pads[axis + spatial]
        if (count - 1) * strides[axis] >= size + begin:
            return None  # the last window starts in the end padding: no real element in it
        ends.append(max(end, (count - 1) * strides[axis] + extent - size - begin))
    return ends


class ExplicitMaxPoolPadding(Transformation):
    """See the module docstring."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for index, node in enumerate(model.graph.node):
            if node.op_type != "MaxPool" or node.domain != CHANNELS_LAST_DOMAIN:
                continue
            kernel = node_attr(node, "kernel_shape", [])
            spatial = len(kernel)
            pads = [int(p) for p in node_attr(node, "pads", None) or [0] * (2 * spatial)]
            ceil = bool(int(node_attr(node, "ceil_mode", 0)))
            if not any(pads) and not ceil:
                continue
            if any(int(d) != 1 for d in node_attr(node, "dilations", None) or [1] * spatial):
                continue  # hls4ml pools without dilation: the target's check refuses it
            ends = ceil_end_padding(model, node)
            lowest = lowest_value(model, node.input[0])
            if ends is None or lowest is None or lowest < 0:
                continue
            self._insert_zero_pad(model, index, node, pads[:spatial], ends)
            return model, True
        return model, False

    @staticmethod
    def _insert_zero_pad(model: ModelWrapper, index: int, node, begins: list[int], ends: list[int]) -> None:
        padded = model.make_new_valueinfo_name()
        pads_name = model.make_new_valueinfo_name()
        # channels-last: no padding on the batch and channel axes
        model.set_initializer(pads_name, np.asarray([0, *begins, 0, 0, *ends, 0], dtype=np.int64))
        pad = helper.make_node("Pad", [node.input[0], pads_name], [padded], name=f"{node.name}_pad", mode="constant")
        shape = model.get_tensor_shape(node.input[0])
        padded_shape = [shape[0], *(int(s) + b + e for s, b, e in zip(shape[1:-1], begins, ends, strict=True)), shape[-1]]
        model.set_tensor_shape(padded, padded_shape)
        model.set_tensor_datatype(padded, model.get_tensor_datatype(node.input[0]))
        node.input[0] = padded
        _set_attributes(node, pads=[0] * (2 * len(begins)), ceil_mode=0)
        model.graph.node.insert(index, pad)


def _set_attributes(node, **values) -> None:
    for attribute in list(node.attribute):
        if attribute.name in values:
            node.attribute.remove(attribute)
    node.attribute.extend(helper.make_attribute(name, value) for name, value in values.items())
