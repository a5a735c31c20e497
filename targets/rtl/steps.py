"""The RTL target's preparation steps ``step(model, options) -> model``: the graph passes that bring any QONNX MLP
to integer layers with constant weights (the same recipe as the other hardware targets, from ``passes/graph`` and
qonnx directly: a target never imports another)."""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import cleanup, node_attr
from qdeploy.precision import scale_has_no_fixed_point_form

# ops with no fixed-point form: a graph with any of them is lowered to integer layers + thresholds
_THRESHOLD_OPS = {"BatchNormalization", "BipolarQuant", "Sub", "Div", "Mul"}


def needs_thresholds(model: ModelWrapper) -> bool:
    """True when fixed-point types cannot hold the graph's arithmetic: the ops above, or a Quant with a
    non-power-of-two scale, or per-channel activation scales. (Every QONNX rounding mode has an exact shift form
    in the RTL, so rounding alone never needs thresholds.)"""
    return any(node.op_type in _THRESHOLD_OPS or scale_has_no_fixed_point_form(model, node) for node in model.graph.node)


def wrap_pad_from_slices(model: ModelWrapper, options) -> ModelWrapper:
    """PyTorch's circular padding (torch.onnx's Concat of slices per axis) as one wrap-mode Pad
    (``WrapPadFromSlices``), which the RTL wires like every other Pad."""
    from qdeploy.passes.graph.wrap_pad_from_slices import WrapPadFromSlices

    return model.transform(WrapPadFromSlices())


def ungroup_conv(model: ModelWrapper, options) -> ModelWrapper:
    """Grouped and depthwise convolutions as ordinary ones with block-diagonal weights (``UngroupConv``): the RTL
    unrolls every convolution into a dense layer whose zero weights cost no adder, and the threshold lowering takes
    ungrouped layers only."""
    from qdeploy.passes.graph.ungroup_conv import UngroupConv

    return model.transform(UngroupConv())


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


