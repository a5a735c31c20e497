"""Exact fixed-point precision rules: the one place every hardware target asks what type a tensor needs.

Target-neutral: grids, integer ranges, fixed-point widths and accumulators. How a target spells a type (hls4ml's
``ap_fixed<...>`` strings, Verilog widths) lives in that target.

A tensor's value set is described as a ``Grid``: every value is an integer ``k`` times ``2**lsb`` with
``kmin <= k <= kmax`` (per channel where that keeps bounds tight). The rules below propagate grids through the
graph exactly, with accumulator bounds taken from the *actual* weight values (not the worst case), so the
fixed-point type derived from a grid holds every value the graph can produce, and no bit more than needed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import const_input, input_name, is_power_of_two, node_attr
from qdeploy.ops import PASS_THROUGH_OPS, SCALED_QUANT_OPS

MAX_FRACTION_BITS = 64  # a constant needing more fractional bits than this is not a fixed-point value
#: element-wise functions with no fixed-point form that a following quantizer turns into thresholds (brevitas's
#: QuantTanh / QuantSigmoid)
NONLINEAR_MONOTONE_OPS = ("Sigmoid", "Tanh", "HardSigmoid", "Clip", "LeakyRelu")
#: the name LowerToThresholds gives the MultiThreshold that replaces the user's quantizer (its name + this)
THRESHOLDS_SUFFIX = "_thresholds"
# the exact interval arithmetic here is done in int64
_INT64_SAFE = 2**62


class Overflow(enum.StrEnum):
    """What a cast to a fixed-point type does with a value outside its range."""

    WRAP = "wrap"  # keep the low bits (two's complement)
    SATURATE = "saturate"  # clip to [min, max]
    SATURATE_SYMMETRIC = "saturate_symmetric"  # clip to [-max, max] (a signed narrow-range quantizer)


@dataclass(frozen=True)
class FixedType:
    """A fixed-point type of ``width`` bits with ``integer`` integer bits (counting the sign bit when ``signed``),
    and what a cast into it does: ``rounding`` (a QONNX rounding mode; FLOOR truncates) and ``overflow``."""

    signed: bool
    width: int
    integer: int
    rounding: str = "FLOOR"
    overflow: Overflow = Overflow.WRAP

    @property
    def fraction(self) -> int:
        return self.width - self.integer


@dataclass(frozen=True)
class Grid:
    """Values ``k * 2**lsb`` with ``kmin <= k <= kmax``; kmin/kmax are scalars or per-channel int64 arrays."""

    kmin: np.ndarray
    kmax: np.ndarray
    lsb: int

    @staticmethod
    def scalar(kmin: int, kmax: int, lsb: int) -> Grid:
        return Grid(np.asarray(kmin, dtype=np.int64), np.asarray(kmax, dtype=np.int64), int(lsb))

    def collapse(self) -> Grid:
        """Per-tensor bounds (for ops that mix channels)."""
        return Grid.scalar(int(np.min(self.kmin)), int(np.max(self.kmax)), self.lsb)

    def with_zero(self) -> Grid:
        return Grid(np.minimum(self.kmin, 0), np.maximum(self.kmax, 0), self.lsb)

    def rescale(self, lsb: int) -> Grid:
        """The same values on a finer grid ``lsb <= self.lsb``."""
        shift = self.lsb - lsb
        if shift < 0:
            raise ValueError("rescale only to a finer grid")
        return Grid(self.kmin << shift, self.kmax << shift, lsb)

    @property
    def min_value(self) -> float:
        return float(np.min(self.kmin)) * 2.0**self.lsb

    @property
    def max_value(self) -> float:
        return float(np.max(self.kmax)) * 2.0**self.lsb

    def fixed_type(self) -> FixedType:
        """The narrowest ap_fixed that holds every value of the grid exactly (integer bits >= 1)."""
        flat = self.collapse()
        lsb = min(flat.lsb, 0)  # ap types need width >= integer; a coarser grid is still exact on lsb 0
        flat = flat.rescale(lsb) if lsb < flat.lsb else flat
        kmin, kmax = int(flat.kmin), int(flat.kmax)
        signed = kmin < 0
        if signed:
            width = max(kmax.bit_length(), (-kmin - 1).bit_length()) + 1
        else:
            width = max(kmax.bit_length(), 1)
        fraction = -lsb
        width = max(width, fraction + 1)
        return FixedType(signed=signed, width=width, integer=width - fraction)


def grid_of_constant(values: np.ndarray, name: str) -> Grid:
    """Exact grid of a constant tensor (per output channel along axis 0 is not needed: callers collapse)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise UnsupportedModelError(f"constant {name} contains NaN or Inf; fix the model's weights")
    for fraction in range(MAX_FRACTION_BITS + 1):
        scaled = np.ldexp(values, fraction)
        if np.all(scaled == np.round(scaled)):
            if np.max(np.abs(scaled), initial=0.0) >= _INT64_SAFE:
                break
            ints = scaled.astype(np.int64)
            return Grid.scalar(int(ints.min(initial=0)), int(ints.max(initial=0)), -fraction)
    raise UnsupportedModelError(
        f"constant {name} is not a fixed-point value with <= {MAX_FRACTION_BITS} fractional bits; "
        "quantize it in the graph (a Quant node) before lowering to hardware"
    )


