"""Validation of a model's quantizers against the QONNX spec, on the file as loaded (before any cleanup renames
nodes), so an error names the node as the user's file names it.

Checked for every Quant/IntQuant, BipolarQuant, Trunc and FloatQuant: the number of inputs; the inputs the spec
needs as constants (bit widths, FloatQuant's format) are constants; scales are finite and > 0, bit widths integers
>= 1 (Trunc's and FloatQuant's own widths too), zero points and exponent biases finite; required attributes present,
of the right type and value; rounding modes known; string attributes valid UTF-8. A violation raises
``ModelLoadError`` with one line: the node, what is wrong, and what to do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import numpy as np
import onnx
from onnx import AttributeProto, numpy_helper

from qdeploy.errors import ModelLoadError
from qdeploy.ops import QUANT_OPS

#: the quantizers validated here: qdeploy's vocabulary plus FloatQuant (minifloat formats)
VALIDATED_OPS = (*QUANT_OPS, "FloatQuant")
#: rounding modes qonnx's executor knows (``resolve_rounding_mode``), compared upper-case
ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


#: the only node domains a model may name: qonnx executes a custom node by importing its domain as a Python module,
#: so a domain from a file must never choose what gets imported
TRUSTED_DOMAINS = (
    "",
    "ai.onnx",
    "ai.onnx.ml",
    "qonnx.custom_op.general",
    "qonnx.custom_op.channels_last",
    "qdeploy.custom_op.quantum",
)
#: older exporters' domains for the quantizers (brevitas, FINN); qdeploy moves these nodes to qonnx's domain
LEGACY_QUANT_DOMAINS = ("onnx.brevitas", "finn.custom_op.general")


def validate_domains(model: onnx.ModelProto) -> None:
    """Refuse a node whose domain is not one qdeploy trusts, before anything (qonnx included) imports it."""
    for index, node in enumerate(model.graph.node):
        trusted = node.domain in TRUSTED_DOMAINS
        legacy_quantizer = node.op_type in QUANT_OPS and node.domain in LEGACY_QUANT_DOMAINS
        if not (trusted or legacy_quantizer):
            label = node.name or f"#{index} ({node.op_type}, unnamed)"
            raise ModelLoadError(
                f"node {label}: domain {node.domain!r} is not one qdeploy executes (standard ONNX, qonnx's "
                "custom_op.general / channels_last, qdeploy.custom_op.quantum); nothing was imported from it. Export "
                "the model with standard or QONNX ops"
            )


def validate_quantizers(model: onnx.ModelProto) -> None:
    """Raise ModelLoadError naming the first quantizer of ``model`` that breaks the QONNX spec."""
    constants = _constant_values(model.graph)
    for index, node in enumerate(model.graph.node):
        if node.domain in ("", "ai.onnx") or node.op_type not in VALIDATED_OPS:
            continue
        checker = _NodeCheck(node, index, constants)
        _CHECKS[node.op_type](checker)


def _constant_values(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Values known without running the graph: initializers and the outputs of ``Constant`` nodes."""
    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.output:
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.type == AttributeProto.TENSOR:
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
                elif attribute.name in ("value_float", "value_int"):
                    values[node.output[0]] = np.asarray(onnx.helper.get_attribute_value(attribute))
                elif attribute.name in ("value_floats", "value_ints"):
                    values[node.output[0]] = np.asarray(list(onnx.helper.get_attribute_value(attribute)))
    return values


