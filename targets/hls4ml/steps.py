"""The hls4ml target's preparation steps ``step(model, options) -> model`` and its checks.

Preparation follows hls4ml's QONNX recipe (cleanup, channels-last, Gemm->MatMul), with additions: Quant nodes on
constants are folded to their exact values (their types then come from ``qdeploy.precision`` instead of hls4ml's
scale handling), and bias-less Gemms get a zero bias first (qonnx GemmToMatMul crashes without one). Graphs with
no fixed-point form (float scales, BatchNorm, bipolar layers, float input pre-scaling) are first lowered to integer
layers and ``MultiThreshold`` activations (``LowerToThresholds``), which hls4ml runs through qdeploy's own layer
(``multithreshold.py``).
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import cleanup, const_input, is_power_of_two, node_attr
from qdeploy.ops import SCALED_QUANT_OPS
from qdeploy.targets.hls4ml.options import Hls4mlOptions, IOType, Strategy
from qdeploy.targets.hls4ml.types import HLS_ROUNDING

UNROLL_LIMIT = 4096  # "Vivado has an unroll limit of 4096 hardcoded" (hls4ml #904)

# ops with no fixed-point form in hls4ml: a graph with any of them is lowered to thresholds
_THRESHOLD_OPS = {"BatchNormalization", "BipolarQuant", "MultiThreshold", "Sub", "Div", "Mul"}


def needs_thresholds(model: ModelWrapper) -> bool:
    """True when the graph has float arithmetic that fixed-point types cannot hold: see ``_THRESHOLD_OPS``, or a
    Quant with a non-power-of-two scale (on weights or activations), per-channel activation scales, or a rounding
    mode hls4ml's types cannot express."""

    for node in model.graph.node:
        if node.op_type in _THRESHOLD_OPS:
            return True
        if node.op_type in SCALED_QUANT_OPS:
            scale = const_input(model, node, 1)
            if scale is not None and not is_power_of_two(np.asarray(scale, dtype=np.float64)):
                return True
            on_datapath = model.get_initializer(node.input[0]) is None
            if on_datapath and scale is not None and np.unique(scale).size > 1:
                return True
            if on_datapath and str(node_attr(node, "rounding_mode", "ROUND")).upper() not in HLS_ROUNDING:
                return True
    return False