def constant_ints(values: np.ndarray, grid: Grid) -> np.ndarray:
    """The integers ``k`` of a constant on ``grid`` (exact by construction of ``grid_of_constant``)."""
    return np.ldexp(np.asarray(values, dtype=np.float64), -grid.lsb).astype(np.int64)


def scale_has_no_fixed_point_form(model: ModelWrapper, node) -> bool:
    """True for a Quant whose scale a fixed-point type cannot hold: not a power of two (weights or activations), or
    per channel on a runtime tensor (a type is per tensor), or a runtime tensor's quantizer with a non-zero zero
    point (brevitas's ShiftedUint8 activations: no plain fixed-point type, but levels shifted by an integer), or a
    signed 1-bit quantizer on a runtime tensor (bipolar in qonnx); also Sigmoid/Tanh-like ops (no fixed-point form).
    Hardware targets lower such graphs to thresholds."""
    if node.op_type in NONLINEAR_MONOTONE_OPS:
        return True  # no fixed-point form at all; before a quantizer, a threshold bank computes it exactly
    if node.op_type not in SCALED_QUANT_OPS:
        return False
    scale = const_input(model, node, 1)
    if scale is None:
        return False
    if not is_power_of_two(np.asarray(scale, dtype=np.float64)):
        return True
    on_datapath = model.get_initializer(node.input[0]) is None
    zeropt = const_input(model, node, 2)
    if on_datapath and zeropt is not None and np.any(np.asarray(zeropt) != 0):
        return True
    bits = const_input(model, node, 3)
    if on_datapath and bits is not None and bool(node_attr(node, "signed", 1)) and np.any(np.asarray(bits) == 1):
        return True  # qonnx makes a signed 1-bit Quant bipolar (x >= 0 -> +1, else -1): a sign, not a rounding
    return on_datapath and np.unique(scale).size > 1


def quant_int_range(bits: int, signed: bool, narrow: bool) -> tuple[int, int]:
    """QONNX Quant's integer range: [-2^(b-1) (+1 if narrow), 2^(b-1)-1] signed, [0, 2^b-1 (-1 if narrow)] unsigned.

    A signed 1-bit Quant is the exception: qonnx's executor makes it bipolar (``x >= 0`` -> +1, else -1, narrow or
    not; ``qonnx.custom_op.general.intquant.int_quant``), so its levels are -1 and +1 and the range is [-1, 1]."""
    if signed and bits == 1:
        return -1, 1
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1 - int(narrow)


