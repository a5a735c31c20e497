"""Move channels-last transposes across ``MultiThreshold`` nodes, switching their ``data_layout``.

qonnx's channels-last conversion knows Conv, MaxPool and BatchNorm but not ``MultiThreshold``, so it leaves
``Transpose(NHWC->NCHW) -> MultiThreshold -> Transpose(NCHW->NHWC)`` around every thresholded feature map. A
MultiThreshold acts element by element with per-channel thresholds, so it commutes with a transpose once its
channel axis moves along. As qonnx does for its own ops, to-channels-last transposes move upstream and
to-channels-first transposes downstream; qonnx's consecutive-transpose removal then cancels the pairs, and a
to-channels-first transpose that reaches a Flatten -> MatMul is absorbed into the weights.
"""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import SortGraph

from qdeploy.ir import node_attr


def _layout(model: ModelWrapper, node) -> str:
    layout = node_attr(node, "data_layout", "")
    layout = layout.decode() if isinstance(layout, bytes) else layout
    return layout or ("NCHW" if len(model.get_tensor_shape(node.input[0]) or []) == 4 else "")


TO_CHANNELS_LAST, TO_CHANNELS_FIRST = (0, 2, 3, 1), (0, 3, 1, 2)
#: per layout: (its channels-last form, the to-channels-last perm, the to-channels-first perm); 1-D feature maps
#: (Conv1d) transpose with (0, 2, 1) both ways
MOVES = {"NCHW": ("NHWC", TO_CHANNELS_LAST, TO_CHANNELS_FIRST), "NCW": ("NWC", (0, 2, 1), (0, 2, 1))}


def _set_layout(node, layout: str) -> None:
    from onnx import helper

    for attribute in list(node.attribute):
        if attribute.name == "data_layout":
            node.attribute.remove(attribute)
    node.attribute.append(helper.make_attribute("data_layout", layout))


def _swap(model: ModelWrapper, first, second, layout: str) -> None:
    """``first -> second`` becomes ``second -> first`` (both single-input, single-output); the MultiThreshold gets
    ``layout``, the tensor between them the shape the first op's output has after the swap."""
    source, between, result = first.input[0], first.output[0], second.output[0]
    moved = model.make_new_valueinfo_name()
    second.input[0], second.output[0] = source, moved
    first.input[0], first.output[0] = moved, result
    threshold = first if first.op_type == "MultiThreshold" else second
    _set_layout(threshold, layout)
    for value_info in list(model.graph.value_info):
        if value_info.name == between:
            model.graph.value_info.remove(value_info)
    # the moved tensor: the source transposed (transpose moved upstream) or the source's shape (moved downstream)
    if second.op_type == "Transpose":
        perm = tuple(node_attr(second, "perm", ()))
        shape = model.get_tensor_shape(source)
        model.set_tensor_shape(moved, [shape[i] for i in perm])
    else:
        model.set_tensor_shape(moved, model.get_tensor_shape(source))


class MoveTransposeAcrossMultiThreshold(Transformation):
    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for threshold in model.graph.node:
            if threshold.op_type != "MultiThreshold":
                continue
            layout = _layout(model, threshold)
            if layout not in MOVES:
                continue
            channels_last, to_last, to_first = MOVES[layout]
            consumers = model.find_consumers(threshold.output[0]) or []
            if len(consumers) == 1 and consumers[0].op_type == "Transpose":
                transpose = consumers[0]
                perm = tuple(node_attr(transpose, "perm", ()))
                if perm == to_last:
                    _swap(model, threshold, transpose, channels_last)  # to-channels-last moves upstream
                    return model.transform(SortGraph(), cleanup=False), True
            producer = model.find_producer(threshold.input[0])
            if (
                producer is not None
                and producer.op_type == "Transpose"
                and len(model.find_consumers(producer.output[0])) == 1
            ):
                perm = tuple(node_attr(producer, "perm", ()))
                if perm == to_first:
                    _swap(model, producer, threshold, channels_last)  # to-channels-first moves downstream
                    return model.transform(SortGraph(), cleanup=False), True
        return model, False
