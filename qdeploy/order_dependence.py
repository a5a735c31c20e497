"""Quantizers whose level in the user's graph depends on the float32 rounding of a sum.

A layer with float (non-power-of-two) scales computes its dot product as a float32 sum of rounded products; where
that sum lands next to an activation quantizer's rounding boundary, the order of summation decides the level, and
the golden executor's order is that of whichever ONNX Runtime kernel ran (it even changes with the batch size). A
target computing the exact integer accumulator (hls4ml, rtl) cannot reproduce that choice, so such a graph is
refused before anything is written rather than ending NOT EXACT.

Two stages, so graphs that cannot be affected pay nothing:

- ``inexact_sums`` (static): the summing nodes (Conv, MatMul, Gemm, averages, reductions) whose float32 result is
  not shown exact. A value is exact when it lies on a grid ``k * 2**lsb`` that float32 holds (the analysis follows
  every quantizer's actual float32 levels, so a float scale puts its levels on a fine grid and a sum of them past
  2^24 steps); a sum of exact values is exact when its largest possible magnitude stays within 2^24 steps. Power-of-
  two-scale graphs have none.
- ``order_dependent_quantizers`` (dynamic, only when the first stage found a sum feeding a quantizer): on the
  verification inputs, each such sum is recomputed from the exact quantized values it adds up (each quantizer's
  level, read back from the golden executor's output, times its scale, in float64: what an integer accumulator
  stands for) and rounded once to float32; the elementwise ops up to the next quantizer are re-run as the golden
  executor runs them, and each quantizer's levels are compared with the golden executor's. A differing level is
  carried on to the graph's output: where a later MaxPool or quantizer absorbs it, the output stays the golden
  executor's and a target computing exact accumulators verifies exact, so only quantizers whose difference changes
  the output on some input are reported. There the float32 rounding inside the sum (its order, which changes with
  the kernel and the batch size, and its rounded products), not the quantized values, decides the graph's output:
  no exact accumulator gives the golden's result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError
from qdeploy.ir import input_name, is_power_of_two, node_attr
from qdeploy.ops import QUANT_OPS, SCALED_QUANT_OPS, VALUE_SET_PRESERVING_OPS

log = logging.getLogger(__name__)

#: ops whose result is a sum of three or more float terms (their float32 result depends on the summation order)
SUM_OPS = (
    "Conv",
    "ConvTranspose",
    "MatMul",
    "Gemm",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceSum",
    "ReduceMean",
    "Sum",
)
#: nodes whose output is a level: qonnx's quantizers and FINN's MultiThreshold (a count of thresholds crossed)
LEVEL_OPS = (*QUANT_OPS, "MultiThreshold")
#: float32 holds every integer up to 2^24: a sum staying within that many grid steps is exact in any order
EXACT_STEPS = 2.0**24
#: a quantizer with at most this many levels per channel has its float32 levels enumerated by the static analysis
MAX_ENUMERATED_LEVELS = 1 << 16
#: ops that keep values on their input's grid (select, reorder, clamp at zero)
_GRID_PRESERVING = (*VALUE_SET_PRESERVING_OPS, "Squeeze", "Unsqueeze", "Dropout", "Concat", "Slice", "Gather", "Split")


@dataclass(frozen=True)
class _Grid:
    """Values ``k * 2**lsb`` with ``|value| <= bound`` (float32 holds each exactly)."""

    lsb: int
    bound: float

    @property
    def steps(self) -> float:
        return self.bound / 2.0**self.lsb


def _grid_of_values(values: np.ndarray) -> _Grid | None:
    """The coarsest power-of-two grid holding every (finite, float32) value, or None (not finite)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return _Grid(0, 0.0)
    if not np.all(np.isfinite(values)):
        return None
    nonzero = values[values != 0]
    if nonzero.size == 0:
        return _Grid(0, 0.0)
    mantissa, exponent = np.frexp(nonzero)  # value = mantissa * 2**exponent, 0.5 <= |mantissa| < 1 (53 bits)
    # trailing zero bits of each significand: the value's own lsb
    ints = np.ldexp(mantissa, 53).astype(np.int64)
    trailing = np.zeros(ints.shape, dtype=np.int64)
    remaining = ints.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        mask = (remaining & ((1 << shift) - 1)) == 0
        trailing += np.where(mask, shift, 0)
        remaining = np.where(mask, remaining >> shift, remaining)
    lsb = int(np.min(exponent - 53 + trailing))
    return _Grid(lsb, float(np.max(np.abs(nonzero))))


