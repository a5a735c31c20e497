"""Split a Concat of more than two tensors into a chain of two-input Concats on the same axis.

hls4ml concatenates two tensors at a time ("Merging more than two tensors is not yet supported"); concatenation is
associative, so ``Concat(a, b, c)`` is ``Concat(Concat(a, b), c)`` exactly.
"""

from __future__ import annotations

from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import SortGraph

from qdeploy.ir import node_attr


class BinaryConcat(Transformation):
    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in model.graph.node:
            if node.op_type != "Concat" or len(node.input) <= 2:
                continue
            shapes = [model.get_tensor_shape(name) for name in node.input]
            if any(shape is None for shape in shapes):
                continue
            axis = int(node_attr(node, "axis", 0)) % len(shapes[0])
            first, second = node.input[0], node.input[1]
            partial = model.make_new_valueinfo_name()
            shape = list(shapes[0])
            shape[axis] = shapes[0][axis] + shapes[1][axis]
            model.set_tensor_shape(partial, shape)
            name = f"{node.name}_part{len(node.input) - 2}"  # unique: the user's Concat has one input fewer each time
            model.graph.node.append(helper.make_node("Concat", [first, second], [partial], axis=axis, name=name))
            rest = list(node.input[2:])
            del node.input[:]
            node.input.extend([partial, *rest])
            return model.transform(SortGraph(), cleanup=False), True
        return model, False
