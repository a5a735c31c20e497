"""Lower a QONNX graph to standard ONNX that ONNX Runtime computes exactly as the QONNX reference does.

The reference is qonnx's executor: its numpy code for the quantizers, and one ORT session per standard node. Every
quantizer gets one of two forms:

- **integer QDQ** (``QuantizeLinear -> [Clip] -> DequantizeLinear``; an integer constant ``-> DequantizeLinear``),
  which ORT fuses into integer kernels. Used only where it is the same number as the reference: rounding ``ROUND``
  (both round half to even), zero point 0 (the reference rounds ``x/s + zp`` in float32, ONNX adds the zero point
  after rounding: they differ next to ties), a per-tensor scale, and an integer range inside int8/uint8 (clip-then-
  round equals round-then-clip for integer bounds). ORT's QuantizeLinear divides by the scale, as the reference does.
- **float form**: the reference's own float32 steps as ONNX element-wise ops (``Div``, ``Add``, ``Clip``, the
  rounding function, ``Sub``, ``Mul``), each IEEE-exact, so equal by construction for any rounding mode, width, zero
  point or per-channel scale.

Constants (weights, biases) are quantized here by qonnx itself: stored as integers + ``DequantizeLinear`` when they
dequantize back exactly in float32, else as qonnx's float values. qonnx's channels-last ops become the standard op
between two Transposes (what qonnx executes), FloatQuant becomes its float32 steps. How ORT may then optimize the
graph without changing a number, and which dot products become integer layers, is decided in
``exactness.plan_model``; what has no exact form is refused here,
naming the node of the user's file.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import const_input, node_attr
from qdeploy.precision import quant_int_range
from qdeploy.targets.onnxruntime.emitter import FreshNames

MIN_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear, ReduceSum with an axes input
#: metadata key of the lowered model holding the ORT session config entries it must run with (``exactness``)
SESSION_CONFIG_KEY = "qdeploy.onnxruntime.session_config"
CHANNELS_LAST_DOMAIN = "qonnx.custom_op.channels_last"
QUANTIZER_OPS = ("Quant", "IntQuant", "BipolarQuant", "Trunc", "FloatQuant", "MultiThreshold")
ROUNDING_MODES = ("ROUND", "HALF_EVEN", "FLOOR", "CEIL", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


def lower_to_qdq(model: ModelWrapper) -> onnx.ModelProto:
    """Return a standard-ONNX model computing exactly what ``model`` computes, with the ORT session config that
    keeps it exact recorded in its metadata (``SESSION_CONFIG_KEY``); raise UnsupportedModelError naming the node
    when there is no exact form."""
    from qdeploy.targets.onnxruntime.exactness import PLAN_KEY, plan_model

    source = _at_opset(model, MIN_OPSET)
    lowering = _Lowering(source)
    for node in source.graph.node:
        lowering.lower(node)
    proto = lowering.finish()
    proto, config, plan = plan_model(proto, lowering.origin, _declared_integer_input(model))
    onnx.helper.set_model_props(proto, {SESSION_CONFIG_KEY: json.dumps(config, sort_keys=True), PLAN_KEY: plan})
    return proto


def recorded_session_config(proto: onnx.ModelProto) -> dict[str, str]:
    """The session config entries the lowering recorded in ``proto`` (empty for models lowered elsewhere)."""
    for prop in proto.metadata_props:
        if prop.key == SESSION_CONFIG_KEY:
            return dict(json.loads(prop.value))
    return {}


def _declared_integer_input(model: ModelWrapper) -> float | None:
    """Largest magnitude of the graph input when it declares an integer datatype (FINN's BIPOLAR features), else
    None (a float input)."""
    datatype = model.get_tensor_datatype(model.graph.input[0].name)
    if not datatype.is_integer():
        return None
    return float(max(abs(datatype.min()), abs(datatype.max())))


def _at_opset(model: ModelWrapper, opset: int) -> ModelWrapper:
    """The model with its standard ops converted to at least ``opset`` (ONNX's version converter, which adapts ops
    whose form changed, e.g. Unsqueeze axes and Clip bounds as inputs), so the added ops can use that opset."""
    from onnx import version_converter

    current = max([o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")] or [1])
    if current >= opset:
        return model
    proto = onnx.ModelProto.FromString(model.model.SerializeToString())
    declared = {o.domain for o in proto.opset_import}
    for domain in sorted({n.domain for n in proto.graph.node} - declared - {"", "ai.onnx"}):
        proto.opset_import.append(helper.make_opsetid(domain, 1))  # the converter needs every domain declared
    try:
        converted = version_converter.convert_version(proto, opset)
    except Exception as exc:
        raise UnsupportedModelError(
            f"the model's standard ops (opset {current}) could not be converted to opset {opset} for onnxruntime "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); re-export the model with opset >= {opset}"
        ) from exc
    wrapper = ModelWrapper(converted)
    for tensor in model.graph.value_info:  # qonnx datatype annotations survive the conversion
        if wrapper.get_tensor_shape(tensor.name) is None:
            wrapper.graph.value_info.append(tensor)
    for annotation in model.graph.quantization_annotation:
        if annotation not in wrapper.graph.quantization_annotation:
            wrapper.graph.quantization_annotation.append(annotation)
    return wrapper


def _scale_constant(model: ModelWrapper, node, index: int, what: str = "scale") -> np.ndarray:
    """A quantizer's constant scale (any real dtype: the reference computes in the dtype numpy derives from it),
    finite and > 0 as QONNX requires."""
    value = const_input(model, node, index)
    if value is None:
        raise UnsupportedModelError(
            f"node {node.name}: {node.op_type} {what} is computed at run time; onnxruntime needs it as a constant "
            "(export it as an initializer)"
        )
    value = np.asarray(value)
    if not (np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)):
        raise UnsupportedModelError(f"node {node.name}: {node.op_type} {what} has dtype {value.dtype}; store it as float32")
    if not (np.all(np.isfinite(value)) and np.all(value > 0)):
        raise UnsupportedModelError(
            f"node {node.name}: {node.op_type} {what} must be finite and > 0; fix the quantizer's {what}"
        )
    return value


def _compute_dtype(node, *constants: np.ndarray) -> np.dtype:
    """The dtype qonnx's numpy code computes a float32 input in with these constants (float64 scales, as QKeras
    conversions store them, or integer ones make it float64); its result is cast to float32 at the end."""
    dtype = np.result_type(np.float32, *(np.asarray(c).dtype for c in constants))
    if dtype not in (np.float32, np.float64):
        raise UnsupportedModelError(
            f"node {node.name}: {node.op_type} constants of dtype {dtype} have no onnxruntime lowering; store them as "
            "float32"
        )
    return np.dtype(dtype)


def _is_power_of_two(values: np.ndarray) -> bool:
    values = np.asarray(values, dtype=np.float64)
    mantissa, _ = np.frexp(values)
    return bool(values.size and np.all(values > 0) and np.all(mantissa == 0.5))


class _Lowering(FreshNames):
    """Builds the lowered graph node by node; ``origin`` maps every new node to the source node it came from."""

    def __init__(self, model: ModelWrapper) -> None:
        self.model = model
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.origin: dict[str, str] = {}
        self._source = ""
        self._taken = {n.name for n in model.graph.node} | {i.name for i in model.graph.initializer}
        self._taken |= {t for n in model.graph.node for t in (*n.input, *n.output)}

    # -- building blocks --------------------------------------------------------------------------------------------
    def op(self, op_type: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        """Append ``op_type`` and return its output (``output`` or a fresh name)."""
        name = self.fresh(f"{self._source}_{op_type}")
        out = output or self.fresh(f"{self._source}_{op_type.lower()}")
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        self.origin[name] = self._source
        return out

    def to_compute(self, value: str, dtype: np.dtype) -> str:
        """``value`` (float32) in the reference's compute dtype."""
        return self.op("Cast", [value], to=onnx.TensorProto.DOUBLE) if dtype == np.float64 else value

    def last_op(self, op_type: str, inputs: list[str], dtype: np.dtype, output: str) -> None:
        """The last step of a quantizer, its result in float32 (as qonnx casts it) written to ``output``."""
        if dtype == np.float64:
            self.op("Cast", [self.op(op_type, inputs)], output, to=onnx.TensorProto.FLOAT)
        else:
            self.op(op_type, inputs, output)

    # -- dispatch ---------------------------------------------------------------------------------------------------
    def lower(self, node: onnx.NodeProto) -> None:
        self._source = node.name
        op = node.op_type
        if node.domain in ("", "ai.onnx"):
            self.nodes.append(node)
            self.origin[node.name] = node.name
        elif node.domain == CHANNELS_LAST_DOMAIN:
            self._channels_last(node)
        elif op in ("Quant", "IntQuant"):
            self._quant(node)
        elif op == "BipolarQuant":
            self._bipolar(node)
        elif op == "FloatQuant":
            self._float_quant(node)
        elif op == "MultiThreshold":
            self._multithreshold(node)
        elif op == "Trunc":
            self._trunc(node)
        elif op in QUANTIZER_OPS:
            raise UnsupportedModelError(
                f"node {node.name}: {op} has no onnxruntime lowering yet; compile this model for another target or "
                f"re-export it without {op}"
            )
        else:
            raise UnsupportedModelError(
                f"node {node.name}: custom op {node.domain}.{op} cannot run on onnxruntime; re-export the model "
                "with standard ONNX ops and QONNX quantizers"
            )

    def finish(self) -> onnx.ModelProto:
        graph = self.model.graph
        self._bias_scales_match_products()
        used = {i for n in self.nodes for i in n.input}
        # a quantized constant's float source is dropped unless another node still reads it
        kept = [init for init in graph.initializer if init.name in used]
        out_graph = helper.make_graph(
            self.nodes, graph.name or "qdeploy", list(graph.input), list(graph.output), kept + self.initializers
        )
        opset = max([o.version for o in self.model.model.opset_import if o.domain in ("", "ai.onnx")] + [MIN_OPSET])
        proto = helper.make_model(out_graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="qdeploy")
        proto.ir_version = min(self.model.model.ir_version or 8, 10) if self.model.model.ir_version else 8
        _make_batch_dynamic(proto)
        onnx.checker.check_model(proto)
        return proto

    # -- quantizers on constants ------------------------------------------------------------------------------------
    def _reference_values(self, node) -> np.ndarray:
        """The quantizer's output on its constant input, computed by qonnx itself (the reference)."""
        from qonnx.custom_op.registry import getCustomOp

        context = {name: self.model.get_initializer(name) for name in node.input if name}
        getCustomOp(node).execute_node(context, self.model.graph)
        return np.asarray(context[node.output[0]], dtype=np.float32)

    def _constant(self, node, scale: np.ndarray, zeropt: np.ndarray, low: int, high: int) -> None:
        """A quantized constant: integers + DequantizeLinear when they give back qonnx's values exactly in float32
        (ORT can then use integer kernels), else qonnx's float values themselves (exact by definition)."""
        values = self._reference_values(node)
        integer = self._integer_constant(values, scale, zeropt, low, high)
        if integer is None:
            self.initializers.append(numpy_helper.from_array(values, node.output[0]))
            return
        ints, scale_vec, zp_vec, axis = integer
        inputs = [self.const(f"{node.name}_int", ints), self.const(f"{node.name}_scale", scale_vec)]
        inputs.append(self.const(f"{node.name}_zp", zp_vec))
        self.op("DequantizeLinear", inputs, node.output[0], **({"axis": axis} if axis is not None else {}))

    @staticmethod
    def _integer_constant(values, scale, zeropt, low, high):
        try:
            scale_vec, axis = _axis_of(scale)
        except ValueError:
            return None
        if zeropt.size != 1 and zeropt.shape != scale.shape:
            return None
        full_scale = np.broadcast_to(scale.astype(np.float64), values.shape)
        full_zp = np.broadcast_to(zeropt.astype(np.float64), values.shape)
        ints = np.round(values / full_scale + full_zp)
        if low >= -128 and high <= 127:
            dtype = np.int8
        elif low >= 0 and high <= 255:
            dtype = np.uint8
        elif low >= -(2**31) and high < 2**31 and np.all(zeropt == 0):
            dtype = np.int32  # ONNX: an int32 DequantizeLinear has zero point 0
        else:
            return None
        info = np.iinfo(dtype)
        if ints.size and (ints.min() < info.min or ints.max() > info.max):
            return None
        # DequantizeLinear takes an integer zero point: a fractional or out-of-range one (qonnx allows any float)
        # has no integer form, and the check below must use the zero point exactly as it is emitted
        if not np.all(np.isfinite(zeropt)) or np.any(zeropt < info.min) or np.any(zeropt > info.max):
            return None
        if not np.array_equal(zeropt.astype(dtype).astype(np.float64), zeropt.astype(np.float64)):
            return None
        check = (ints.astype(np.float32) - full_zp.astype(dtype).astype(np.float32)) * full_scale.astype(np.float32)
        if not np.array_equal(check.astype(np.float32), values):
            return None
        zp_vec = np.broadcast_to(zeropt.reshape(-1), scale_vec.shape) if axis is not None else zeropt.reshape(())
        return ints.astype(dtype), scale_vec.astype(np.float32), zp_vec.astype(dtype), axis

    # -- Quant / IntQuant -------------------------------------------------------------------------------------------
    def _quant(self, node) -> None:
        scale = _scale_constant(self.model, node, 1)
        zeropt, bits = const_input(self.model, node, 2), const_input(self.model, node, 3)
        if zeropt is None or bits is None:
            raise UnsupportedModelError(
                f"node {node.name}: {node.op_type} zero point and bit width must be constants for onnxruntime"
            )
        bits = np.asarray(bits)
        if bits.size != 1 or float(bits.ravel()[0]) != int(bits.ravel()[0]) or int(bits.ravel()[0]) < 1:
            raise UnsupportedModelError(f"node {node.name}: bit width must be one integer >= 1, got {bits.ravel()[:4]}")
        zeropt = np.asarray(zeropt)
        n_bits = int(bits.ravel()[0])
        signed, narrow = bool(node_attr(node, "signed", 1)), bool(node_attr(node, "narrow", 0))
        rounding = str(node_attr(node, "rounding_mode", "ROUND")).upper()
        if rounding not in ROUNDING_MODES:
            raise UnsupportedModelError(
                f"node {node.name}: unknown rounding mode {rounding!r}; use one of {', '.join(ROUNDING_MODES)}"
            )
        bipolar = n_bits == 1 and signed  # qonnx executes a signed 1-bit Quant as a bipolar quantizer: +-1
        low, high = (-1, 1) if bipolar else quant_int_range(n_bits, signed, narrow)
        dtype = _compute_dtype(node, scale, zeropt)
        if self.model.get_initializer(node.input[0]) is not None:
            self._constant(node, scale, zeropt, low, high)
        elif bipolar:
            self._bipolar_activation(node, scale, zeropt, dtype)
        elif (
            rounding in ("ROUND", "HALF_EVEN")
            and np.all(zeropt == 0)
            and scale.size == 1
            # x / s is the same number in float32 and float64 only for a power-of-two s
            and (dtype == np.float32 or (_is_power_of_two(scale) and float(np.float32(scale)) == float(scale)))
            and ((low >= -128 and high <= 127) or (low >= 0 and high <= 255))
        ):
            self._qdq_activation(node, scale.astype(np.float32), low, high)
        else:
            self._float_quant_activation(node, scale, zeropt, bits, signed, narrow, rounding, dtype)

    def _qdq_activation(self, node, scale: np.ndarray, low: int, high: int) -> None:
        """QuantizeLinear -> [Clip] -> DequantizeLinear, equal to the reference under the conditions in ``_quant``."""
        storage = np.int8 if low < 0 else np.uint8
        info = np.iinfo(storage)
        qdq = [self.const(f"{node.name}_scale", scale.reshape(())), self.const(f"{node.name}_zp", storage(0))]
        q = self.op("QuantizeLinear", [node.input[0], *qdq])
        if (low, high) != (info.min, info.max):
            bounds = [self.const(f"{node.name}_min", storage(low)), self.const(f"{node.name}_max", storage(high))]
            q = self.op("Clip", [q, *bounds])
        self.op("DequantizeLinear", [q, *qdq], node.output[0])

    def _float_quant_activation(self, node, scale, zeropt, bits, signed, narrow, rounding, dtype) -> None:
        """The reference's steps in its dtype: x/s (+ zp), clip to [min_int, max_int], round, (- zp), * s."""
        from qonnx.custom_op.general.intquant import max_int, min_int

        # the bounds as the reference computes them: from the stored bit width's dtype, cast to the compute dtype
        # (a float32 bit width makes 2^31-1 round up to 2^31)
        low = np.asarray(min_int(signed, narrow, bits)).astype(dtype)
        high = np.asarray(max_int(signed, narrow, bits)).astype(dtype)
        has_zp = bool(np.any(zeropt != 0))
        scale_name = self.const(f"{node.name}_scale", scale.astype(dtype))
        zp_name = self.const(f"{node.name}_zp", zeropt.astype(dtype)) if has_zp else ""
        value = self.op("Div", [self.to_compute(node.input[0], dtype), scale_name])
        if has_zp:
            value = self.op("Add", [value, zp_name])
        value = self.op("Clip", [value, self.const(f"{node.name}_min", low), self.const(f"{node.name}_max", high)])
        value = self._round(value, rounding, dtype)
        if has_zp:
            value = self.op("Sub", [value, zp_name])
        self.last_op("Mul", [value, scale_name], dtype, node.output[0])

    def _round(self, value: str, rounding: str, dtype: np.dtype | None = None) -> str:
        """qonnx's rounding functions (``resolve_rounding_mode``) as element-wise ONNX ops in ``dtype``."""
        if rounding in ("ROUND", "HALF_EVEN"):
            return self.op("Round", [value])  # both half to even
        if rounding == "FLOOR":
            return self.op("Floor", [value])
        if rounding == "CEIL":
            return self.op("Ceil", [value])
        sign, magnitude = self.op("Sign", [value]), self.op("Abs", [value])
        if rounding == "UP":  # sign(x) * ceil(|x|)
            rounded = self.op("Ceil", [magnitude])
        elif rounding == "DOWN":  # np.fix: sign(x) * floor(|x|)
            rounded = self.op("Floor", [magnitude])
        else:
            half = self.const(f"{self._source}_half", np.asarray(0.5, dtype=dtype or np.float32))
            if rounding == "HALF_UP":  # sign(x) * floor(|x| + 0.5)
                rounded = self.op("Floor", [self.op("Add", [magnitude, half])])
            else:  # HALF_DOWN: sign(x) * ceil(|x| - 0.5)
                rounded = self.op("Ceil", [self.op("Sub", [magnitude, half])])
        return self.op("Mul", [sign, rounded])

    # -- Trunc (brevitas's TruncAvgPool2d, FINN's AveragePool -> Mul -> Trunc) -------------------------------------
    def _trunc(self, node) -> None:
        """qonnx's ``trunc_v1`` (5 inputs) or ``trunc_v2`` (6 inputs, clamped to the output bit width), chosen as the
        reference chooses it: by the model's opset of the node's domain (1 when undeclared). The constants
        (truncation scale ``T``, a power of two; the clamp bounds; the rescaled zero point) are computed here by the
        reference's own numpy expressions, the per-element steps are the reference's float32 steps:
        ``x/s (+ zp)``, Round (half to even), ``/T``, [clamp], the rounding mode, ``- zp'``, ``* s'``."""
        from qonnx.custom_op.general.trunc import trunc_v1, trunc_v2

        domain_opsets = {o.domain: o.version for o in self.model.model.opset_import}
        version = domain_opsets.get(node.domain, 1)
        count = 6 if version >= 2 else 5
        if len(node.input) < count:
            raise UnsupportedModelError(
                f"node {node.name}: Trunc (version {version} of its domain) needs {count} inputs, it has "
                f"{len(node.input)}; re-export it with brevitas or declare the domain's opset as its inputs require"
            )
        constants = [const_input(self.model, node, i) for i in range(1, count)]
        if any(c is None for c in constants):
            raise UnsupportedModelError(
                f"node {node.name}: Trunc scale, zero point, bit widths and output scale must be constants for "
                "onnxruntime (export them as initializers)"
            )
        constants = [np.asarray(c) for c in constants]
        rounding = node_attr(node, "rounding_mode", "FLOOR")
        rounding = (rounding.decode() if isinstance(rounding, bytes) else str(rounding)).upper()
        if rounding not in ROUNDING_MODES:
            raise UnsupportedModelError(f"node {node.name}: unknown rounding mode {rounding!r}")
        if self.model.get_initializer(node.input[0]) is not None:
            self.initializers.append(numpy_helper.from_array(self._reference_values(node), node.output[0]))
            return
        scale, zeropt = constants[0], constants[1]
        _scale_constant(self.model, node, 1)
        if version >= 2:
            output_scale, output_bits = constants[3], constants[4]
            _scale_constant(self.model, node, 4, "output scale")
            signed, narrow = int(node_attr(node, "signed", 1)), int(node_attr(node, "narrow", 0))
            probe = trunc_v2(np.zeros(1, np.float32), *constants[:3], narrow, signed, output_scale, output_bits, rounding)
            step = 2 ** np.round(np.log2(output_scale / scale))  # as trunc_v2 computes it
            from qonnx.custom_op.general.intquant import max_int, min_int

            bounds = [np.asarray(min_int(signed, narrow, output_bits)), np.asarray(max_int(signed, narrow, output_bits))]
            out_zeropt, out_scale = zeropt / step, output_scale
        else:
            probe = trunc_v1(np.zeros(1, np.float32), *constants, rounding)
            step = 2.0 ** (constants[2] - constants[3])  # as trunc_v1 computes it
            bounds, out_zeropt, out_scale = None, zeropt, scale
        step = np.asarray(step)
        floats = [scale, zeropt, step, np.asarray(out_zeropt), np.asarray(out_scale)]
        if probe.dtype != np.float32 or any(np.asarray(c).dtype != np.float32 for c in floats):
            raise UnsupportedModelError(
                f"node {node.name}: Trunc constants of dtype "
                f"{sorted({str(np.asarray(c).dtype) for c in floats})} make the reference compute outside float32; "
                "store the scales and zero point as float32"
            )
        if not _is_power_of_two(step):
            raise UnsupportedModelError(f"node {node.name}: Trunc truncation scale {step.ravel()[:4]} is not a power of two")
        has_zp = bool(np.any(zeropt != 0))
        value = self.op("Div", [node.input[0], self.const(f"{node.name}_scale", scale)])
        if has_zp:
            value = self.op("Add", [value, self.const(f"{node.name}_zp", zeropt)])
        value = self.op("Round", [value])  # np.round: half to even
        value = self.op("Div", [value, self.const(f"{node.name}_step", step)])
        if bounds is not None:
            exact = all(b.size == 1 and float(np.float32(b.ravel()[0])) == float(b.ravel()[0]) for b in bounds)
            if not exact:
                raise UnsupportedModelError(
                    f"node {node.name}: Trunc output bit width must be one number whose range float32 holds exactly"
                )
            low, high = (np.float32(b.ravel()[0]) for b in bounds)
            # np.where(y > high, high, y) then np.where(y < low, low, y): Clip for low <= high
            value = self.op("Clip", [value, self.const(f"{node.name}_min", low), self.const(f"{node.name}_max", high)])
        value = self._round(value, rounding)
        if bool(np.any(np.asarray(out_zeropt) != 0)):
            value = self.op("Sub", [value, self.const(f"{node.name}_out_zp", np.asarray(out_zeropt, np.float32))])
        self.op("Mul", [value, self.const(f"{node.name}_out_scale", np.asarray(out_scale, np.float32))], node.output[0])

    # -- bipolar ----------------------------------------------------------------------------------------------------
    def _bipolar(self, node) -> None:
        scale = _scale_constant(self.model, node, 1)
        if self.model.get_initializer(node.input[0]) is not None:
            self._constant(node, scale, np.zeros((), np.float32), -1, 1)
        else:
            self._bipolar_activation(node, scale, np.zeros((), np.float32), _compute_dtype(node, scale))

    def _bipolar_activation(self, node, scale: np.ndarray, zeropt: np.ndarray, dtype: np.dtype) -> None:
        """qonnx's bipolar rule: y = x/s (+ zp); y >= 0 -> +1 else -1; (y - zp) * s. The comparison is on x/s as
        the reference does (x/s rounds a tiny negative x to -0.0, which counts as >= 0).

        With zero point 0 and a per-tensor scale the +-1 stay visible to ORT as int8 through QuantizeLinear ->
        DequantizeLinear (exact: +-s / s = +-1), so binarised layers can keep integer kernels."""
        scale_name = self.const(f"{node.name}_scale", scale.astype(dtype))
        value = self.op("Div", [self.to_compute(node.input[0], dtype), scale_name])
        has_zp = bool(np.any(zeropt != 0))
        if has_zp:
            zp_name = self.const(f"{node.name}_zp", zeropt.astype(dtype))
            value = self.op("Add", [value, zp_name])
        is_positive = self.op("GreaterOrEqual", [value, self.const(f"{node.name}_zero", np.asarray(0, dtype=dtype))])
        if has_zp:
            one, minus_one = np.asarray(1, dtype=dtype), np.asarray(-1, dtype=dtype)
            signs = self.op(
                "Where", [is_positive, self.const(f"{node.name}_one", one), self.const(f"{node.name}_m1", minus_one)]
            )
            self.last_op("Mul", [self.op("Sub", [signs, zp_name]), scale_name], dtype, node.output[0])
            return
        # +-1 * s in the compute dtype, then cast to float32: the float32 value of +-s
        scale = scale.astype(dtype).astype(np.float32)
        plus_minus = [self.const(f"{node.name}_pos", scale), self.const(f"{node.name}_neg", -scale)]
        if scale.size != 1:
            self.op("Where", [is_positive, *plus_minus], node.output[0])
            return
        signed_scale = self.op("Where", [is_positive, *plus_minus])
        qdq = [self.const(f"{node.name}_qscale", scale.reshape(())), self.const(f"{node.name}_qzp", np.int8(0))]
        q = self.op("QuantizeLinear", [signed_scale, *qdq])
        self.op("DequantizeLinear", [q, *qdq], node.output[0])

    # -- MultiThreshold (FINN's streamlined activations) ---------------------------------------------------------
    def _multithreshold(self, node) -> None:
        """qonnx's MultiThreshold: per channel, the count of thresholds the value is >= to (float32 comparisons), then
        ``out_scale * count + out_bias`` in float32. The thresholds broadcast against the value with one trailing axis
        (the channel where ``data_layout`` puts it, or qonnx's guess by rank), so no transposes are needed."""
        thresholds = self.model.get_initializer(node.input[1])
        shape = self.model.get_tensor_shape(node.input[0])
        if thresholds is None or thresholds.ndim != 2 or not shape:
            raise UnsupportedModelError(
                f"node {node.name}: MultiThreshold needs constant [channels, thresholds] thresholds and a known input "
                "shape for onnxruntime; re-export it with its thresholds as an initializer"
            )
        rank = len(shape)
        layout = node_attr(node, "data_layout", "")
        layout = layout.decode() if isinstance(layout, bytes) else layout
        if not layout and rank < 5:
            layout = {2: "NC", 3: "NWC", 4: "NCHW"}.get(rank, "")
        channel_axis = layout.index("C") if "C" in layout else 1
        channels, count = thresholds.shape
        if channels != 1 and (channel_axis >= rank or shape[channel_axis] != channels):
            raise UnsupportedModelError(
                f"node {node.name}: {channels} threshold channels do not match axis {channel_axis} of its input "
                f"{list(shape)} (data_layout {layout or 'unset'}); fix the node's data_layout or thresholds"
            )
        broadcast = [1] * (rank + 1)
        broadcast[channel_axis if channels != 1 else 0], broadcast[rank] = channels, count
        bank = self.const(f"{node.name}_thresholds", thresholds.astype(np.float32).reshape(broadcast))
        value = self.op("Unsqueeze", [node.input[0], self.const(f"{node.name}_last", np.array([rank], np.int64))])
        reached = self.op("Cast", [self.op("GreaterOrEqual", [value, bank])], to=onnx.TensorProto.FLOAT)
        out_scale = np.float32(node_attr(node, "out_scale", 1.0))
        out_bias = np.float32(node_attr(node, "out_bias", 0.0))
        last_axis = self.const(f"{node.name}_axis", np.array([rank], np.int64))
        counted = self.op(
            "ReduceSum", [reached, last_axis], None if out_scale != 1 or out_bias != 0 else node.output[0], keepdims=0
        )
        if out_scale != 1 or out_bias != 0:  # a count of at most 2^24 thresholds is exact in float32
            scaled = self.op(
                "Mul", [counted, self.const(f"{node.name}_out_scale", out_scale)], None if out_bias != 0 else node.output[0]
            )
            if out_bias != 0:
                self.op("Add", [scaled, self.const(f"{node.name}_out_bias", out_bias)], node.output[0])

    # -- FloatQuant (minifloats: FP8 E4M3/E5M2 and general) ---------------------------------------------------------
    def _float_quant(self, node) -> None:
        """qonnx's ``float_quant`` as float32 ops. The reference finds each value's binade with
        ``floor(log2(|x| + tiny))``; here the binade is counted exactly with comparisons against the powers of two
        (log2 rounding up just below a power of two only happens where both binades round the value to that power
        of two, so the results agree), then ``internal * round(x / internal)``, clipped to the largest value."""
        from qonnx.custom_op.general.floatquant import compute_max_val

        scale = _scale_constant(self.model, node, 1)
        if scale.dtype != np.float32:
            raise UnsupportedModelError(
                f"node {node.name}: FloatQuant scale is stored as {scale.dtype}; store it as float32"
            )
        params = [const_input(self.model, node, i) for i in (2, 3, 4, 5)]
        if any(p is None for p in params):
            raise UnsupportedModelError(
                f"node {node.name}: FloatQuant exponent/mantissa widths, exponent bias and max value must be "
                "constants for onnxruntime"
            )
        exponent_bits, mantissa_bits, exponent_bias, max_val = (np.asarray(p) for p in params)
        if int(node_attr(node, "saturation", 1)) != 1:
            raise UnsupportedModelError(
                f"node {node.name}: non-saturating FloatQuant (inf/NaN on overflow) has no onnxruntime lowering yet; "
                "export it with saturation"
            )
        rounding = str(node_attr(node, "rounding_mode", "ROUND")).upper()
        if rounding not in ROUNDING_MODES:
            raise UnsupportedModelError(f"node {node.name}: unknown rounding mode {rounding!r}")
        if self.model.get_initializer(node.input[0]) is not None:
            self.initializers.append(numpy_helper.from_array(self._reference_values(node), node.output[0]))
            return
        mantissa = int(mantissa_bits.ravel()[0])
        min_exponent = 1 - float(exponent_bias.ravel()[0])  # smallest normal binade; subnormals share its step
        max_value = np.minimum(compute_max_val(exponent_bits, mantissa_bits, exponent_bias), max_val)
        max_value32 = np.float32(max_value)
        if float(max_value32) != float(max_value) or not np.isfinite(max_value32):
            raise UnsupportedModelError(
                f"node {node.name}: FloatQuant largest value {float(max_value)} is not a float32 value"
            )
        # binades from the smallest normal one up to one that every value above the largest value clips from
        top = int(np.ceil(np.log2(float(max_value32)))) + 1
        binades = np.arange(int(min_exponent), top + 1)
        if binades[0] - mantissa < -149 or top > 127:
            raise UnsupportedModelError(f"node {node.name}: FloatQuant format exceeds the float32 range")
        thresholds = np.ldexp(np.float32(1), binades[1:]).astype(np.float32)
        steps = np.ldexp(np.float32(1), binades - mantissa).astype(np.float32)
        scale_name = self.const(f"{node.name}_scale", scale)
        value = self.op("Div", [node.input[0], scale_name])
        magnitude = self.op("Unsqueeze", [self.op("Abs", [value]), self.const(f"{node.name}_last", np.int64([-1]))])
        above = self.op("GreaterOrEqual", [magnitude, self.const(f"{node.name}_binades", thresholds)])
        count = self.op("Cast", [above], to=onnx.TensorProto.INT64)
        index = self.op("ReduceSum", [count, self.const(f"{node.name}_axis", np.int64([-1]))], keepdims=0)
        internal = self.op("Gather", [self.const(f"{node.name}_steps", steps), index])
        rounded = self._round(self.op("Div", [value, internal]), rounding)
        value = self.op("Mul", [internal, rounded])
        bounds = [self.const(f"{node.name}_min", -max_value32), self.const(f"{node.name}_max", max_value32)]
        value = self.op("Clip", [value, *bounds])
        self.op("Mul", [value, scale_name], node.output[0])

    # -- qonnx channels-last ops ------------------------------------------------------------------------------------
    def _channels_last(self, node) -> None:
        """qonnx executes ``channels_last.<Op>`` as the standard op on channels-first copies of its first input (and
        of a Conv's weights), transposed back afterwards: the same here."""
        if node.op_type not in ("Conv", "MaxPool", "BatchNormalization"):
            raise UnsupportedModelError(f"node {node.name}: channels-last op {node.op_type} has no standard form")
        rank = len(self.model.get_tensor_shape(node.input[0]) or [])
        if rank < 3:
            raise UnsupportedModelError(f"node {node.name}: channels-last {node.op_type} needs a known input rank")
        to_first = [0, rank - 1, *range(1, rank - 1)]
        to_last = [0, *range(2, rank), 1]
        inputs = list(node.input)
        for index in (0, 1) if node.op_type == "Conv" else (0,):
            inputs[index] = self.op("Transpose", [inputs[index]], perm=to_first)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        result = self.op(node.op_type, inputs, **attrs)
        self.op("Transpose", [result], node.output[0], perm=to_last)

    # -- consistency for ORT's integer kernels ------------------------------------------------------------------------
    def _bias_scales_match_products(self) -> None:
        """ORT's integer Conv/Gemm kernels take an int32 bias as already on the accumulator's scale (input scale x
        weight scale). A bias DequantizeLinear on another scale is stored as its float values instead (exact)."""
        producers = {n.output[0]: n for n in self.nodes}
        constants = {init.name: init for init in self.initializers}
        for node in self.nodes:
            if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or not node.input[2]:
                continue
            bias_dq, x_dq, w_dq = (producers.get(node.input[i]) for i in (2, 0, 1))
            if bias_dq is None or bias_dq.op_type != "DequantizeLinear" or bias_dq.input[0] not in constants:
                continue
            bias_ints = numpy_helper.to_array(constants[bias_dq.input[0]])
            if bias_ints.dtype != np.int32:
                continue
            scales = [_dq_scale(dq, constants) for dq in (x_dq, w_dq, bias_dq)]
            if all(s is not None for s in scales):
                product = (scales[0].astype(np.float32) * scales[1].astype(np.float32)).astype(np.float32)
                if product.shape == scales[2].shape or product.size == 1 == scales[2].size:
                    if np.array_equal(product.reshape(scales[2].shape), scales[2]):
                        continue
            values = bias_ints.astype(np.float32) * numpy_helper.to_array(constants[bias_dq.input[1]]).astype(np.float32)
            self.nodes.remove(bias_dq)
            self.initializers.append(numpy_helper.from_array(values.astype(np.float32), bias_dq.output[0]))