def _quant_levels(model: ModelWrapper, node: onnx.NodeProto) -> _Grid | None:
    """The grid of a scaled quantizer's float32 outputs, from its actual levels: qonnx computes ``(q - z) * s`` in
    float32, so a float scale puts them on a fine grid, a power-of-two one on ``s``."""
    from qdeploy.precision import quant_int_range

    scale, zero, bits = (model.get_initializer(node.input[i]) for i in (1, 2, 3))
    if scale is None or zero is None or bits is None or np.asarray(bits).size != 1:
        return None
    signed, narrow = bool(node_attr(node, "signed", 1)), bool(node_attr(node, "narrow", 0))
    bits_value = float(np.asarray(bits).ravel()[0])
    if bits_value != int(bits_value) or not 1 <= bits_value <= 16:
        return None
    low, high = quant_int_range(int(bits_value), signed, narrow)
    if high - low + 1 > MAX_ENUMERATED_LEVELS:
        return None
    scale, zero = np.asarray(scale, dtype=np.float32), np.asarray(zero, dtype=np.float32)
    # qonnx maps a signed 1-bit quantizer to -1/+1 (bipolar) whatever its integer range says
    ints = [-1, 1] if (bits_value == 1 and signed) else range(low, high + 1)
    levels = np.asarray(list(ints), dtype=np.float32).reshape(-1, *([1] * max(scale.ndim, zero.ndim)))
    return _grid_of_values((levels - zero[None]) * scale[None])


