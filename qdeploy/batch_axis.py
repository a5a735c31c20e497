"""The batch axis of a user's graph: which tensors carry it, which Reshapes keep it, which nodes mix samples.

A QONNX file is a function of one batch-1 sample; every target deploys it sample by sample and the golden executor
runs it batched (qonnx's ``ChangeBatchSize``). Two graph shapes break that silently:

- a Reshape inside a constant subgraph (torch's export of a reflect/replicate pad computes its pads with
  ``ConstantOfShape -> Concat -> Reshape([-1, 2]) -> Slice``): ``ChangeBatchSize`` writes the batch into every
  Reshape's shape, so that Reshape fails at batch N. Only Reshapes of batch-carrying data take the batch here.
- a node that mixes the samples of a batch (brevitas's HadamardClassifier normalises by the Frobenius norm of the
  whole tensor: ``Reshape([-1]) -> ReduceL2``): at batch 1 it is one sample's function, at batch N another. No
  target can deploy that per sample and stay the file's function at every batch: refused by name, with the fix.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError

#: reductions that take ``axes`` (an attribute before opset 18 for most, an input from 13/18 on)
REDUCE_OPS = (
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
)


#: ops whose output describes their input's shape, not its values
SHAPE_OPS = ("Shape", "Size")


def batch_carrying(model: ModelWrapper) -> set[str]:
    """Tensors computed from the values of the graph's runtime inputs (the others are constants or shapes, whatever
    op computes them)."""
    initializers = {init.name for init in model.graph.initializer}
    carrying = {value.name for value in model.graph.input if value.name not in initializers}
    for node in model.graph.node:  # topological order (validation sorts the file's nodes)
        if node.op_type in SHAPE_OPS:
            continue  # a shape is no sample: ``x.view(x.shape[0], -1)`` gathers entry 0 of Shape(x)
        if any(name in carrying for name in node.input if name):
            carrying.update(name for name in node.output if name)
    return carrying


def _constant(model: ModelWrapper, name: str) -> np.ndarray | None:
    value = model.get_initializer(name)
    if value is not None:
        return np.asarray(value)
    producer = model.find_producer(name)
    if producer is not None and producer.op_type == "Constant":
        for attribute in producer.attribute:
            if attribute.name == "value":
                return numpy_helper.to_array(attribute.t)
    return None


def _label(node: onnx.NodeProto) -> str:
    return node.name or f"({node.op_type}, unnamed, output {node.output[0]})"


def _attribute(node: onnx.NodeProto, name: str, default=None):
    for attribute in node.attribute:
        if attribute.name == name:
            return onnx.helper.get_attribute_value(attribute)
    return default


def _reshape_keeps_batch(model: ModelWrapper, node: onnx.NodeProto) -> bool | None:
    """Whether a Reshape of batch-carrying data keeps the batch as its first axis (None: its shape is computed)."""
    shape = _constant(model, node.input[1]) if len(node.input) > 1 else None
    source = model.get_tensor_shape(node.input[0])
    if shape is None or not source:
        return None  # computed or unknown: the golden executor's batched run and its batch-1 check still compare
    if np.size(shape) == 0:
        return False
    shape = np.asarray(shape).astype(np.int64).ravel()
    # a symbolic batch (dim_param: qonnx reads 0) stands for the batch-1 sample the file is exported with
    batch = int(source[0]) if int(source[0]) > 0 else 1
    first = int(shape[0])
    if first == 0:  # copies the input's first axis (allowzero=0, the default)
        return not _attribute(node, "allowzero", 0)
    if first == batch and -1 not in shape[1:]:
        return int(np.prod(shape[1:])) == int(np.prod(source[1:]))
    if first == -1 and -1 not in shape[1:] and 0 not in shape[1:]:
        return int(np.prod(shape[1:])) == int(np.prod(source[1:]))
    if first == batch:  # [1, -1, ...]: the -1 takes the rest of one sample
        return True
    return False


def _axes(model: ModelWrapper, node: onnx.NodeProto, input_index: int) -> np.ndarray | None:
    """A node's ``axes``: the attribute (older opsets) or the constant input (newer ones); None when absent."""
    axes = _attribute(node, "axes")
    if axes is None and len(node.input) > input_index and node.input[input_index]:
        axes = _constant(model, node.input[input_index])
    return None if axes is None else np.asarray(axes, dtype=np.int64).ravel()


def _touches_axis_zero(axes: np.ndarray, rank: int) -> bool:
    return any(int(axis) % max(rank, 1) == 0 for axis in axes)