@dataclass(frozen=True)
class QuantSpec:
    """A datapath ``Quant`` node that lowers to a plain fixed-point type (power-of-two scale, zero point 0)."""

    bits: int
    signed: bool
    narrow: bool
    rounding: str
    scale_exp: int

    @property
    def int_range(self) -> tuple[int, int]:
        return quant_int_range(self.bits, self.signed, self.narrow)

    def grid(self) -> Grid:
        low, high = self.int_range
        return Grid.scalar(low, high, self.scale_exp)

    def fixed_type(self) -> FixedType:
        base = self.grid().fixed_type()
        overflow = Overflow.SATURATE_SYMMETRIC if (self.narrow and self.signed) else Overflow.SATURATE
        return FixedType(base.signed, base.width, base.integer, self.rounding, overflow)


def quant_spec(model: ModelWrapper, node) -> QuantSpec:
    """Read a datapath Quant node, refusing (naming the node) what has no exact fixed-point form. Which rounding
    modes and bit widths a target can cast to is the target's own check."""
    scale, zeropt, bits = (const_input(model, node, i) for i in (1, 2, 3))
    if scale is None or zeropt is None or bits is None:
        raise UnsupportedModelError(f"node {node.name} ({node.op_type}): scale, zero point and bit width must be constants")
    if np.asarray(bits).size != 1 or float(np.asarray(bits).ravel()[0]) != int(np.asarray(bits).ravel()[0]):
        raise UnsupportedModelError(
            f"node {node.name}: bit width must be a single integer, got {np.asarray(bits).ravel()[:4]}"
        )
    if np.any(np.asarray(zeropt) != 0):
        raise UnsupportedModelError(
            f"node {node.name}: non-zero zero point is not supported on this target yet; compile the model for "
            "onnxruntime, or re-export it with zero-point-free quantizers (brevitas: not the Shifted* ones)"
        )
    scale = np.asarray(scale, dtype=np.float64)
    if np.unique(scale).size != 1:
        raise UnsupportedModelError(
            f"node {node.name}: per-channel activation scales are not supported on this target yet; compile the "
            "model for onnxruntime, or re-export it with per-tensor activation scales"
        )
    if not is_power_of_two(scale):
        raise UnsupportedModelError(
            f"node {node.name}: scale {float(scale.ravel()[0]):.6g} is not a power of two; "
            "re-quantize with power-of-two scales (qdeploy quantize --scale po2)"
        )
    rounding = str(node_attr(node, "rounding_mode", "ROUND")).upper()
    signed = bool(node_attr(node, "signed", 1))
    narrow = bool(node_attr(node, "narrow", 0))
    n_bits = int(np.asarray(bits).ravel()[0])
    exponent = int(np.frexp(scale.ravel()[0])[1] - 1)
    return QuantSpec(n_bits, signed, narrow, rounding, exponent)


def input_type_for(spec: QuantSpec) -> FixedType:
    """Type of the graph input that feeds the model's own input quantizer without changing its result.

    Float32 inputs are truncated onto a grid 24 bits finer than the quantizer's step, so every float32 value
    at or above half a step is held exactly (24-bit significand); smaller ones round to 0 either way. Integer
    bits cover the quantizer's clip range with a margin and saturate, so larger inputs still clip the same.
    """
    low, high = spec.int_range
    magnitude = max(abs(low), abs(high)) + 1
    integer = magnitude.bit_length() + spec.scale_exp + 2  # sign + margin over the clip range
    fraction = -spec.scale_exp + 24
    return FixedType(signed=True, width=integer + fraction, integer=integer, overflow=Overflow.SATURATE)


def _matmul_grid(x: Grid, weights: np.ndarray, name: str, reduce_axes: tuple[int, ...], node: str) -> tuple[Grid, Grid]:
    """Output grid of ``sum_i w_i x_i`` per output channel (axis 0 of ``weights`` after moving), and weight grid.
    Refusals name the layer ``node`` (the weights' tensor name is the cleaned graph's, not the user's)."""
    try:
        w_grid = grid_of_constant(weights, name)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"node {node}: its weights: {exc}") from None
    k_w = constant_ints(weights, w_grid)
    flat = x.collapse().with_zero()
    lo, hi = int(flat.kmin), int(flat.kmax)
    products_lo = np.minimum(k_w * lo, k_w * hi)
    products_hi = np.maximum(k_w * lo, k_w * hi)
    kmin = products_lo.sum(axis=reduce_axes)
    kmax = products_hi.sum(axis=reduce_axes)
    if max(abs(int(kmin.min())), abs(int(kmax.max()))) >= _INT64_SAFE:
        raise UnsupportedModelError(
            f"node {node}: its exact accumulator exceeds 62 bits (float weights with {-w_grid.lsb} fractional bits); "
            "quantize the weights in the graph (a Quant node on them) or reduce their precision"
        )
    return Grid(kmin, kmax, x.lsb + w_grid.lsb), w_grid


