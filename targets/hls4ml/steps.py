"""The hls4ml target's preparation steps ``step(model, options) -> model`` and its checks.

Preparation follows hls4ml's QONNX recipe (cleanup, channels-last, Gemm->MatMul), with additions: Quant nodes on
constants are folded to their exact values (their types then come from ``qdeploy.precision`` instead of hls4ml's
scale handling), and bias-less Gemms get a zero bias first (qonnx GemmToMatMul crashes without one). Graphs with
no fixed-point form (float scales, BatchNorm, bipolar layers, float input pre-scaling) are first lowered to integer
layers and ``MultiThreshold`` activations (``LowerToThresholds``), which hls4ml runs through qdeploy's own layer
(``multithreshold.py``). What hls4ml's ONNX parser gets wrong is rewritten before it sees it (Identity outputs,
implicit Conv attributes, grouped convolutions, empty threshold banks) or refused by name (layouts it misreads).
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import cleanup, const_input, first_downstream, first_runtime_combiner, node_attr
from qdeploy.ops import AFFINE_OPS, LAYOUT_OPS, PASS_THROUGH_OPS, SCALED_QUANT_OPS
from qdeploy.precision import scale_has_no_fixed_point_form
from qdeploy.targets.hls4ml.options import Hls4mlOptions, IOType
from qdeploy.targets.hls4ml.types import HLS_ROUNDING

# ops with no fixed-point form in hls4ml: a graph with any of them is lowered to thresholds
_THRESHOLD_OPS = {"BatchNormalization", "BipolarQuant", "MultiThreshold", "Sub", "Div", "Mul"}


def needs_thresholds(model: ModelWrapper) -> bool:
    """True when the graph has float arithmetic that fixed-point types cannot hold: see ``_THRESHOLD_OPS``, or a
    Quant with a non-power-of-two scale (on weights or activations), per-channel activation scales, or a datapath
    Quant hls4ml's types cannot cast to: a rounding mode they lack, 1 bit (QKeras ``quantized_bits(1)``: {-1, 0}
    signed), unsigned narrow range."""

    if _float_arithmetic_on_the_input(model):
        return True
    for node in model.graph.node:
        if node.op_type in _THRESHOLD_OPS or scale_has_no_fixed_point_form(model, node):
            return True
        if node.op_type in SCALED_QUANT_OPS:
            on_datapath = model.get_initializer(node.input[0]) is None
            if on_datapath and str(node_attr(node, "rounding_mode", "ROUND")).upper() not in HLS_ROUNDING:
                return True
            bits = const_input(model, node, 3)
            if on_datapath and bits is not None and float(np.asarray(bits).ravel()[0]) < 2:
                return True
            if on_datapath and bool(node_attr(node, "narrow", 0)) and not bool(node_attr(node, "signed", 1)):
                return True
    return False


def _float_arithmetic_on_the_input(model: ModelWrapper) -> bool:
    """True when the float input goes through float arithmetic (an ``Add`` of a constant) on its way to the first
    quantizer: only thresholds, found on the float input, reproduce that exactly. A ReLU there (QKeras) needs none:
    it commutes with the input type (``qdeploy.precision``)."""
    frontier = [model.graph.input[0].name]
    while frontier:
        for consumer in model.find_consumers(frontier.pop()) or []:
            if consumer.op_type in AFFINE_OPS:
                return True
            if consumer.op_type in (*PASS_THROUGH_OPS, "Relu"):
                frontier.extend(consumer.output)
    return False


def thresholds_where_no_fixed_point(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """qdeploy's ``LowerToThresholds`` pass (integer layers + MultiThreshold activations), applied only when the
    graph has no fixed-point form (see needs_thresholds)."""
    if not needs_thresholds(model):
        return model
    from qdeploy.passes.graph.lower_to_thresholds import LowerToThresholds

    return cleanup(model.transform(LowerToThresholds()))


def check_float_scales_are_folded(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Refuse, naming the user's node that combines them, float arithmetic the threshold lowering left inside the
    datapath: a quantizer's float scale (a ``Mul`` by a constant with no fixed-point form) folds into the next layer
    or quantizer, but not into an element-wise op of two runtime tensors (a residual ``Add`` of two branches with
    float scales): no fixed-point type holds that sum exactly. Only the float tail after the last integer tensor may
    stay float (it runs on the host, ``split_float_epilogue``)."""
    if not any(node.op_type == "MultiThreshold" for node in model.graph.node):
        return model
    from qdeploy.ir import split_float_epilogue

    _, epilogue = split_float_epilogue(model)
    host = {node.name for node in epilogue.graph.node} if epilogue is not None else set()
    host_ops = {(node.op_type, tuple(node.input[1:])) for node in epilogue.graph.node} if epilogue is not None else set()
    for node in model.graph.node:
        constants = [model.get_initializer(name) for name in node.input[1:] if name]
        if node.op_type not in ("Mul", "Div") or not constants or any(c is None for c in constants):
            continue
        if node.name in host or (node.op_type, tuple(node.input[1:])) in host_ops:
            continue
        if not any(_not_power_of_two(c) for c in constants):
            continue
        combiner = first_runtime_combiner(model, node.output[0])
        if combiner is not None:
            share = " or let the branches share one quantizer (one scale)" if combiner.op_type == "Concat" else ""
            raise UnsupportedModelError(
                f"node {combiner.name}: {combiner.op_type} of two runtime tensors that carry float (non-power-of-two) "
                "scales; no hls4ml fixed-point type holds the result exactly. Use power-of-two scales on the "
                f"branches it combines (brevitas *FixedPoint quantizers){share}, or compile for onnxruntime"
            )
        average = _first_average(model, node.output[0])
        if average is not None:
            raise UnsupportedModelError(
                f"node {average.name}: {average.op_type} of values that carry a float (non-power-of-two) scale; the "
                "threshold lowering does not carry a scale through an average, and no hls4ml fixed-point type holds "
                "the float mean exactly. Use power-of-two scales before it (brevitas *FixedPoint quantizers), or "
                "compile for onnxruntime"
            )
    return model