class _NodeCheck:
    """Checks on one quantizer node; every failure is one ModelLoadError line naming the node."""

    def __init__(self, node: onnx.NodeProto, index: int, constants: dict[str, np.ndarray]) -> None:
        self.node = node
        self.constants = constants
        self.label = node.name or f"#{index} ({node.op_type}, unnamed, output {node.output[0] if node.output else '?'})"

    def fail(self, problem: str, fix: str) -> NoReturn:
        raise ModelLoadError(f"node {self.label}: {problem}; {fix}")

    # -- inputs -----------------------------------------------------------------------------------------------------
    def inputs(self, names: tuple[str, ...]) -> None:
        given = list(self.node.input)
        if len(given) != len(names) or any(not name for name in given):
            self.fail(
                f"{self.node.op_type} takes {len(names)} inputs ({', '.join(names)}), the node has "
                f"{len([n for n in given if n])}",
                "re-export the model with a QONNX-conformant exporter",
            )

    def value(self, index: int, what: str, required: bool) -> np.ndarray | None:
        """The constant at input ``index``; when ``required`` and it is computed at run time, fail."""
        name = self.node.input[index]
        value = self.constants.get(name)
        if value is None and required:
            self.fail(
                f"{what} ({name}) is computed at run time, the QONNX spec needs a constant", "store it as an initializer"
            )
        if value is not None and not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
            self.fail(f"{what} ({name}) has dtype {value.dtype}, not a number", "store it as float32")
        return value

    def positive_scale(self, index: int, what: str = "scale") -> None:
        scale = self.value(index, what, required=False)
        if scale is None:
            return
        scale = scale.astype(np.float64)
        if scale.size == 0:
            self.fail(f"{what} is empty", "give one scale per tensor or per channel")
        if not np.all(np.isfinite(scale)):
            self.fail(f"{what} is NaN or infinite ({_first(scale[~np.isfinite(scale)])})", f"export a finite {what}")
        if not np.all(scale > 0):
            self.fail(f"{what} must be > 0, got {_first(scale[scale <= 0])}", f"export a positive {what}")

    def finite(self, index: int, what: str, required: bool = False) -> None:
        value = self.value(index, what, required)
        if value is not None and not np.all(np.isfinite(value.astype(np.float64))):
            self.fail(f"{what} is NaN or infinite", f"export a finite {what}")

    def bit_width(self, index: int, what: str = "bit width", minimum: int = 1) -> float:
        value = self.value(index, what, required=True)
        flat = value.astype(np.float64).ravel()
        if flat.size != 1:
            self.fail(f"{what} must be one scalar, got shape {list(value.shape)}", "use one bit width per quantizer")
        width = float(flat[0])
        if not np.isfinite(width) or width != int(width) or width < minimum:
            self.fail(f"{what} must be an integer >= {minimum}, got {width:g}", f"export a {what} >= {minimum}")
        return width

    # -- attributes -------------------------------------------------------------------------------------------------
    def attribute(self, name: str) -> AttributeProto | None:
        return next((a for a in self.node.attribute if a.name == name), None)

    def flag(self, name: str, required: bool) -> None:
        attribute = self.attribute(name)
        if attribute is None:
            if required:
                self.fail(f"required attribute {name} is missing", f"set {name}=0 or 1 (QONNX spec)")
            return
        if attribute.type != AttributeProto.INT:
            self.fail(f"attribute {name} must be an integer, it is a {_type_name(attribute)}", f"set {name}=0 or 1")
        if attribute.i not in (0, 1):
            self.fail(f"attribute {name} must be 0 or 1, got {attribute.i}", f"set {name}=0 or 1")

    def rounding_mode(self, required: bool) -> None:
        attribute = self.attribute("rounding_mode")
        if attribute is None:
            if required:
                self.fail("required attribute rounding_mode is missing", f"set one of {', '.join(ROUNDING_MODES)}")
            return
        if attribute.type != AttributeProto.STRING:
            self.fail(f"attribute rounding_mode must be a string, it is a {_type_name(attribute)}", "set e.g. 'ROUND'")
        mode = self.text(attribute).upper()
        if mode not in ROUNDING_MODES:
            self.fail(f"unknown rounding_mode {mode!r}", f"use one of {', '.join(ROUNDING_MODES)}")

    def text(self, attribute: AttributeProto) -> str:
        try:
            return attribute.s.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelLoadError(
                f"node {self.label}: attribute {attribute.name} is not valid UTF-8 ({attribute.s[:16]!r}); "
                "re-export the model"
            ) from exc

    def strings_are_utf8(self) -> None:
        for attribute in self.node.attribute:
            if attribute.type == AttributeProto.STRING:
                self.text(attribute)
            elif attribute.type == AttributeProto.STRINGS:
                for text in attribute.strings:
                    try:
                        text.decode("utf-8")
                    except UnicodeDecodeError:
                        self.fail(f"attribute {attribute.name} is not valid UTF-8", "re-export the model")


