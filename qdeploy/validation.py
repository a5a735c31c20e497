"""Validation of a model's quantizers against the QONNX spec, on the file as loaded (before any cleanup renames
nodes), so an error names the node as the user's file names it.

Checked for every Quant/IntQuant, BipolarQuant, Trunc and FloatQuant: the number of inputs; the inputs the spec
needs as constants (bit widths, FloatQuant's format) are constants; scales are finite and > 0, bit widths integers
from 1 to 64 (Trunc's too; FloatQuant's at most float64's), zero points and exponent biases finite; required
attributes present, of the right type and value; rounding modes known; string attributes valid UTF-8. A violation
raises ``ModelLoadError`` with one line: the node, what is wrong, and what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NoReturn

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

from qdeploy.errors import ModelLoadError
from qdeploy.ops import QONNX_QUANTIZER_OPS, QUANT_OPS

#: the quantizers validated here: qdeploy's vocabulary plus FloatQuant (minifloat formats)
VALIDATED_OPS = QONNX_QUANTIZER_OPS
#: rounding modes qonnx's executor knows (``resolve_rounding_mode``), compared upper-case
ROUNDING_MODES = ("ROUND", "HALF_EVEN", "CEIL", "FLOOR", "UP", "DOWN", "HALF_UP", "HALF_DOWN")


#: widest integer quantizer: int64 holds its integers, and every target computes in at most 64 bits (a wider width,
#: e.g. a damaged 1e30, would make the integer range 2**width itself unbounded work)
MAX_BIT_WIDTH = 64
#: FloatQuant's widest format: float64's 11 exponent and 52 mantissa bits
MAX_EXPONENT_BITS, MAX_MANTISSA_BITS = 11, 52

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


def _nodes_with_subgraphs(graph: onnx.GraphProto) -> Iterator[tuple[int, onnx.NodeProto]]:
    """(index, node) for the graph's nodes and, after each, the nodes of its subgraphs (If/Loop/Scan bodies)."""
    for index, node in enumerate(graph.node):
        yield index, node
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                yield from _nodes_with_subgraphs(subgraph)


def validate_domains(model: onnx.ModelProto) -> None:
    """Refuse a node whose domain is not one qdeploy trusts, before anything (qonnx included) imports it; nodes
    inside subgraphs too."""
    for index, node in _nodes_with_subgraphs(model.graph):
        trusted = node.domain in TRUSTED_DOMAINS
        legacy_quantizer = node.op_type in QONNX_QUANTIZER_OPS and node.domain in LEGACY_QUANT_DOMAINS
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

    def bit_width(self, index: int, what: str = "bit width", minimum: int = 1, maximum: int = MAX_BIT_WIDTH) -> float:
        value = self.value(index, what, required=True)
        flat = value.astype(np.float64).ravel()
        if flat.size != 1:
            self.fail(f"{what} must be one scalar, got shape {list(value.shape)}", "use one bit width per quantizer")
        width = float(flat[0])
        if not np.isfinite(width) or width != int(width) or width < minimum:
            self.fail(f"{what} must be an integer >= {minimum}, got {width:g}", f"export a {what} >= {minimum}")
        if width > maximum:
            self.fail(
                f"{what} is {width:g}, wider than any number format qdeploy computes in (at most {maximum})",
                f"export a {what} <= {maximum}",
            )
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
    check.bit_width(2, "exponent bit width", maximum=MAX_EXPONENT_BITS)
    check.bit_width(3, "mantissa bit width", minimum=0, maximum=MAX_MANTISSA_BITS)
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


# -- the graph's structure ---------------------------------------------------------------------------------------------

#: standard ops whose constant inputs are weights, biases or operands: Inf there is no trained value, and the
#: arithmetic it feeds (Inf x 0, Inf - Inf) has no exact form; Clip/Max/Min bounds and thresholds may be infinite
WEIGHT_CONSUMERS = ("MatMul", "Gemm", "Conv", "ConvTranspose", "Add", "Sub", "Mul", "Div", "BatchNormalization")
STANDARD_DOMAINS = ("", "ai.onnx")


