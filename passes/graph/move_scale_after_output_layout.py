"""Move a scalar ``Mul``/``Div`` by a constant below the layout op (Transpose/Reshape/Flatten) that produces the
graph output.

After the threshold lowering a graph often ends ``MultiThreshold -> Mul(scale) -> Transpose`` (qonnx's
channels-last conversion puts the transpose back at the output). The float scale is the host epilogue
(``qdeploy.ir.split_float_epilogue`` cuts the float ops at the end of the graph), but only when it is last: a
scalar multiplier commutes with any op that only moves elements, so this pass swaps them and the firmware ends in
the integer levels.
"""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import SortGraph

LAYOUT_OPS = ("Flatten", "Reshape", "Transpose")


class MoveScaleAfterOutputLayout(Transformation):
    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        output = model.graph.output[0].name
        layout = model.find_producer(output)
        if layout is None or layout.op_type not in LAYOUT_OPS:
            return model, False
        scale = model.find_producer(layout.input[0])
        if scale is None or scale.op_type not in ("Mul", "Div") or len(scale.input) != 2:
            return model, False
        constant = model.get_initializer(scale.input[1])
        if constant is None or constant.size != 1 or len(model.find_consumers(scale.output[0]) or []) != 1:
            return model, False
        source, between = scale.input[0], scale.output[0]
        # source -> layout -> between -> scale -> output
        layout.input[0], layout.output[0] = source, between
        scale.input[0], scale.output[0] = between, output
        model.set_tensor_shape(between, model.get_tensor_shape(output))
        return model.transform(SortGraph(), cleanup=False), True
