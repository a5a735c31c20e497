"""qonnx's channels-last transpose moves, made safe where a transpose's output is read by more than one node.

qonnx's ``MoveChanFirstDownstream`` moves a channels-first Transpose past its *first* reader only, and
``RemoveConsecutiveChanFirstAndChanLastTrafos`` rewires the *first* reader of a cancelled pair only: every other
reader of that output is left reading a tensor that now holds other data (a residual block whose quantized tensor
feeds both a shared quantizer and a conv: the conv read the identity branch's values; NOT EXACT on hls4ml) or no
tensor at all. qonnx tracks forks in its issue #100.

- ``ForkSafe(move)``: before each application of ``move``, a channels-first transpose read by several nodes, one of
  which ``move`` would take it past (an element-wise op, a Flatten/Reshape before a MatMul), becomes one copy per
  reader, so the move rewires a single reader. Transposes read by other nodes only stay shared (split, they could
  not move anyway, and would block ``MoveChanLastUpstream``, which refuses to move past a fork).
- ``RemoveTransposePairs``: qonnx's pair removal, rewiring every reader of the pair's output.
"""

from __future__ import annotations

from copy import deepcopy

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.channels_last.base_wrapped_op import to_channels_first_args, to_channels_last_args
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import SortGraph
from qonnx.util.onnx import is_eltwise_optype

#: readers a channels-first transpose moves past (qonnx: element-wise ops) or is absorbed into (Flatten/Reshape
#: before a MatMul): a fork into one of them is what the qonnx moves get wrong
_MOVES_PAST = ("Flatten", "Reshape")


class ForkSafe(Transformation):
    """Apply the qonnx transformation ``move`` (a class) with each movable channels-first transpose read by one node:
    a forked one is split into a copy per reader first. One application does one of the two (the caller's
    ``transform`` loops until neither changes anything)."""

    def __init__(self, move: type[Transformation]) -> None:
        super().__init__()
        self.move = move

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            readers = _distinct_readers(model, node)
            if len(readers) > 1 and _is_channels_first(model, node) and any(_movable_past(r) for r in readers):
                return _split_per_reader(model, node, readers), True
        return self.move().apply(model)


class RemoveTransposePairs(Transformation):
    """A channels-first transpose read only by a channels-last one: every reader of the second reads the first's
    input instead, and both go (qonnx's ``RemoveConsecutiveChanFirstAndChanLastTrafos`` rewired the first reader
    only). A pair whose output is a graph output stays."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        outputs = {tensor.name for tensor in model.graph.output}
        for first in model.graph.node:
            if not _is_channels_first(model, first):
                continue
            readers = model.find_consumers(first.output[0]) or []
            if len(readers) != 1 or readers[0].op_type != "Transpose" or first.output[0] in outputs:
                continue
            second = readers[0]
            rank = len(model.get_tensor_shape(first.input[0]) or [])
            if _perm(second) != list(to_channels_last_args(rank)) or second.output[0] in outputs:
                continue
            for reader in model.find_consumers(second.output[0]) or []:
                for index, name in enumerate(reader.input):
                    if name == second.output[0]:
                        reader.input[index] = first.input[0]
            model.graph.node.remove(second)
            model.graph.node.remove(first)
            return model, True
        return model, False


def _perm(node) -> list[int]:
    return next((list(attribute.ints) for attribute in node.attribute if attribute.name == "perm"), [])


def _is_channels_first(model: ModelWrapper, node) -> bool:
    if node.op_type != "Transpose":
        return False
    shape = model.get_tensor_shape(node.input[0])
    return shape is not None and len(shape) >= 3 and _perm(node) == list(to_channels_first_args(len(shape)))


def _distinct_readers(model: ModelWrapper, node) -> list:
    """The nodes reading ``node``'s first output, one entry per node (a node reading it twice counts once)."""
    if not node.output:
        return []
    readers: list = []
    for reader in model.find_consumers(node.output[0]) or []:
        if not any(reader == seen for seen in readers):
            readers.append(reader)
    return readers


def _movable_past(reader) -> bool:
    return is_eltwise_optype(reader.op_type) or reader.op_type in _MOVES_PAST


def _split_per_reader(model: ModelWrapper, transpose, readers: list) -> ModelWrapper:
    """Every reader but the first gets its own copy of ``transpose`` (same input, same perm)."""
    shape = model.get_tensor_shape(transpose.output[0])
    for number, reader in enumerate(readers[1:], start=1):
        copy = deepcopy(transpose)
        copy.name = f"{transpose.name}_copy{number}" if transpose.name else ""
        copy.output[0] = model.make_new_valueinfo_name()
        model.set_tensor_shape(copy.output[0], shape)
        for index, name in enumerate(reader.input):
            if name == transpose.output[0]:
                reader.input[index] = copy.output[0]
        model.graph.node.append(copy)
    return model.transform(SortGraph(), cleanup=False)