def _dq_scale(node, constants) -> np.ndarray | None:
    if node is None or node.op_type != "DequantizeLinear" or node.input[1] not in constants:
        return None
    return numpy_helper.to_array(constants[node.input[1]])


def _axis_of(scale: np.ndarray) -> tuple[np.ndarray, int | None]:
    """Scalar scale -> (scalar, None); per-channel scale with one non-1 axis -> (1-D, axis); else ValueError."""
    if scale.size == 1:
        return scale.reshape(()), None
    axes = [i for i, d in enumerate(scale.shape) if d != 1]
    if len(axes) != 1:
        raise ValueError(f"scale of shape {scale.shape} is neither per-tensor nor per-axis")
    return scale.reshape(-1), axes[0]


def _make_batch_dynamic(proto: onnx.ModelProto) -> None:
    """Let the ORT model take any batch size: symbolic batch dim, and Reshape targets that copy the batch."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    inits = {init.name: init for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]]).copy()
            if shape.size and shape[0] == 1:
                if -1 not in shape[1:]:
                    shape[0] = -1
                else:  # another entry infers its size: copy the batch with 0 (needs allowzero=0)
                    shape[0] = 0
                    for attribute in node.attribute:
                        if attribute.name == "allowzero":
                            attribute.i = 0
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape.astype(np.int64), node.input[1]))
    _resize_sizes_follow_batch(proto, inits)
    del proto.graph.value_info[:]


def _resize_sizes_follow_batch(proto: onnx.ModelProto, inits: dict[str, onnx.TensorProto]) -> None:
    """A Resize whose constant ``sizes`` spell out batch 1 (torch's export of a fixed-size ``interpolate``) takes its
    batch from its input instead: ``sizes = Concat(Shape(x)[0:1], sizes[1:])``, each sample resized alike."""
    position = 0
    while position < len(proto.graph.node):
        node = proto.graph.node[position]
        position += 1
        if node.op_type != "Resize" or len(node.input) < 4 or node.input[3] not in inits:
            continue
        sizes = numpy_helper.to_array(inits[node.input[3]])
        if sizes.size < 2 or int(sizes[0]) != 1:
            continue
        prefix = f"{node.name or node.output[0]}_batch_sizes"
        names = [f"{prefix}_{part}" for part in ("shape", "index", "batch", "rest", "sizes")]
        proto.graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([0], dtype=np.int64), names[1]),
                numpy_helper.from_array(sizes[1:].astype(np.int64), names[3]),
            ]
        )
        computed = [
            helper.make_node("Shape", [node.input[0]], [names[0]], name=names[0]),
            helper.make_node("Gather", [names[0], names[1]], [names[2]], name=names[2], axis=0),
            helper.make_node("Concat", [names[2], names[3]], [names[4]], name=names[4], axis=0),
        ]
        for offset, new_node in enumerate(computed):
            proto.graph.node.insert(position - 1 + offset, new_node)
        position += len(computed)
        node.input[3] = names[4]
