"""Lower a QONNX graph to standard ONNX QDQ (QuantizeLinear/[Clip]/DequantizeLinear).

- ``Quant`` on a constant (weights, biases): the integers are stored as an int8/uint8/int32 initializer followed
  by ``DequantizeLinear`` (per-axis for per-channel scales), so ORT sees quantized weights.
- ``Quant`` on activations (<= 8 bits, per-tensor): ``QuantizeLinear`` -> ``Clip`` (only when the QONNX range is
  narrower than the 8-bit type) -> ``DequantizeLinear``. With an integer zero point, clip-then-round (QONNX)
  equals round-then-saturate (ONNX), and both round half to even, so the values are identical.
Anything without such an exact form is refused, naming the node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import const_input, node_attr
from qdeploy.precision import quant_int_range

MIN_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear


def _qonnx_quant_values(model: ModelWrapper, node) -> np.ndarray:
    """The Quant node's output on its constant input, computed by qonnx itself (the reference)."""
    from qonnx.custom_op.registry import getCustomOp

    op = getCustomOp(node)
    context = {name: model.get_initializer(name) for name in node.input}
    op.execute_node(context, model.graph)
    return np.asarray(context[node.output[0]], dtype=np.float32)


def _quant_params(model: ModelWrapper, node) -> tuple[np.ndarray, np.ndarray, int, bool, bool, str]:
    scale, zeropt, bits = (const_input(model, node, i) for i in (1, 2, 3))
    if scale is None or zeropt is None or bits is None:
        raise UnsupportedModelError(f"node {node.name}: scale, zero point and bit width must be constants for onnxruntime")
    bits = np.asarray(bits)
    if bits.size != 1:
        raise UnsupportedModelError(f"node {node.name}: per-channel bit widths cannot be lowered to onnxruntime QDQ")
    zeropt = np.asarray(zeropt, dtype=np.float64)
    if np.any(zeropt != np.round(zeropt)):
        raise UnsupportedModelError(f"node {node.name}: non-integer zero point has no onnxruntime QDQ form")
    return (
        np.asarray(scale, dtype=np.float32),
        zeropt,
        int(bits.ravel()[0]),
        bool(node_attr(node, "signed", 1)),
        bool(node_attr(node, "narrow", 0)),
        str(node_attr(node, "rounding_mode", "ROUND")).upper(),
    )


def _axis_of(scale: np.ndarray, node_name: str) -> tuple[np.ndarray, int | None]:
    """Scalar scale -> (scalar, None); per-channel scale with one non-1 axis -> (1-D, axis)."""
    if scale.size == 1:
        return scale.reshape(()), None
    axes = [i for i, d in enumerate(scale.shape) if d != 1]
    if len(axes) != 1:
        raise UnsupportedModelError(f"node {node_name}: scale of shape {scale.shape} is neither per-tensor nor per-axis")
    return scale.reshape(-1), axes[0]