def _add_grids(a: Grid, b: Grid) -> Grid:
    """Grid of the element-wise sum of two runtime tensors (per tensor: their channel bounds need not align)."""
    a, b = a.collapse(), b.collapse()
    lsb = min(a.lsb, b.lsb)
    a, b = a.rescale(lsb), b.rescale(lsb)
    return Grid(a.kmin + b.kmin, a.kmax + b.kmax, lsb)


def _union_grids(grids: list[Grid]) -> Grid:
    """Grid holding every value of each of ``grids`` (a concatenation)."""
    lsb = min(grid.lsb for grid in grids)
    flat = [grid.collapse().rescale(lsb) for grid in grids]
    return Grid.scalar(min(int(g.kmin) for g in flat), max(int(g.kmax) for g in flat), lsb)


def _average_grid(model: ModelWrapper, node, x: Grid) -> tuple[Grid, Grid]:
    """(sum grid, mean grid) of an AveragePool/GlobalAveragePool whose window count is a power of two: the graph's
    division by it is then exact in fixed point. Other counts are refused: the quotient is no fixed-point value."""
    if node.op_type == "GlobalAveragePool":
        shape = model.get_tensor_shape(node.input[0])
        count = int(np.prod(shape[2:])) if node.domain == "" else int(np.prod(shape[1:-1]))
    else:
        if any(int(p) for p in node_attr(node, "pads", [])) and not int(node_attr(node, "count_include_pad", 0)):
            raise UnsupportedModelError(
                f"node {node.name}: AveragePool with padding divides edge windows by fewer values; "
                "pad explicitly (a Pad node) or set count_include_pad=1"
            )
        count = int(np.prod(node_attr(node, "kernel_shape", [1])))
    if count & (count - 1):
        raise UnsupportedModelError(
            f"node {node.name}: {node.op_type} divides by {count}, not a power of two, so its output is not a "
            "fixed-point value; quantize after it (a Quant node) or use a power-of-two window"
        )
    shift = count.bit_length() - 1
    flat = x.collapse()
    total = Grid(flat.kmin * count, flat.kmax * count, flat.lsb)
    # the mean of values in [kmin, kmax] stays in [kmin, kmax], on a grid 2^shift finer
    return total, Grid(flat.kmin << shift, flat.kmax << shift, flat.lsb - shift)


def _add_bias(acc: Grid, bias: np.ndarray, name: str) -> tuple[Grid, Grid]:
    b_grid = grid_of_constant(bias, name)
    k_b = constant_ints(bias, b_grid)
    lsb = min(acc.lsb, b_grid.lsb)
    acc_r = acc.rescale(lsb)
    k_b = k_b << (b_grid.lsb - lsb)
    return Grid(acc_r.kmin + k_b, acc_r.kmax + k_b, lsb), b_grid


@dataclass
class LayerPrecision:
    """What one node needs: its output grid and the types of its weights/bias/accumulator, if any."""

    node: str
    op: str
    output: Grid
    weight: Grid | None = None
    bias: Grid | None = None
    accumulator: Grid | None = None
    quant: QuantSpec | None = None
    thresholds: Grid | None = None
    # MultiThreshold: the thresholds clamped to what the input can reach (same outcome, finite, fixed-point)
    threshold_values: np.ndarray | None = None

    def types(self) -> dict[str, FixedType]:
        """The fixed-point type of each tensor this node has: ``result`` and, where present, ``weight``, ``bias``,
        ``accumulator``, ``thresholds``."""
        out = {"result": self.quant.fixed_type() if self.quant else self.output.fixed_type()}
        for key in ("weight", "bias", "accumulator", "thresholds"):
            grid = getattr(self, key)
            if grid is not None:
                out[key] = grid.fixed_type()
        return out