class _Analysis:
    """Forward grid propagation over the graph (see the module docstring); ``inexact`` lists the sums not shown
    exact, in graph order."""

    def __init__(self, model: ModelWrapper) -> None:
        self.model = model
        self.grids: dict[str, _Grid | None] = {}
        self.inexact: list[onnx.NodeProto] = []
        for init in model.graph.initializer:
            self.grids[init.name] = _grid_of_values(model.get_initializer(init.name))
        for tensor in model.graph.input:
            if tensor.name in self.grids:
                continue
            datatype = model.get_tensor_datatype(tensor.name)
            self.grids[tensor.name] = (
                _Grid(0, float(max(abs(datatype.min()), abs(datatype.max())))) if datatype.is_integer() else None
            )
        # tensors computed from the float model input with no quantizer on the way: a sum of those is no integer
        # accumulator for any target (each refuses it, naming the fix: declare the input's precision), not checked
        self.raw = {t.name for t in model.graph.input if t.name not in self.grids or self.grids[t.name] is None}
        self.raw -= {init.name for init in model.graph.initializer}
        for node in model.graph.node:
            grid = self._transfer(node)
            for name in node.output:
                self.grids[name] = grid
            if node.op_type not in LEVEL_OPS and any(name in self.raw for name in node.input):
                self.raw.update(node.output)

    def _grid(self, name: str) -> _Grid | None:
        return self.grids.get(name) if name else None

    def _transfer(self, node: onnx.NodeProto) -> _Grid | None:  # noqa: C901 - one case per op family
        op = node.op_type
        inputs = [self._grid(name) for name in node.input]
        if op in SCALED_QUANT_OPS:
            return _quant_levels(self.model, node)
        if op == "BipolarQuant":
            return _Grid(0, 1.0)
        if op == "MultiThreshold":
            thresholds = self.model.get_initializer(node.input[1]) if len(node.input) > 1 else None
            if thresholds is None:
                return None
            counts = np.arange(np.asarray(thresholds).shape[-1] + 1, dtype=np.float32)
            scale, bias = np.float32(node_attr(node, "out_scale", 1.0)), np.float32(node_attr(node, "out_bias", 0.0))
            return _grid_of_values((counts + bias) * scale)  # qonnx's MultiThreshold: out_scale * (count + out_bias)
        if op in QUANT_OPS:  # Trunc: levels from its own attributes are not enumerated here
            return None
        if op in _GRID_PRESERVING:
            data = [g for g, name in zip(inputs, node.input, strict=True) if name]
            if op in ("Reshape", "Slice", "Gather", "Squeeze", "Unsqueeze", "Split"):
                data = data[:1]  # shapes and indices are integers, not values
            if not data or any(g is None for g in data):
                return None
            return _Grid(min(g.lsb for g in data), max(g.bound for g in data))
        if op in ("Mul", "Add", "Sub") and len(inputs) == 2:
            a, b = inputs
            if a is None or b is None:
                return None
            grid = _Grid(a.lsb + b.lsb, a.bound * b.bound) if op == "Mul" else _Grid(min(a.lsb, b.lsb), a.bound + b.bound)
            return grid if grid.steps < EXACT_STEPS else None
        if op in SUM_OPS and node.domain in ("", "ai.onnx"):
            # (qonnx's channels-last Conv and other custom-domain sums: no float64 evaluator here, left unchecked)
            if any(name in self.raw for name in node.input):
                return None
            grid = self._sum(node, inputs)
            if grid is None or grid.steps >= EXACT_STEPS:
                self.inexact.append(node)
                return None
            return grid
        return None

    def _sum(self, node: onnx.NodeProto, inputs: list[_Grid | None]) -> _Grid | None:
        """An exact sum's grid; None when it is not shown exact."""
        op = node.op_type
        if op in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            if len(inputs) < 2 or inputs[0] is None or inputs[1] is None:
                return None
            if op == "Gemm" and (node_attr(node, "alpha", 1.0) != 1.0 or node_attr(node, "beta", 1.0) != 1.0):
                return None
            x, w = inputs[0], inputs[1]
            weights = self._constant(node.input[1])
            if weights is None:
                terms = self._reduction_size(node)
                if terms is None:
                    return None
                bound = terms * x.bound * w.bound
            else:
                bound = x.bound * self._max_abs_row_sum(node, np.abs(np.asarray(weights, dtype=np.float64)))
            grid = _Grid(x.lsb + w.lsb, bound)
            if len(inputs) > 2 and node.input[2]:
                bias = inputs[2]
                if bias is None:
                    return None
                grid = _Grid(min(grid.lsb, bias.lsb), grid.bound + bias.bound)
            return grid
        if op == "Sum":
            if any(g is None for g in inputs):
                return None
            return _Grid(min(g.lsb for g in inputs), sum(g.bound for g in inputs))
        return None  # averages and reductions: a division or an unbounded count, not shown exact here

    def _constant(self, name: str) -> np.ndarray | None:
        """A constant tensor's values: an initializer, or a scaled quantizer of one (quantized weights)."""
        value = self.model.get_initializer(name)
        if value is not None:
            return np.asarray(value)
        producer = self.model.find_producer(name)
        if producer is None or producer.op_type not in SCALED_QUANT_OPS:
            return None
        params = [self.model.get_initializer(i) for i in producer.input[:4]]
        if any(p is None for p in params):
            return None
        from qonnx.custom_op.general.quant import quant as qonnx_quant

        signed, narrow = int(node_attr(producer, "signed", 1)), int(node_attr(producer, "narrow", 0))
        rounding = node_attr(producer, "rounding_mode", "ROUND")
        rounding = rounding.decode() if isinstance(rounding, bytes) else rounding
        return np.asarray(qonnx_quant(*params, signed, narrow, rounding))

    def _max_abs_row_sum(self, node: onnx.NodeProto, weights: np.ndarray) -> float:
        """The largest sum of |weights| feeding one output (per output channel / column)."""
        op = node.op_type
        if op == "Conv":
            return float(weights.reshape(weights.shape[0], -1).sum(axis=1).max(initial=0.0))
        if op == "ConvTranspose":
            return float(weights.sum(axis=0).sum() if weights.ndim else 0.0)  # every weight may meet one output
        if op == "Gemm" and node_attr(node, "transB", 0):
            return float(weights.sum(axis=-1).max(initial=0.0))
        if weights.ndim == 1:
            return float(weights.sum())
        return float(weights.sum(axis=-2).max(initial=0.0))

    def _reduction_size(self, node: onnx.NodeProto) -> int | None:
        shape = self.model.get_tensor_shape(node.input[0])
        if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
            return None
        if node.op_type in ("MatMul", "Gemm"):
            transposed = node.op_type == "Gemm" and node_attr(node, "transA", 0)
            return int(shape[0] if transposed else shape[-1])
        return None


def inexact_sums(model: ModelWrapper) -> list[onnx.NodeProto]:
    """The summing nodes whose float32 result is not shown exact (graph order); none in a power-of-two graph."""
    return _Analysis(model).inexact


