"""Move a per-tensor ``Quant`` (or one-row ``MultiThreshold``) above the layout op (Flatten/Reshape/Transpose)
that feeds it.

A Quant with scalar scale, zero point and bit width acts element by element, so it commutes with any op that
only moves elements. Brevitas exports ``MaxPool -> Flatten -> Quant -> Gemm``; with the Quant first, qonnx's
channels-last conversion can absorb the NHWC->NCHW transpose into the Gemm weights instead of leaving a
``Transpose`` in the firmware (which hls4ml's io_stream implementation gets wrong).
"""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import SortGraph

from qdeploy.ops import SCALED_QUANT_OPS

LAYOUT_OPS = ("Flatten", "Reshape", "Transpose")  # Identity is cleaned away before this pass runs


def _is_per_tensor(model: ModelWrapper, node) -> bool:
    params = [model.get_initializer(name) for name in node.input[1:]]
    if node.op_type == "MultiThreshold":  # one row of thresholds shared by every channel
        return params[0] is not None and params[0].shape[0] == 1
    return all(p is not None and p.size == 1 for p in params)


class MoveQuantBeforeLayout(Transformation):
    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for quant in model.graph.node:
            if quant.op_type not in (*SCALED_QUANT_OPS, "MultiThreshold") or not _is_per_tensor(model, quant):
                continue
            layout = model.find_producer(quant.input[0])
            if layout is None or layout.op_type not in LAYOUT_OPS:
                continue
            if len(model.find_consumers(layout.output[0])) != 1 or model.is_fork_node(layout):
                continue
            source, between, result = layout.input[0], layout.output[0], quant.output[0]
            moved = model.make_new_valueinfo_name()
            quant.input[0], quant.output[0] = source, moved
            layout.input[0], layout.output[0] = moved, result
            model.set_tensor_shape(moved, model.get_tensor_shape(source))
            for value_info in list(model.graph.value_info):
                if value_info.name == between:
                    model.graph.value_info.remove(value_info)
            model = model.transform(SortGraph(), cleanup=False)
            return model, True
        return model, False