def _lower_bipolar(model: ModelWrapper, node, initializers: list, removed_inits: set) -> list:
    """BipolarQuant -> Where(x >= 0, scale, -scale): QONNX maps 0 to +scale, which Sign would not.

    With a positive scale the +-1 integers are also made visible to ORT, so binarised layers keep their integer
    form: on a constant (binary weights) an int8 +-1 initializer -> DequantizeLinear; on an activation
    Where -> QuantizeLinear -> DequantizeLinear (int8, exact: +-scale / scale = +-1). Left as float constants, ORT
    folds a following per-channel Mul and the bias into the weights and reorders the float sums: not exact.
    """
    scale = const_input(model, node, 1)
    if scale is None:
        raise UnsupportedModelError(f"node {node.name}: BipolarQuant scale must be a constant")
    name = node.name
    scale = np.asarray(scale, dtype=np.float32)
    integer_form = bool(np.all(scale > 0) and np.all(np.isfinite(scale)))
    source = model.get_initializer(node.input[0])
    if integer_form and source is not None:
        scale_vec, axis = _axis_of(scale, name)
        signs = np.where(np.asarray(source) >= 0, 1, -1).astype(np.int8)
        initializers += [
            numpy_helper.from_array(signs, f"{name}_int"),
            numpy_helper.from_array(scale_vec, f"{name}_scale"),
            numpy_helper.from_array(np.zeros(scale_vec.shape, dtype=np.int8), f"{name}_zp"),
        ]
        removed_inits.add(node.input[0])
        attrs = {"axis": axis} if axis is not None else {}
        inputs = [f"{name}_int", f"{name}_scale", f"{name}_zp"]
        return [helper.make_node("DequantizeLinear", inputs, [node.output[0]], name=f"{name}_dq", **attrs)]
    initializers += [
        numpy_helper.from_array(np.asarray(0.0, dtype=np.float32), f"{name}_zero"),
        numpy_helper.from_array(scale, f"{name}_pos"),
        numpy_helper.from_array(-scale, f"{name}_neg"),
    ]
    where_out = f"{name}_pm" if integer_form and scale.size == 1 else node.output[0]
    nodes = [
        helper.make_node("GreaterOrEqual", [node.input[0], f"{name}_zero"], [f"{name}_ge"], name=f"{name}_ge"),
        helper.make_node("Where", [f"{name}_ge", f"{name}_pos", f"{name}_neg"], [where_out], name=f"{name}_where"),
    ]
    if where_out != node.output[0]:
        initializers += [
            numpy_helper.from_array(scale.reshape(()), f"{name}_scale"),
            numpy_helper.from_array(np.asarray(0, dtype=np.int8), f"{name}_zp"),
        ]
        qdq = [f"{name}_scale", f"{name}_zp"]
        nodes += [
            helper.make_node("QuantizeLinear", [where_out, *qdq], [f"{name}_q"], name=f"{name}_quantize"),
            helper.make_node("DequantizeLinear", [f"{name}_q", *qdq], [node.output[0]], name=f"{name}_dequantize"),
        ]
    return nodes