def _batch_problem(model: ModelWrapper, node: onnx.NodeProto, carrying: set[str]) -> str | None:
    """What ``node`` does to the batch axis of its batch-carrying input, when it does not keep it first (None)."""
    op = node.op_type
    if op == "Concat":
        if any(name in carrying for name in node.input) and _attribute(node, "axis", 0) % max(_rank(model, node), 1) == 0:
            return "concatenates along the batch axis"
        return None
    if not node.input or node.input[0] not in carrying:
        return None
    rank = _rank(model, node)
    if op == "Reshape" and _reshape_keeps_batch(model, node) is False:
        shape = _constant(model, node.input[1])
        return f"reshapes to {np.asarray(shape).astype(np.int64).tolist()}, folding the batch axis into the others"
    if op == "Flatten" and _attribute(node, "axis", 1) == 0:
        return "flattens from axis 0, folding the batch axis into the others"
    if op in REDUCE_OPS:
        axes = _axes(model, node, 1)
        if (axes is None or axes.size == 0) and not _attribute(node, "noop_with_empty_axes", 0):
            return "reduces over every axis, the batch axis too"
        if axes is not None and axes.size and _touches_axis_zero(axes, rank):
            return "reduces over the batch axis (axis 0)"
    if op == "Transpose":
        perm = _attribute(node, "perm")
        if perm is None or int(perm[0]) != 0:
            return f"transposes with perm {perm}, moving the batch axis"
    if op == "Squeeze":
        axes = _axes(model, node, 1)
        if axes is None or axes.size == 0:
            return "squeezes every axis of size 1, the batch axis of a batch-1 sample too"
        if _touches_axis_zero(axes, rank):
            return "squeezes the batch axis (axis 0)"
    if op == "Unsqueeze":
        axes = _axes(model, node, 1)
        if axes is not None and any(int(axis) in (0, -(rank + axes.size)) for axis in axes):
            return "inserts an axis before the batch axis"
    if op in ("Gather", "Split", "Softmax", "LogSoftmax", "Hardmax"):
        opset = next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")), 13)
        # Softmax's default axis is the last one from opset 13 on; before, it flattens from axis 1 (one sample)
        default = (-1 if opset >= 13 else 1) if op in ("Softmax", "LogSoftmax", "Hardmax") else 0
        axis = int(_attribute(node, "axis", default))
        if axis % max(rank, 1) == 0:
            return f"works along the batch axis (axis {axis})"
    if op == "BatchNormalization" and _attribute(node, "training_mode", 0):
        return "normalises with the batch's own statistics (training_mode=1)"
    if op == "Slice":
        axes = _axes(model, node, 3)
        starts = _constant(model, node.input[1]) if len(node.input) > 1 else None
        ends = _constant(model, node.input[2]) if len(node.input) > 2 else None
        if starts is None or ends is None:
            return None
        starts, ends = np.asarray(starts).ravel(), np.asarray(ends).ravel()
        axes = np.arange(starts.size) if axes is None else axes
        for axis, begin, end in zip(axes, starts, ends, strict=False):
            if int(axis) % max(rank, 1) == 0 and not (int(begin) == 0 and int(end) >= 2**31 - 1):
                return f"slices the batch axis ([{int(begin)}:{int(end)}] on axis 0)"
    return None


def _rank(model: ModelWrapper, node: onnx.NodeProto) -> int:
    return len(model.get_tensor_shape(node.input[0]) or []) if node.input else 0


def check_batch_separable(model: ModelWrapper) -> None:
    """Refuse, naming the node as the file names it, a graph that mixes the samples of a batch or drops the batch
    axis: a Reshape or Flatten folding it into others, a reduction, Softmax, Gather, Split, Slice or Concat along it,
    a Transpose moving it, a Squeeze removing it (``y.squeeze()`` of a batch-1 export), an Unsqueeze before it."""
    carrying = batch_carrying(model)
    for node in model.graph.node:
        problem = _batch_problem(model, node, carrying)
        if problem:
            raise UnsupportedModelError(
                f"node {_label(node)} ({node.op_type}) {problem}: the graph computes across the samples of a batch "
                "or drops the batch axis (at batch 1 it is one sample's function, at batch N another), which no "
                "target deploys sample by sample; re-export the model keeping the batch axis first (torch.flatten(x, "
                "1), squeeze/norms/reductions over dim >= 1)"
            )


def with_batch_reshapes(model: ModelWrapper, batch: int) -> None:
    """Give each Reshape of batch-carrying data whose shape spells out the batch (its first entry the exported batch
    or -1) the new ``batch``, in place; Reshapes of constants keep their shapes (qonnx's ``ChangeBatchSize`` writes
    the batch into every Reshape, breaking a pad computation)."""
    carrying = batch_carrying(model)
    for node in model.get_nodes_by_op_type("Reshape"):
        if node.input[0] not in carrying or len(node.input) < 2:
            continue
        shape = _constant(model, node.input[1])  # an initializer, or a Constant node (tf2onnx, unfolded exports)
        if shape is None or np.size(shape) == 0 or int(np.asarray(shape).ravel()[0]) == 0:
            continue
        shape = np.array(shape, dtype=np.int64, copy=True)
        if int(shape.ravel()[0]) == -1 and -1 not in shape.ravel()[1:]:
            continue  # the -1 takes the batch at any size
        shape.ravel()[0] = batch
        readers = model.find_consumers(node.input[1]) or []
        if all(r.op_type == "Reshape" and r.input[0] in carrying and r.input[1] == node.input[1] for r in readers):
            # in place, under its own name: the verification reads the golden context by the file's tensor names
            producer = model.find_producer(node.input[1])
            if producer is not None:  # a Constant node's value
                producer.ClearField("attribute")
                producer.attribute.append(onnx.helper.make_attribute("value", numpy_helper.from_array(shape)))
            else:
                model.set_initializer(node.input[1], shape)
        else:  # a shape shared with other readers: one of this Reshape's own
            name = model.make_new_valueinfo_name()
            model.set_initializer(name, shape)
            node.input[1] = name
