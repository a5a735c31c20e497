"""Integer layers for ONNX Runtime: exact dot products on 8-bit integer kernels, with BatchNorm and the activation
quantizer folded into each kernel's requantization where that can be shown to give the graph's numbers.

Runs on the lowered (standard ONNX) model before the session plan (``exactness.plan_session``). A ``Conv`` or
``MatMul`` qualifies when its activation is ``DequantizeLinear`` of a runtime 8-bit integer tensor (through
``MaxPool``/``Reshape``/... which commute with a positive scale), its weights are ``DequantizeLinear`` of int8
constants, both with power-of-two scales and zero weight zero point, and the exactness analysis shows its float32
result exact (every partial sum on the grid within 2^24 steps). Its float output is then ``acc * s_x * s_w (+
bias)`` for the integer accumulator ``acc``, whatever the summation order, and:

- **requantized** (``QLinearConv``): when the Conv's output runs through per-channel element-wise ops that are each
  monotone (BatchNormalization, Add/Sub/Mul/Div by constants, Relu, Clip, Round, the bipolar compare) into a
  ``QuantizeLinear``, the graph's integer output is a monotone step function ``f_c(acc)`` per channel. Its steps
  (thresholds) are found by evaluating those very nodes in ORT on accumulator values, and a per-channel integer
  bias ``b_c`` and float32 multiplier ``M_c`` are searched so that MLAS's requantization
  ``rne(clamp(float(acc + b_c) * M_c, 0, 255))`` has exactly those steps over the whole accumulator range (checked
  on both sides of every threshold, in float32 as MLAS computes it). Channels where no such pair is found keep the
  layer in float (say why in the plan).
  A MatMul/Gemm runs as ORT's ``QGemm`` (com.microsoft) with the same requantization: one GEMM over the batch; so
  does a convolution whose kernel covers its whole (unpadded) image, on the image flattened channels-last.
- **integer dot**: a MatMul without such a chain becomes a ``QGemm`` with float output ``float32(acc) * s_x * s_w``,
  the same float number, and the nodes after it stay as they are.

Activations move between integer layers as uint8 with a zero point (ORT's fast u8 x s8 kernels): an int8
``QuantizeLinear`` becomes the uint8 one with zero point +128 (same rounding and saturation, shifted). The
requantization saturates to [0, 255] only, so a quantizer with fewer levels gets a uint8 ``Clip`` (after a MaxPool
that reads it: clamping commutes with max), unless the requantization provably stays below its top level; a
two-level (binary, bipolar) quantizer instead gets a requantization that jumps from 0 straight to 255, and layers
without padding read that 0/255 form directly (``_fit_spread``). A convolution whose input channel count is not a
multiple of 4 gets zero-weight channels up to one: MLAS's indirect convolution kernel needs it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qdeploy.targets.onnxruntime.emitter import FreshNames

log = logging.getLogger(__name__)

#: ops between a DequantizeLinear and the dot that commute with (q - zp) * s for s > 0 (they move or pick values)
PASS_THROUGH = {"MaxPool", "Reshape", "Flatten", "Identity", "Transpose", "Squeeze", "Unsqueeze"}
#: element-wise ops that are monotone in their runtime input for constant other inputs (IEEE rounding is monotone)
MONOTONE_CHAIN = {"BatchNormalization", "Add", "Sub", "Mul", "Div", "Relu", "Clip", "Round", "Floor", "Ceil"}
#: largest accumulator magnitude fed to MLAS's float requantization: float32 holds every integer below 2^24
ACC_LIMIT = 2**24 - 256
#: u8 x s8 kernels without VNNI (AVX2's vpmaddubsw) add two products in int16 with saturation: every pair of
#: products must fit, so |stored x| * |w| * 2 stays within int16 on any x86 machine the model runs on
PAIR_LIMIT = 32767
#: accumulator values per layer evaluated at once when the whole range is enumerated
ENUMERATE_LIMIT = 1 << 22
#: the domain of ORT's contrib kernels (QGemm)
MS_DOMAIN = "com.microsoft"
#: ops ORT may prepack (a float weight then takes another kernel path than the reference's)
FLOAT_PREPACKED = {"Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "RNN", "Attention", "FusedConv"}


@dataclass
class IntegerPlan:
    """What the pass did: layers made integer (by kind) and the layers left in float, with why."""

    requantized: list[str] = field(default_factory=list)
    integer_dot: list[str] = field(default_factory=list)
    #: how many of ``requantized`` are convolutions (the rest are matrix products)
    requantized_convs: int = 0
    kept_float: dict[str, str] = field(default_factory=dict)
    #: names of the nodes the pass emitted (integer arithmetic: exempt from the reference-kernel check)
    nodes: set[str] = field(default_factory=set)

    @property
    def changed(self) -> bool:
        return bool(self.requantized or self.integer_dot)

    def summary(self) -> str:
        parts = []
        if self.requantized:
            kinds = [("QLinearConv", self.requantized_convs), ("QGemm", len(self.requantized) - self.requantized_convs)]
            parts.append("requantized " + " + ".join(f"{n} {op}" for op, n in kinds if n))
        if self.integer_dot:
            parts.append(f"{len(self.integer_dot)} integer QGemm to float")
        if self.kept_float:
            parts.append(f"{len(self.kept_float)} dot products kept in float")
        return ", ".join(parts) or "no integer layers"


class _Graph:
    def __init__(self, proto: onnx.ModelProto) -> None:
        self.proto = proto
        self.constants = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
        self.producers = {out: n for n in proto.graph.node for out in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in proto.graph.node:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.outputs = {o.name for o in proto.graph.output}
        self._shapes: dict[str, list] | None = None

    def shape(self, name: str) -> list | None:
        """The tensor's inferred dimensions (ints; a symbol or None where unknown), or None."""
        if self._shapes is None:
            try:
                inferred = onnx.shape_inference.infer_shapes(self.proto).graph
            except Exception:  # noqa: BLE001 - shape inference is an optimization hint here, never required
                inferred = None
            values = [] if inferred is None else [*inferred.value_info, *inferred.input, *inferred.output]
            self._shapes = {
                v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                for v in values
                if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape")
            }
        return self._shapes.get(name)

    def const(self, name: str) -> np.ndarray | None:
        return self.constants.get(name) if name else None

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _unpadded_auto_pad(attrs: dict) -> bool:
    """``auto_pad`` adds no padding (NOTSET: the explicit ``pads`` decide; VALID: none)."""
    value = attrs.get("auto_pad", "NOTSET")
    return (value.decode() if isinstance(value, bytes) else value) in ("NOTSET", "VALID")