def validate_structure(model: onnx.ModelProto) -> None:
    """Refuse, naming the node, initializer or tensor as the file names it, a graph that breaks the ONNX format in a
    way the libraries further on would only report as an internal error: unknown element types, initializers that do
    not decode, NaN anywhere and Inf in weights, a tensor declared twice or produced twice, a node reading a tensor
    nothing defines, cycles, an opset ONNX does not have, standard ops that fail ONNX's own node check (unknown op,
    attributes, input counts), custom ops qonnx does not know, a non-float graph input.

    Nodes out of topological order are sorted here (in place): the order carries no meaning in ONNX besides being
    required, and qonnx's shape inference leaves the later-defined tensors unshaped otherwise."""
    graph = model.graph
    opset = _standard_opset(model)
    constants = _decoded_initializers(graph)
    _check_declarations(graph)
    _check_graph_input_types(graph, set(constants))
    # the quantizers' own rules first: their messages say which input breaks the QONNX spec and how to fix it
    validate_quantizers(model)
    _sort_topologically(graph, set(constants))
    _check_non_finite(graph, constants)
    _check_nodes(model, opset)


def _standard_opset(model: onnx.ModelProto) -> int | None:
    versions = [entry.version for entry in model.opset_import if entry.domain in STANDARD_DOMAINS]
    newest = onnx.defs.onnx_opset_version()
    uses_standard = any(node.domain in STANDARD_DOMAINS for node in model.graph.node)
    if not versions:
        if uses_standard:
            raise ModelLoadError(
                "the model imports no standard ONNX opset but uses standard ops; re-export it with an opset "
                f"(e.g. opset_import ai.onnx {min(newest, 13)})"
            )
        return None
    if not all(1 <= version <= newest for version in versions):
        raise ModelLoadError(
            f"the model imports ONNX opset {versions[0]}, which does not exist (this onnx knows 1..{newest}); "
            "re-export the model with a released opset"
        )
    return versions[0]