def lower_to_qdq(model: ModelWrapper) -> onnx.ModelProto:
    """Return a standard-ONNX QDQ model computing exactly what ``model`` computes (or raise)."""
    graph = model.graph
    new_nodes = []
    initializers: list[onnx.TensorProto] = []
    removed_inits: set[str] = set()
    for node in graph.node:
        if node.op_type == "BipolarQuant":
            new_nodes += _lower_bipolar(model, node, initializers, removed_inits)
            continue
        if node.op_type in ("Trunc", "FloatQuant", "MultiThreshold"):
            raise UnsupportedModelError(f"node {node.name}: {node.op_type} has no onnxruntime lowering yet")
        if node.op_type not in ("Quant", "IntQuant"):
            if node.domain not in ("", "ai.onnx"):
                raise UnsupportedModelError(
                    f"node {node.name}: custom op {node.domain}.{node.op_type} cannot run on onnxruntime"
                )
            new_nodes.append(node)
            continue
        scale, zeropt, bits, signed, narrow, rounding = _quant_params(model, node)
        low, high = quant_int_range(bits, signed, narrow)
        source = model.get_initializer(node.input[0])
        scale_vec, axis = _axis_of(scale, node.name)
        name = node.name
        if source is not None:
            # Weights/biases: integers computed from qonnx's own output, checked to dequantize back exactly.
            dequantized = _qonnx_quant_values(model, node)
            full_scale = np.broadcast_to(scale.astype(np.float64), dequantized.shape)
            zp_full = np.broadcast_to(zeropt, dequantized.shape)
            ints = np.round(dequantized / full_scale + zp_full).astype(np.int64)
            if bits <= 8:
                int_dtype = np.int8 if low < 0 else np.uint8
            elif bits <= 32 and signed:
                int_dtype = np.int32
                if np.any(zeropt != 0):
                    raise UnsupportedModelError(f"node {name}: {bits}-bit constant with a zero point has no int32 QDQ form")
            else:
                raise UnsupportedModelError(
                    f"node {name}: {bits}-bit {'signed' if signed else 'unsigned'} constant has no QDQ type"
                )
            # per-axis zero points follow the scale's axis; a scalar zero point stays scalar
            zp_vec = (
                np.broadcast_to(zeropt.reshape(-1), scale_vec.shape) if axis is not None else zeropt.reshape(())
            ).astype(int_dtype)
            check = ((ints.astype(np.float32) - zp_full.astype(np.float32)) * full_scale.astype(np.float32)).astype(
                np.float32
            )
            if not np.array_equal(check, dequantized):
                raise UnsupportedModelError(
                    f"node {name}: constant does not dequantize exactly in float32; cannot lower to QDQ"
                )
            initializers += [
                numpy_helper.from_array(ints.astype(int_dtype), f"{name}_int"),
                numpy_helper.from_array(scale_vec.astype(np.float32), f"{name}_scale"),
                numpy_helper.from_array(zp_vec, f"{name}_zp"),
            ]
            removed_inits.add(node.input[0])
            attrs = {"axis": axis} if axis is not None else {}
            new_nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{name}_int", f"{name}_scale", f"{name}_zp"],
                    [node.output[0]],
                    name=f"{name}_dq",
                    **attrs,
                )
            )
            continue
        # Activations.
        if bits > 8:
            raise UnsupportedModelError(
                f"node {name}: {bits}-bit activation quantizer is wider than onnxruntime's 8-bit integer kernels; "
                "re-quantize with act_bits <= 8"
            )
        if rounding != "ROUND":
            raise UnsupportedModelError(
                f"node {name}: rounding mode {rounding} cannot be expressed by QuantizeLinear (round half to even)"
            )
        if axis is not None:
            raise UnsupportedModelError(f"node {name}: per-channel activation scales are not supported on onnxruntime yet")
        if zeropt.size != 1:
            raise UnsupportedModelError(f"node {name}: per-channel zero points are not supported on onnxruntime yet")
        zp_int = int(zeropt.ravel()[0])
        storage = np.int8 if signed else np.uint8
        type_low, type_high = (-128, 127) if signed else (0, 255)
        q_low, q_high = low + zp_int, high + zp_int
        if q_low < type_low or q_high > type_high:
            raise UnsupportedModelError(f"node {name}: quantized range [{q_low}, {q_high}] does not fit an 8-bit type")
        initializers += [
            numpy_helper.from_array(scale_vec.astype(np.float32), f"{name}_scale"),
            numpy_helper.from_array(np.asarray(zp_int, dtype=storage), f"{name}_zp"),
        ]
        q_out = f"{name}_q"
        new_nodes.append(
            helper.make_node(
                "QuantizeLinear", [node.input[0], f"{name}_scale", f"{name}_zp"], [q_out], name=f"{name}_quantize"
            )
        )
        if (q_low, q_high) != (type_low, type_high):
            initializers += [
                numpy_helper.from_array(np.asarray(q_low, dtype=storage), f"{name}_min"),
                numpy_helper.from_array(np.asarray(q_high, dtype=storage), f"{name}_max"),
            ]
            new_nodes.append(
                helper.make_node("Clip", [q_out, f"{name}_min", f"{name}_max"], [f"{name}_qc"], name=f"{name}_clip")
            )
            q_out = f"{name}_qc"
        new_nodes.append(
            helper.make_node(
                "DequantizeLinear", [q_out, f"{name}_scale", f"{name}_zp"], [node.output[0]], name=f"{name}_dequantize"
            )
        )

    used = {i for n in new_nodes for i in n.input}
    kept = [init for init in graph.initializer if init.name not in removed_inits and init.name in used]
    out_graph = helper.make_graph(
        new_nodes, graph.name or "qdeploy", list(graph.input), list(graph.output), kept + initializers
    )
    opset = max([o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")] + [MIN_OPSET])
    proto = helper.make_model(out_graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="qdeploy")
    proto.ir_version = min(model.model.ir_version or 8, 10) if model.model.ir_version else 8
    _make_batch_dynamic(proto)
    onnx.checker.check_model(proto)
    return proto


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
    del proto.graph.value_info[:]
