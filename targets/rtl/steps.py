"""The RTL target's preparation steps ``step(model, options) -> model``: the graph passes that bring any QONNX MLP
to integer layers with constant weights (the same recipe as the other hardware targets, from ``passes/graph`` and
qonnx directly: a target never imports another)."""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.ir import cleanup
from qdeploy.precision import scale_has_no_fixed_point_form

# ops with no fixed-point form: a graph with any of them is lowered to integer layers + thresholds
_THRESHOLD_OPS = {"BatchNormalization", "BipolarQuant", "Sub", "Div", "Mul"}


def needs_thresholds(model: ModelWrapper) -> bool:
    """True when fixed-point types cannot hold the graph's arithmetic: the ops above, or a Quant with a
    non-power-of-two scale, or per-channel activation scales. (Every QONNX rounding mode has an exact shift form
    in the RTL, so rounding alone never needs thresholds.)"""
    return any(node.op_type in _THRESHOLD_OPS or scale_has_no_fixed_point_form(model, node) for node in model.graph.node)


def thresholds_where_no_fixed_point(model: ModelWrapper, options) -> ModelWrapper:
    """qdeploy's ``LowerToThresholds`` pass (integer layers, MultiThreshold activations found by running the graph's
    own float ops), applied only when the graph has no fixed-point form (see needs_thresholds)."""
    if not needs_thresholds(model):
        return model
    from qdeploy.passes.graph.lower_to_thresholds import LowerToThresholds

    return cleanup(model.transform(LowerToThresholds()))


def fold_constant_quants(model: ModelWrapper, options) -> ModelWrapper:
    """Replace Quant nodes on constants (weights, biases) by their exact quantized values."""
    from qonnx.transformation.fold_constants import FoldConstants

    return model.transform(FoldConstants(exclude_op_types=[]))


def fill_gemm_bias(model: ModelWrapper, options) -> ModelWrapper:
    """Give bias-less Gemms a zero bias (qonnx GemmToMatMul crashes without one)."""
    from qdeploy.passes.graph.fill_gemm_bias import FillGemmBias

    return model.transform(FillGemmBias())


def move_quant_before_layout(model: ModelWrapper, options) -> ModelWrapper:
    """Per-tensor Quants above Flatten/Reshape, so every layer starts from a quantizer's integer levels."""
    from qdeploy.passes.graph.move_quant_before_layout import MoveQuantBeforeLayout

    return model.transform(MoveQuantBeforeLayout())


def gemm_to_matmul(model: ModelWrapper, options) -> ModelWrapper:
    """qonnx GemmToMatMul, then cleanup: each layer is a MatMul with a constant weight and a bias Add."""
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul

    return cleanup(model.transform(GemmToMatMul()))


STEPS = [thresholds_where_no_fixed_point, fold_constant_quants, fill_gemm_bias, move_quant_before_layout, gemm_to_matmul]
