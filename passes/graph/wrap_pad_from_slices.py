"""PyTorch's circular padding as torch.onnx exports it, ``Concat(x[..., -p:], x, x[..., :q])`` along one axis, as
one ``Pad`` in ``wrap`` mode (ONNX opset 19 and later).

Both compute the same tensor: the last ``p`` and the first ``q`` slices of ``x`` along the axis, wrapped around it.
The fixed-point targets pad (hls4ml's ``MirrorPad`` layer) but do not slice.
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.ir import const_input, node_attr

#: the first default-domain opset whose Pad has ``wrap`` mode
WRAP_OPSET = 19


def _slice_of(model: ModelWrapper, tensor: str, source: str, axis: int, rank: int) -> tuple[int, int] | None:
    """(p, 0) when ``tensor`` is the last ``p`` entries of ``source`` along ``axis``, (0, q) when it is the first
    ``q``; None otherwise."""
    node = model.find_producer(tensor)
    if node is None or node.op_type != "Slice" or node.input[0] != source:
        return None
    starts, ends = const_input(model, node, 1), const_input(model, node, 2)
    axes = const_input(model, node, 3) if len(node.input) > 3 and node.input[3] else np.arange(rank)
    steps = const_input(model, node, 4) if len(node.input) > 4 and node.input[4] else np.ones(1)
    if starts is None or ends is None or axes is None or steps is None:
        return None
    starts, ends, axes, steps = (np.asarray(v, dtype=np.int64).ravel() for v in (starts, ends, axes, steps))
    if starts.size != 1 or ends.size != 1 or axes.size != 1 or steps.size != 1 or int(steps[0]) != 1:
        return None
    if int(axes[0]) % rank != axis:
        return None
    size = model.get_tensor_shape(source)[axis]
    start, end = int(starts[0]), int(ends[0])
    if start < 0 and end >= size and -start <= size:
        return -start, 0
    if start == 0 and 0 < end <= size:
        return 0, end
    return None


class WrapPadFromSlices(Transformation):
    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        opset = next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if opset < WRAP_OPSET:
            return model, False
        for index, node in enumerate(model.graph.node):
            if node.op_type != "Concat" or len(node.input) not in (2, 3):
                continue
            shape = model.get_tensor_shape(node.output[0])
            if shape is None:
                continue
            rank = len(shape)
            axis = int(node_attr(node, "axis", 0)) % rank
            # the unsliced input: the one the others slice
            candidates = [name for name in node.input if all(
                name == other or _slice_of(model, other, name, axis, rank) is not None for other in node.input
            )]  # fmt: skip
            if len(candidates) != 1 or model.get_tensor_shape(candidates[0]) is None:
                continue
            source = candidates[0]
            position = list(node.input).index(source)
            sides = [_slice_of(model, name, source, axis, rank) for name in node.input if name != source]
            before, after = sides[:position], sides[position:]
            if any(side[0] == 0 for side in before) or any(side[1] == 0 for side in after):
                continue  # a first slice before, a last slice after: not a wrap
            begin, end = sum(side[0] for side in before), sum(side[1] for side in after)
            if len(before) > 1 or len(after) > 1:
                continue
            pads = np.zeros(2 * rank, dtype=np.int64)
            pads[axis], pads[axis + rank] = begin, end
            pads_name = model.make_new_valueinfo_name()
            model.set_initializer(pads_name, pads)
            pad = helper.make_node("Pad", [source, pads_name], [node.output[0]], name=f"{node.name}_wrap", mode="wrap")
            slices = [model.find_producer(name) for name in node.input if name != source]
            model.graph.node.remove(node)
            model.graph.node.insert(index, pad)
            for dropped in slices:
                if not model.find_consumers(dropped.output[0]):
                    model.graph.node.remove(dropped)
            return model, True
        return model, False