def _threshold_levels(model: ModelWrapper, node) -> tuple[np.ndarray, Grid]:
    """A MultiThreshold's thresholds [C, L] and the grid of its integer output levels."""
    thresholds = const_input(model, node, 1)
    if thresholds is None or thresholds.ndim != 2:
        raise UnsupportedModelError(f"node {node.name}: MultiThreshold needs constant thresholds of shape [channels, steps]")
    scale, bias = float(node_attr(node, "out_scale", 1.0)), float(node_attr(node, "out_bias", 0.0))
    if scale != int(scale) or bias != int(bias) or scale <= 0:
        raise UnsupportedModelError(
            f"node {node.name}: MultiThreshold output scale {scale} / bias {bias} are not integers; "
            "lower the graph with qdeploy's LowerToThresholds"
        )
    levels = Grid.scalar(int(bias), int(bias + scale * thresholds.shape[1]), 0)
    return np.asarray(thresholds, dtype=np.float64), levels


def _float_input_thresholds(model: ModelWrapper, node) -> tuple[FixedType, LayerPrecision]:
    """Thresholds on the float model input: the input type holds every meaningful threshold exactly, truncates
    (so ``x >= t`` is unchanged for t on its grid) and saturates; thresholds every input passes (or none does)
    become the type's minimum (or its maximum plus one step)."""
    thresholds, levels = _threshold_levels(model, node)
    meaningful = np.isfinite(thresholds) & (np.abs(thresholds) < 2.0**30)
    try:
        grid = grid_of_constant(thresholds[meaningful], node.input[1]) if np.any(meaningful) else Grid.scalar(0, 0, 0)
    except UnsupportedModelError:
        # e.g. a CEIL (or FLOOR of a negative range) quantizer on the float input: its level changes between 0 and
        # the smallest float32 above it, which no fixed-point input type tells apart
        nonzero = thresholds[meaningful & (thresholds != 0)]
        finest = nonzero[np.argmin(np.abs(nonzero))]  # the smallest magnitude needs the most fractional bits
        user_node = node.name.removesuffix(THRESHOLDS_SUFFIX)
        raise UnsupportedModelError(
            f"node {user_node}: on the float model input its level changes at {float(finest):.9g}, finer than any "
            f"fixed-point input type resolves ({MAX_FRACTION_BITS} fractional bits); declare the input's precision "
            "(--input-quant 'fixed<16,6>', config key input_quant) or quantize the input in the model with ROUND "
            "rounding"
        ) from None
    fraction = max(-grid.lsb, 0)
    magnitude = float(np.max(np.abs(thresholds[meaningful]), initial=1.0))
    integer = int(np.ceil(np.log2(magnitude + 2.0**-fraction))) + 2  # sign + a margin above the largest threshold
    input_type = FixedType(signed=True, width=integer + fraction, integer=integer, overflow=Overflow.SATURATE)
    step = 2.0**-fraction
    low, high = -(2.0 ** (integer - 1)), 2.0 ** (integer - 1) - step
    clamped = np.clip(np.where(meaningful, thresholds, np.copysign(np.inf, thresholds)), low, high + step)
    threshold_grid = grid_of_constant(clamped, node.input[1])
    return input_type, LayerPrecision(
        node.name, node.op_type, levels, thresholds=threshold_grid, threshold_values=clamped.astype(np.float32)
    )


def _grid_thresholds(model: ModelWrapper, node, x: Grid) -> LayerPrecision:
    """Thresholds on an exact grid: clamped to the reachable range [min, max + one step], where they decide the same."""
    thresholds, levels = _threshold_levels(model, node)
    step = 2.0**x.lsb
    clamped = np.clip(thresholds, x.min_value, x.max_value + step)
    if clamped.shape[0] != 1 and np.size(x.kmin) not in (1, clamped.shape[0]):
        raise UnsupportedModelError(f"node {node.name}: thresholds per channel do not match the input's channels")
    return LayerPrecision(
        node.name,
        node.op_type,
        levels,
        thresholds=grid_of_constant(clamped, node.input[1]),
        threshold_values=clamped.astype(np.float32),
    )