def _toeplitz(weights: np.ndarray, node, in_shape: list[int]) -> tuple[np.ndarray, list[int]]:
    """The matrix ``T`` with ``conv(x).ravel() == x.ravel() @ T`` for one sample (NC + spatial, row-major), and the
    output shape: the convolution applied to every one-hot input (float64: each output of a one-hot input is one
    weight, exactly)."""
    import torch
    import torch.nn.functional as F

    spatial = len(in_shape) - 2
    if spatial not in (1, 2) or node_attr(node, "auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
        raise UnsupportedModelError(
            f"node {node.name}: Conv with {spatial} spatial dimensions or auto_pad is not supported by the RTL "
            "target; use --target hls4ml or onnxruntime"
        )
    size = int(np.prod(in_shape[1:]))
    pads = list(node_attr(node, "pads", [0] * 2 * spatial))
    # F.pad takes (last-dim begin, last-dim end, ...); ONNX pads are (begins..., ends...)
    torch_pads = [p for d in reversed(range(spatial)) for p in (pads[d], pads[d + spatial])]
    basis = torch.eye(size, dtype=torch.float64).reshape(size, *in_shape[1:])
    conv = F.conv1d if spatial == 1 else F.conv2d
    out = conv(
        F.pad(basis, torch_pads),
        torch.from_numpy(np.asarray(weights, dtype=np.float64)),
        stride=list(node_attr(node, "strides", [1] * spatial)),
        dilation=list(node_attr(node, "dilations", [1] * spatial)),
        groups=int(node_attr(node, "group", 1)),
    )
    return out.reshape(size, -1).numpy(), [1, *out.shape[1:]]


def _check_conv_size(node, weights: np.ndarray, in_shape: list[int], out_shape: list[int] | None, options) -> None:
    """Refuse, before the Toeplitz matrix is built, a convolution whose unrolled form is too large: at least one
    signed digit per non-zero weight per output position (a lower bound of the digits the target counts later),
    or a dense matrix beyond the memory bound (FINN CNV's first layer: 3,072 x 57,600)."""
    if out_shape is None or len(in_shape) not in (3, 4):
        return  # _toeplitz refuses other ranks by name
    in_size, out_size = int(np.prod(in_shape[1:])), int(np.prod(out_shape[1:]))
    fix = "use --target hls4ml with --strategy Resource --reuse-factor N, or a smaller network"
    if in_size * out_size > options.max_matrix_entries:
        raise UnsupportedModelError(
            f"node {node.name}: the convolution unrolls to a {in_size:,} x {out_size:,} weight matrix (limit "
            f"{options.max_matrix_entries:,} entries); {fix}"
        )
    inside = _taps_inside(node, weights, in_shape, out_shape)
    if inside > options.max_weight_digits:
        raise UnsupportedModelError(
            f"node {node.name}: the convolution unrolled has {inside:,} non-zero weights over its output positions, "
            f"each at least one signed digit (an adder; limit {options.max_weight_digits:,}); {fix}"
        )


def _taps_inside(node, weights: np.ndarray, in_shape: list[int], out_shape: list[int]) -> int:
    """Non-zero weights times the output positions where their tap reads the input rather than padding: per
    spatial axis, a tap is inside for the positions whose index lands within the input."""
    spatial = len(in_shape) - 2
    strides = list(node_attr(node, "strides", [1] * spatial))
    dilations = list(node_attr(node, "dilations", [1] * spatial))
    pads = list(node_attr(node, "pads", [0] * 2 * spatial))
    counts = []
    for d in range(spatial):
        taps = np.arange(weights.shape[2 + d]) * dilations[d]
        starts = np.arange(out_shape[2 + d]) * strides[d] - pads[d]
        index = starts[:, None] + taps[None, :]
        counts.append(((index >= 0) & (index < in_shape[2 + d])).sum(axis=0))
    per_tap = counts[0] if spatial == 1 else np.outer(counts[0], counts[1])
    return int(((weights != 0) * per_tap).sum())


def conv_to_matmul(model: ModelWrapper, options) -> ModelWrapper:
    """Each Conv with constant weights becomes the equivalent dense layer over its flattened input: Reshape to
    [1, C*H*W], MatMul by the Toeplitz matrix (zero where an output does not see an input: the adder graph skips
    zeros, so the fully unrolled convolution costs what its taps cost), bias Add per output element, Reshape back.
    The MatMul keeps the Conv's name, so per-layer rows and refusals name the node of the user's file."""
    from onnx import helper

    changed = False
    for node in list(model.graph.node):
        if node.op_type != "Conv":
            continue
        weights = model.get_initializer(node.input[1])
        in_shape = model.get_tensor_shape(node.input[0])
        bias = model.get_initializer(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if weights is None or in_shape is None or (len(node.input) > 2 and node.input[2] and bias is None):
            raise UnsupportedModelError(
                f"node {node.name}: Conv needs constant weights and bias on the RTL target; use --target hls4ml"
            )
        _check_conv_size(node, weights, in_shape, model.get_tensor_shape(node.output[0]), options)
        matrix, out_shape = _toeplitz(weights, node, in_shape)
        out_size = int(np.prod(out_shape[1:]))
        names = {k: f"{node.name}_{k}" for k in ("flat_shape", "flat", "matrix", "product", "bias", "shape", "sum")}
        model.set_initializer(names["flat_shape"], np.array([1, matrix.shape[0]], dtype=np.int64))
        model.set_initializer(names["matrix"], matrix.astype(np.float32))
        model.set_initializer(names["shape"], np.array(out_shape, dtype=np.int64))
        nodes = [
            helper.make_node("Reshape", [node.input[0], names["flat_shape"]], [names["flat"]], name=f"{node.name}_flatten"),
            helper.make_node("MatMul", [names["flat"], names["matrix"]], [names["product"]], name=node.name),
        ]
        result = names["product"]
        if bias is not None:
            per_output = np.repeat(np.asarray(bias, dtype=np.float32).ravel(), out_size // len(bias.ravel()))
            model.set_initializer(names["bias"], per_output[None, :])
            nodes.append(helper.make_node("Add", [result, names["bias"]], [names["sum"]], name=f"{node.name}_bias"))
            result = names["sum"]
        nodes.append(helper.make_node("Reshape", [result, names["shape"]], [node.output[0]], name=f"{node.name}_unflatten"))
        index = list(model.graph.node).index(node)
        model.graph.node.remove(node)
        for offset, new in enumerate(nodes):
            model.graph.node.insert(index + offset, new)
        changed = True
    return cleanup(model) if changed else model


def drop_trailing_identities(model: ModelWrapper, options) -> ModelWrapper:
    """Identity nodes in front of the graph output removed (its producer writes the output), so that the float
    ops before them (an output scale) can go to the host epilogue: the epilogue is cut back from the output."""
    output = model.graph.output[0].name
    while True:
        node = model.find_producer(output)
        if node is None or node.op_type != "Identity":
            return model
        producer = model.find_producer(node.input[0])
        if producer is None or len(model.find_consumers(node.input[0]) or []) != 1:
            return model
        producer.output[list(producer.output).index(node.input[0])] = output
        model.graph.node.remove(node)


STEPS = [
    wrap_pad_from_slices,
    ungroup_conv,
    thresholds_where_no_fixed_point,
    fold_constant_quants,
    fill_gemm_bias,
    conv_to_matmul,
    move_quant_before_layout,
    gemm_to_matmul,
    drop_trailing_identities,
]
