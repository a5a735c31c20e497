"""Lower a QONNX graph to integer arithmetic plus ``MultiThreshold`` nodes, exactly as the golden executor computes it.

Many real models have no fixed-point form as they stand: float (non-power-of-two) scales, BatchNorm between a
layer and its activation quantizer, FINN-style float pre-scaling of the input (``2x - 1``), float biases,
``BipolarQuant``. What they all share is the shape ``integer tensor -> monotone elementwise float ops -> Quant``:
the quantizer's output is a monotone step function of an integer (or of the float input), so it equals a
count of thresholds crossed — FINN's streamlining idea. Unlike FINN, the thresholds here are not derived
algebraically: they are found by *evaluating the graph's own nodes with the golden executor* at candidate
inputs (bisection over integers, or over float32 bit patterns for the float model input), so they reproduce
the golden float32 arithmetic — rounding ties included — rather than the real-number ideal.

After this pass:
- every MatMul/Gemm/Conv multiplies integer levels by integer weights (the weights' ``Quant`` is folded into
  integers ``k`` and its scale moves into a ``Mul`` after the layer), so its output is an exact integer
  accumulator;
- every activation ``Quant``/``BipolarQuant`` together with the elementwise chain feeding it (scale ``Mul``,
  bias ``Add``, ``BatchNormalization``, ``Relu``, ``Mul``/``Div``/``Sub``/``Add`` by constants) becomes one
  ``MultiThreshold`` producing integer levels, followed by a ``Mul`` by the quantizer's scale;
- what follows the last integer tensor (a float ``Mul`` by the scale, BatchNorm on the logits, ...) is left as is:
  a float epilogue that a hardware target runs on the host.

Channels whose chain is decreasing (negative BatchNorm gamma) get their integer weights negated, so every
threshold compares with ``>=`` as qonnx's ``MultiThreshold`` does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import SortGraph

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import extract_chain, node_attr
from qdeploy.ops import AFFINE_OPS, LAYER_OPS, LAYOUT_OPS, RESHAPE_OPS, SCALED_QUANT_OPS
from qdeploy.precision import THRESHOLDS_SUFFIX, grid_of_constant, quant_int_range

log = logging.getLogger(__name__)

#: non-decreasing element-wise functions (brevitas's QuantTanh/QuantSigmoid put Tanh/Sigmoid before the Quant): a
#: quantizer after them is still a step function of the integer below, its thresholds found by the golden executor
MONOTONE_OPS = ("Relu", "Sigmoid", "Tanh", "Clip", "LeakyRelu", "HardSigmoid")
ELEMENTWISE = (*AFFINE_OPS, *MONOTONE_OPS)
LAYOUT = RESHAPE_OPS
#: ops that only move or select values: a positive scalar scale commutes with them (nearest resizing, pixel shuffle)
MOVES_VALUES = ("MaxPool", "Resize", "Upsample", "DepthToSpace")
LAYERS = LAYER_OPS
QUANTIZERS = (*SCALED_QUANT_OPS, "BipolarQuant")  # Trunc has no threshold form here
FLOAT32_EXACT_INT = 2**24  # integers above this are not all representable in float32 (MultiThreshold compares float32)
MAX_TABLE = 1 << 16  # a finite integer input with at most this many values is tabulated, not bisected


@dataclass(frozen=True)
class IntegerTensor:
    """A tensor of integers with per-channel bounds (channel axis 1); ``values``: the only values it takes, when
    its datatype says so (BIPOLAR is -1 and +1, not 0)."""

    low: np.ndarray
    high: np.ndarray
    values: tuple[int, ...] | None = None


def _const(model: ModelWrapper, name: str) -> np.ndarray | None:
    return model.get_initializer(name) if name else None


def _scalar_operands(model: ModelWrapper, node) -> bool:
    """True when every constant operand of an element-wise node is a scalar (absent ones, as Clip's, aside)."""
    constants = [_const(model, name) for name in node.input[1:] if name]
    return all(c is not None and c.size == 1 for c in constants)


def _zero_pad_value(model: ModelWrapper, node) -> bool:
    """A constant Pad's border value is zero (absent, the default, or a zero constant)."""
    if len(node.input) < 3 or not node.input[2]:
        return float(node_attr(node, "value", 0.0)) == 0.0
    value = _const(model, node.input[2])
    return value is not None and bool(np.all(value == 0))


def _moves_values(model: ModelWrapper, node) -> bool:
    """Whether ``node`` only moves or selects its input's values: MaxPool, DepthToSpace, nearest Resize/Upsample. A
    linear or cubic Resize mixes neighbours with fractional weights: its output is no integer level (and a scale
    pulled across it would round differently), so quantizers after it keep their float form."""
    if node.op_type in ("Resize", "Upsample"):
        return str(node_attr(node, "mode", "nearest")) == "nearest"
    if node.op_type == "Pad":  # edge/reflect/wrap copy values; a zero border is level 0 at any positive scale
        return str(node_attr(node, "mode", "constant")) != "constant" or _zero_pad_value(model, node)
    return node.op_type in MOVES_VALUES


def _is_datapath_quant(model: ModelWrapper, node) -> bool:
    return node.op_type in QUANTIZERS and _const(model, node.input[0]) is None


class LowerToThresholds(Transformation):
    """Integer layers + MultiThreshold activations (see the module docstring). One application lowers everything."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        lowering = _Lowering(model)
        changed = lowering.run()
        model = lowering.model
        if changed:
            from qonnx.transformation.infer_shapes import InferShapes

            _remove_dead_nodes(model)
            model = model.transform(SortGraph(), cleanup=False).transform(InferShapes())
        return model, False  # one pass lowers every layer it can; a second application finds nothing new


class _Lowering:
    def __init__(self, model: ModelWrapper):
        self.model = model
        self.integers: dict[str, IntegerTensor] = {}
        # real tensor -> the Mul(integers, scalar scale) node producing it, for moving layout ops onto the integers
        self.scaled: set[str] = set()
        # accumulator -> its layer's real scale and in-layer bias per channel, in float64: the graph computes the
        # layer's output as one float32 rounding of (sum * scale + bias) (the order-free value), which the
        # float32 Mul/Add the layer is rewritten into would round twice
        self.exact_affine: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        self.float_input = model.graph.input[0].name
        self.float_derived: set[str] = set()
        dtype = model.get_tensor_datatype(self.float_input)
        if dtype.is_integer() and dtype.bitwidth() <= 16:
            low, high = int(dtype.min()), int(dtype.max())
            values = tuple(v for v in range(low, high + 1) if dtype.allowed(v))
            self.integers[self.float_input] = IntegerTensor(np.asarray(low), np.asarray(high), values)
        else:
            self.float_derived.add(self.float_input)
        self.changed = False

    # -- graph walking ---------------------------------------------------------------------------------------------

    def run(self) -> bool:
        for name in [node.name for node in self.model.graph.node]:
            node = self._node(name)
            if node is None:
                continue  # removed while lowering an earlier node
            if node.op_type == "Concat":
                self._concat_levels(node)
                continue
            moves = node.op_type in LAYOUT or _moves_values(self.model, node)
            if moves and node.input[0] in self.scaled:
                self._swap_with_scale(node)
            if node.op_type in LAYOUT and node.input[0] in self.float_derived:
                self.float_derived.add(node.output[0])
            elif moves and node.input[0] in self.integers:
                source = self.integers[node.input[0]]
                low, high = np.min(source.low), np.max(source.high)
                if node.op_type == "Pad" and str(node_attr(node, "mode", "constant")) == "constant":
                    low, high = min(low, 0), max(high, 0)  # the zero border joins the values
                self.integers[node.output[0]] = IntegerTensor(np.asarray(low), np.asarray(high))
            elif node.op_type in LAYERS:
                self._lower_layer(node)
            elif _is_datapath_quant(self.model, node):
                self._lower_quantizer(node)
        return self.changed

    def _node(self, name: str):
        return next((node for node in self.model.graph.node if node.name == name), None)

    def _swap_with_scale(self, layout) -> None:
        """``Mul(levels, s) -> Flatten`` becomes ``Flatten(levels) -> Mul(s)``: a positive scalar scale commutes with
        layout ops and max pooling, and the layer after them then sees the integer levels."""
        model = self.model
        self.scaled.discard(layout.input[0])
        rescale = model.find_producer(layout.input[0])
        if len(model.find_consumers(rescale.output[0]) or []) != 1:
            return
        levels, real_out = rescale.input[0], layout.output[0]
        moved = model.make_new_valueinfo_name()
        layout.input[0], layout.output[0] = levels, moved
        rescale.input[0], rescale.output[0] = moved, real_out
        # node order is restored by SortGraph at the end of the pass
        model.set_tensor_shape(moved, model.get_tensor_shape(real_out))
        self.scaled.add(real_out)

    def _concat_levels(self, concat) -> None:
        """``Concat(Mul(l1, s), Mul(l2, s), ...)`` becomes ``Concat(l1, l2, ...) -> Mul(s)`` when every input is a
        quantizer's levels times one and the same scale (branches sharing a quantizer, brevitas's QuantCat): a
        concatenation only moves values, so the one Mul after it computes the same float32 values bit for bit, and
        the layer after it sees integer levels. Inputs with different scales are left as they are."""
        model = self.model
        inputs = list(concat.input)
        if not inputs or any(name not in self.scaled for name in inputs):
            return
        rescales = [model.find_producer(name) for name in inputs]
        scales = {float(np.asarray(_const(model, node.input[1])).ravel()[0]) for node in rescales}
        if len(scales) != 1 or any(node.input[0] not in self.integers for node in rescales):
            return
        for index, node in enumerate(rescales):
            concat.input[index] = node.input[0]
        real_out, levels = concat.output[0], model.make_new_valueinfo_name()
        concat.output[0] = levels
        model.set_tensor_shape(levels, model.get_tensor_shape(real_out))
        sources = [self.integers[node.input[0]] for node in rescales]
        self.integers[levels] = IntegerTensor(
            np.asarray(min(int(np.min(info.low)) for info in sources)),
            np.asarray(max(int(np.max(info.high)) for info in sources)),
        )
        self._rescale(levels, real_out, scales.pop(), name=f"{concat.name}_scale")  # rescales left unread: dead nodes
        self.changed = True

    def _chain_to_source(self, tensor: str) -> tuple[str, list] | None:
        """Walk back from ``tensor`` through elementwise ops with constant operands to an integer tensor or the float
        input. Returns (source tensor, chain nodes in execution order) or None. A chain node may feed other nodes too
        (a quantized tensor read by two branches): the lowering rewires only this consumer and leaves the chain to
        the others; chain nodes nobody reads any more go with the dead nodes at the end of the pass."""
        chain = []
        while tensor not in self.integers and tensor not in self.float_derived:
            producer = self.model.find_producer(tensor)
            if producer is None or producer.op_type not in ELEMENTWISE:
                return None
            if any(_const(self.model, name) is None for name in producer.input[1:] if name):
                return None
            chain.insert(0, producer)
            tensor = producer.input[0]
        return tensor, chain

    # -- layers: integer weights, scale moved behind ----------------------------------------------------------------

    def _lower_layer(self, node) -> None:
        model = self.model
        found = self._chain_to_source(node.input[0])
        if found is None:
            return
        source, chain = found
        if source in self.float_derived:
            return  # a layer on the raw float input: no integer form (left for the target to refuse by name)
        weight_ints, weight_scale = self._integer_weights(node)
        if weight_ints is None:
            return
        bias = self._constant_value(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and bias is None:
            return
        if node.op_type == "Gemm":
            if node_attr(node, "transA", 0) or node_attr(node, "alpha", 1.0) != 1.0 or node_attr(node, "beta", 1.0) != 1.0:
                return
            if not node_attr(node, "transB", 0):
                weight_ints, weight_scale = weight_ints.T, np.asarray(weight_scale).T  # to [out, in] like transB=1
            full = np.broadcast_to(weight_scale, weight_ints.shape)
            matrix, channel_scale = weight_ints.T, full.max(axis=1)
            uniform = np.all(full == channel_scale[:, None])
        elif node.op_type == "MatMul":
            matrix = weight_ints
            full = np.broadcast_to(weight_scale, weight_ints.shape)
            channel_scale = full.max(axis=0)
            uniform = np.all(full == channel_scale[None, :])
        else:  # Conv: weights [out, in/group, k...], scale per output channel
            if int(node_attr(node, "group", 1)) != 1:
                return
            matrix = weight_ints
            full = np.broadcast_to(weight_scale, weight_ints.shape).reshape(weight_ints.shape[0], -1)
            channel_scale = full.max(axis=1)
            uniform = np.all(full == channel_scale[:, None])
        if not uniform:
            return  # weight scales vary inside an output channel: no per-channel integer form
        if chain:
            level_scale = self._integer_levels(source, chain, node)  # mutates the graph: every check is above
            if level_scale is None:
                return
            source, input_scale = level_scale
        else:
            input_scale = 1.0

        low, high = self.integers[source].low, self.integers[source].high
        lo, hi = int(np.min(low)), int(np.max(high))
        if node.op_type == "Conv":
            reduce_axes = tuple(range(1, matrix.ndim))
            acc_low = np.minimum(matrix * lo, matrix * hi).sum(axis=reduce_axes)
            acc_high = np.maximum(matrix * lo, matrix * hi).sum(axis=reduce_axes)
        else:
            acc_low = np.minimum(matrix * lo, matrix * hi).sum(axis=0)
            acc_high = np.maximum(matrix * lo, matrix * hi).sum(axis=0)
        if max(abs(int(acc_low.min())), abs(int(acc_high.max()))) >= FLOAT32_EXACT_INT:
            raise UnsupportedModelError(
                f"node {node.name}: integer accumulator exceeds 2^24, beyond what float32 thresholds compare exactly; "
                "use fewer bits on its inputs or weights (for a float input, a narrower --input-quant such as int8), "
                "or --target onnxruntime"
            )

        # Rewrite: layer on integers, then Mul by the combined scale (+ Add of the bias) to the original output.
        accumulator = model.make_new_valueinfo_name()
        output = node.output[0]
        scale = (float(input_scale) * channel_scale.astype(np.float64)).astype(np.float32)
        channel_shape = [1, -1] + [1] * (len(model.get_tensor_shape(output)) - 2)
        new_nodes = []
        weight_name = model.make_new_valueinfo_name()
        if node.op_type == "Conv":
            layer = helper.make_node("Conv", [source, weight_name], [accumulator], name=node.name)
            layer.attribute.extend(a for a in node.attribute)
        else:
            layer = helper.make_node("MatMul", [source, weight_name], [accumulator], name=node.name)
        model.set_initializer(weight_name, matrix.astype(np.float32))
        model.set_tensor_datatype(weight_name, _int_datatype(matrix))
        new_nodes.append(layer)
        scaled = model.make_new_valueinfo_name() if bias is not None else output
        scale_name = model.make_new_valueinfo_name()
        model.set_initializer(scale_name, scale.reshape(channel_shape))
        new_nodes.append(helper.make_node("Mul", [accumulator, scale_name], [scaled], name=f"{node.name}_scale"))
        if bias is not None:
            bias_name = model.make_new_valueinfo_name()
            model.set_initializer(bias_name, np.asarray(bias, dtype=np.float32).reshape(channel_shape))
            new_nodes.append(helper.make_node("Add", [scaled, bias_name], [output], name=f"{node.name}_bias"))
        self._remove_nodes([node.name])
        model.graph.node.extend(new_nodes)
        out_shape = model.get_tensor_shape(output)
        for name in (accumulator, scaled):
            model.set_tensor_shape(name, out_shape)
        self.integers[accumulator] = IntegerTensor(acc_low.astype(np.int64), acc_high.astype(np.int64))
        channels = len(channel_scale)
        exact_bias = None if bias is None else np.broadcast_to(np.asarray(bias, dtype=np.float64).ravel(), (channels,))
        self.exact_affine[accumulator] = (float(input_scale) * channel_scale.astype(np.float64), exact_bias)
        self.changed = True

    def _constant_value(self, name: str) -> np.ndarray | None:
        """A constant, or the value of a Quant on a constant (brevitas's Int32Bias), as the golden executor has it."""
        value = _const(self.model, name)
        if value is not None:
            return value
        quant = self.model.find_producer(name)
        if quant is None or quant.op_type not in SCALED_QUANT_OPS:
            return None
        params = [_const(self.model, n) for n in quant.input[:4]]
        if any(p is None for p in params):
            return None
        from qonnx.custom_op.general.quant import quant as qonnx_quant

        signed, narrow = bool(node_attr(quant, "signed", 1)), bool(node_attr(quant, "narrow", 0))
        rounding = str(node_attr(quant, "rounding_mode", "ROUND")).upper()
        return np.asarray(qonnx_quant(*params, signed, narrow, rounding), dtype=np.float32)

    def _integer_weights(self, node) -> tuple[np.ndarray | None, np.ndarray]:
        """Integer weights k and their scale s (weights = k * s), from a weight Quant or a fixed-point constant."""
        model = self.model
        weight = _const(model, node.input[1])
        if weight is not None:
            grid = grid_of_constant(weight, node.input[1])
            return np.ldexp(weight.astype(np.float64), -grid.lsb).astype(np.int64), np.asarray(2.0**grid.lsb)
        quant = model.find_producer(node.input[1])
        if quant is None or quant.op_type not in SCALED_QUANT_OPS:
            if quant is not None and quant.op_type == "BipolarQuant" and _const(model, quant.input[0]) is not None:
                values = _const(model, quant.input[0])
                scale = np.asarray(_const(model, quant.input[1]), dtype=np.float64)
                return np.where(values >= 0, 1, -1).astype(np.int64), scale
            return None, np.asarray(1.0)
        values = _const(model, quant.input[0])
        scale, zeropt, bits = (_const(model, name) for name in quant.input[1:4])
        if values is None or scale is None or zeropt is None or bits is None:
            return None, np.asarray(1.0)
        from qonnx.custom_op.general.quant import quant as qonnx_quant

        signed, narrow = bool(node_attr(quant, "signed", 1)), bool(node_attr(quant, "narrow", 0))
        rounding = str(node_attr(quant, "rounding_mode", "ROUND")).upper()
        dequantized = qonnx_quant(values, scale, zeropt, bits, signed, narrow, rounding)
        # with an integer zero point z (brevitas's ShiftedUint8 weights) the weights are (q - z) * scale: still
        # integers k times the scale
        ints = np.round(np.asarray(dequantized, dtype=np.float64) / scale)
        if not np.allclose(ints * np.asarray(scale, dtype=np.float64), dequantized, rtol=1e-6, atol=0):
            return None, np.asarray(1.0)  # the quantized weights are not k * scale
        return ints.astype(np.int64), np.asarray(scale, dtype=np.float64)

    def _integer_levels(self, source: str, chain: list, layer) -> tuple[str, float] | None:
        """The real value entering a layer from an elementwise chain on an integer tensor, as ``levels * step``.

        A chain of positive scalar ``Mul``/``Div`` only rescales the integers (the usual ``Mul`` by a quantizer's
        scale): the layer takes them directly. Any other chain (FINN's ``(x + 1) / 2`` on a bipolar input) is
        tabulated over the tensor's values; evenly spaced results become a MultiThreshold to integer levels.
        """
        model = self.model
        if not all(_scalar_operands(model, node) for node in chain):
            return None
        if all(node.op_type in ("Mul", "Div") for node in chain):
            step = 1.0
            for node in chain:
                constant = float(_const(model, node.input[1]).ravel()[0])
                step = step * constant if node.op_type == "Mul" else step / constant
            if step <= 0:
                return None
            self._remove_nodes(self._unshared(chain))
            return source, step
        info = self.integers[source]
        lo, hi = int(np.min(info.low)), int(np.max(info.high))
        if hi - lo + 1 > MAX_TABLE:
            return None
        inputs = np.asarray(info.values if info.values is not None else range(lo, hi + 1), dtype=np.float32)
        values = _ChainEvaluator(model, source, chain, chain[-1].output[0], 1).evaluate(inputs[:, None])[:, 0]
        values = values.astype(np.float64)
        distinct = np.unique(values)
        if np.any(np.diff(values) < 0) or distinct.size < 2:
            return None
        step = float(np.min(np.diff(distinct)))
        levels = np.round(values / step)
        if not np.allclose(levels * step, values, rtol=1e-6, atol=0):
            return None
        levels = levels.astype(np.int64)
        thresholds = [inputs[np.argmax(levels >= level)] for level in range(int(levels[0]) + 1, int(levels[-1]) + 1)]
        target = self._insert_multithreshold(
            source, np.asarray(thresholds, dtype=np.float32)[None, :], int(levels[0]), 1, layer, None
        )
        self.integers[target] = IntegerTensor(np.asarray(levels[0]), np.asarray(levels[-1]))
        self._remove_nodes(self._unshared(chain))
        return target, step

    # -- activation quantizers: chain + Quant -> MultiThreshold + Mul(scale) --------------------------------------

    def _lower_quantizer(self, quant) -> None:
        model = self.model
        found = self._chain_to_source(quant.input[0])
        if found is None:
            self._lower_sum_quantizer(quant)
            return
        source, chain = found
        spec = _quantizer_levels(model, quant)
        if spec is None:
            return
        first_level, level_count, out_step, out_scale = spec
        names = [*self._unshared(chain), quant.name]
        channels = self._channels(source)
        if source in self.integers:
            direction = _chain_direction(model, chain, channels)
            if direction is None:
                return
            if np.any(direction < 0):
                if not self._negate_channels(source, direction < 0):
                    return
            info = self.integers[source]
            low = np.broadcast_to(info.low, (channels,)).astype(np.int64)
            high = np.broadcast_to(info.high, (channels,)).astype(np.int64)
            evaluator = _ChainEvaluator(
                model, source, chain, quant.output[0], channels, rank=self._rank(source), exact=self._exact(source, chain)
            )
            thresholds = _integer_thresholds(evaluator, low, high, first_level, level_count, out_step, out_scale)
            # merged, the upstream MultiThreshold counts this quantizer's levels: only when nothing else reads the
            # chain in between (a residual skip reading the scaled levels would see the wrong ones)
            shared = len(self._unshared(chain)) < len(chain)
            if not shared and self._merge_upstream(source, thresholds, first_level, out_step):
                self._rescale(source, quant.output[0], out_scale)
                self._remove_nodes(names)
                self.changed = True
                return
        else:
            if any(n.op_type == "BatchNormalization" or not _scalar_operands(model, n) for n in chain):
                return  # per-channel float pre-processing of the raw input: not lowered
            if _chain_direction(model, chain, 1) is None or np.any(_chain_direction(model, chain, 1) < 0):
                return
            evaluator = _ChainEvaluator(model, source, chain, quant.output[0], 1, rank=self._rank(source))
            thresholds = _float_thresholds(evaluator, first_level, level_count, out_step, out_scale)
        levels = self._insert_multithreshold(source, thresholds, first_level, out_step, quant, quant.output[0], out_scale)
        self.integers[levels] = IntegerTensor(np.asarray(first_level), np.asarray(first_level + level_count * out_step))
        self._remove_nodes(names)
        self.changed = True

    # -- a quantizer on the float sum of two quantized branches (residual Add, QuantEltwiseAdd) ---------------------

    def _lower_sum_quantizer(self, quant) -> None:
        """``Quant(chain(Add(Mul(a, sA), Mul(b, sB))))`` with integer levels ``a``, ``b`` from MultiThresholds becomes
        ``MultiThreshold(a * mA + b * mB)`` (power-of-two scales too: in a thresholded graph the quantizer after the
        sum must become levels for the layers after it). No fixed-point type holds a float sum, but the quantizer's
        output is a function of the pair ``(a, b)`` only, finitely many values. The golden executor tabulates it
        over every pair; the smallest integer weights ``mA``, ``mB`` (the ratio sA / sB in growing precision) under
        which that table is a monotone step function of ``a * mA + b * mB`` give the thresholds, so the integer form
        reproduces the graph's own float32 rounding on every pair, not the real-number sum's. ``mA`` goes into a
        copy of ``a``'s MultiThreshold (``out_scale``), as does ``mB``: the sum is then a plain integer Add. Left as
        it is (the target refuses it by name) when no such weights exist: the graph's float32 rounding orders some
        pairs against their real sums."""
        model = self.model
        spec = _quantizer_levels(model, quant)
        walk = self._chain_to_sum(quant.input[0])
        if spec is None or walk is None:
            return
        add, chain = walk
        terms = [self._scaled_levels(name) for name in add.input]
        if any(term is None for term in terms):
            self._lower_layer_plus_levels(quant, add, chain, spec)
            return
        first_level, level_count, out_step, out_scale = spec
        grids = [self._level_values(levels) for levels, _ in terms]
        if grids[0].size * grids[1].size > MAX_TABLE:
            return
        pair_a, pair_b = (grid.ravel() for grid in np.meshgrid(grids[0], grids[1], indexing="ij"))
        channels, rank = self._channels(add.output[0]), self._rank(add.output[0])
        nodes = [*(model.find_producer(name) for name in add.input), add, *chain, quant]
        sources = tuple(levels for levels, _ in terms)
        evaluate = _PairEvaluator(model, nodes, [], sources, quant.output[0], (channels, rank), None)
        per_channel = [np.broadcast_to(pairs[:, None], (pairs.size, channels)) for pairs in (pair_a, pair_b)]
        out = evaluate(*per_channel)
        table = np.round(out / out_scale).astype(np.int64)  # [pairs, channels]
        weights = _sum_weights(pair_a, pair_b, table, terms[0][1] / terms[1][1])
        if weights is None:
            log.info("%s: the float sum at %s orders some level pairs against their real sums", quant.name, add.name)
            return
        accumulator = pair_a * weights[0] + pair_b * weights[1]
        targets = first_level + out_step * np.arange(1, level_count + 1)
        reached = table[:, :, None] >= targets[None, None, :]  # [pairs, channels, levels]
        never = int(accumulator.max()) + 1
        thresholds = np.where(reached, accumulator[:, None, None], never).min(axis=0)  # [channels, levels]
        summands = [self._scaled_copy(levels, weight, add.name) for (levels, _), weight in zip(terms, weights, strict=True)]
        if any(summand is None for summand in summands):
            return
        total = model.make_new_valueinfo_name()
        model.graph.node.append(helper.make_node("Add", summands, [total], name=f"{add.name}_levels"))
        model.set_tensor_shape(total, model.get_tensor_shape(add.output[0]))
        low = sum(int(np.min(self.integers[name].low)) for name in summands)
        high = sum(int(np.max(self.integers[name].high)) for name in summands)
        self.integers[total] = IntegerTensor(np.asarray(low), np.asarray(high))
        levels = self._insert_multithreshold(
            total, thresholds.astype(np.float32), first_level, out_step, quant, quant.output[0], out_scale
        )
        self.integers[levels] = IntegerTensor(np.asarray(first_level), np.asarray(first_level + level_count * out_step))
        self._remove_nodes([*self._unshared(chain), quant.name])  # the float Add and rescales go with the dead nodes
        self.changed = True

    def _lower_layer_plus_levels(self, quant, add, chain: list, spec: tuple) -> None:
        """``Quant(chain(Add(layer output, Mul(b, sB))))``: a layer's float output (scale, bias, BatchNorm: a
        non-decreasing chain on its integer accumulator ``acc``) plus quantized levels ``b`` (brevitas ResNets add the
        conv branch to the quantized skip before requantizing). For each level ``b`` the quantizer's output is a
        step function of ``acc`` (every float32 op on the way rounds monotonically), its steps found by bisection
        with the golden executor. Integer weights ``mA`` per channel (into the layer's weights) and ``mB`` (into a
        copy of ``b``'s MultiThreshold) under which one threshold on ``acc * mA + b * mB`` puts every one of those
        steps where it is exist when the float32 arithmetic orders the pairs as their real sums; else (or when
        the sum would pass 2^24) the graph is left as it is and the target refuses the Add by name."""
        model = self.model
        found = [self._chain_to_source(name) for name in add.input]
        levels_side = [index for index, term in enumerate(found) if term and self._scaled_levels(add.input[index])]
        if len(levels_side) != 1 or any(term is None for term in found):
            return
        (acc, layer_chain), (levels, _) = found[1 - levels_side[0]], found[levels_side[0]]
        layer = model.find_producer(acc)
        if acc not in self.integers or layer is None or layer.op_type not in ("MatMul", "Conv"):
            return
        if (
            len(model.find_consumers(acc) or []) != 1
            or not layer_chain
            or self._unshared(layer_chain) != [node.name for node in layer_chain]
        ):
            return  # the accumulator or its float value is read elsewhere too: its weights may not be rescaled
        if len(model.find_consumers(add.output[0]) or []) != 1 or self._unshared(chain) != [n.name for n in chain]:
            return  # the float sum is read elsewhere too: the layer's float output must stay
        channels, rank = self._channels(add.output[0]), self._rank(add.output[0])
        if self._channels(acc) != channels or channels == 1 and rank > 2:
            return
        for part in (layer_chain, chain):
            direction = _chain_direction(model, part, channels)
            if direction is None or np.any(direction < 0):
                return
        first_level, level_count, out_step, out_scale = spec
        info = self.integers[acc]
        low = np.broadcast_to(info.low, (channels,)).astype(np.int64)
        high = np.broadcast_to(info.high, (channels,)).astype(np.int64)
        b_values = self._level_values(levels)
        exact = self._exact(acc, layer_chain)
        start = layer_chain[exact[2] - 1].output[0] if exact else acc
        rest = layer_chain[exact[2] :] if exact else layer_chain
        levels_chain = found[levels_side[0]][1]
        nodes = [*rest, *levels_chain, add, *chain, quant]
        evaluate = _PairEvaluator(model, nodes, rest, (start, levels), quant.output[0], (channels, rank), exact)
        targets = first_level + out_step * np.arange(1, level_count + 1)
        # steps[b, j, c]: the smallest acc whose output reaches level j at skip level b (high + 1: never)
        lo = np.broadcast_to(low - 1, (b_values.size, level_count, channels)).copy()
        hi = np.broadcast_to(high + 1, (b_values.size, level_count, channels)).copy()
        b_grid = np.broadcast_to(b_values[:, None, None], lo.shape)
        while np.any(hi - lo > 1):
            mid = (lo + hi) // 2
            reached = np.round(evaluate(mid.reshape(-1, channels), b_grid.reshape(-1, channels)) / out_scale)
            reached = reached.reshape(lo.shape) >= targets[None, :, None]
            active = hi - lo > 1
            hi, lo = np.where(active & reached, mid, hi), np.where(active & ~reached, mid, lo)
        end_values = evaluate(np.stack([low, high]).astype(np.int64))  # the layer side's real values
        slope = (end_values[1] - end_values[0]) / np.maximum(high - low, 1)
        b_scale = self._scaled_levels(add.input[levels_side[0]])[1]
        solved = _layer_plus_levels_weights(hi, low, high, b_values, slope / b_scale)
        if solved is None:
            log.info("%s: no integer sum orders the float sum at %s as the graph rounds it", quant.name, add.name)
            return
        layer_weights, levels_weight, thresholds = solved
        summand = self._scaled_copy(levels, levels_weight, add.name)
        if summand is None:
            return
        weights = model.get_initializer(layer.input[1]).astype(np.float64)
        if layer.op_type == "MatMul":
            shaped = layer_weights.reshape(1, -1)  # [in, out]
        else:
            shaped = layer_weights.reshape(-1, *([1] * (weights.ndim - 1)))  # [out, in, k...]
        model.set_initializer(layer.input[1], (weights * shaped).astype(np.float32))
        self.integers[acc] = IntegerTensor(low * layer_weights, high * layer_weights)
        total = model.make_new_valueinfo_name()
        model.graph.node.append(helper.make_node("Add", [acc, summand], [total], name=f"{add.name}_levels"))
        model.set_tensor_shape(total, model.get_tensor_shape(add.output[0]))
        b_info = self.integers[summand]
        self.integers[total] = IntegerTensor(
            low * layer_weights + int(np.min(b_info.low)), high * layer_weights + int(np.max(b_info.high))
        )
        out = self._insert_multithreshold(
            total, thresholds.astype(np.float32), first_level, out_step, quant, quant.output[0], out_scale
        )
        self.integers[out] = IntegerTensor(np.asarray(first_level), np.asarray(first_level + level_count * out_step))
        self._remove_nodes([*self._unshared(chain), quant.name, *[node.name for node in layer_chain]])
        self.exact_affine.pop(acc, None)
        self.changed = True

    def _chain_to_sum(self, tensor: str) -> tuple | None:
        """(Add of two runtime tensors, elementwise chain with constant operands from it to ``tensor``), or None."""
        chain = []
        while True:
            producer = self.model.find_producer(tensor)
            if producer is None:
                return None
            operands = [name for name in producer.input if name]
            if producer.op_type == "Add" and len(operands) == 2 and all(_const(self.model, n) is None for n in operands):
                return producer, chain
            if producer.op_type not in ELEMENTWISE or any(_const(self.model, n) is None for n in operands[1:]):
                return None
            chain.insert(0, producer)
            tensor = producer.input[0]

    def _scaled_levels(self, tensor: str) -> tuple[str, float] | None:
        """(levels, scale) when ``tensor`` is ``Mul(levels, scale)`` on a MultiThreshold's integer levels."""
        if tensor not in self.scaled:
            return None
        rescale = self.model.find_producer(tensor)
        levels = rescale.input[0]
        producer = self.model.find_producer(levels)
        if levels not in self.integers or producer is None or producer.op_type != "MultiThreshold":
            return None
        return levels, float(np.asarray(_const(self.model, rescale.input[1])).ravel()[0])

    def _level_values(self, levels: str) -> np.ndarray:
        info = self.integers[levels]
        if info.values is not None:
            return np.asarray(info.values, dtype=np.int64)
        return np.arange(int(np.min(info.low)), int(np.max(info.high)) + 1, dtype=np.int64)

    def _scaled_copy(self, levels: str, weight: int, add: str) -> str | None:
        """``levels * weight`` as a copy of the MultiThreshold producing ``levels`` (its ``out_scale`` and
        ``out_bias`` times ``weight``, own thresholds); ``levels`` itself for weight 1. ``add``: the sum the copy
        feeds (the original is dropped unless something else reads it)."""
        if weight == 1:
            return levels
        model = self.model
        producer = model.find_producer(levels)
        bias = float(node_attr(producer, "out_bias", 0.0)) * weight
        step = float(node_attr(producer, "out_scale", 1.0)) * weight
        if bias != int(bias) or step != int(step):
            return None
        info = self.integers[levels]
        low, high = int(np.min(info.low)) * weight, int(np.max(info.high)) * weight
        if max(abs(low), abs(high)) >= FLOAT32_EXACT_INT:
            return None
        thresholds, output = model.make_new_valueinfo_name(), model.make_new_valueinfo_name()
        own = model.get_initializer(producer.input[1])
        source = producer.input[0]
        scale = float(node_attr(producer, "out_scale", 1.0))
        if self._reads_graph_input(source) and scale > 0 and self._read_besides(levels, add):
            # the graph's input quantizer: a copy would be a second quantizer of the float input (the hardware takes
            # one quantizer's levels), so the copy counts the levels themselves, thresholds between neighbours
            first = float(node_attr(producer, "out_bias", 0.0))
            source, own = levels, (first + scale * (np.arange(own.shape[-1]) + 0.5))[None, :]
        model.set_initializer(thresholds, own.astype(np.float32))
        copy = helper.make_node(
            "MultiThreshold",
            [source, thresholds],
            [output],
            domain=producer.domain,
            name=f"{producer.name}_times_{weight}",
        )
        copy.attribute.extend(a for a in producer.attribute if a.name not in ("out_bias", "out_scale", "out_dtype"))
        out_dtype = _level_datatype(low, high, int(step))
        copy.attribute.extend(
            [
                helper.make_attribute("out_bias", bias),
                helper.make_attribute("out_scale", step),
                helper.make_attribute("out_dtype", out_dtype.name),
            ]
        )
        model.graph.node.append(copy)
        model.set_tensor_shape(output, model.get_tensor_shape(levels))
        model.set_tensor_datatype(output, out_dtype)
        self.integers[output] = IntegerTensor(np.asarray(low), np.asarray(high))
        return output

    def _read_besides(self, tensor: str, reader: str) -> bool:
        """Some node other than ``reader`` reads ``tensor``, directly or through scales and layout ops."""
        frontier = [tensor]
        while frontier:
            for consumer in self.model.find_consumers(frontier.pop()) or []:
                if consumer.op_type in (*LAYOUT_OPS, "Mul", "Div"):
                    frontier.append(consumer.output[0])
                elif consumer.name != reader:
                    return True
        return False

    def _reads_graph_input(self, tensor: str) -> bool:
        """``tensor`` is the graph input, or reaches it through layout ops only."""
        inputs = {value.name for value in self.model.graph.input}
        while tensor not in inputs:
            producer = self.model.find_producer(tensor)
            if producer is None or producer.op_type not in LAYOUT_OPS:
                return False
            tensor = producer.input[0]
        return True

    def _merge_upstream(self, source: str, thresholds: np.ndarray, first_level: int, step: int) -> bool:
        """A requantizer on the levels of another one-row MultiThreshold (brevitas: input QuantIdentity -> Flatten ->
        the Linear's input quantizer) is folded into it: its integer thresholds pick among the first one's, so one
        comparator bank does both. Returns False (nothing changed) when the pattern does not apply."""
        model = self.model
        if not np.all(thresholds == thresholds[:1]):
            return False
        path, tensor = [], source
        while True:
            producer = model.find_producer(tensor)
            if producer is None or len(model.find_consumers(tensor) or []) != 1:
                return False
            if producer.op_type == "MultiThreshold":
                break
            if producer.op_type not in LAYOUT:
                return False
            path.append(tensor)
            tensor = producer.input[0]
        upstream = _const(model, producer.input[1])
        bias, scale = float(node_attr(producer, "out_bias", 0.0)), float(node_attr(producer, "out_scale", 1.0))
        if upstream is None or upstream.shape[0] != 1 or scale <= 0 or bias != int(bias) or scale != int(scale):
            return False
        needed = np.ceil((thresholds[0].astype(np.float64) - bias) / scale).astype(np.int64)  # upstream counts
        # the index is clipped into range for every entry: np.where evaluates both branches (a requantizer whose top
        # threshold lies past the upstream's last level indexed out of bounds: IndexError)
        picked = upstream[0][np.clip(needed - 1, 0, upstream.shape[1] - 1)]
        composed = np.where(needed <= 0, -np.inf, np.where(needed > upstream.shape[1], np.inf, picked))
        last_level = first_level + thresholds.shape[1] * step
        model.set_initializer(producer.input[1], composed.astype(np.float32)[None, :])
        for attribute in list(producer.attribute):
            if attribute.name in ("out_bias", "out_scale", "out_dtype"):
                producer.attribute.remove(attribute)
        producer.attribute.extend(
            [
                helper.make_attribute("out_bias", float(first_level)),
                helper.make_attribute("out_scale", float(step)),
                helper.make_attribute("out_dtype", _level_datatype(first_level, last_level, step).name),
            ]
        )
        bounds = IntegerTensor(np.asarray(first_level), np.asarray(last_level))
        for name in [producer.output[0], *path, source]:
            self.integers[name] = bounds
        return True

    def _rescale(self, levels: str, output: str, scale: float, name: str | None = None) -> None:
        """Mul(levels, scale) -> output: the real value the replaced quantizer produced."""
        model = self.model
        scale_name = model.make_new_valueinfo_name()
        model.set_initializer(scale_name, np.asarray(scale, dtype=np.float32))
        mul = helper.make_node("Mul", [levels, scale_name], [output], name=name or f"{output}_scale")
        model.graph.node.append(mul)
        if scale > 0:
            self.scaled.add(output)

    def _channels(self, tensor: str) -> int:
        shape = self.model.get_tensor_shape(tensor)
        return int(shape[1]) if shape is not None and len(shape) >= 2 else 1

    def _rank(self, tensor: str) -> int:
        shape = self.model.get_tensor_shape(tensor)
        return len(shape) if shape is not None else 2

    def _negate_channels(self, accumulator: str, flip: np.ndarray) -> bool:
        """Negate the integer weights of decreasing channels (and their scale), so thresholds compare with >=."""
        model = self.model
        layer = model.find_producer(accumulator)
        consumers = model.find_consumers(accumulator) or []
        if layer is None or layer.op_type not in ("MatMul", "Conv") or len(consumers) != 1 or consumers[0].op_type != "Mul":
            return False
        weights = model.get_initializer(layer.input[1])
        sign = np.where(flip, -1.0, 1.0).astype(np.float32)
        if layer.op_type == "MatMul":
            model.set_initializer(layer.input[1], weights * sign[None, :])
        else:
            model.set_initializer(layer.input[1], weights * sign.reshape(-1, *([1] * (weights.ndim - 1))))
        scale = model.get_initializer(consumers[0].input[1])
        model.set_initializer(consumers[0].input[1], scale * sign.reshape(scale.shape))
        if accumulator in self.exact_affine:
            exact_scale, exact_bias = self.exact_affine[accumulator]
            self.exact_affine[accumulator] = (exact_scale * sign.astype(np.float64), exact_bias)
        info = self.integers[accumulator]
        low, high = np.where(flip, -info.high, info.low), np.where(flip, -info.low, info.high)
        self.integers[accumulator] = IntegerTensor(low, high)
        return True

    def _exact(self, accumulator: str, chain: list) -> tuple[np.ndarray, np.ndarray | None, int] | None:
        """The layer's float64 scale and bias when ``chain`` starts with the Mul (and bias Add) ``_lower_layer``
        wrote after ``accumulator``, with how many chain nodes they are; None otherwise."""
        if accumulator not in self.exact_affine or not chain or chain[0].op_type != "Mul":
            return None
        if chain[0].input[0] != accumulator:
            return None
        scale, bias = self.exact_affine[accumulator]
        if bias is None:
            return scale, None, 1
        if len(chain) < 2 or chain[1].op_type != "Add" or chain[1].input[0] != chain[0].output[0]:
            return None
        return scale, bias, 2

    def _insert_multithreshold(
        self,
        source: str,
        thresholds: np.ndarray,
        first_level: int,
        step: int,
        anchor,
        output: str | None,
        scale: float = 1.0,
    ) -> str:
        """MultiThreshold(source) -> integer levels, before ``anchor``; then Mul(levels, scale) -> ``output`` (the
        replaced tensor) unless ``output`` is None (the consumer takes the levels themselves)."""
        model = self.model
        if thresholds.shape[0] > 1 and np.all(thresholds == thresholds[:1]):
            thresholds = thresholds[:1]  # one row shared by all channels: per-tensor, so it commutes with layout ops
        levels = model.make_new_valueinfo_name()
        threshold_name = model.make_new_valueinfo_name()
        model.set_initializer(threshold_name, thresholds.astype(np.float32))
        last_level = first_level + thresholds.shape[1] * step
        out_dtype = _level_datatype(first_level, last_level, step)
        shape = model.get_tensor_shape(source)
        # the layout said, never guessed: qonnx's MultiThreshold takes an unannotated rank-3 tensor as channels-last
        # (NWC), while ONNX's Conv1d output, like every tensor this pass sees, is channels-first
        layout = {2: "NC", 3: "NCW", 4: "NCHW"}.get(len(shape) if shape is not None else 0)
        node = helper.make_node(
            "MultiThreshold",
            [source, threshold_name],
            [levels],
            domain="qonnx.custom_op.general",
            name=f"{anchor.name}{THRESHOLDS_SUFFIX}",
            out_dtype=out_dtype.name,
            out_scale=float(step),
            out_bias=float(first_level),
            **({"data_layout": layout} if layout else {}),
        )
        if output is not None:
            self._rescale(levels, output, scale, name=f"{anchor.name}_scale")
        model.graph.node.append(node)
        model.set_tensor_shape(levels, shape)
        model.set_tensor_datatype(levels, out_dtype)
        vi = model.get_tensor_valueinfo(levels)
        if vi is not None:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
        return levels

    def _unshared(self, chain: list) -> list[str]:
        """The chain nodes that only this chain reads: those after the last node whose output another node also
        takes (that node, and every node before it, still compute a tensor someone uses)."""
        model, keep_until = self.model, 0
        for index, node in enumerate(chain):
            if len(model.find_consumers(node.output[0]) or []) > 1:
                keep_until = index + 1
        return [node.name for node in chain[keep_until:]]

    def _remove_nodes(self, names: list[str]) -> None:
        """Remove nodes by name (protobuf references go stale when the node list changes, so never hold them)."""
        doomed = set(names)
        keep = [node for node in self.model.graph.node if node.name not in doomed]
        del self.model.graph.node[:]
        self.model.graph.node.extend(keep)


# -- quantizer semantics ---------------------------------------------------------------------------------------------


def _quantizer_levels(model: ModelWrapper, quant) -> tuple[int, int, int, float] | None:
    """(first integer level, number of thresholds, level step, real scale) of an activation quantizer, or None."""
    if quant.op_type == "BipolarQuant":
        scale = _const(model, quant.input[1])
        if scale is None or scale.size != 1:
            return None
        return -1, 1, 2, float(scale.ravel()[0])
    scale, zeropt, bits = (_const(model, name) for name in quant.input[1:4])
    if scale is None or zeropt is None or bits is None or scale.size != 1 or zeropt.size != 1 or bits.size != 1:
        return None
    # qonnx computes (clamp(round(x / scale + z)) - z) * scale: with an integer zero point z (brevitas's
    # ShiftedUint8 activations) the levels are the quantizer's integer range shifted by -z
    shift = float(zeropt.ravel()[0])
    if shift != int(shift):
        return None
    shift = int(shift)
    signed, narrow = bool(node_attr(quant, "signed", 1)), bool(node_attr(quant, "narrow", 0))
    low, high = quant_int_range(int(bits.ravel()[0]), signed, narrow)
    if signed and int(bits.ravel()[0]) == 1:
        return -1 - shift, 1, 2, float(scale.ravel()[0])  # qonnx executes a signed 1-bit Quant as bipolar: -1 or +1
    return low - shift, high - low, 1, float(scale.ravel()[0])


def _sum_weights(a: np.ndarray, b: np.ndarray, table: np.ndarray, ratio: float) -> tuple[int, int] | None:
    """The smallest positive integers (mA, mB), mA / mB approximating ``ratio`` with growing precision, under which
    ``table`` [pairs, channels] (the golden levels at level pairs ``a``, ``b``) is a non-decreasing function of
    ``a * mA + b * mB`` in every channel (equal sums, equal levels); None when none keeps the sum below 2^24."""
    span = max(int(np.abs(a).max()), int(np.abs(b).max()), 1)
    for bits in range(0, 25):
        denominator = 1 << bits
        numerator = int(round(ratio * denominator))
        if numerator <= 0:
            continue
        divisor = np.gcd(numerator, denominator)
        m_a, m_b = numerator // divisor, denominator // divisor
        if span * (m_a + m_b) >= FLOAT32_EXACT_INT:
            return None
        accumulator = a * m_a + b * m_b
        order = np.argsort(accumulator, kind="stable")
        ordered, levels = accumulator[order], table[order]
        rising = np.diff(levels, axis=0)
        same_sum = (np.diff(ordered) == 0)[:, None]
        if np.all(np.where(same_sum, rising == 0, rising >= 0)):
            return m_a, m_b
    return None


def _layer_plus_levels_weights(
    steps: np.ndarray, low: np.ndarray, high: np.ndarray, b_values: np.ndarray, ratio: np.ndarray
) -> tuple[np.ndarray, int, np.ndarray] | None:
    """Per-channel integer weights ``mA`` (> 0), one ``mB`` and thresholds ``t[c, j]`` with, for every level ``b``,
    ``steps[b, j, c]`` = the smallest ``acc`` in ``[low, high]`` with ``acc * mA + b * mB >= t`` (``high + 1``: none);
    ``mA / mB`` approximates ``ratio`` (the layer's real step over the levels' one) with growing precision. None
    when no such weights keep the sum below 2^24."""
    b = b_values[:, None, None]
    span_b = int(np.abs(b_values).max(initial=1))
    for bits in range(0, 25):
        m_b = 1 << bits
        m_a = np.maximum(np.round(ratio * m_b), 1).astype(np.int64)  # [channels]
        if int((np.maximum(np.abs(low), np.abs(high)) * m_a).max()) + span_b * m_b >= FLOAT32_EXACT_INT:
            return None
        reached_somewhere = steps <= high[None, None, :]
        above_low = steps > low[None, None, :]
        lower = np.where(above_low, (steps - 1) * m_a + b * m_b + 1, np.iinfo(np.int64).min)
        upper = np.where(reached_somewhere, steps * m_a + b * m_b, np.iinfo(np.int64).max)
        least, most = lower.max(axis=0), upper.min(axis=0)  # [levels, channels]
        if np.all(least <= most):
            never = high * m_a + span_b * m_b + 1
            fallback = np.where(most < np.iinfo(np.int64).max, most, never)
            thresholds = np.where(least > np.iinfo(np.int64).min, least, fallback)
            return m_a, m_b, thresholds.T
    return None


def _level_datatype(first: int, last: int, step: int) -> DataType:
    if first == -1 and last == 1 and step == 2:
        return DataType["BIPOLAR"]
    for bits in range(1, 33):
        for name in (f"UINT{bits}", f"INT{bits}"):
            dtype = DataType[name]
            if dtype.min() <= first and last <= dtype.max():
                return dtype
    raise UnsupportedModelError(f"levels {first}..{last} exceed 32 bits")


def _chain_direction(model: ModelWrapper, chain: list, channels: int) -> np.ndarray | None:
    """Per channel +1 (non-decreasing) or -1 (non-increasing): the sign of the product of the chain's slopes."""
    sign = np.ones(channels)
    for node in chain:
        if node.op_type in ("Add", "Sub", *MONOTONE_OPS):
            if node.op_type == "Sub" and _const(model, node.input[0]) is not None:
                return None
            if node.op_type in ("LeakyRelu", "HardSigmoid") and float(node_attr(node, "alpha", 0.01)) < 0:
                return None  # decreasing below zero: not monotone
            continue
        if node.op_type == "BatchNormalization":
            gamma, var = _const(model, node.input[1]), _const(model, node.input[4])
            slope = gamma / np.sqrt(var + node_attr(node, "epsilon", 1e-5))
        else:
            constant = _const(model, node.input[1])
            if node.op_type == "Div" and _const(model, node.input[0]) is not None:
                return None
            slope = constant
        slope = np.asarray(slope, dtype=np.float64).ravel()
        if not np.all(np.isfinite(slope)) or slope.size not in (1, channels):
            return None
        # a zero slope (a pruned channel's BatchNorm gamma 0) makes the channel a constant: non-decreasing too
        sign = sign * np.where(slope == 0, 1.0, np.sign(slope))
    return sign


class _ChainEvaluator:
    """Runs ``chain + quantizer`` with the golden executor on a [K, C, 1...] batch of source values. With ``exact``
    (per-channel float64 scale, bias or None, and the number of leading chain nodes they stand for), those nodes are
    computed as one float32 rounding of ``value * scale + bias``, as the graph's own layer rounds its output."""

    def __init__(
        self,
        model: ModelWrapper,
        source: str,
        chain: list,
        output: str,
        channels: int,
        rank: int = 2,
        exact: tuple[np.ndarray, np.ndarray | None, int] | None = None,
    ):
        self.model, self.source, self.output = model, source, output
        self.channels, self.rank = channels, rank
        self._exact = None
        if exact is not None:
            scale, bias, count = exact
            self._exact = (scale, bias)
            self.source, chain = chain[count - 1].output[0], chain[count:]
        self._nodes = [*chain]
        if model.find_producer(output) is not None and model.find_producer(output) not in chain:
            self._nodes.append(model.find_producer(output))
        self._cache: dict[int, ModelWrapper] = {}

    def _submodel(self, batch: int) -> ModelWrapper:
        from qonnx.transformation.infer_shapes import InferShapes

        if batch not in self._cache:
            shape = [batch, self.channels] + [1] * (self.rank - 2)
            sub = extract_chain(self.model, self._nodes, self.source, self.output, shape, shape)
            self._cache[batch] = sub.transform(InferShapes())
        return self._cache[batch]

    def evaluate(self, values: np.ndarray) -> np.ndarray:
        """values [K, C] (float32) -> chain output [K, C]."""
        from qonnx.core.onnx_exec import execute_onnx

        if self._exact is not None:
            scale, bias = self._exact
            exact = np.asarray(values, dtype=np.float64) * scale[None, :]
            values = exact if bias is None else exact + bias[None, :]
        values = np.asarray(values, dtype=np.float32)
        batch = values.shape[0]
        x = values.reshape(batch, values.shape[1], *([1] * (self.rank - 2)))
        x = np.broadcast_to(x, (batch, self.channels, *([1] * (self.rank - 2)))).copy()
        out = execute_onnx(self._submodel(batch), {self.source: x})[self.output]
        return np.asarray(out).reshape(batch, self.channels)


class _PairEvaluator:
    """Runs ``nodes`` (from a layer's float output, or a first tensor of levels, and a tensor of levels to
    ``output``) with the golden executor on [K, C] accumulators and levels. The layer's output is one float32
    rounding of ``acc * scale + bias`` where ``exact`` gives them (as the layer computes it), else the accumulator
    itself; ``layer_nodes`` (the first of ``nodes``) carry it on to the value the sum takes."""

    def __init__(self, model, nodes: list, layer_nodes: list, sources: tuple[str, str], output: str, shape, exact):
        self.model, self.nodes, self.layer_nodes, self.sources, self.output = model, nodes, layer_nodes, sources, output
        self.channels, self.rank, self.exact = shape[0], shape[1], exact
        self._cache: dict[tuple[int, bool], ModelWrapper] = {}

    def _submodel(self, batch: int, layer_only: bool) -> ModelWrapper:
        from qonnx.transformation.infer_shapes import InferShapes

        if (batch, layer_only) not in self._cache:
            shape = [batch, self.channels] + [1] * (self.rank - 2)
            if layer_only:
                sub = extract_chain(
                    self.model, self.layer_nodes, self.sources[0], self.layer_nodes[-1].output[0], shape, shape
                )
            else:
                sub = extract_chain(self.model, self.nodes, self.sources, self.output, shape, shape)
            self._cache[batch, layer_only] = sub.transform(InferShapes())
        return self._cache[batch, layer_only]

    def __call__(self, acc: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """Golden output [K, C] at accumulators and levels [K, C]; without levels, the layer side's real value."""
        from qonnx.core.onnx_exec import execute_onnx

        batch, tail = acc.shape[0], [1] * (self.rank - 2)
        values = acc.astype(np.float64)
        if self.exact is not None:
            scale, bias, _ = self.exact
            values = values * scale[None, :] + (0.0 if bias is None else bias[None, :])
        values = values.astype(np.float32)
        if levels is None and not self.layer_nodes:
            return values.astype(np.float64)
        feed = {self.sources[0]: values.reshape(batch, self.channels, *tail)}
        if levels is None:
            output = self.layer_nodes[-1].output[0]
        else:
            output = self.output
            feed[self.sources[1]] = levels.astype(np.float32).reshape(batch, self.channels, *tail)
        result = execute_onnx(self._submodel(batch, levels is None), feed)[output]
        return np.asarray(result, dtype=np.float64).reshape(batch, self.channels)


def _integer_thresholds(
    evaluator: _ChainEvaluator,
    low: np.ndarray,
    high: np.ndarray,
    first_level: int,
    count: int,
    step: int,
    scale: float,
) -> np.ndarray:
    """Smallest integer (per channel, per level) whose golden quantizer output reaches the level; bisection
    between the accumulator bounds (``high + 1``: never reached, ``low``: always)."""
    targets = first_level + step * np.arange(1, count + 1)  # [L]
    lo = np.repeat((low - 1)[:, None], count, axis=1)  # f(lo) < target (virtually)
    hi = np.repeat((high + 1)[:, None], count, axis=1)  # f(hi) >= target (virtually)
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        reached = _levels_at(evaluator, mid.T, scale) >= targets[:, None]  # [L, C]
        reached = reached.T
        active = hi - lo > 1
        hi = np.where(active & reached, mid, hi)
        lo = np.where(active & ~reached, mid, lo)
    return hi.astype(np.float32)


def _levels_at(evaluator: _ChainEvaluator, values: np.ndarray, scale: float) -> np.ndarray:
    """Integer quantizer levels (output / scale) at the given source values [K, C]."""
    out = evaluator.evaluate(values.astype(np.float32)).astype(np.float64)
    return np.round(out / scale).astype(np.int64)


_FLOAT_MAX_KEY = np.float32(np.finfo(np.float32).max).view(np.int32).item()


def _float_key(x: np.ndarray) -> np.ndarray:
    """Order-preserving map float32 -> int64 (negative floats reversed)."""
    bits = np.asarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits >= 0, bits, -(bits & 0x7FFFFFFF))


def _from_key(key: np.ndarray) -> np.ndarray:
    key = np.asarray(key, dtype=np.int64)
    bits = np.where(key >= 0, key, (-key) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


def _float_thresholds(evaluator: _ChainEvaluator, first_level: int, count: int, step: int, scale: float) -> np.ndarray:
    """Smallest float32 input whose golden quantizer output reaches each level (bisection over float32 order).
    Levels reached by every finite float get -max; levels never reached get +inf."""
    targets = first_level + step * np.arange(1, count + 1)
    lo = np.full(count, -_FLOAT_MAX_KEY - 1, dtype=np.int64)  # virtual: below -max
    hi = np.full(count, _FLOAT_MAX_KEY + 1, dtype=np.int64)  # virtual: +inf
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        reached = _levels_at(evaluator, _from_key(mid)[:, None], scale)[:, 0] >= targets
        active = hi - lo > 1
        hi = np.where(active & reached, mid, hi)
        lo = np.where(active & ~reached, mid, lo)
    thresholds = np.where(hi > _FLOAT_MAX_KEY, np.inf, _from_key(np.minimum(hi, _FLOAT_MAX_KEY)))
    thresholds = np.where(hi <= -_FLOAT_MAX_KEY, -np.finfo(np.float32).max, thresholds)
    return thresholds.astype(np.float32)[None, :]


def _int_datatype(values: np.ndarray) -> DataType:
    low, high = int(values.min(initial=0)), int(values.max(initial=0))
    for bits in range(2, 33):
        dtype = DataType[f"INT{bits}"]
        if dtype.min() <= low and high <= dtype.max():
            return dtype
    raise UnsupportedModelError("integer weights exceed 32 bits")


def _remove_dead_nodes(model: ModelWrapper) -> None:
    """Drop nodes none of whose outputs is used (the weight Quants folded into integer weights)."""
    outputs = {o.name for o in model.graph.output}
    while True:
        used = {name for node in model.graph.node for name in node.input} | outputs
        dead = [node for node in model.graph.node if not any(o in used for o in node.output)]
        if not dead:
            return
        for node in dead:
            model.graph.node.remove(node)


def lower_to_thresholds(model: ModelWrapper) -> ModelWrapper:
    """Functional form: ``model.transform(LowerToThresholds())``."""
    return model.transform(LowerToThresholds())
