"""qonnx ``Trunc`` (brevitas's TruncAvgPool2d, FINN's average pooling) as ``Quant`` nodes, where scales are powers
of two and the zero point is 0.

qonnx executes (``custom_op/general/trunc.py``), with ``q = round_half_even(x / scale)``:

- ``Trunc_v1`` (x, scale, zeropt, in_bits, out_bits): ``R(q / T) * scale``, ``T = 2**(in_bits - out_bits)``, no clamp;
- ``Trunc_v2`` (x, scale, zeropt, in_bits, out_scale, out_bits): ``R(clamp(q / T)) * out_scale``,
  ``T = 2**round(log2(out_scale / scale))``, clamped to ``out_bits`` (``signed``, ``narrow``),

``R`` the node's rounding mode. ``q`` is ``x / scale`` itself when ``x`` lies on the ``scale`` grid (an average of
quantized values, a sum); otherwise it is a round-half-even quantizer on that grid whose range holds every value
(no clamp). What remains is one quantizer: for v2, with ``out_scale = scale * T``, ``Quant(q * scale, out_scale,
out_bits, signed, narrow, R)`` (clamping an integer bound commutes with ``R``); for v1, whose output keeps the input
scale, ``R(q / T) * scale`` is a quantizer at ``scale * T`` followed by a division by ``T``, which only FINN's form
provides: ``Mul(x, T)`` before the Trunc (the pool's window size, turning an average into a sum) cancels it, and
``Quant(a, scale, R)`` of the average ``a`` computes the same (wide enough not to clamp). ``T = 1`` needs no
quantizer. The target refuses other Truncs, naming them (``trunc_problem``).
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.ir import const_input, is_power_of_two, node_attr
from qdeploy.passes.graph.value_range import grid_step, value_range

QONNX_DOMAIN = "qonnx.custom_op.general"


def _scalar(model: ModelWrapper, node, index: int) -> float | None:
    values = const_input(model, node, index) if len(node.input) > index and node.input[index] else None
    if values is None:
        return None
    array = np.asarray(values, dtype=np.float64).ravel()
    return float(array[0]) if array.size and np.all(array == array[0]) else None


def _power_of_two(value: float | None) -> bool:
    return value is not None and value > 0 and is_power_of_two(np.asarray([value]))


def _version(model: ModelWrapper, node) -> int:
    """The Trunc qonnx executes for this node (``Trunc_v1``/``Trunc_v2``, by the model's opset import)."""
    return 2 if type(model.get_customop_wrapper(node)).__name__.endswith("_v2") else 1


class _Plan:
    """How one Trunc lowers: ``source`` quantized (``first_scale``, round half even, unclamped) unless it already lies
    on that grid, then ``Quant(·, scale, bits, signed, narrow, rounding)`` or nothing (``scale`` None)."""

    def __init__(self, source: str, first_scale: float, scale: float | None, bits: int, signed: bool, narrow: bool,
                 rounding: str, drop: list) -> None:  # fmt: skip
        self.source, self.first_scale, self.scale = source, first_scale, scale
        self.bits, self.signed, self.narrow, self.rounding, self.drop = bits, signed, narrow, rounding, drop


def _unclamped_bits(model: ModelWrapper, tensor: str, scale: float, grid: float | None = None) -> tuple[int, bool] | None:
    """Bits and signedness of a quantizer at ``scale`` that never clamps ``tensor``'s values, once rounded onto
    ``grid`` (any rounding is monotone: it stays within the range's ends rounded outwards), at least 2 bits (the
    fixed-point targets take no 1-bit quantizer); None when the graph does not bound the values."""
    low, high = value_range(model, tensor)
    if low is None or high is None:
        return None
    if grid is not None:
        low, high = np.floor(low / grid) * grid, np.ceil(high / grid) * grid
    low_level, high_level = int(np.floor(low / scale)), int(np.ceil(high / scale))
    signed = low_level < 0
    magnitude = max(-low_level, high_level + 1) if signed else high_level + 1
    bits = max(2, int(magnitude - 1).bit_length() + int(signed)) if magnitude > 1 else 2
    return bits, signed


def plan(model: ModelWrapper, node) -> _Plan | str:
    """The lowering of a Trunc node, or why it has none (a phrase for the refusal)."""
    version = _version(model, node)
    scale, zeropt = _scalar(model, node, 1), _scalar(model, node, 2)
    in_bits = _scalar(model, node, 3)
    out_scale = _scalar(model, node, 4) if version == 2 else scale
    out_bits = _scalar(model, node, 5 if version == 2 else 4)
    rounding = str(node_attr(node, "rounding_mode", "FLOOR")).upper()
    if rounding == "HALF_EVEN":
        rounding = "ROUND"
    if None in (scale, zeropt, in_bits, out_scale, out_bits):
        return "its scale, zero point and bit widths must be per-tensor constants"
    if zeropt != 0:
        return "its zero point is not 0"
    if not _power_of_two(scale) or not _power_of_two(out_scale):
        return f"its scales ({scale:g}, {out_scale:g}) are not powers of two"
    source, drop = node.input[0], []
    if version == 2:
        shift = 2.0 ** np.round(np.log2(out_scale / scale))
        if out_scale != scale * shift:
            return f"its output scale {out_scale:g} is not its input scale {scale:g} times a power of two"
        first, final_bits = scale, int(out_bits)
        signed, narrow = bool(node_attr(node, "signed", 1)), bool(node_attr(node, "narrow", 0))
    else:
        shift = 2.0 ** (in_bits - out_bits)
        first = scale
        if shift != 1:
            # FINN: Mul(average, T) -> Trunc; the output keeps the input scale, so the T cancels the Mul
            producer = model.find_producer(source)
            factor = _scalar(model, producer, 1) if producer is not None and producer.op_type == "Mul" else None
            if factor != shift or len(model.find_consumers(source) or []) != 1:
                return (
                    f"it divides by {shift:g} and keeps its input scale, which only a preceding Mul by {shift:g} "
                    "(an average pool's window size) makes one quantizer"
                )
            source, first, drop = producer.input[0], scale / shift, [producer]
        width = _unclamped_bits(model, source, scale, grid=first)  # after the first rounding
        if width is None and shift != 1:
            return "the range of its input is not known (no quantizer before it)"
        final_bits, signed = width if width is not None else (0, True)
        narrow = False
    step = grid_step(model, source)
    if step is None or step < first:
        if _unclamped_bits(model, source, first) is None:
            return "its input is not on the grid of its scale and its range is not known (no quantizer before it)"
    return _Plan(source, first, out_scale if (version == 2 or shift != 1) else None, final_bits, signed, narrow,
                 rounding, drop)  # fmt: skip


class TruncAsQuant(Transformation):
    """See the module docstring."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for index, node in enumerate(model.graph.node):
            if node.op_type != "Trunc" or node.domain != QONNX_DOMAIN:
                continue
            lowering = plan(model, node)
            if isinstance(lowering, str):
                continue
            self._lower(model, index, node, lowering)
            return model, True
        return model, False

    @staticmethod
    def _lower(model: ModelWrapper, index: int, node, lowering: _Plan) -> None:
        nodes = []
        current = lowering.source
        step = grid_step(model, current)
        if step is None or step < lowering.first_scale:
            bits, signed = _unclamped_bits(model, current, lowering.first_scale)
            current = _quant(model, nodes, f"{node.name}_round", current, lowering.first_scale, bits, signed, False,
                             "ROUND")  # fmt: skip
        if lowering.scale is not None:
            current = _quant(model, nodes, f"{node.name}_quant", current, lowering.scale, lowering.bits, lowering.signed,
                             lowering.narrow, lowering.rounding)  # fmt: skip
        output = node.output[0]
        if nodes:
            nodes[-1].output[0] = output
        else:  # the Trunc is the identity on its input's grid
            nodes.append(helper.make_node("Identity", [current], [output], name=f"{node.name}_identity"))
        for dropped in lowering.drop:
            model.graph.node.remove(dropped)
        model.graph.node.remove(node)
        position = min(index, len(model.graph.node))
        for offset, new in enumerate(nodes):
            model.graph.node.insert(position - len(lowering.drop) + offset, new)


def _quant(model: ModelWrapper, nodes: list, name: str, source: str, scale: float, bits: int, signed: bool,
           narrow: bool, rounding: str) -> str:  # fmt: skip
    """Append a qonnx Quant of ``source`` to ``nodes``; returns its output tensor."""
    constants = []
    for value in (scale, 0.0, float(bits)):
        constant = model.make_new_valueinfo_name()
        model.set_initializer(constant, np.asarray(value, dtype=np.float32))
        constants.append(constant)
    output = model.make_new_valueinfo_name()
    nodes.append(
        helper.make_node(
            "Quant",
            [source, *constants],
            [output],
            name=name,
            domain=QONNX_DOMAIN,
            signed=int(signed),
            narrow=int(narrow),
            rounding_mode=rounding,
        )  # fmt: skip
    )
    return output