def infer_precisions(model: ModelWrapper) -> tuple[FixedType, dict[str, LayerPrecision]]:
    """Propagate exact grids from the model's input quantizer to the output.

    Expects a cleaned, channels-last graph with Quant nodes on constants folded away (hls4ml preparation).
    Returns the graph-input type and, per node name, its LayerPrecision. Raises UnsupportedModelError naming
    the first node whose semantics have no exact fixed-point form here.
    """
    grids: dict[str, Grid | None] = {input_name(model): None}  # None: raw float input, not yet quantized
    layers: dict[str, LayerPrecision] = {}
    input_type: FixedType | None = None
    declared = model.get_tensor_datatype(input_name(model))
    if declared.is_integer() and declared.bitwidth() <= 32:
        # an input the file declares as integers (UINT8 images, FINN's bipolar features) is already on a grid
        grids[input_name(model)] = Grid.scalar(int(declared.min()), int(declared.max()), 0)
        input_type = grids[input_name(model)].fixed_type()
    for node in model.graph.node:
        op = node.op_type
        data = node.input[0] if node.input else ""
        x = grids.get(data)
        if data not in grids:
            raise UnsupportedModelError(f"node {node.name} ({op}): input {data} is not computed from the model input")
        if op in SCALED_QUANT_OPS:
            spec = quant_spec(model, node)
            if x is None:
                if input_type is not None:
                    raise UnsupportedModelError(f"node {node.name}: the float model input reaches more than one quantizer")
                input_type = input_type_for(spec)
            layers[node.name] = LayerPrecision(node.name, op, spec.grid(), quant=spec)
        elif op == "MultiThreshold" and x is None:
            if input_type is not None:
                raise UnsupportedModelError(f"node {node.name}: the float model input reaches more than one quantizer")
            input_type, layers[node.name] = _float_input_thresholds(model, node)
        elif x is None:
            # ReLU commutes with the input type's truncation: below half a quantizer step both sides round to 0
            if op in PASS_THROUGH_OPS or op == "Relu":
                grids[node.output[0]] = None
                continue
            raise UnsupportedModelError(
                f"node {node.name} ({op}) computes on the float model input before any Quant; declare the input's "
                "precision (--input-quant 'fixed<16,6>', config key input_quant) or quantize the input in the model "
                "(brevitas QuantIdentity / qdeploy quantize does)"
            )
        elif op == "MultiThreshold":
            layers[node.name] = _grid_thresholds(model, node, x)
        elif op in PASS_THROUGH_OPS:
            layers[node.name] = LayerPrecision(node.name, op, x.collapse())
        elif op == "Relu":
            layers[node.name] = LayerPrecision(node.name, op, Grid(np.maximum(x.kmin, 0), np.maximum(x.kmax, 0), x.lsb))
        elif op in ("MaxPool", "GlobalMaxPool", "Resize", "Upsample", "DepthToSpace"):
            # they select or repeat values (nearest-neighbour resizing; other modes are the target's check)
            layers[node.name] = LayerPrecision(node.name, op, x.collapse())
        elif op in ("AveragePool", "GlobalAveragePool"):
            total, mean = _average_grid(model, node, x)
            layers[node.name] = LayerPrecision(
                node.name,
                op,
                mean,
                accumulator=Grid(
                    np.minimum(total.kmin, 0) << (total.lsb - mean.lsb),
                    np.maximum(total.kmax, 0) << (total.lsb - mean.lsb),
                    mean.lsb,
                ),
            )
        elif op == "Pad" and str(node_attr(node, "mode", "constant")) in ("edge", "reflect", "wrap"):
            layers[node.name] = LayerPrecision(node.name, op, x.collapse())  # copies of input values in the border
        elif op == "Pad":
            value = const_input(model, node, 2)
            if str(node_attr(node, "mode", "constant")) != "constant" or (value is not None and np.any(value != 0)):
                raise UnsupportedModelError(
                    f"node {node.name}: only zero padding (constant mode, value 0) is supported on this target; compile "
                    "the model for onnxruntime, or re-export it with zero padding"
                )
            layers[node.name] = LayerPrecision(node.name, op, x.collapse().with_zero())
        elif op == "Concat":
            parts = [grids.get(name) for name in node.input]
            if any(part is None for part in parts):
                raise UnsupportedModelError(f"node {node.name}: Concat of the float model input; quantize it first")
            layers[node.name] = LayerPrecision(node.name, op, _union_grids(parts))
        elif op == "MatMul":
            weights = const_input(model, node, 1)
            if weights is None or weights.ndim != 2:
                raise UnsupportedModelError(f"node {node.name}: MatMul needs a 2-D constant weight as second input")
            acc, w_grid = _matmul_grid(x, weights, node.input[1], (0,), node.name)
            layers[node.name] = LayerPrecision(node.name, op, acc, weight=w_grid, accumulator=acc.with_zero())
        elif op == "Conv":
            weights = const_input(model, node, 1)
            if weights is None:
                raise UnsupportedModelError(f"node {node.name}: Conv needs constant weights")
            if int(node_attr(node, "group", 1)) != 1:
                raise UnsupportedModelError(
                    f"node {node.name}: grouped/depthwise Conv is not supported on this target yet; compile the model "
                    "for onnxruntime"
                )
            acc, w_grid = _matmul_grid(x, weights, node.input[1], tuple(range(1, weights.ndim)), node.name)
            bias = const_input(model, node, 2)
            b_grid = None
            if bias is not None:
                acc, b_grid = _add_bias(acc, bias, node.input[2])
            elif len(node.input) > 2 and node.input[2]:
                raise UnsupportedModelError(f"node {node.name}: Conv bias must be a constant")
            layers[node.name] = LayerPrecision(node.name, op, acc, weight=w_grid, bias=b_grid, accumulator=acc.with_zero())
        elif op == "Add" and const_input(model, node, 1) is None:
            other = grids.get(node.input[1])
            if other is None:
                raise UnsupportedModelError(f"node {node.name}: Add of the float model input; quantize it first")
            total = _add_grids(x, other)
            layers[node.name] = LayerPrecision(node.name, op, total, accumulator=total.with_zero())
        elif op == "Add":
            bias = const_input(model, node, 1)
            if bias.ndim > 1 and bias.size != bias.shape[-1]:
                raise UnsupportedModelError(f"node {node.name}: Add constant must be per-channel (last axis)")
            out, b_grid = _add_bias(x if x.kmin.size == np.asarray(bias).size else x.collapse(), bias.ravel(), node.input[1])
            layers[node.name] = LayerPrecision(node.name, op, out, bias=b_grid)
        elif (
            op in ("Mul", "Div")
            and const_input(model, node, 1) is not None
            and not is_power_of_two(np.abs(np.asarray(const_input(model, node, 1), dtype=np.float64)))
        ):
            factor = np.asarray(const_input(model, node, 1), dtype=np.float64).ravel()
            raise UnsupportedModelError(
                f"node {node.name}: a float scale ({op} by {factor[0]:.6g}"
                f"{f' and {factor.size - 1} more per channel' if factor.size > 1 else ''}) stays in the datapath, "
                "between quantizers qdeploy could not fold it into; the fixed-point targets compute on power-of-two "
                "scales only: re-export with power-of-two scales (brevitas *FixedPoint quantizers) and per-tensor "
                "activation quantizers, or compile the model for onnxruntime"
            )
        else:
            raise UnsupportedModelError(
                f"node {node.name}: op {op} is not supported by this target yet "
                "(supported: Quant, MultiThreshold, MatMul/Gemm, Conv, Add, Relu, MaxPool, Reshape/Flatten/Transpose); "
                "compile the model for onnxruntime, or re-export it without that op"
            )
        for output in node.output:
            grids[output] = layers[node.name].output
    if input_type is None:
        raise UnsupportedModelError("the model input is never quantized; add an input Quant (QuantIdentity) to the model")
    return input_type, layers