def _quantizers_after(model: ModelWrapper, sums: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Quantizers reached from ``sums`` without passing another quantizer (the levels a sum's rounding can move)."""
    found: dict[str, onnx.NodeProto] = {}
    stack = [name for node in sums for name in node.output]
    seen: set[str] = set()
    while stack:
        tensor = stack.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        for consumer in model.find_consumers(tensor) or []:
            if consumer.op_type in LEVEL_OPS:
                found[consumer.name or consumer.output[0]] = consumer
            else:
                stack.extend(consumer.output)
    return list(found.values())


def _feeding_sums(model: ModelWrapper, node: onnx.NodeProto, sums: set[str]) -> list[onnx.NodeProto]:
    """The inexact sums reaching ``node``'s data input without passing a level (a quantizer or threshold)."""
    found, stack, seen = [], [node.input[0]], set()
    while stack:
        tensor = stack.pop()
        producer = model.find_producer(tensor) if tensor and tensor not in seen else None
        seen.add(tensor)
        if producer is None or producer.op_type in LEVEL_OPS:
            continue
        if (producer.name or producer.output[0]) in sums:
            found.append(producer)
        else:
            stack.extend(producer.input)
    return found


def _has_float_scale(model: ModelWrapper, tensor: str) -> bool:
    """Whether ``tensor`` is (through ops that keep levels) a scaled quantizer's output with a scale that is not a
    power of two."""
    while (producer := model.find_producer(tensor)) is not None and producer.op_type in _LEVEL_PRESERVING:
        tensor = producer.input[0]
    if producer is None or producer.op_type not in SCALED_QUANT_OPS:
        return False
    scale = model.get_initializer(producer.input[1])
    return scale is None or not is_power_of_two(scale)


def _reason(model: ModelWrapper, node: onnx.NodeProto, sums: set[str]) -> str:
    feeding = _feeding_sums(model, node, sums)
    if any(_has_float_scale(model, name) for s in feeding for name in s.input if name):
        return "non-power-of-two scales"
    return "more terms than float32 adds exactly (2^24 steps)"


def needs_check(model: ModelWrapper) -> bool:
    """Whether some quantizer of ``model`` takes a sum not shown exact (the dynamic check's pre-condition)."""
    return bool(_quantizers_after(model, inexact_sums(model)))


@dataclass
class Finding:
    """A quantizer whose golden levels differ from those of the order-free sum, and the samples where they do."""

    node: str
    op_type: str
    label: str
    reason: str = "non-power-of-two scales"
    samples: list[int] = field(default_factory=list)
    elements: int = 0


def _float64_node(node: onnx.NodeProto, inputs: list[np.ndarray | None], opset: int) -> list[np.ndarray]:
    """Run one standard node in float64 (onnx's reference evaluator: ONNX Runtime has no float64 Conv); float
    results come back rounded once to float32."""
    from onnx.reference import ReferenceEvaluator

    feeds, infos = {}, []
    for name, value in zip(node.input, inputs, strict=True):
        if not name:
            continue
        value = np.asarray(value)
        if np.issubdtype(value.dtype, np.floating):
            value = value.astype(np.float64)
        feeds[name] = value
        infos.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), None))
    outputs = [helper.make_tensor_value_info(name, TensorProto.UNDEFINED, None) for name in node.output if name]
    graph = helper.make_graph([node], "float64_node", infos, outputs)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    results = ReferenceEvaluator(proto).run(None, feeds)
    return [np.asarray(r).astype(np.float32) if np.issubdtype(np.asarray(r).dtype, np.floating) else r for r in results]


def _opset(model: ModelWrapper, domain: str = "") -> int:
    imports = model.get_opset_imports()
    return int(imports.get(domain, imports.get("ai.onnx", 11)))


def _batch_rows(value: np.ndarray, samples: int) -> np.ndarray:
    """Per sample: whether any element differs (``value`` is a boolean mask, batch first)."""
    value = np.asarray(value)
    if value.ndim == 0 or value.shape[0] != samples:
        return np.full(samples, bool(np.any(value)))
    return value.reshape(samples, -1).any(axis=1)