def _check_quant(check: _NodeCheck) -> None:
    """Quant/IntQuant: (X, scale, zeropt, bitwidth); signed and narrow required, rounding_mode optional."""
    check.strings_are_utf8()
    check.inputs(("X", "scale", "zeropt", "bitwidth"))
    check.positive_scale(1)
    check.finite(2, "zero point")
    check.bit_width(3)
    check.flag("signed", required=True)
    check.flag("narrow", required=True)
    check.rounding_mode(required=False)


def _check_bipolar(check: _NodeCheck) -> None:
    """BipolarQuant: (X, scale)."""
    check.strings_are_utf8()
    check.inputs(("X", "scale"))
    check.positive_scale(1)


def _check_trunc(check: _NodeCheck) -> None:
    """Trunc v1 (X, scale, zeropt, input_bit_width, output_bit_width) or v2 (..., output_scale, output_bit_width);
    the output width cannot exceed the input width."""
    check.strings_are_utf8()
    if len(check.node.input) == 6:
        check.inputs(("X", "scale", "zeropt", "input_bit_width", "output_scale", "output_bit_width"))
        check.positive_scale(4, "output scale")
        check.flag("signed", required=False)
        check.flag("narrow", required=False)
    else:
        check.inputs(("X", "scale", "zeropt", "input_bit_width", "output_bit_width"))
    check.positive_scale(1)
    check.finite(2, "zero point")
    input_bits = check.bit_width(3, "input bit width")
    output_bits = check.bit_width(len(check.node.input) - 1, "output bit width")
    if output_bits > input_bits:
        check.fail(
            f"output bit width {output_bits:g} exceeds input bit width {input_bits:g}",
            "truncate to at most the input width",
        )
    check.rounding_mode(required=False)


def _check_float_quant(check: _NodeCheck) -> None:
    """FloatQuant: (X, scale, exponent_bitwidth, mantissa_bitwidth, exponent_bias, max_val); without saturation the
    format must have infinities or NaNs to overflow to (qonnx's executor raises otherwise)."""
    check.strings_are_utf8()
    check.inputs(("X", "scale", "exponent_bitwidth", "mantissa_bitwidth", "exponent_bias", "max_val"))
    check.positive_scale(1)
    check.bit_width(2, "exponent bit width")
    check.bit_width(3, "mantissa bit width", minimum=0)
    check.finite(4, "exponent bias", required=True)
    check.positive_scale(5, "max_val")
    for name in ("has_inf", "has_nan", "has_subnormal", "saturation"):
        check.flag(name, required=False)
    check.rounding_mode(required=False)
    saturation, has_inf, has_nan = (check.attribute(n) for n in ("saturation", "has_inf", "has_nan"))
    if saturation is not None and saturation.i == 0 and not any(a is not None and a.i for a in (has_inf, has_nan)):
        check.fail("saturation=0 needs has_inf=1 or has_nan=1 to overflow to", "set saturation=1 or declare inf/NaN")


_CHECKS: dict[str, Callable[[_NodeCheck], None]] = {
    "Quant": _check_quant,
    "IntQuant": _check_quant,
    "BipolarQuant": _check_bipolar,
    "Trunc": _check_trunc,
    "FloatQuant": _check_float_quant,
}


def _first(values: np.ndarray) -> str:
    return f"{float(np.ravel(values)[0]):g}"


def _type_name(attribute: AttributeProto) -> str:
    return AttributeProto.AttributeType.Name(attribute.type).lower()