def _first_average(model: ModelWrapper, tensor: str):
    """The first average pooling downstream of ``tensor`` through ops that only move or select values."""
    through = (*LAYOUT_OPS, "Relu", "MaxPool", "GlobalMaxPool", "Resize", "Upsample", "DepthToSpace")
    return first_downstream(model, tensor, lambda node: node.op_type in ("AveragePool", "GlobalAveragePool"), through)


def _not_power_of_two(values: np.ndarray) -> bool:
    """True when a constant multiplier/divisor is not all powers of two (zeros aside)."""
    from qdeploy.ir import is_power_of_two

    magnitudes = np.abs(np.asarray(values, dtype=np.float64))
    return not is_power_of_two(magnitudes[magnitudes != 0]) if np.any(magnitudes != 0) else False


#: widest fixed-point form of a weight tensor with no Quant on it taken as it is: a folded quantizer needs a few
#: bits, plain float32 weights 22 or more (a 24-bit mantissa)
MAX_RAW_WEIGHT_BITS = 20


def check_weights_are_quantized(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Refuse, naming the layer, constant weights with no short fixed-point form (float32 weights of a float
    Keras/PyTorch layer, FP8 weights folded to constants): exact, they are tens of bits wide and the accumulators
    grow past anything hls4ml builds. Integer or short fixed-point constants (a folded quantizer) pass."""
    from qdeploy.errors import QDeployError
    from qdeploy.precision import grid_of_constant

    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv") or len(node.input) < 2:
            continue
        weights = model.get_initializer(node.input[1])
        if weights is None:
            continue  # produced by a Quant (or computed): the quantizer defines its grid
        try:
            grid = grid_of_constant(weights, node.input[1])
            width = max(abs(int(grid.kmin)), abs(int(grid.kmax))).bit_length() + 1
        except QDeployError:
            width = None
        if width is None or width > MAX_RAW_WEIGHT_BITS:
            needed = "more than 62" if width is None else str(width)
            raise UnsupportedModelError(
                f"node {node.name}: its constant weights need {needed} bits as fixed point (float values, not a short "
                f"fixed-point grid; at most {MAX_RAW_WEIGHT_BITS} taken as they are); quantize them to a fixed-point "
                "grid in the model (a Quant node: QKeras quantized_bits, brevitas weight_quant) or compile for onnxruntime"
            )
    return model


def check_input_is_quantized(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Refuse, before any lowering, a graph whose float input reaches an op other than a quantizer, a layout op or
    the element-wise float arithmetic a threshold absorbs (FINN's ``2x - 1``): fixed-point firmware has no exact
    input type for it (``qdeploy.precision`` would refuse it too, after minutes of lowering on a large graph)."""
    from qdeploy.ops import QUANT_OPS

    if model.get_tensor_datatype(model.graph.input[0].name).is_integer():
        return model  # an input annotated as integers (FINN's bipolar/binary inputs) is already quantized
    absorbed = (*PASS_THROUGH_OPS, *AFFINE_OPS, "Relu")
    frontier = [model.graph.input[0].name]
    while frontier:
        tensor = frontier.pop()
        for consumer in model.find_consumers(tensor) or []:
            if consumer.op_type in (*QUANT_OPS, "MultiThreshold"):
                continue
            runtime_inputs = [name for name in consumer.input[1:] if name and model.get_initializer(name) is None]
            if consumer.op_type not in absorbed or runtime_inputs:
                raise UnsupportedModelError(
                    f"node {consumer.name} ({consumer.op_type}) computes on the float model input before any Quant; "
                    "declare the input's precision (--input-quant 'fixed<16,6>', config key input_quant) or quantize "
                    "the input in the model (brevitas QuantIdentity)"
                )
            frontier.extend(consumer.output)
    return model


def remove_pass_through(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Drop Identity/Dropout nodes (hls4ml loses a graph output that one of them produces)."""
    from qdeploy.passes.graph.remove_pass_through import RemovePassThrough

    return model.transform(RemovePassThrough())


def trunc_as_quant(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """qonnx Trunc nodes (brevitas TruncAvgPool2d, FINN's average pooling) as the Quant nodes they compute with
    power-of-two scales (``TruncAsQuant``); refuse, naming it, a Trunc that has none."""
    if not any(node.op_type == "Trunc" for node in model.graph.node):
        return model
    from qdeploy.passes.graph.trunc_as_quant import QONNX_DOMAIN, TruncAsQuant, plan
    from qdeploy.pipeline import until_fixed_point

    model = until_fixed_point(TruncAsQuant().apply, model)
    for node in model.graph.node:
        if node.op_type == "Trunc" and node.domain == QONNX_DOMAIN:
            raise UnsupportedModelError(
                f"node {node.name}: Trunc has no fixed-point form on this target: {plan(model, node)}. Use power-of-two "
                "scales (brevitas *FixedPoint quantizers), pool with a quantizer after a plain AveragePool instead of "
                "TruncAvgPool2d, or compile the model for onnxruntime"
            )
    return cleanup(model)


def wrap_pad_from_slices(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """PyTorch's circular padding, exported as a Concat of slices, as one wrap-mode Pad (``WrapPadFromSlices``):
    hls4ml does not slice; qdeploy's MirrorPad layer wraps."""
    if not any(node.op_type == "Slice" for node in model.graph.node):
        return model
    from qdeploy.passes.graph.wrap_pad_from_slices import WrapPadFromSlices

    return model.transform(WrapPadFromSlices())


def complete_conv_attributes(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Explicit Conv pads/strides/dilations/kernel/group where the file leaves ONNX's defaults (qonnx's channels-last
    conversion needs pads; hls4ml rejects auto_pad)."""
    from qdeploy.passes.graph.complete_conv_attributes import CompleteConvAttributes

    return model.transform(CompleteConvAttributes())


def complete_pool_attributes(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Explicit MaxPool/AveragePool pads and strides where the file leaves ONNX's defaults (qonnx's channels-last
    conversion needs pads; hls4ml's pooling parser reads both without defaults)."""
    from qdeploy.passes.graph.complete_pool_attributes import CompletePoolAttributes

    return model.transform(CompletePoolAttributes())


def fold_constant_quants(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Replace Quant nodes on constants (weights, biases) by their exact quantized values."""
    from qonnx.transformation.fold_constants import FoldConstants

    return model.transform(FoldConstants(exclude_op_types=[]))


def dilated_conv_as_dense_kernel(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Dilated convolutions as undilated ones with the zeros written into the kernel (``DilatedConvAsDenseKernel``):
    hls4ml computes every convolution undilated."""
    from qdeploy.passes.graph.dilated_conv_as_dense_kernel import DilatedConvAsDenseKernel

    return model.transform(DilatedConvAsDenseKernel())


def ungroup_conv(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Grouped and depthwise convolutions as ordinary ones with block-diagonal weights (hls4ml computes grouped Conv
    wrongly or not at all: PR #1486, #859)."""
    from qdeploy.passes.graph.ungroup_conv import UngroupConv

    return model.transform(UngroupConv())


def fill_gemm_bias(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Give bias-less Gemms a zero bias (qonnx GemmToMatMul crashes without one)."""
    from qdeploy.passes.graph.fill_gemm_bias import FillGemmBias

    return model.transform(FillGemmBias())


#: most convolution output elements (all Conv layers) for which ``auto`` takes io_parallel when a pooling needs it
MAX_PARALLEL_CONV_OUTPUTS = 8192


def resolve_io_type(model: ModelWrapper, options: Hls4mlOptions) -> IOType:
    """The I/O type asked for; ``auto``: io_stream when the graph convolves. hls4ml recommends streams for CNNs, and
    io_parallel writes a convolution as unrolled per-pixel code: FINN's CNV did not finish compiling its C simulation
    in 30 minutes (g++ at 6 GB), while io_stream builds it in about a minute. hls4ml's streaming pooling takes only
    windows that tile the image (kernel = stride, every backend asserts it): a small convolutional graph with other
    pooling windows gets io_parallel, whose pooling takes any stride (decided from attributes preparation keeps)."""
    if options.io_type is not IOType.AUTO:
        return options.io_type
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    if not convs:
        return IOType.PARALLEL
    # per sample (a symbolic batch reads as 0); unknown shapes count as too large
    shapes = [model.get_tensor_shape(node.output[0]) for node in convs]
    outputs = sum(int(np.prod(shape[1:])) if shape else MAX_PARALLEL_CONV_OUTPUTS + 1 for shape in shapes)
    if any(_pool_windows_overlap(node) for node in model.graph.node) and outputs <= MAX_PARALLEL_CONV_OUTPUTS:
        return IOType.PARALLEL
    return IOType.STREAM


def _pool_windows_overlap(node) -> bool:
    """A MaxPool/AveragePool whose windows do not tile its input (kernel != stride): hls4ml cannot stream it."""
    if node.op_type not in ("MaxPool", "AveragePool"):
        return False
    kernel = [int(k) for k in node_attr(node, "kernel_shape", [])]
    strides = [int(s) for s in node_attr(node, "strides", None) or [1] * len(kernel)]
    return kernel != strides


def input_is_channels_last(model: ModelWrapper, options: Hls4mlOptions) -> bool:
    """io_stream firmware takes image inputs channels-last (hls4ml streams pixels with their channels)."""
    shape = model.get_tensor_shape(model.graph.input[0].name)
    return resolve_io_type(model, options) is IOType.STREAM and shape is not None and len(shape) >= 3


def move_quant_before_layout(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Per-tensor Quants above Flatten/Reshape/Transpose, so the channels-last transpose folds into weights."""
    from qdeploy.passes.graph.move_quant_before_layout import MoveQuantBeforeLayout

    return model.transform(MoveQuantBeforeLayout())


def to_channels_last(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """qonnx's ``ConvertToChannelsLastAndClean`` sequence (hls4ml computes convolutions channels-last), each of its
    transpose moves made safe for a tensor read by several nodes (``ForkSafe``: qonnx's moves rewire only the first
    reader; a residual block through a shared quantizer came out miswired)."""
    from qonnx.transformation.channels_last import (
        AbsorbChanFirstIntoMatMul,
        InsertChannelsLastDomainsAndTrafos,
        MoveChanFirstDownstream,
        MoveChanLastUpstream,
        MoveTransposePastFork,
    )
    from qonnx.transformation.fold_constants import FoldConstants
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.transformation.make_input_chanlast import MakeInputChannelsLast
    from qonnx.transformation.quant_constant_folding import FoldTransposeIntoQuantInit

    from qdeploy.passes.graph.fork_safe_transpose_moves import ForkSafe, RemoveTransposePairs

    sequence = [
        InsertChannelsLastDomainsAndTrafos(),
        RemoveTransposePairs(),
        MoveChanLastUpstream(),  # moving a transpose up keeps all its readers right; qonnx stops at forks above it
        FoldTransposeIntoQuantInit(),
        RemoveTransposePairs(),
        ForkSafe(MoveChanFirstDownstream),
        MoveTransposePastFork(),
        RemoveTransposePairs(),
        ForkSafe(AbsorbChanFirstIntoMatMul),
    ]
    if input_is_channels_last(model, options):
        sequence += [MakeInputChannelsLast(), RemoveTransposePairs()]
    from qdeploy.pipeline import until_fixed_point

    def one_round(current: ModelWrapper) -> tuple[ModelWrapper, bool]:
        # qonnx's transform() repeats ConvertToChannelsLastAndClean until the graph stops changing: so does this
        before = current.model.SerializeToString()
        for transformation in sequence:
            current = current.transform(transformation)
        return current, current.model.SerializeToString() != before

    model = until_fixed_point(one_round, model)
    return model.transform(InferShapes()).transform(FoldConstants())


def _transposes_cancelled(model: ModelWrapper, move_across, upstream_first: bool) -> ModelWrapper:
    """Rounds until nothing changes: ``move_across`` (a pass moving transposes across qdeploy's own channels-last
    ops), then qonnx's own moves, cancellation and absorption of the transposes it left (with its upstream move first
    when ``upstream_first``)."""
    from qonnx.transformation.channels_last import (
        AbsorbChanFirstIntoMatMul,
        MoveChanFirstDownstream,
        MoveChanLastUpstream,
    )

    from qdeploy.passes.graph.fork_safe_transpose_moves import ForkSafe, RemoveTransposePairs
    from qdeploy.pipeline import until_fixed_point

    qonnx_moves = [RemoveTransposePairs(), ForkSafe(MoveChanFirstDownstream), ForkSafe(AbsorbChanFirstIntoMatMul)]
    if upstream_first:
        qonnx_moves.insert(0, MoveChanLastUpstream())

    def one_round(current: ModelWrapper) -> tuple[ModelWrapper, bool]:
        before = current.model.SerializeToString()
        current = until_fixed_point(move_across().apply, current)
        for transformation in qonnx_moves:
            current = current.transform(transformation)
        return current, current.model.SerializeToString() != before

    return cleanup(until_fixed_point(one_round, model))


def thresholds_channels_last(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Move the transposes qonnx leaves around MultiThresholds across them and cancel/absorb them as qonnx does."""
    if not any(node.op_type == "MultiThreshold" for node in model.graph.node):
        return model
    from qdeploy.passes.graph.move_transpose_across_multithreshold import MoveTransposeAcrossMultiThreshold

    return _transposes_cancelled(model, MoveTransposeAcrossMultiThreshold, upstream_first=False)


def image_ops_channels_last(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Concat, Resize/Upsample, global and average pooling and DepthToSpace channels-last (``ImageOpsChannelsLast``),
    with the transposes qonnx left around them cancelled as qonnx cancels its own; Concats of more than two tensors
    first become chains of two-input ones (``BinaryConcat``)."""
    image_ops = ("Concat", "Resize", "Upsample", "GlobalAveragePool", "GlobalMaxPool", "AveragePool", "DepthToSpace")
    if not any(node.op_type in image_ops for node in model.graph.node):
        return model
    from qdeploy.passes.graph.binary_concat import BinaryConcat
    from qdeploy.passes.graph.image_ops_channels_last import ImageOpsChannelsLast
    from qdeploy.pipeline import until_fixed_point

    model = until_fixed_point(BinaryConcat().apply, model)  # hls4ml concatenates two tensors at a time
    return _transposes_cancelled(model, ImageOpsChannelsLast, upstream_first=True)


def pads_channels_last(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Pad nodes channels-last: the transposes qonnx leaves after them move above them (``MoveTransposeAcrossPad``)
    and cancel as qonnx cancels its own (hls4ml pads channels-last images only)."""
    if not any(node.op_type == "Pad" for node in model.graph.node):
        return model
    from qdeploy.passes.graph.move_transpose_across_pad import MoveTransposeAcrossPad

    return _transposes_cancelled(model, MoveTransposeAcrossPad, upstream_first=True)


def scale_after_output_layout(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """A scalar scale before the output's layout op moves after it, so the float tail is last (the host epilogue)."""
    from qdeploy.passes.graph.move_scale_after_output_layout import MoveScaleAfterOutputLayout
    from qdeploy.pipeline import until_fixed_point

    return until_fixed_point(MoveScaleAfterOutputLayout().apply, model)


def explicit_max_pool_padding(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """A channels-last MaxPool of a non-negative input (after a ReLU or an unsigned quantizer): its padding and
    ceil_mode windows as hls4ml's zero padding before a whole-window pooling (``ExplicitMaxPoolPadding``). A signed
    input keeps its pooling: hls4ml's io_parallel pads it with the type's most negative value (``parsers.py`` reads
    ceil_mode as end padding); io_stream refuses it (``check_layouts_hls4ml_parses``)."""
    if not any(node.op_type == "MaxPool" for node in model.graph.node):
        return model
    from qdeploy.passes.graph.explicit_max_pool_padding import ExplicitMaxPoolPadding
    from qdeploy.pipeline import until_fixed_point

    return until_fixed_point(ExplicitMaxPoolPadding().apply, model)


def give_constant_thresholds_one_step(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """A MultiThreshold without thresholds (a quantizer with one level, e.g. 1-bit signed narrow: always 0) gets one
    threshold no finite input reaches: the same constant output, and hls4ml gets no zero-size array (it cannot
    convert one). The precision rules then clamp it to just above the input's range."""
    for node in model.graph.node:
        thresholds = model.get_initializer(node.input[1]) if node.op_type == "MultiThreshold" else None
        if thresholds is not None and thresholds.ndim == 2 and thresholds.shape[1] == 0:
            model.set_initializer(node.input[1], np.full((thresholds.shape[0], 1), np.inf, dtype=np.float32))
    return model


def gemm_to_matmul(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """qonnx GemmToMatMul, then cleanup (hls4ml parses MatMul + Add, not Gemm)."""
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul

    return cleanup(model.transform(GemmToMatMul()))


CHANNELS_LAST_DOMAIN = "qonnx.custom_op.channels_last"


#: ops that act on each pixel alone: their output has their first input's layout
_PER_PIXEL_OPS = {
    "Quant", "MultiThreshold", "Relu", "Add", "Sub", "Mul", "Div", "Identity", "Clip", "Max", "Min", "Pad",
    "Concat", "Resize", "Upsample",
}  # fmt: skip
#: image ops qdeploy hands hls4ml as qonnx channels-last ops (``ImageOpsChannelsLast``)
_WRAPPED_IMAGE_OPS = ("GlobalAveragePool", "GlobalMaxPool", "AveragePool", "DepthToSpace")


def _channels_last_tensors(model: ModelWrapper, options: Hls4mlOptions) -> set[str]:
    """Tensors the graph holds channels-last: outputs of qonnx's channels-last ops and to-channels-last transposes,
    the input when the firmware takes it so, and what per-pixel ops compute from them."""
    from qonnx.custom_op.channels_last.base_wrapped_op import to_channels_last_args

    last = {model.graph.input[0].name} if input_is_channels_last(model, options) else set()
    for node in model.graph.node:  # topological order
        shape = model.get_tensor_shape(node.input[0]) if node.input else None
        to_last = shape is not None and tuple(node_attr(node, "perm", ())) == tuple(to_channels_last_args(len(shape)))
        if (
            node.domain == CHANNELS_LAST_DOMAIN
            or (node.op_type == "Transpose" and to_last)
            or (node.op_type in _PER_PIXEL_OPS and node.input and node.input[0] in last)
        ):
            last.update(node.output)
    return last


def _resize_problem(model: ModelWrapper, node) -> str | None:
    """Why hls4ml's nearest Resize (each output pixel repeats input pixel ``floor(i / scale)``, integer scales)
    cannot compute this channels-last ``node``, or None. The mapping is checked by running the node itself on a
    ramp of pixel indices, so every ONNX coordinate mode and rounding that gives it passes."""
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    shape = model.get_tensor_shape(node.input[0])
    out = model.get_tensor_shape(node.output[0])
    mode = node_attr(node, "mode", "nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "nearest":
        return f"{mode} interpolation (hls4ml's Resize computes nearest-neighbour exactly; use mode='nearest')"
    if shape is None or out is None or len(shape) != 4 or shape[0] != out[0] or shape[3] != out[3]:
        return "hls4ml resizes the height and width of N, H, W, C images only"
    if any(o % i for o, i in zip(out[1:3], shape[1:3], strict=True)):
        return f"scales {out[1] / shape[1]:g} x {out[2] / shape[2]:g} are not integers (hls4ml repeats pixels)"
    height, width = shape[1:3]
    ramp = np.arange(height * width, dtype=np.float32).reshape(1, height, width, 1)
    single = onnx.NodeProto()
    single.CopyFrom(node)
    single.input[0], single.output[0] = "x", "y"
    initializers = [onnx.numpy_helper.from_array(model.get_initializer(name), name) for name in node.input[1:] if name]
    # the ramp is one channel: scale axis 0 and 3 stay 1, as in the node
    graph = helper.make_graph(
        [single],
        "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, height, width, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializers,
    )
    sizes_input = len(node.input) > 3 and node.input[3]
    if sizes_input:
        sizes = np.array([1, out[1], out[2], 1], dtype=np.int64)
        graph.initializer.remove(next(t for t in graph.initializer if t.name == node.input[3]))
        graph.initializer.append(onnx.numpy_helper.from_array(sizes, node.input[3]))
    opset = next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")), 13)
    session = onnxruntime.InferenceSession(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()
    )
    (got,) = session.run(None, {"x": ramp})
    rows = np.arange(out[1]) // (out[1] // height)
    cols = np.arange(out[2]) // (out[2] // width)
    if got.shape != (1, out[1], out[2], 1) or not np.array_equal(got[0, :, :, 0], ramp[0, rows][:, cols, 0]):
        return "its coordinate mode picks other source pixels than repeating each pixel (hls4ml's nearest Resize)"
    return None


def _ceil_mode_adds_windows(model: ModelWrapper, node) -> bool:
    """True when ``ceil_mode=1`` gives this channels-last pooling more output pixels than whole windows (hls4ml's)."""
    if not int(node_attr(node, "ceil_mode", 0)):
        return False
    shape, out = model.get_tensor_shape(node.input[0]), model.get_tensor_shape(node.output[0])
    kernel, strides = node_attr(node, "kernel_shape", []), node_attr(node, "strides", None) or [1] * len(shape)
    pads = node_attr(node, "pads", None) or [0] * (2 * len(kernel))
    spatial = len(kernel)
    whole = [
        (int(shape[1 + i]) + int(pads[i]) + int(pads[i + spatial]) - int(kernel[i])) // int(strides[i]) + 1
        for i in range(spatial)
    ]
    return [int(d) for d in out[1 : 1 + spatial]] != whole


def _max_pool_padding_problem(model: ModelWrapper, node, options: Hls4mlOptions) -> str | None:
    """Why hls4ml cannot pool this channels-last MaxPool as the graph does, once ``explicit_max_pool_padding`` made
    every padding it could explicit, or None: io_stream pools unpadded whole windows only, io_parallel pads with the
    type's top-bit value (the most negative of a signed type only)."""
    from qdeploy.passes.graph.explicit_max_pool_padding import ceil_end_padding, lowest_value

    spatial = len(node_attr(node, "kernel_shape", []))
    padded = any(int(p) for p in node_attr(node, "pads", None) or [])
    ceil = _ceil_mode_adds_windows(model, node)
    if not padded and not ceil:
        return None
    lowest = lowest_value(model, node.input[0])
    stream = resolve_io_type(model, options) is IOType.STREAM
    what = "ceil_mode adds partial windows at the edges" if ceil else "it is padded"
    if any(int(d) != 1 for d in node_attr(node, "dilations", None) or [1] * spatial):
        return f"{what}, and it is dilated (hls4ml pools without dilation)"
    if ceil and ceil_end_padding(model, node) is None:
        return f"{what}, and the last window holds no input element (hls4ml pools whole windows only)"
    if not stream and lowest is not None and lowest < 0:
        return None  # hls4ml's io_parallel padding: the signed type's most negative value (parsers.py: ceil_mode)
    if lowest is None:
        return (
            f"{what}, and the range of its input is not known (no quantizer or ReLU before it), so no padding value "
            "keeps the maximum; hls4ml pools whole windows only. Quantize its input"
        )
    return (
        f"{what}, and its input may be negative (down to {lowest:g}): hls4ml pools whole windows only and pads with "
        "zeros in io_stream, which would raise a negative maximum to 0. Put a ReLU or an unsigned quantizer before it, "
        "drop ceil_mode and the padding, or use --io-type io_parallel (hls4ml pads signed types exactly there)"
    )


def check_layouts_hls4ml_parses(model: ModelWrapper, options: Hls4mlOptions) -> ModelWrapper:
    """Refuse, naming the node, the image ops hls4ml cannot compute as the graph does: pooling qonnx left
    channels-first (its channels-last conversion covers Conv, MaxPool and BatchNormalization; ``image_ops_channels_last``
    moves Concat, Resize, global/average pooling and DepthToSpace), image ops on a channels-first tensor, Resize other
    than nearest with integer scales, AveragePool with padding, Concat of more than two tensors."""
    last = _channels_last_tensors(model, options)
    stream = resolve_io_type(model, options) is IOType.STREAM
    for node in model.graph.node:
        shape = model.get_tensor_shape(node.input[0]) if node.input else None
        rank = len(shape) if shape is not None else 0
        channels_first = "it computes on a channels-first image (qdeploy moves it channels-last only after a Conv/MaxPool)"
        if node.op_type == "MaxPool" and node.domain != CHANNELS_LAST_DOMAIN:
            reason = "qonnx's channels-last conversion leaves it channels-first, which hls4ml cannot pool"
        elif node.op_type in _WRAPPED_IMAGE_OPS and rank >= 3 and node.domain != CHANNELS_LAST_DOMAIN:
            reason = channels_first  # hls4ml's parsers read every image as channels-last
        elif node.op_type in ("Resize", "Upsample") and rank >= 3:
            reason = channels_first if node.input[0] not in last else _resize_problem(model, node)
        elif (
            node.op_type == "Pad"
            and rank >= 3
            and node.input[0] not in last
            and (
                node_attr(node, "mode", "constant") != "constant"
                or any(other.domain == CHANNELS_LAST_DOMAIN for other in model.graph.node)
            )
        ):
            reason = channels_first  # hls4ml reads every Pad as channels-last once the graph has channels-last layers
        elif node.op_type == "Concat" and (len(node.input) > 2 or rank > 4):
            # hls4ml concatenates the tensors as the graph shapes them (its own layout follows the graph's)
            reason = f"hls4ml concatenates two tensors of at most 3 dimensions, not {len(node.input)} of {rank - 1}"
        elif node.op_type == "AveragePool" and any(int(p) for p in node_attr(node, "pads", [])):
            reason = "padded average pooling divides edge windows differently in hls4ml; pad explicitly (a Pad node)"
        elif node.op_type in ("MaxPool", "AveragePool") and stream and _pool_windows_overlap(node):
            reason = (
                "its windows do not tile the image (kernel != stride), and hls4ml's streaming pooling takes only "
                "windows that do; compile with --io-type io_parallel"
            )
        elif node.op_type == "MaxPool" and (_max_pool_padding_problem(model, node, options) is not None):
            reason = _max_pool_padding_problem(model, node, options)
        elif node.op_type == "AveragePool" and _ceil_mode_adds_windows(model, node):
            reason = "ceil_mode adds partial windows at the edges; hls4ml pools whole windows only"
        else:
            continue
        if reason is None:
            continue
        raise UnsupportedModelError(
            f"node {node.name}: {node.op_type} is not supported by the hls4ml target yet: {reason}; compile this model "
            "for onnxruntime (exact there), or export it for hls4ml without this op"
        )
    return model


STEPS = [
    check_input_is_quantized,
    check_weights_are_quantized,
    remove_pass_through,
    trunc_as_quant,
    wrap_pad_from_slices,
    complete_conv_attributes,
    complete_pool_attributes,
    ungroup_conv,
    thresholds_where_no_fixed_point,
    check_float_scales_are_folded,
    fold_constant_quants,
    dilated_conv_as_dense_kernel,
    fill_gemm_bias,
    move_quant_before_layout,
    to_channels_last,
    thresholds_channels_last,
    image_ops_channels_last,
    pads_channels_last,
    scale_after_output_layout,
    explicit_max_pool_padding,
    give_constant_thresholds_one_step,
    gemm_to_matmul,
    check_layouts_hls4ml_parses,
]


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