def thresholds_where_no_fixed_point(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """qdeploy's ``LowerToThresholds`` pass (integer layers + MultiThreshold activations), applied only when the
    graph has no fixed-point form (see needs_thresholds)."""
    if not needs_thresholds(model):
        return model
    from qdeploy.passes.graph.lower_to_thresholds import LowerToThresholds

    return cleanup(model.transform(LowerToThresholds()))


def fold_constant_quants(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Replace Quant nodes on constants (weights, biases) by their exact quantized values."""
    from qonnx.transformation.fold_constants import FoldConstants

    return model.transform(FoldConstants(exclude_op_types=[]))


def fill_gemm_bias(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Give bias-less Gemms a zero bias (qonnx GemmToMatMul crashes without one)."""
    from qdeploy.passes.graph.fill_gemm_bias import FillGemmBias

    return model.transform(FillGemmBias())


def input_is_channels_last(model: ModelWrapper, options: Hls4mlOptions) -> bool:
    """io_stream firmware takes image inputs channels-last (hls4ml streams pixels with their channels)."""
    shape = model.get_tensor_shape(model.graph.input[0].name)
    return options.io_type is IOType.STREAM and shape is not None and len(shape) >= 3


def move_quant_before_layout(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Per-tensor Quants above Flatten/Reshape/Transpose, so the channels-last transpose folds into weights."""
    from qdeploy.passes.graph.move_quant_before_layout import MoveQuantBeforeLayout

    return model.transform(MoveQuantBeforeLayout())


def to_channels_last(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """qonnx ConvertToChannelsLastAndClean: hls4ml computes convolutions channels-last."""
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean

    return model.transform(ConvertToChannelsLastAndClean(make_input_channels_last=input_is_channels_last(model, options)))


def thresholds_channels_last(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Move the transposes qonnx leaves around MultiThresholds across them and cancel/absorb them as qonnx does."""
    if not any(node.op_type == "MultiThreshold" for node in model.graph.node):
        return model
    from qonnx.transformation.channels_last import (
        AbsorbChanFirstIntoMatMul,
        MoveChanFirstDownstream,
        RemoveConsecutiveChanFirstAndChanLastTrafos,
    )

    from qdeploy.passes.graph.move_transpose_across_multithreshold import MoveTransposeAcrossMultiThreshold
    from qdeploy.pipeline import until_fixed_point

    def one_round(current: ModelWrapper) -> tuple[ModelWrapper, bool]:
        before = current.model.SerializeToString()
        current = until_fixed_point(MoveTransposeAcrossMultiThreshold().apply, current)
        for transformation in (
            RemoveConsecutiveChanFirstAndChanLastTrafos(),
            MoveChanFirstDownstream(),
            AbsorbChanFirstIntoMatMul(),
        ):
            current = current.transform(transformation)
        return current, current.model.SerializeToString() != before

    return cleanup(until_fixed_point(one_round, model))


def gemm_to_matmul(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """qonnx GemmToMatMul, then cleanup (hls4ml parses MatMul + Add, not Gemm)."""
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul

    return cleanup(model.transform(GemmToMatMul()))


def check_unroll_limit(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Refuse layers the Latency strategy cannot unroll (Vivado/Vitis HLS stop unrolling at 4,096 iterations)."""
    if options.strategy is not Strategy.LATENCY:
        return model
    for node in model.graph.node:
        weights = model.get_initializer(node.input[1]) if node.op_type in ("MatMul", "Conv") else None
        if weights is None:
            continue
        per_cycle = weights.size // options.reuse_factor
        if per_cycle > UNROLL_LIMIT:
            needed = -(-weights.size // UNROLL_LIMIT)
            raise UnsupportedModelError(
                f"node {node.name}: {weights.size:,} multiplications / reuse factor {options.reuse_factor} exceed the "
                f"{UNROLL_LIMIT:,} a Latency-strategy layer can unroll; use --strategy Resource --reuse-factor {needed} "
                "(or larger)"
            )
    return model


def check_conv_reuse_factor(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Refuse a Resource-strategy Conv whose reuse factor exceeds its kernel size x input channels: hls4ml accepts
    it but its C simulation computes wrong outputs (hls4ml #817: the conv needs RF <= kh * kw * channels)."""
    if options.strategy is not Strategy.RESOURCE:
        return model
    for node in model.graph.node:
        weights = model.get_initializer(node.input[1]) if node.op_type == "Conv" else None
        if weights is None:
            continue
        limit = int(np.prod(weights.shape[1:]))  # [out, in, kh, kw] (channels-last Conv keeps ONNX weights)
        if options.reuse_factor > limit:
            raise UnsupportedModelError(
                f"node {node.name}: reuse factor {options.reuse_factor} exceeds this Conv's kernel size x input channels "
                f"({limit}); hls4ml computes it wrongly (hls4ml #817). Use --reuse-factor {limit} or less"
            )
    return model


STEPS = [
    thresholds_where_no_fixed_point,
    fold_constant_quants,
    fill_gemm_bias,
    move_quant_before_layout,
    to_channels_last,
    thresholds_channels_last,
    gemm_to_matmul,
]
# Checked once precisions are known, so a model is refused for its most fundamental problem first.
CHECKS = [check_unroll_limit, check_conv_reuse_factor]


def check_fixed_point_quants(model: ModelWrapper, options: Hls4mlOptions) -> None:
    """Refuse datapath quantizers hls4ml's types cannot cast to exactly: rounding modes other than ROUND/FLOOR,
    1-bit Quant, unsigned narrow range (the threshold lowering handles these where the graph needs it)."""
    for node in model.graph.node:
        if node.op_type not in SCALED_QUANT_OPS or model.get_initializer(node.input[0]) is not None:
            continue
        rounding = str(node_attr(node, "rounding_mode", "ROUND")).upper()
        if rounding not in HLS_ROUNDING:
            raise UnsupportedModelError(
                f"node {node.name}: rounding mode {rounding} has no hls4ml fixed-point form (ROUND and FLOOR do)"
            )
        bits = const_input(model, node, 3)
        if bits is not None and float(np.asarray(bits).ravel()[0]) < 2:
            raise UnsupportedModelError(f"node {node.name}: 1-bit Quant (binarised) is not supported on this target yet")
        if bool(node_attr(node, "narrow", 0)) and not bool(node_attr(node, "signed", 1)):
            raise UnsupportedModelError(f"node {node.name}: unsigned narrow-range Quant is not expressible in hls4ml types")