def _power_of_two(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
        return False
    mantissa, exponent = np.frexp(values)
    # stay well inside float32's normal range so products of scales are exact
    return bool(np.all(mantissa == 0.5) and np.all(np.abs(exponent) < 60))


@dataclass
class _IntInput:
    """A runtime integer activation: ``stored`` (uint8 tensor name) - ``zero`` is the integer q in [low, high]."""

    stored: str
    zero: int
    low: int
    high: int
    #: ``stored`` is this requantized tensor clipped to [0, top]: a MaxPool reading it can run first (clamping
    #: commutes with max and with moves), so the Clip runs on the pooled, smaller tensor
    unclipped: str | None = None
    top: int = 255
    #: ``unclipped`` holds only 0 (for ``low``) and 255 (for ``high``): a two-level activation whose requantization
    #: saturates at both ends, so readers that can take it need no Clip (``_fit_spread``)
    spread: bool = False


class _Integerizer(FreshNames):
    def __init__(self, proto: onnx.ModelProto, origin: dict[str, str], exact: set[str], ref_config: dict) -> None:
        self.g = _Graph(proto)
        self.origin = origin
        self.exact = exact  # tensors whose float32 value the exactness analysis shows exact
        self.ref_config = ref_config
        self.new_nodes: dict[str, list[onnx.NodeProto]] = {}  # emitted before the keyed original node
        self.removed: set[str] = set()
        self.initializers: list[onnx.TensorProto] = []
        self.plan = IntegerPlan()
        self.u8: dict[str, _IntInput] = {}  # int tensor (QuantizeLinear/Clip output) -> its uint8 form
        self.flat_forms: dict[str, str] = {}  # an emitted (N, C, 1, 1) tensor -> the (N, C) tensor it reshapes
        self._taken = {n.name for n in proto.graph.node} | set(self.g.constants)
        self._taken |= {t for n in proto.graph.node for t in (*n.input, *n.output)}

    # -- emission helpers --------------------------------------------------------------------------------------------
    def emit(self, before: onnx.NodeProto, op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        out = output or self.fresh(f"{before.name}_{op.lower()}")
        name = self.fresh(f"{before.name}_{op}")
        node = helper.make_node(op, inputs, [out], name=name, **attrs)
        self.new_nodes.setdefault(before.name, []).append(node)
        self.origin[name] = self.origin.get(before.name, before.name)
        self.plan.nodes.add(name)
        return out

    # -- integer activations -----------------------------------------------------------------------------------------
    def int_input(self, tensor: str) -> _IntInput | None:
        """The uint8 form of a runtime integer tensor produced by ``QuantizeLinear [-> Clip]`` (built once)."""
        if tensor in self.u8:
            return self.u8[tensor]
        producer = self.g.producers.get(tensor)
        clip = None
        if producer is not None and producer.op_type == "Clip":
            clip, producer = producer, self.g.producers.get(producer.input[0])
        if producer is None or producer.op_type != "QuantizeLinear" or len(producer.input) < 3:
            return None
        scale, zp = self.g.const(producer.input[1]), self.g.const(producer.input[2])
        if scale is None or zp is None or scale.size != 1 or zp.size != 1:
            return None
        if any(a.name not in ("axis", "saturate") for a in producer.attribute):
            return None
        info = np.iinfo(zp.dtype) if zp.dtype in (np.int8, np.uint8) else None
        if info is None:
            return None
        low, high = int(info.min) - int(zp), int(info.max) - int(zp)  # integer q = stored - zp
        if clip is not None:
            bounds = [self.g.const(clip.input[i]) if len(clip.input) > i else None for i in (1, 2)]
            if any(b is None for b in bounds):
                return None
            low, high = max(low, int(bounds[0]) - int(zp)), min(high, int(bounds[1]) - int(zp))
        if zp.dtype == np.uint8:
            stored, zero = tensor, int(zp)
        else:  # the same QuantizeLinear into uint8 with zero point + 128: saturation and rounding shift alike
            zero = int(zp) + 128
            q = self.emit(
                producer,
                "QuantizeLinear",
                [producer.input[0], producer.input[1], self.const(f"{producer.name}_u8zp", np.uint8(zero))],
            )
            if clip is not None:
                bounds = [
                    self.const(f"{producer.name}_u8lo", np.uint8(low + zero)),
                    self.const(f"{producer.name}_u8hi", np.uint8(high + zero)),
                ]
                q = self.emit(producer, "Clip", [q, *bounds])
            stored = q
        found = _IntInput(stored, zero, low, high)
        self.u8[tensor] = found
        return found

    def trace_input(self, name: str) -> tuple[_IntInput, float, list[onnx.NodeProto]] | None:
        """Walk back from a dot's activation input through PASS_THROUGH ops to a DequantizeLinear (power-of-two
        scale, the quantizer's own zero point) of a runtime integer tensor; returns the integer input, the scale and
        the pass-through ops (input side first)."""
        path = []
        node = self.g.producers.get(name)
        while node is not None and node.op_type in PASS_THROUGH:
            if node.op_type == "MaxPool" and len(node.output) > 1:
                return None
            path.append(node)
            node = self.g.producers.get(node.input[0])
        if node is None or node.op_type != "DequantizeLinear" or node.input[0] in self.g.constants:
            return None
        scale = self.g.const(node.input[1])
        zp = self.g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.int8)
        if scale is None or scale.size != 1 or not _power_of_two(scale) or zp.size != 1:
            return None
        if int(zp.ravel()[0]) != self._quantizer_zero(node.input[0]):
            return None  # (stored - zp) * s is then not q * s
        found = self.int_input(node.input[0])
        if found is None:
            return None
        return found, float(scale.ravel()[0]), path[::-1]

    def _quantizer_zero(self, tensor: str) -> int | None:
        producer = self.g.producers.get(tensor)
        if producer is not None and producer.op_type == "Clip":
            producer = self.g.producers.get(producer.input[0])
        if producer is None or producer.op_type != "QuantizeLinear" or len(producer.input) < 3:
            return None
        zp = self.g.const(producer.input[2])
        return None if zp is None or zp.size != 1 else int(zp.ravel()[0])

    def replay_path(self, x: _IntInput, path: list[onnx.NodeProto], before: onnx.NodeProto, spread: bool = False) -> str:
        """The pass-through ops on the uint8 tensor (a pending Clip after them when they pool); ``spread``: on its
        0/255 form (``_IntInput.spread``; max and moves keep it two-level)."""
        late_clip = not spread and x.unclipped is not None and any(node.op_type == "MaxPool" for node in path)
        value = x.unclipped if late_clip or spread else x.stored
        if path and value in self.flat_forms and self._flattens(path[0]):
            value, path = self.flat_forms[value], path[1:]  # the (N, C) form it was reshaped from
        for node in path:
            value = self.emit(before, node.op_type, [value, *node.input[1:]], **_attrs(node))
        if late_clip:
            bounds = [self.const(f"{before.name}_in_lo", np.uint8(0)), self.const(f"{before.name}_in_hi", np.uint8(x.top))]
            value = self.emit(before, "Clip", [value, *bounds])
        return value

    def _flattens(self, node: onnx.NodeProto) -> bool:
        """A Reshape to (batch, -1) or Flatten(axis=1)."""
        if node.op_type == "Flatten":
            return int(_attrs(node).get("axis", 1)) == 1
        shape = self.g.const(node.input[1]) if node.op_type == "Reshape" else None
        return shape is not None and shape.size == 2 and int(shape[1]) == -1 and int(shape[0]) in (0, 1, -1)

    # -- weights -----------------------------------------------------------------------------------------------------
    def int_weight(self, name: str, channel_axis: int) -> tuple[np.ndarray, np.ndarray] | None:
        """int8 weights and per-output-channel power-of-two scales of a ``DequantizeLinear`` constant."""
        dq = self.g.producers.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        ints, scale = self.g.const(dq.input[0]), self.g.const(dq.input[1])
        zp = self.g.const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
        if ints is None or scale is None or ints.dtype != np.int8 or not _power_of_two(scale):
            return None
        if zp is not None and np.any(zp != 0):
            return None
        channels = ints.shape[channel_axis]
        if scale.size == 1:
            scale = np.full(channels, float(scale.ravel()[0]))
        else:
            axis = _attrs(dq).get("axis", 1)
            if axis % ints.ndim != channel_axis % ints.ndim or scale.size != channels:
                return None
        return ints, np.asarray(scale, dtype=np.float64).reshape(-1)

    # -- the pass ----------------------------------------------------------------------------------------------------
    def run(self) -> None:
        for node in list(self.g.proto.graph.node):
            if node.name in self.removed:
                continue
            if node.op_type == "Conv":
                self.conv(node)
            elif node.op_type in ("MatMul", "Gemm"):
                self.matmul(node)

    def keep_float(self, node: onnx.NodeProto, why: str) -> None:
        self.plan.kept_float[self.origin.get(node.name, node.name)] = why

    def _dot_inputs(self, node, channel_axis: int):
        if node.output[0] not in self.exact:
            self.keep_float(node, "its float32 sum is not shown exact (non-power-of-two scales or > 2^24 steps)")
            return None
        traced = self.trace_input(node.input[0])
        weight = self.int_weight(node.input[1], channel_axis)
        if traced is None or weight is None:
            self.keep_float(node, "inputs are not 8-bit integers with power-of-two scales and zero weight offset")
            return None
        return traced, weight

    def matmul(self, node: onnx.NodeProto) -> None:
        attrs = _attrs(node)
        bias = node.input[2] if node.op_type == "Gemm" and len(node.input) > 2 and node.input[2] else None
        if node.op_type == "Gemm":
            if attrs.get("transA", 0) or float(attrs.get("alpha", 1.0)) != 1.0 or float(attrs.get("beta", 1.0)) != 1.0:
                return self.keep_float(node, "Gemm with transA, alpha or beta")
        transposed = bool(attrs.get("transB", 0))
        found = self._dot_inputs(node, 0 if transposed else 1)
        if found is None:
            return
        (x, x_scale, path), (w, w_scale) = found
        if w.ndim != 2:
            return self.keep_float(node, "weights are not a 2-D matrix")
        if transposed:
            w = np.ascontiguousarray(w.T)
        chain = self.chain_after(node, 2)
        bias_value = None if bias is None else self._constant_value(bias)
        if chain is not None and (bias is None or bias_value is not None):
            if bias_value is None or bias_value.size in (1, w.shape[1]):
                kept = dict(self.plan.kept_float)
                as_conv = np.ascontiguousarray(w.T).reshape(w.shape[1], w.shape[0], 1, 1)
                if self.requantized(node, x, x_scale, path, as_conv, w_scale, chain, bias_value, {}, 2):
                    return
                self.plan.kept_float = kept  # the integer dot below still applies
        if 2 * (x.high + x.zero) * int(np.abs(w.astype(np.int64)).max(initial=0)) > PAIR_LIMIT:
            return self.keep_float(node, "u8 x s8 products could saturate int16 pair sums (AVX2 kernels)")
        acc_bound = _acc_bounds(w.astype(np.int64), x.low, x.high, reduce_axes=(0,))
        if max(abs(acc_bound[0].min()), abs(acc_bound[1].max())) >= ACC_LIMIT:
            return self.keep_float(node, "accumulator exceeds 2^24")
        value = self.replay_path(x, path, node)
        scale = (x_scale * w_scale).astype(np.float32)
        scale = scale if len(set(scale.tolist())) > 1 else scale[:1]
        # QGemm without an output quantizer: float32(acc) * (1 * s_x * s_w), the exact float number (acc < 2^24,
        # a power-of-two scale), in one kernel instead of MatMulInteger -> Cast -> Mul
        inputs = [
            value,
            self.const(f"{node.name}_one", np.float32(1.0)),
            self.const(f"{node.name}_xzp", np.uint8(x.zero)),
            self.const(f"{node.name}_w8", w),
            self.const(f"{node.name}_accscale", scale),
            self.const(f"{node.name}_wzp", np.zeros(scale.shape, np.int8)),
        ]
        if bias is None:
            self.emit(node, "QGemm", inputs, node.output[0], domain=MS_DOMAIN)
        else:  # the analysis showed acc * s + bias exact: the same number in two steps
            self.emit(node, "Add", [self.emit(node, "QGemm", inputs, domain=MS_DOMAIN), bias], node.output[0])
        self.removed.add(node.name)
        self.plan.integer_dot.append(self.origin.get(node.name, node.name))

    def conv(self, node: onnx.NodeProto) -> None:
        found = self._dot_inputs(node, 0)
        if found is None:
            return
        (x, x_scale, path), (w, w_scale) = found
        chain = self.chain_after(node, w.ndim)
        if chain is None:
            return self.keep_float(node, "no monotone per-channel chain from it into a QuantizeLinear")
        chain_nodes, out_int = chain
        attrs = _attrs(node)
        group = int(attrs.get("group", 1))
        if group != 1:
            return self.keep_float(node, "grouped convolution")
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = self._constant_value(node.input[2])
            if bias is None:
                return self.keep_float(node, "bias is computed at run time")
        conv_attrs = {k: v for k, v in attrs.items() if k in ("auto_pad", "dilations", "kernel_shape", "pads", "strides")}
        self.requantized(node, x, x_scale, path, w, w_scale, chain, bias, conv_attrs, w.ndim, self._whole_window(node, w))

    def _whole_window(self, node: onnx.NodeProto, w: np.ndarray) -> bool:
        """The kernel covers the whole (unpadded, undilated) input image: one output pixel, a matrix product."""
        attrs = _attrs(node)
        if any(attrs.get("pads", [])) or any(d != 1 for d in attrs.get("dilations", [])):
            return False
        if not _unpadded_auto_pad(attrs):
            return False
        shape = self.g.shape(node.input[0])
        return shape is not None and len(shape) == w.ndim and list(shape[2:]) == list(w.shape[2:])

    def requantized(
        self, node, x, x_scale, path, w, w_scale, chain, bias, conv_attrs, rank: int, whole_window: bool = False
    ) -> bool:
        """``node`` (a dot product with weights ``w`` as Conv weights, C_out first) and its ``chain`` into a
        quantizer as one QLinearConv whose requantization reproduces the chain's step function (module docstring);
        ``rank`` 2: a MatMul/Gemm (weights (C_out, K, 1, 1)), run as a QGemm; ``whole_window``: a convolution with
        one output pixel, run as a QGemm on the flattened image. False when it stays in float."""
        chain_nodes, out_int = chain
        axes = tuple(range(1, w.ndim))
        step = x_scale * w_scale  # the float value of one accumulator unit, per channel (exact: powers of two)
        # a two-level input read in its 0/255 form: q = low + (high - low) * b for b = stored / 255 in {0, 1}, so the
        # layer's sum is (high - low) * k + low * sum(w) for the kernel's k = sum(w * b) (times 255: ``unit``); the
        # constant term needs every window full (no padding) unless low is 0
        spread_in = x.spread and (x.low == 0 or not any(conv_attrs.get("pads", [])))
        spread_in = spread_in and _unpadded_auto_pad(conv_attrs)
        if spread_in:  # only where the 0/255 form keeps the int16 pair sums and 2^24 (else the clipped form)
            reach = _acc_bounds(w.astype(np.int64), 0, 1, reduce_axes=axes)
            fits = 4 * 255 * max(abs(int(reach[0].min())), abs(int(reach[1].max()))) < ACC_LIMIT
            spread_in = fits and 2 * 255 * int(np.abs(w.astype(np.int64)).max(initial=0)) <= PAIR_LIMIT
        if spread_in:
            low_acc, high_acc = _acc_bounds(w.astype(np.int64), 0, 1, reduce_axes=axes)
            offset = x.low * w.astype(np.float64).sum(axis=axes) * step
            bias = offset + (0.0 if bias is None else np.broadcast_to(bias.reshape(-1), offset.shape))
            step = step * (x.high - x.low)
            unit, stored_max, x_zero = 255, 255, 0
        else:
            low_acc, high_acc = _acc_bounds(w.astype(np.int64), x.low, x.high, reduce_axes=axes)
            unit, stored_max, x_zero = 1, x.high + x.zero, x.zero
        if max(abs(int(low_acc.min())), abs(int(high_acc.max()))) * unit >= ACC_LIMIT:
            self.keep_float(node, "accumulator exceeds 2^24")
            return False
        thresholds = self.thresholds(chain_nodes, node.output[0], out_int, step, bias, low_acc, high_acc, rank)
        if thresholds is None:
            self.keep_float(node, "its chain to the quantizer is not a monotone step function")
            return False
        levels, low_out, high_out, flip = thresholds
        if high_out - low_out > 255:
            self.keep_float(node, "its quantizer's levels do not fit in uint8")
            return False
        w_max = int(np.abs(w.astype(np.int64)).max(initial=0))
        room = min(127, PAIR_LIMIT // (2 * stored_max or 1))
        if w_max > room:
            self.keep_float(node, "u8 x s8 products could saturate int16 pair sums (AVX2 kernels)")
            return False
        acc_max = max(abs(int(low_acc.min())), abs(int(high_acc.max())), 1)
        spread_out = _fit_spread(levels, low_acc, high_acc, low_out, high_out, flip, unit)
        if spread_out is not None:
            fit = (*spread_out, np.ones(len(levels), np.int64))
        else:
            # weights times an integer factor: the bias then places the thresholds to 1/factor of an accumulator unit
            factor = max(1, min(room // max(w_max, 1), ACC_LIMIT // (4 * acc_max * unit)))
            fit = _fit_requantization(levels, low_acc, high_acc, low_out, high_out, flip, factor, unit)
        if fit is None:
            self.keep_float(node, "no integer bias and float32 multiplier reproduce every threshold")
            return False
        bias_int, multiplier, factors = fit
        signs = np.where(flip, -1, 1) * factors
        w_signed = w.astype(np.int16) * signs.reshape((-1,) + (1,) * (w.ndim - 1))
        if w_signed.min() < -128 or w_signed.max() > 127:
            self.keep_float(node, "a decreasing channel's weights hold -128")
            return False
        value = self.replay_path(x, path, node, spread=spread_in)
        top = high_out - low_out
        params = {
            "one": self.const(f"{node.name}_one", np.float32(1.0)),
            "xzp": self.const(f"{node.name}_xzp", np.uint8(x_zero)),
            "m": self.const(f"{node.name}_m", multiplier.astype(np.float32)),
            "wzp": self.const(f"{node.name}_wzp", np.zeros(len(multiplier), np.int8)),
            "yzp": self.const(f"{node.name}_yzp", np.uint8(0)),
            "b": self.const(f"{node.name}_b", bias_int.astype(np.int32)),
        }
        if whole_window:
            # a QGemm over the batch instead of one single-pixel convolution per image: the image flattened
            # channels-last (ORT's layout for the convolutions before it, so its own transpose back cancels this
            # one) against the weights in (kh, kw, C_in) order; the same sums, the same requantization
            value = self.emit(node, "Transpose", [value], perm=[0, *range(2, w.ndim), 1])
            value = self.emit(node, "Reshape", [value, self.const(f"{node.name}_flat", np.int64([0, -1]))])
            w_gemm = w_signed.transpose(0, *range(2, w.ndim), 1).reshape(len(multiplier), -1).T
            inputs = [value, params["one"], params["xzp"], self.const(f"{node.name}_w8", w_gemm.astype(np.int8))]
            inputs += [params["m"], params["wzp"], params["b"], params["one"], params["yzp"]]
            y = self.emit(node, "QGemm", inputs, domain=MS_DOMAIN)
        elif rank == 2:
            # ORT's QGemm: one u8 x s8 GEMM over the batch, the int32 bias added to the accumulator and the same
            # MLAS requantization (float32 product by a_scale * b_scale / y_scale = the multiplier, clamp, round
            # half to even) as QLinearConv's; a 1x1 QLinearConv would run one matrix-vector product per image and
            # sit between layout transposes
            w_gemm = np.ascontiguousarray(w_signed.reshape(len(multiplier), -1).T.astype(np.int8))
            inputs = [value, params["one"], params["xzp"], self.const(f"{node.name}_w8", w_gemm), params["m"]]
            inputs += [params["wzp"], params["b"], params["one"], params["yzp"]]
            y = self.emit(node, "QGemm", inputs, domain=MS_DOMAIN)
        else:
            extra = -w.shape[1] % 4
            if extra and len(multiplier) >= 16 and len(multiplier) % 8 == 0:
                # MLAS's fast (indirect, "ConvSym") u8 x s8 convolution wants a multiple of 4 input channels, else
                # QLinearConv falls back to im2col and a GEMM (CNV's 3-channel first layer: 1.5x slower): add
                # channels with zero weights (their values never count)
                pads = np.zeros(2 * w.ndim, np.int64)
                pads[w.ndim + 1] = extra
                fill = self.const(f"{node.name}_fill", np.uint8(x_zero))
                value = self.emit(node, "Pad", [value, self.const(f"{node.name}_chpad", pads), fill])
                zeros = np.zeros((w_signed.shape[0], extra, *w_signed.shape[2:]), w_signed.dtype)
                w_signed = np.concatenate([w_signed, zeros], axis=1)
            inputs = [value, params["one"], params["xzp"], self.const(f"{node.name}_w8", w_signed.astype(np.int8))]
            inputs += [params["m"], params["wzp"], params["one"], params["yzp"], params["b"]]
            y = self.emit(node, "QLinearConv", inputs, **conv_attrs)
        unclipped = None
        # the requantization saturates to [0, 255] only: a Clip unless it stays within [0, top] up to the largest
        # accumulator (it is non-decreasing; e.g. an 8-bit quantizer whose top levels no input reaches); unused when
        # every reader pools first or reads the two-level 0/255 form
        highest = np.where(flip, -low_acc, high_acc) * unit * factors
        if top < 255 and _requantize(highest, bias_int, multiplier).max(initial=0) > top:
            unclipped = y
            y = self.emit(
                node, "Clip", [y, self.const(f"{node.name}_ylo", np.uint8(0)), self.const(f"{node.name}_yhi", np.uint8(top))]
            )
        self.removed.add(node.name)
        self.removed.update(n.name for n in chain_nodes)
        if spread_out is not None and unclipped is None:
            unclipped = y  # levels 0 and 255: the 0/255 form is the stored one
        if whole_window:  # the Conv's (N, C, 1, 1), remembering the (N, C) forms for a flattening reader
            image = self.const(f"{node.name}_image", np.int64([0, -1] + [1] * (w.ndim - 2)))
            flat = {y: None, unclipped: None}
            for tensor in (t for t in flat if t is not None):
                flat[tensor] = self.emit(node, "Reshape", [tensor, image])
                self.flat_forms[flat[tensor]] = tensor
            y, unclipped = flat[y], flat.get(unclipped) if unclipped is not None else None
        self.u8[out_int] = _IntInput(y, -low_out, low_out, high_out, unclipped, top, spread_out is not None)
        self._redirect_dequantizers(node, out_int)
        self.plan.requantized.append(self.origin.get(node.name, node.name))
        self.plan.requantized_convs += rank != 2 and not whole_window
        return True

    def _redirect_dequantizers(self, node, out_int: str) -> None:
        """DequantizeLinear readers of the removed integer tensor read the uint8 form with its zero point: the
        same (q - 0) * s float number."""
        x = self.u8[out_int]
        for dq in self.g.consumers.get(out_int, []):
            if dq.op_type != "DequantizeLinear" or dq.name in self.removed:
                continue
            zero = self.const(f"{dq.name}_u8zp", np.uint8(x.zero))
            self.emit(dq, "DequantizeLinear", [x.stored, dq.input[1], zero], dq.output[0])
            self.removed.add(dq.name)

    def _constant_value(self, name: str) -> np.ndarray | None:
        if name in self.g.constants:
            return self.g.constants[name].astype(np.float64)
        dq = self.g.producers.get(name)
        if dq is not None and dq.op_type == "DequantizeLinear" and all(i in self.g.constants for i in dq.input if i):
            ints = self.g.constants[dq.input[0]].astype(np.float64)
            zp = self.g.constants[dq.input[2]].astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
            return (ints - zp) * self.g.constants[dq.input[1]].astype(np.float64)
        return None

    def chain_after(self, node: onnx.NodeProto, rank: int) -> tuple[list[onnx.NodeProto], str] | None:
        """The single-consumer chain of monotone per-channel ops from a Conv's output into ``QuantizeLinear [->
        Clip]``; returns its nodes and the integer tensor it ends in. Other readers of the integer tensor must all
        be DequantizeLinear (they are redirected)."""
        nodes = []
        name = node.output[0]
        while True:
            nxt = self.g.only_consumer(name)
            if nxt is None or nxt.name in self.removed or nxt.input[0] != name:
                return None
            if any(i and i not in self.g.constants for i in nxt.input[1:]):
                return None
            per_channel = nxt.op_type == "BatchNormalization"  # its parameters are per channel by definition
            if not per_channel and not all(self._per_channel(self.g.constants[i], rank) for i in nxt.input[1:] if i):
                return None  # a constant varying along another axis: not one function per channel
            if nxt.op_type == "QuantizeLinear":
                nodes.append(nxt)
                out = nxt.output[0]
                clip = self.g.only_consumer(out)
                if clip is not None and clip.op_type == "Clip":
                    nodes.append(clip)
                    out = clip.output[0]
                users = self.g.consumers.get(out, [])
                if out in self.g.outputs or not all(self._plain_dequantizer(u, out) for u in users):
                    return None
                return nodes, out
            if nxt.op_type == "GreaterOrEqual":  # the bipolar quantizer: x >= c -> Where(+s, -s) -> Quantize
                where = self.g.only_consumer(nxt.output[0])
                if where is None or where.op_type != "Where" or where.input[0] != nxt.output[0]:
                    return None
                if any(i not in self.g.constants for i in where.input[1:]):
                    return None
                if not all(self._per_channel(self.g.constants[i], rank) for i in where.input[1:]):
                    return None
                if np.any(self.g.constants[where.input[1]] < self.g.constants[where.input[2]]):
                    return None  # decreasing choice: still monotone, but keep the rule simple
                nodes += [nxt, where]
                name = where.output[0]
                continue
            if nxt.op_type not in MONOTONE_CHAIN:
                return None
            nodes.append(nxt)
            name = nxt.output[0]

    def _plain_dequantizer(self, node: onnx.NodeProto, tensor: str) -> bool:
        """A per-tensor DequantizeLinear of ``tensor`` with its quantizer's zero point: (stored - zp) * s is q * s,
        so it can read the uint8 form instead."""
        if node.op_type != "DequantizeLinear" or node.input[0] != tensor:
            return False
        scale = self.g.const(node.input[1])
        zp = self.g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.int8)
        if scale is None or scale.size != 1 or zp is None or zp.size != 1:
            return False
        return int(zp.ravel()[0]) == self._quantizer_zero(tensor)

    def _per_channel(self, constant: np.ndarray, rank: int) -> bool:
        """Broadcast against a rank-``rank`` NC... tensor, the constant varies at most along axis 1."""
        if constant.ndim > rank:
            return False
        shape = (1,) * (rank - constant.ndim) + tuple(constant.shape)
        return all(d == 1 for i, d in enumerate(shape) if i != 1)

    def thresholds(self, chain, conv_out: str, out_int: str, step, bias, low_acc, high_acc, rank: int):
        """Evaluate the chain's nodes in ORT on accumulator values, per channel; returns (levels, low_out,
        high_out, flip): ``levels[c]`` lists the smallest accumulator reaching each level above the channel's
        lowest (after flipping decreasing channels), or None when the function is not a monotone step function."""
        from qdeploy.runtime import ort_session

        channels = len(step)
        graph = helper.make_graph(
            [onnx.NodeProto.FromString(n.SerializeToString()) for n in chain],
            "chain",
            [helper.make_tensor_value_info(conv_out, onnx.TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info(out_int, self._int_type(out_int), None)],
            [numpy_helper.from_array(self.g.constants[i], i) for n in chain for i in n.input if i in self.g.constants],
        )
        opset = [o for o in self.g.proto.opset_import if o.domain in ("", "ai.onnx")]
        model = helper.make_model(graph, opset_imports=opset)
        model.ir_version = self.g.proto.ir_version
        session = ort_session(model.SerializeToString(), self.ref_config, None, "the onnxruntime target")
        bias_vec = np.zeros(channels) if bias is None else np.broadcast_to(bias.reshape(-1), (channels,))

        def evaluate(acc: np.ndarray) -> np.ndarray:  # acc: (channels, points) -> integer outputs
            values = acc.astype(np.float64) * step[:, None] + bias_vec[:, None]
            as32 = values.astype(np.float32)
            if not np.array_equal(as32.astype(np.float64), values):
                raise _NotExact
            if rank == 2:  # a MatMul's (points, C)
                return session.run(None, {conv_out: np.ascontiguousarray(as32.T)})[0].T.astype(np.int64)
            feed = as32.reshape((1, *as32.shape) + (1,) * (rank - 3))  # N, C, points, 1...: one value per element
            return session.run(None, {conv_out: feed})[0].reshape(as32.shape).astype(np.int64)

        span = int((high_acc - low_acc).max()) + 1
        try:
            if channels * span <= ENUMERATE_LIMIT:
                acc = low_acc[:, None] + np.arange(span)[None, :]
                acc = np.minimum(acc, high_acc[:, None])
                values = evaluate(acc)
                ends = values[:, [0, -1]]
                flip = ends[:, 0] > ends[:, 1]
                values = np.where(flip[:, None], values[:, ::-1], values)
                acc = np.where(flip[:, None], -acc[:, ::-1], acc)
                if np.any(np.diff(values, axis=1) < 0):
                    return None
                low_out, high_out = int(values.min()), int(values.max())
                levels = []
                for c in range(channels):
                    row = []
                    for level in range(low_out + 1, high_out + 1):
                        hit = np.nonzero(values[c] >= level)[0]
                        row.append(int(acc[c, hit[0]]) if hit.size else None)
                    levels.append((int(values[c, 0]), row))
                return levels, low_out, high_out, flip
            return self._search(evaluate, low_acc, high_acc)
        except _NotExact:
            return None

    def _search(self, evaluate, low_acc, high_acc):
        """Thresholds by bisection (the chain's ops are each monotone, so the step function is monotone)."""
        ends = evaluate(np.stack([low_acc, high_acc], axis=1))
        flip = ends[:, 0] > ends[:, 1]
        lo = np.where(flip, -high_acc, low_acc)
        hi = np.where(flip, -low_acc, high_acc)
        sign = np.where(flip, -1, 1)

        def f(acc):
            return evaluate(acc * sign[:, None])

        ends = f(np.stack([lo, hi], axis=1))
        low_out, high_out = int(ends.min()), int(ends.max())
        targets = np.arange(low_out + 1, high_out + 1)
        if targets.size == 0:
            return [(int(ends[c, 0]), []) for c in range(len(lo))], low_out, high_out, flip
        left = np.repeat(lo[:, None], targets.size, axis=1)  # f(left) < target unless target reached at lo
        right = np.repeat(hi[:, None] + 1, targets.size, axis=1)  # hi + 1: target not reached
        reached_at_lo = ends[:, :1] >= targets[None, :]
        left = np.where(reached_at_lo, lo[:, None] - 1, left)
        while np.any(right - left > 1):
            mid = (left + right) // 2
            mid = np.clip(mid, lo[:, None], hi[:, None])
            hit = f(mid) >= targets[None, :]
            active = right - left > 1
            right = np.where(active & hit, mid, right)
            left = np.where(active & ~hit, mid, left)
        levels = []
        for c in range(len(lo)):
            row = [int(right[c, k]) if right[c, k] <= hi[c] else None for k in range(targets.size)]
            levels.append((int(ends[c, 0]), row))
        return levels, low_out, high_out, flip

    def _int_type(self, name: str) -> int:
        producer = self.g.producers[name]
        if producer.op_type == "Clip":
            producer = self.g.producers[producer.input[0]]
        zp = self.g.constants[producer.input[2]]
        return helper.np_dtype_to_tensor_dtype(zp.dtype)

    def finish(self) -> onnx.ModelProto:
        out = []
        for node in self.g.proto.graph.node:
            out.extend(self.new_nodes.get(node.name, []))
            if node.name not in self.removed:
                out.append(node)
        proto = onnx.ModelProto()
        proto.CopyFrom(self.g.proto)
        del proto.graph.node[:]
        proto.graph.node.extend(_live(out, {o.name for o in proto.graph.output}))
        used = {i for n in proto.graph.node for i in n.input}
        inits = [i for i in list(proto.graph.initializer) + self.initializers if i.name in used]
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(inits)
        if any(n.domain == MS_DOMAIN for n in proto.graph.node) and MS_DOMAIN not in {o.domain for o in proto.opset_import}:
            proto.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
        return proto


class _NotExact(Exception):
    """An accumulator value whose float32 Conv output is not the exact product (outside the shown range)."""


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    needed = set(outputs)
    keep = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    return keep[::-1]


def _acc_bounds(w: np.ndarray, low: int, high: int, reduce_axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Smallest and largest accumulator per output channel for inputs in [low, high] (0 included: padding)."""
    lo_in, hi_in = min(low, 0), max(high, 0)
    small = np.minimum(w * lo_in, w * hi_in).sum(axis=reduce_axes)
    large = np.maximum(w * lo_in, w * hi_in).sum(axis=reduce_axes)
    return small.astype(np.int64), large.astype(np.int64)


def _requantize(acc: np.ndarray, bias: np.ndarray, multiplier: np.ndarray) -> np.ndarray:
    """MLAS's requantization to uint8 with scale 1 and zero point 0 (``MlasRequantizeOutput``): the int32 sum
    converted to float32, times the float32 multiplier, clamped to [0, 255], rounded half to even."""
    value = (acc + bias).astype(np.float32) * multiplier.astype(np.float32)
    return np.rint(np.clip(value.astype(np.float32), np.float32(0), np.float32(255))).astype(np.int64)


def _fit_requantization(
    levels, low_acc, high_acc, low_out: int, high_out: int, flip, factor: int, unit: int = 1
) -> tuple | None:
    """Per channel, an int32 bias, a float32 multiplier and a weight factor (1 or ``factor``) whose requantization of
    ``unit * factor * acc`` (then clipped to [0, high - low]) equals the channel's step function on its whole
    accumulator range, or None (``unit``: the kernel sums ``unit`` times the accumulator, a 0/255 input)."""
    top = high_out - low_out
    biases, multipliers, factors = [], [], []
    for c, (start, row) in enumerate(levels):
        lo, hi = (-int(high_acc[c]), -int(low_acc[c])) if flip[c] else (int(low_acc[c]), int(high_acc[c]))
        found = None
        for weight_factor in dict.fromkeys((1, factor)):
            scale = unit * weight_factor
            for bias, multiplier in _candidates(start - low_out, row, lo, hi, top, scale):
                if _matches(bias, multiplier, row, lo, hi, top, scale):
                    found = (bias, multiplier, weight_factor)
                    break
            if found is not None:
                break
        if found is None:
            return None
        biases.append(found[0])
        multipliers.append(found[1])
        factors.append(found[2])
    return np.array(biases, dtype=np.int64), np.array(multipliers, dtype=np.float32), np.array(factors, np.int64)


def _fit_spread(levels, low_acc, high_acc, low_out: int, high_out: int, flip, unit: int = 1) -> tuple | None:
    """For a two-level output (every channel's values within {low, high}): per channel an int32 bias and the
    multiplier 256 whose requantization of ``unit * acc`` is exactly 0 below the channel's threshold T and 255 from
    it on (``unit * (acc - T + 1)`` is <= 0 or >= 1, times 256 it saturates at either end): the 0/255 form, no Clip.
    None when the output has more than two levels or the sums would pass 2^24."""
    if high_out == low_out:
        return None
    biases = []
    for c, (start, row) in enumerate(levels):
        lo, hi = (-int(high_acc[c]), -int(low_acc[c])) if flip[c] else (int(low_acc[c]), int(high_acc[c]))
        steps = {t for t in row if t is not None and t > lo}
        reached = [k for k, t in enumerate(row, start=low_out + 1) if t is not None]
        top_value = max(reached, default=start)
        if start not in (low_out, high_out) or top_value not in (low_out, high_out) or len(steps) > 1:
            return None
        if start == high_out:
            bias = -unit * lo + 1
        elif not steps:
            bias = -unit * hi - 1
        else:
            bias = -unit * (steps.pop() - 1)
        if unit * max(abs(lo), abs(hi)) + abs(bias) >= ACC_LIMIT:
            return None
        biases.append(bias)
    multipliers = np.full(len(biases), 256.0, dtype=np.float32)
    return np.array(biases, dtype=np.int64), multipliers


def _slope_and_offset(row: list, lo: int, hi: int) -> tuple[float, float] | None:
    """A real slope u and offset beta putting the crossing of every stored level k at ``(k - 0.5) u - beta``
    strictly inside (t_k - 1, t_k] for the thresholds inside the range: the middle of the feasible intervals."""
    reached = [(k, t) for k, t in enumerate(row, start=1) if t is not None and lo < t <= hi]
    if len(reached) < 2 or reached[-1][1] == reached[0][1]:
        return None
    ks = np.array([k for k, _ in reached], dtype=np.float64)
    ts = np.array([t for _, t in reached], dtype=np.float64)
    i, j = np.triu_indices(len(ks), 1)
    gap = ks[j] - ks[i]
    u_lo = float(np.max((ts[j] - ts[i] - 1) / gap))
    u_hi = float(np.min((ts[j] - ts[i] + 1) / gap))
    if not u_lo < u_hi:
        return None
    u = (u_lo + u_hi) / 2
    b_lo = float(np.max((ks - 0.5) * u - ts))
    b_hi = float(np.min((ks - 0.5) * u - ts + 1))
    if not b_lo < b_hi:
        return None
    return u, (b_lo + b_hi) / 2


def _candidates(start: int, row: list, lo: int, hi: int, top: int, scale: int = 1):
    """Bias/multiplier pairs worth checking for the requantization of ``scale * acc``: the middle of the feasible
    slope/offset region, the step function's mean slope, and flat forms for constant channels (``start``: the stored
    value at the range's low end)."""
    steps = [t for t in row if t is not None and t > lo]
    if not steps:  # constant `start` over the range
        if start == 0:
            yield -scale * hi - 1, np.float32(1.0)
        if start == top:
            yield -scale * lo + top, np.float32(1.0)
        width = scale * max(abs(lo), abs(hi)) + 1
        shift = 1 << int(math.ceil(math.log2(4 * width)))
        yield start * shift, np.float32(1.0 / shift)
        return
    fitted = _slope_and_offset(row, lo, hi)
    if fitted is not None:
        u, beta = fitted
        multiplier = np.float32(1.0 / (u * scale))
        for delta in (0, -1, 1):
            yield int(round(beta * scale)) + delta, multiplier
    first, last, count = steps[0], steps[-1], len(steps)
    slopes = []
    if last > first:
        slopes += [(last - first) / (count - 1 or 1), (last - first + 1) / count, (last - first) / count]
    if count > 1 and last > first + 1:
        slopes.append((last - first - 1) / (count - 1))
    if last == first:  # every step at one accumulator value (bipolar: -1 -> +1 is two levels)
        slopes.append(1.0 / (count + 1))
    slopes.append(float(hi - lo + 2) / count)
    # a quantizer right after the dot has an exact slope: a power of two (power-of-two scales) or an integer
    slopes += [2.0 ** round(math.log2(u)) for u in slopes[:1] if u > 0] + [float(round(u)) for u in slopes[:1] if u >= 1]
    for u in slopes:
        if u <= 0:
            continue
        for tweak in (1.0, 1 + 2**-20, 1 - 2**-20):
            multiplier = np.float32(1.0 / (u * tweak * scale))
            base = int(math.ceil((start + 0.5) / float(multiplier) - first * scale))
            for delta in (0, -1, 1, -2, 2):
                yield base + delta, multiplier


def _matches(bias: int, multiplier, row: list, lo: int, hi: int, top: int, scale: int = 1) -> bool:
    """The requantization of ``scale * acc``, clipped to [0, top], is the step function: for every stored level k,
    the accumulators reaching k are exactly those >= its threshold ``row[k - 1]`` (None: none on [lo, hi]). The
    requantization is non-decreasing (multiplier > 0), so checking both sides of each threshold proves equality
    on [lo, hi]."""
    if abs(bias) >= 2**31 - 1 or scale * max(abs(lo), abs(hi)) + abs(bias) >= ACC_LIMIT or not multiplier > 0:
        return False
    thresholds = np.array([hi + 1 if t is None else max(t, lo) for t in row], dtype=np.int64)
    levels = np.arange(1, len(row) + 1)
    b, m = np.int64(bias), np.float32(multiplier)
    reached = np.clip(_requantize(scale * np.minimum(thresholds, hi), b, m), 0, top)
    below = np.clip(_requantize(scale * np.maximum(thresholds - 1, lo), b, m), 0, top)
    at_threshold = np.where(thresholds <= hi, reached >= levels, True)
    under = np.where(thresholds > lo, below < levels, True)
    return bool(np.all(at_threshold) and np.all(under))


def integerize(
    proto: onnx.ModelProto,
    origin: dict[str, str],
    exact: set[str],
    ref_config: dict[str, str],
) -> tuple[onnx.ModelProto, IntegerPlan]:
    """Integer layers for every Conv/MatMul of ``proto`` where they are shown exact (module docstring); ``exact``
    holds the tensors the exactness analysis shows exact; returns the new model and what was done."""
    pass_ = _Integerizer(proto, origin, exact, ref_config)
    pass_.run()
    if not pass_.plan.changed:
        return proto, pass_.plan
    result = pass_.finish()
    onnx.checker.check_model(result)
    log.info("onnxruntime integer layers: %s", pass_.plan.summary())
    return result, pass_.plan