def _decoded_initializers(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        if init.name in values:
            raise ModelLoadError(f"initializer {init.name} is stored twice; re-export the model (one value per name)")
        if init.data_type not in TensorProto.DataType.values() or init.data_type == TensorProto.UNDEFINED:
            raise ModelLoadError(
                f"initializer {init.name} has element type {init.data_type}, which ONNX does not define; the file is "
                "damaged or from an incompatible writer: re-export the model"
            )
        try:
            values[init.name] = numpy_helper.to_array(init)
        except Exception as exc:  # onnx raises ValueError/TypeError/KeyError for sizes and types that do not match
            raise ModelLoadError(
                f"initializer {init.name} cannot be decoded ({type(exc).__name__}: {' '.join(str(exc).split())[:160]}); "
                "its stored bytes do not match its type and shape: re-export the model"
            ) from exc
    return values


def _check_declarations(graph: onnx.GraphProto) -> None:
    """Each tensor declared (graph input, graph output, value_info) at most once, and produced by at most one node."""
    declared: dict[str, str] = {}
    for where, infos in (("graph input", graph.input), ("graph output", graph.output), ("value_info", graph.value_info)):
        for info in infos:
            if info.name in declared:
                raise ModelLoadError(
                    f"tensor {info.name} is declared twice ({declared[info.name]} and {where}); remove one "
                    "declaration (qdeploy handles one input and one output)"
                )
            declared[info.name] = where
    producers: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        for output in node.output:
            if output and output in producers:
                raise ModelLoadError(
                    f"tensor {output} is produced by two nodes ({producers[output]} and {_label(node, index)}); "
                    "every tensor needs one producer: re-export the model"
                )
            producers[output] = _label(node, index)


def _check_graph_input_types(graph: onnx.GraphProto, initializers: set[str]) -> None:
    for info in graph.input:
        if info.name in initializers:
            continue
        elem_type = info.type.tensor_type.elem_type
        if elem_type != TensorProto.FLOAT:
            name = TensorProto.DataType.Name(elem_type) if elem_type in TensorProto.DataType.values() else elem_type
            raise ModelLoadError(
                f"graph input {info.name} has element type {name}; qdeploy feeds float32 inputs (quantizers in the "
                "graph say which values are allowed): declare the input as float"
            )


def _sort_topologically(graph: onnx.GraphProto, initializers: set[str]) -> None:
    """Kahn's algorithm in the file's order; refuse a tensor nothing defines and a cycle, naming the node."""
    available = {info.name for info in graph.input} | initializers | {""}
    nodes = list(graph.node)
    produced = {output for node in nodes for output in node.output}
    for index, node in enumerate(nodes):
        for name in node.input:
            if name not in available and name not in produced:
                raise ModelLoadError(
                    f"node {_label(node, index)} reads tensor {name}, which no node, initializer or graph input "
                    "defines; re-export the model (the graph is disconnected)"
                )
    for output in graph.output:
        if output.name not in available and output.name not in produced:
            raise ModelLoadError(
                f"graph output {output.name} is not produced by any node; re-export the model with that output"
            )
    ordered, pending = [], list(enumerate(nodes))
    while pending:
        ready = [(i, n) for i, n in pending if all(name in available for name in n.input)]
        if not ready:
            index, node = pending[0]
            raise ModelLoadError(
                f"node {_label(node, index)} is part of a cycle (its inputs depend on its own output); ONNX graphs are "
                "acyclic: re-export the model"
            )
        ready_ids = {i for i, _ in ready}
        pending = [(i, n) for i, n in pending if i not in ready_ids]
        for _, node in ready:
            ordered.append(node)
            available.update(node.output)
    if [id(n) for n in ordered] != [id(n) for n in nodes]:
        copies = [onnx.NodeProto.FromString(node.SerializeToString()) for node in ordered]
        del graph.node[:]
        graph.node.extend(copies)


def _check_non_finite(graph: onnx.GraphProto, constants: dict[str, np.ndarray]) -> None:
    consumers: dict[str, list[tuple[int, onnx.NodeProto, int]]] = {}
    for index, node in enumerate(graph.node):
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((index, node, position))
    for name, value in constants.items():
        if not np.issubdtype(value.dtype, np.floating):
            continue
        readers = consumers.get(name, [])
        if readers and all(node.op_type in VALIDATED_OPS and position > 0 for _, node, position in readers):
            continue  # a quantizer's scale, zero point or width: validate_quantizers names the node and the input
        reader = _label(readers[0][1], readers[0][0]) if readers else "no node"
        if np.isnan(value).any():
            raise ModelLoadError(
                f"initializer {name} (read by {reader}) holds NaN; a trained value is never NaN: retrain or re-export "
                "the model"
            )
        weight_like = any(
            (node.op_type in QUANT_OPS and position == 0)
            or (node.domain in STANDARD_DOMAINS and node.op_type in WEIGHT_CONSUMERS)
            for _, node, position in readers
        )
        if weight_like and np.isinf(value).any():
            raise ModelLoadError(
                f"initializer {name} (read by {reader}) holds an infinite value; weights, biases and operands must be "
                "finite: retrain or re-export the model"
            )


def _check_nodes(model: onnx.ModelProto, opset: int | None) -> None:
    """ONNX's own node check for standard ops (at the model's opset); qonnx's registry for custom ops."""
    from onnx import checker
    from qonnx.custom_op.registry import is_custom_op

    context = checker.C.CheckerContext()
    context.ir_version = max(model.ir_version, 3)
    context.opset_imports = {"": opset} if opset is not None else {}
    for index, node in enumerate(model.graph.node):
        if not node.op_type:
            raise ModelLoadError(f"node {_label(node, index)} has no op_type; re-export the model")
        if node.domain in STANDARD_DOMAINS:
            try:
                checker.check_node(_standard_copy(node), context)
            except checker.ValidationError as exc:
                message = " ".join(str(exc).split("==>")[0].split())
                raise ModelLoadError(
                    f"node {_label(node, index)}: {message} (ONNX opset {opset}); re-export the model with ops and "
                    "attributes of that opset"
                ) from exc
            continue
        domain = "qonnx.custom_op.general" if node.domain in LEGACY_QUANT_DOMAINS else node.domain
        if not is_custom_op(domain, node.op_type):
            raise ModelLoadError(
                f"node {_label(node, index)}: op {node.op_type} is not an operator of domain {node.domain!r}; "
                "re-export the model with standard or QONNX ops"
            )


def _standard_copy(node: onnx.NodeProto) -> onnx.NodeProto:
    """The node under the standard domain name the checker's context uses ('' for 'ai.onnx')."""
    copy = onnx.NodeProto.FromString(node.SerializeToString())
    copy.domain = ""
    return copy


def _label(node: onnx.NodeProto, index: int) -> str:
    return node.name or f"#{index} ({node.op_type}, unnamed, output {node.output[0] if node.output else '?'})"