#: ops that keep a quantizer's levels as levels (select, reorder, clamp at zero) on the way into a sum
_LEVEL_PRESERVING = ("MaxPool", "Relu", "Identity", "Dropout", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze")
#: of those, the ones keeping every element's channel (a per-channel scale still broadcasts onto the result)
_SAME_CHANNELS = ("MaxPool", "Relu", "Identity", "Dropout")


def _exact_value(graph: ModelWrapper, golden: dict[str, np.ndarray], tensor: str) -> np.ndarray:
    """``tensor``'s golden value in float64 as the quantized values it stands for: a quantizer's level ``q`` (read
    back from its float32 output) times its scale, exactly, ``(q - z) * s``, through ops that keep levels (MaxPool,
    Relu, layout); any other value as the float32 number it is."""
    value = golden.get(tensor)
    if value is None:
        value = graph.get_initializer(tensor)
    value = np.asarray(value, dtype=np.float64)
    source, moved = tensor, False
    while (producer := graph.find_producer(source)) is not None:
        if producer.op_type in _LEVEL_PRESERVING:
            moved |= producer.op_type not in _SAME_CHANNELS
            source = producer.input[0]
            continue
        if producer.op_type not in SCALED_QUANT_OPS:
            break
        scale, zero = graph.get_initializer(producer.input[1]), graph.get_initializer(producer.input[2])
        if scale is None or zero is None or (moved and (np.size(scale) > 1 or np.size(zero) > 1)):
            break
        scale, zero = np.asarray(scale, dtype=np.float64), np.asarray(zero, dtype=np.float64)
        try:
            # the float32 output is (q - z) * s rounded: within 2^-24 relative of it, so rounding recovers q
            levels = np.round(value / scale + zero)
            return (levels - zero) * scale
        except ValueError:  # a scale that does not broadcast onto the value here: keep the float32 number
            break
    return value


def _local_differences(
    graph: ModelWrapper, golden: dict[str, np.ndarray], sums: set[str], samples: int
) -> Iterator[tuple[onnx.NodeProto, np.ndarray, int]]:
    """For each quantizer after an inexact sum: (node, per-sample mask of differing levels, differing elements), the
    mask kept only on samples whose graph output changes too: the order-free evaluation carries each differing level
    on to the output, and a level a later MaxPool (or another quantizer) absorbs leaves the graph's result as it is,
    so a target computing the order-free sums matches the golden executor there."""
    differing = list(_propagated_differences(graph, golden, sums))
    if not differing:
        return
    output = graph.graph.output[0].name
    alternative_output = differing[-1][3].get(output)
    if alternative_output is None:
        return
    changed = _batch_rows(np.asarray(alternative_output) != np.asarray(golden[output]), samples)
    for node, rows, elements, _ in differing:
        if np.any(rows & changed):
            yield node, rows & changed, elements


def _propagated_differences(
    graph: ModelWrapper, golden: dict[str, np.ndarray], sums: set[str], samples: int = 0
) -> Iterator[tuple[onnx.NodeProto, np.ndarray, int, dict[str, np.ndarray]]]:
    """The order-free evaluation, node by node from the golden context: each inexact sum recomputed from the exact
    quantized values it reads (rounded once), every later node re-run where an input changed. Yields each quantizer
    whose levels change: (node, per-sample mask, differing elements, the changed tensors so far)."""
    from qonnx.core.onnx_exec import execute_node
    from qonnx.util.basic import get_preferred_qonnx_opset

    opsets = graph.get_opset_imports()
    alternative: dict[str, np.ndarray] = {}
    samples = samples or int(np.asarray(golden[input_name(graph)]).shape[0])
    for node in graph.graph.node:
        key = node.name or node.output[0]
        if key in sums:
            # the sum of the exact quantized values, rounded once: what an exact integer accumulator stands for
            # (a sum fed by another inexact sum without a quantizer between: that one's order-free result)
            merged = {**golden, **alternative}
            values = [None if not name else _exact_value(graph, merged, name) for name in node.input]
            try:
                results = _float64_node(node, values, _opset(graph))
            except Exception:  # noqa: BLE001 - an op onnx's reference evaluator lacks: this sum stays unchecked
                log.debug("no float64 evaluation of %s (%s); left unchecked", key, node.op_type, exc_info=True)
                continue
            for name, value in zip(node.output, results, strict=False):
                if not np.array_equal(value, golden[name]):
                    alternative[name] = value
            continue
        if not any(name in alternative for name in node.input):
            continue
        context = {name: alternative.get(name, golden.get(name)) for name in node.input if name}
        context.update({name: np.array(golden[name]) for name in node.output if name in golden})
        opset = opsets[node.domain] if node.domain in opsets else get_preferred_qonnx_opset()  # as execute_onnx
        execute_node(node, context, graph.graph, opset)
        for name in node.output:
            if name and not np.array_equal(np.asarray(context[name]), golden.get(name)):
                alternative[name] = np.asarray(context[name])
        if node.op_type in LEVEL_OPS and node.output[0] in alternative:
            # the level this quantizer takes with the order-free sums, carried on downstream
            differs = alternative[node.output[0]] != np.asarray(golden[node.output[0]])
            yield node, _batch_rows(differs, samples), int(np.sum(differs)), alternative


def order_dependent_quantizers(model: ModelWrapper, x: np.ndarray, chunk: int | None = None) -> list[Finding]:
    """The quantizers (graph order) whose golden level on some sample of ``x`` differs from the level the same graph
    takes with each inexact sum computed order-free (see the module docstring); empty when none, or when the static
    analysis shows every sum feeding a quantizer exact (no execution then). ``chunk``: samples per golden run
    (default: the golden executor's own chunking; 1 reproduces its batch-1 runs)."""
    from qdeploy.golden import DEFAULT_CHUNK, chunk_size, golden_graph_contexts

    sums = inexact_sums(model)
    if not _quantizers_after(model, sums):
        return []
    keys = {node.name or node.output[0] for node in sums}
    findings: dict[str, Finding] = {}
    order = {node.name or node.output[0]: index for index, node in enumerate(model.graph.node)}
    chunk = chunk_size(model, DEFAULT_CHUNK if chunk is None else chunk)
    for start, graph, context in golden_graph_contexts(model, x, chunk):
        samples = int(np.asarray(context[input_name(graph)]).shape[0])
        for node, rows, elements in _local_differences(graph, context, keys, samples):
            key = node.name or node.output[0]
            label = node.name or f"#{order[key]} ({node.op_type} computing {node.output[0]}, unnamed)"
            if key not in findings:
                findings[key] = Finding(key, node.op_type, label, _reason(model, node, keys))
            finding = findings[key]
            finding.samples.extend(int(start + i) for i in np.flatnonzero(rows))
            finding.elements += elements
    return sorted(findings.values(), key=lambda f: order.get(f.node, math.inf))


def refusal(findings: list[Finding], total: int, one_at_a_time: bool = False) -> str:
    """The one-line refusal naming the first quantizer as the user's file names it (the reference keeps the file's
    names), and how many more there are."""
    finding = findings[0]
    count = len(set(finding.samples))
    how = " run one at a time" if one_at_a_time else ""
    more = f" (and at {len(findings) - 1} later quantizers)" if len(findings) > 1 else ""
    fix = (
        "re-export with power-of-two scales (brevitas restrict_scaling_type=POWER_OF_TWO) or use --target onnxruntime"
        if finding.reason.startswith("non-power-of-two")
        else "use fewer bits (narrower inputs or weights) or --target onnxruntime"
    )
    return (
        f"node {finding.label} ({finding.op_type}): its input is a float32 sum with {finding.reason} that lands on a "
        f"rounding boundary for {count} of {total} verification inputs{how}{more}, so the graph's own output depends "
        f"on summation order there and no fixed-point implementation reproduces it; {fix}"
    )


def check_order_independent(model: ModelWrapper, x: np.ndarray, batch_one: int = 0) -> None:
    """Refuse (UnsupportedModelError naming the first quantizer) a graph whose quantizer levels on ``x`` depend on
    float32 summation order: batched and, for the first ``batch_one`` samples, one at a time, as verification runs
    them (the golden executor's kernels may sum in another order at batch 1)."""
    findings = order_dependent_quantizers(model, x)
    if findings:
        log.debug("order-dependent quantizers: %s", [(f.label, len(set(f.samples))) for f in findings])
        raise UnsupportedModelError(refusal(findings, len(x)))
    if batch_one and len(x):
        ones = order_dependent_quantizers(model, x[:batch_one], chunk=1)
        if ones:
            log.debug("order-dependent quantizers at batch 1: %s", [(f.label, len(set(f.samples))) for f in ones])
            raise UnsupportedModelError(refusal(ones, min(batch_one, len(x)), one_at_a_time=True))
