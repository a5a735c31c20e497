"""Decide, before anything is written, how ONNX Runtime may optimize a lowered model without changing a number.

The reference (qonnx's executor) runs every standard node in its own ORT session, so each float op is ORT's own
kernel on exactly the node's inputs. ORT's graph optimizer, on a whole model, fuses nodes (Conv+Mul+Add into one
Conv, MatMul+Add into Gemm, a scalar Div into MatMul's alpha, BatchNorm into weights, NCHWc convolutions, a float
bias quantized to int32 by ``WeightBiasQuantization``, QDQ groups into integer kernels with a rounded requantization
multiplier), and each of these can change float rounding. First, ``plan_model`` replaces every dot product it can
show exact by an integer layer (``integer``: requantized QLinearConv/QGemm, QGemm to float; the plan's name lists
them and why the others stay in float); the float rest then runs under one of two plans:

- **integer kernels** (``plan = "exact arithmetic"``): every float op of the graph provably computes an exact
  result — its operands lie on a power-of-two grid and every sum stays within float32's 24-bit significand (taken
  from the actual weights, as the reference computes in float32) — so any evaluation order and any fusion gives
  the same numbers, and ORT may fuse QDQ groups into integer kernels (their requantization multiplier is then a
  power of two: exact). Only ``WeightBiasQuantization`` stays off: it re-rounds float biases onto the accumulator's
  grid. The optimized graph may contain only integer kernels whose arithmetic is such a product-and-shift.
- **reference kernels** (``plan = "reference kernels"``): otherwise (float scales, float inputs into a Conv,
  BatchNorm, Softmax, ...) ORT's QDQ handling and its float-rewriting fusions are switched off, and the optimized
  graph is checked to still hold every arithmetic node of the lowered model, as the same op on the same output, so
  ORT runs the kernel the reference runs. A node ORT still rewrites is refused by name.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from qdeploy.errors import UnsupportedModelError
from qdeploy.runtime import ort_session

#: float32 represents every integer up to 2^24 exactly
EXACT_LIMIT = 2.0**24

#: ORT's default MatMulNBits accuracy level quantizes a float activation to int8 on the fly: level 1 keeps float32
BASE_CONFIG = {"session.qdq_matmulnbits_accuracy_level": "1"}
#: for plans that keep float dot products (speed only, no number depends on it): ORT's intra-op worker threads do
#: not spin between parallel sections. Such a plan runs a few short element-wise nodes per layer between its long
#: unpacked Conv/GEMM kernels; a spinning worker burns the second core through them, and on a busy machine it is
#: then preempted inside the next kernel, whose static split waits for it (CNV 4w4a, 2 threads, batch 1: 4.0 ms
#: spinning vs 1.8 ms not, the float model 1.2 ms either way, load average 7 on 2 cores)
NO_SPINNING = {"session.intra_op.allow_spinning": "0"}
#: ORT re-rounds a float Conv/Gemm bias onto input scale x weight scale (int32): never the graph's number
WEIGHT_BIAS_QUANTIZATION = "WeightBiasQuantization"
#: ORT's graph rewrites that change float rounding (fusions into one kernel, folded constants into weights, layouts)
FLOAT_REWRITES = (
    "ConvAddFusion",
    "ConvMulFusion",
    "ConvBNFusion",
    "MatMul_BatchNormalization_Fusion",
    "MatMulAddFusion",
    "MatMulScaleFusion",
    "DivMulFusion",
    "GemmSumFusion",
    "ConvActivationFusion",
    "ConvAddActivationFusion",
    "GemmActivationFusion",
    "MatMulActivationFusion",
    "NchwcTransformer",
    "NhwcTransformer",
    "GeluFusionL1",
    "GeluFusionL2",
    "FastGeluFusion",
    "BiasGeluFusion",
    "QuickGeluFusion",
    "LayerNormFusionL1",
    "LayerNormFusionL2",
    "SimplifiedLayerNormFusion",
    "BiasSoftmaxFusion",
)
#: integer kernels whose arithmetic is integer products, sums and one power-of-two rescale when all scales are
#: powers of two (QLinearAdd/Mul/AveragePool/... requantize element-wise through other formulas: not admitted)
EXACT_INTEGER_KERNELS = {"QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger", "MatMulIntegerToFloat"}
#: ops whose output is an input value (or a choice among them): they never round
NON_ROUNDING = {
    "Identity",
    "Reshape",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Transpose",
    "Slice",
    "Gather",
    "Pad",
    "DepthToSpace",
    "SpaceToDepth",
    "Expand",
    "Tile",
    "Split",
    "Concat",
    "Relu",
    "MaxPool",
    "GlobalMaxPool",
    "Max",
    "Min",
    "Neg",
    "Abs",
    "Sign",
    "Where",
    "Clip",
    "Dropout",
    "QuantizeLinear",
    "DequantizeLinear",
    "Round",
    "Floor",
    "Ceil",
    "Cast",
    "Shape",
    "Size",
    "ReduceMax",
    "ReduceMin",
    "Equal",
    "Greater",
    "GreaterOrEqual",
    "Less",
    "LessOrEqual",
    "Not",
    "And",
    "Or",
    "ConstantOfShape",
    "Range",
    "ArgMax",
    "ArgMin",
}
#: ops whose outputs are integer or boolean tensors (indices, shapes, comparisons): no float rounding downstream of
#: them until a Cast back to float
INTEGER_RESULT_OPS = {"QuantizeLinear", "Shape", "Size", "ArgMax", "ArgMin", "Equal", "Greater", "GreaterOrEqual"}
INTEGER_RESULT_OPS |= {"Less", "LessOrEqual", "Not", "And", "Or"}
#: resampling ops: value-preserving only in nearest mode
RESAMPLING_OPS = {"Resize", "Upsample"}


@dataclass(frozen=True)
class Value:
    """What the analysis knows of a float tensor: every element is an integer multiple of ``2**lsb`` (when
    ``exact``), and no element's magnitude exceeds ``bound`` (inf: unknown)."""

    exact: bool
    lsb: int = 0
    bound: float = math.inf

    @property
    def steps(self) -> float:
        """Largest magnitude in units of the grid step (must stay below 2^24 for float32 to hold it exactly)."""
        return self.bound / 2.0**self.lsb if self.exact else math.inf


INEXACT = Value(False)


def _grid(lsb: int, bound: float) -> Value:
    """A value on ``2**lsb`` with magnitude <= bound; exact only while float32 holds every such value."""
    if not math.isfinite(bound) or bound / 2.0**lsb >= EXACT_LIMIT:
        return Value(False, lsb, bound)
    return Value(True, lsb, bound)


def constant_value(values: np.ndarray) -> Value:
    """The grid of a constant: the finest power-of-two step that all its elements are multiples of."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return Value(True, 0, 0.0)
    if not np.all(np.isfinite(values)):
        return INEXACT
    nonzero = values[values != 0]
    bound = float(np.max(np.abs(values)))
    if nonzero.size == 0:
        return Value(True, 0, 0.0)
    mantissa, exponent = np.frexp(nonzero)
    # a float64 m * 2^e with m in [0.5, 1) is an odd multiple of 2^(e - 1 - t) for t trailing significand bits
    scaled = np.ldexp(mantissa, 53).astype(np.int64)
    trailing = np.array([(int(s) & -int(s)).bit_length() - 1 for s in scaled])
    lsb = int(np.min(exponent - 53 + trailing))
    return _grid(lsb, bound)


def _join(values: list[Value], bound: float) -> Value:
    if not all(v.exact for v in values):
        return Value(False, 0, bound)
    return _grid(min(v.lsb for v in values), bound)


def _power_of_two_exponents(values: np.ndarray) -> np.ndarray | None:
    values = np.abs(np.asarray(values, dtype=np.float64))
    if values.size == 0 or np.any(values == 0) or not np.all(np.isfinite(values)):
        return None
    mantissa, exponent = np.frexp(values)
    return exponent - 1 if np.all(mantissa == 0.5) else None


class _Analysis:
    """Forward propagation of ``Value``s over a lowered (standard ONNX) model."""

    def __init__(self, proto: onnx.ModelProto, integer_input: float | None) -> None:
        self.constants = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
        self.producers = {output: node for node in proto.graph.node for output in node.output}
        self.values: dict[str, Value] = {}
        for name, array in self.constants.items():
            if np.issubdtype(array.dtype, np.floating):
                self.values[name] = constant_value(array)
            elif np.issubdtype(array.dtype, np.integer) and array.size:
                self.values[name] = _grid(0, float(np.max(np.abs(array.astype(np.float64)))))
        for graph_input in proto.graph.input:
            if graph_input.name not in self.constants:
                self.values[graph_input.name] = _grid(0, integer_input) if integer_input is not None else INEXACT
        self.inexact_nodes: list[onnx.NodeProto] = []
        self.integer_tensors = {
            name for name, array in self.constants.items() if not np.issubdtype(array.dtype, np.floating)
        }
        for node in proto.graph.node:
            if self._computes_on_integers(node):
                self.integer_tensors.update(node.output)
                continue
            result = self.transfer(node)
            for output in node.output:
                self.values[output] = result
            if not result.exact and node.op_type not in NON_ROUNDING:
                self.inexact_nodes.append(node)

    def _computes_on_integers(self, node: onnx.NodeProto) -> bool:
        """Integer/boolean results (indices, counts, masks): exact integer arithmetic, outside this analysis."""
        if node.op_type in INTEGER_RESULT_OPS:
            return True
        if node.op_type == "DequantizeLinear":
            return False  # integers to float: analysed
        if node.op_type == "Cast":
            target = next((a.i for a in node.attribute if a.name == "to"), onnx.TensorProto.FLOAT)
            return target not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
        return node.op_type != "Gather" and bool(node.input) and node.input[0] in self.integer_tensors

    def get(self, name: str) -> Value:
        return self.values.get(name, INEXACT) if name else Value(True, 0, 0.0)

    def transfer(self, node: onnx.NodeProto) -> Value:  # noqa: C901 - one case per op family, read top to bottom
        op = node.op_type
        inputs = [self.get(name) for name in node.input]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if op == "DequantizeLinear":
            q, scale = inputs[0], self.constants.get(node.input[1])
            zero = self.constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if node.input[0] not in self.values:  # a runtime integer tensor: bounded by its 8-bit type
                q = _grid(0, 128.0 if zero is not None and zero.dtype == np.int8 else 255.0)
            offset = float(np.max(np.abs(zero.astype(np.float64)))) if zero is not None else 0.0
            exponents = _power_of_two_exponents(scale) if scale is not None else None
            if exponents is None or not math.isfinite(q.bound):
                return INEXACT
            return _grid(int(exponents.min()), (q.bound + offset) * 2.0 ** int(exponents.max()))
        if op in ("Round", "Floor", "Ceil"):
            return _grid(0, math.ceil(inputs[0].bound) + 1.0) if math.isfinite(inputs[0].bound) else INEXACT
        if op in ("Sign",):
            return _grid(0, 1.0)
        if op == "Clip":
            low, high = (self.constants.get(node.input[i]) if len(node.input) > i else None for i in (1, 2))
            bound = inputs[0].bound
            if low is not None and high is not None:
                bound = min(bound, float(max(abs(float(np.min(low))), abs(float(np.max(high))))))
            return _join([inputs[0], *inputs[1:]], bound)
        if op == "Where":
            return _join(inputs[1:3], max(inputs[1].bound, inputs[2].bound))
        if op in RESAMPLING_OPS:
            mode = attrs.get("mode", b"nearest")
            mode = mode.decode() if isinstance(mode, bytes) else str(mode)
            return inputs[0] if mode == "nearest" else INEXACT
        if op in ("Concat", "Max", "Min"):
            return _join(inputs, max(v.bound for v in inputs))
        if op in NON_ROUNDING:
            return inputs[0] if inputs else INEXACT
        if op in ("Add", "Sub", "Sum"):
            return _join(inputs, sum(v.bound for v in inputs))
        if op == "Mul":
            a, b = inputs
            bound = a.bound * b.bound
            return _grid(a.lsb + b.lsb, bound) if a.exact and b.exact else Value(False, 0, bound)
        if op == "Div":
            divisor = self.constants.get(node.input[1])
            exponents = _power_of_two_exponents(divisor) if divisor is not None else None
            if exponents is None or not inputs[0].exact:
                return INEXACT
            bound = inputs[0].bound / 2.0 ** int(exponents.min())
            return _grid(inputs[0].lsb - int(exponents.max()), bound)
        if op in ("MatMul", "Gemm", "Conv"):
            return self._dot(node, inputs, attrs)
        if op in ("AveragePool", "GlobalAveragePool"):
            return self._average(node, inputs[0], attrs)
        return INEXACT  # BatchNormalization, Softmax, Sigmoid, Exp, ...: rounding the analysis does not bound

    def _dot(self, node, inputs: list[Value], attrs: dict) -> Value:
        """Sum of products: exact when both operands are on grids and the largest possible sum of |products| (from
        the actual constant weights, per output) stays within 2^24 steps."""
        x, w = inputs[0], inputs[1]
        if not (x.exact and w.exact):
            return INEXACT
        weights = self.constants.get(node.input[1])
        weight_value = self.values.get(node.input[1])
        if weights is None:
            weights = self._dequantized_constant(node.input[1])
        if weights is not None:
            magnitude = np.abs(np.asarray(weights, dtype=np.float64))
            if node.op_type == "Conv":
                per_output = magnitude.reshape(magnitude.shape[0], -1).sum(axis=1)
            elif node.op_type == "Gemm" and attrs.get("transB", 0):
                per_output = magnitude.sum(axis=1)
            else:
                per_output = magnitude.sum(axis=-2)
            bound = x.bound * float(np.max(per_output, initial=0.0))
        else:
            return INEXACT  # two runtime operands: the number of terms is not bounded here, so no exactness claim
        lsb = x.lsb + (weight_value.lsb if weight_value is not None else w.lsb)
        if node.op_type == "Gemm":
            alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
            if _power_of_two_exponents(np.array([alpha])) is None or _power_of_two_exponents(np.array([beta])) is None:
                return INEXACT
            lsb += int(np.log2(alpha))
            bound *= alpha
            if len(node.input) > 2 and node.input[2]:
                bias = self.get(node.input[2])
                bias = Value(bias.exact, bias.lsb + int(np.log2(beta)), bias.bound * beta)
                return _join([_grid(lsb, bound), bias], bound + bias.bound)
        elif node.op_type == "Conv" and len(node.input) > 2 and node.input[2]:
            bias = self.get(node.input[2])
            return _join([_grid(lsb, bound), bias], bound + bias.bound)
        return _grid(lsb, bound)

    def _dequantized_constant(self, name: str) -> np.ndarray | None:
        """Values of a weight that is ``DequantizeLinear`` of constant integers (what the lowering emits)."""
        producer = self.producers.get(name)
        if producer is None or producer.op_type != "DequantizeLinear":
            return None
        ints, scale = self.constants.get(producer.input[0]), self.constants.get(producer.input[1])
        if ints is None or scale is None:
            return None
        zero = self.constants.get(producer.input[2]) if len(producer.input) > 2 and producer.input[2] else None
        axis = next((a.i for a in producer.attribute if a.name == "axis"), 1)
        shape = [1] * ints.ndim
        if scale.size > 1:
            shape[axis] = -1
        centred = ints.astype(np.float64) - (zero.astype(np.float64).reshape(shape) if zero is not None else 0.0)
        return centred * scale.astype(np.float64).reshape(shape)

    def _average(self, node, x: Value, attrs: dict) -> Value:
        """An average is exact when the sum is and the count is a power of two (no padding)."""
        if not x.exact or any(attrs.get("pads", [0])):
            return INEXACT
        kernel = attrs.get("kernel_shape")
        if kernel is None:
            return INEXACT  # GlobalAveragePool: the count depends on the runtime shape; not claimed
        count = float(np.prod(kernel))
        exponents = _power_of_two_exponents(np.array([count]))
        if exponents is None:
            return INEXACT
        return _grid(x.lsb - int(exponents[0]), x.bound)


def analyse(proto: onnx.ModelProto, integer_input: float | None = None) -> list[onnx.NodeProto]:
    """The lowered model's arithmetic nodes whose float32 result the analysis cannot show to be exact."""
    return _Analysis(proto, integer_input).inexact_nodes


#: the plan's name in the lowered model's metadata (why each dot product runs where it runs)
PLAN_KEY = "qdeploy.onnxruntime.plan"


def reference_config(nhwc: bool = False) -> dict[str, str]:
    """Session entries under which ORT runs each float node with the kernel the reference runs (plan "reference
    kernels"); ``nhwc`` lets ORT run integer convolutions channels-last (float nodes are then checked to be
    untouched). Prepacking stays on: the float dot products read their constant operands as overridable
    initializers (``runtime_weights``), which ORT never prepacks, so only integer kernels (exact either way) are."""
    rewrites = [r for r in FLOAT_REWRITES if not (nhwc and r == "NhwcTransformer")]
    return {
        **BASE_CONFIG,
        "session.disable_quant_qdq": "1",
        "optimization.disable_specified_optimizers": ";".join(rewrites),
    }


def _float_dot_entries(proto: onnx.ModelProto, overridable: list[str]) -> dict[str, str]:
    """Session entries for a plan whose float dot products read ``overridable`` operands: no spinning workers; and
    no prepacking at all when a node holds a subgraph (If, Loop, Scan), whose constant weights ``runtime_weights``
    does not reach."""
    entries = dict(NO_SPINNING) if overridable else {}
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in proto.graph.node for a in n.attribute):
        entries["session.disable_prepacking"] = "1"
    return entries


def _constant_tensors(proto: onnx.ModelProto) -> tuple[set[str], dict[str, onnx.NodeProto]]:
    """Tensors ORT computes from constants only (it folds them before running), and each tensor's producer."""
    constants = {init.name for init in proto.graph.initializer}
    producers: dict[str, onnx.NodeProto] = {}
    for node in proto.graph.node:
        for output in node.output:
            producers[output] = node
        if all(not name or name in constants for name in node.input):
            constants.update(o for o in node.output if o)
    return constants, producers


def runtime_weights(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """``proto`` with the constant operands of its float dot products on runtime data (``integer.FLOAT_PREPACKED``
    ops: Conv, MatMul, Gemm, ...) read from overridable initializers (initializers also listed as graph inputs),
    and their names. The reference feeds every operand to its kernel at run time; ORT prepacks a constant weight
    for another kernel path (seen: a batch-1 MatMul taking the packed GEMM instead of the GEMV, the last bits of
    every output differing) but never an initializer a caller may override, so each dot product runs the
    reference's kernel while the session still prepacks the integer kernels' weights. An operand computed from
    constants (a ``DequantizeLinear`` of integer weights) becomes the value ORT computes for it, the number ORT
    folded before."""
    from qdeploy.targets.onnxruntime.integer import FLOAT_PREPACKED

    constants, producers = _constant_tensors(proto)
    initializers = {init.name: init for init in proto.graph.initializer}
    dot_indices = [
        index
        for index, node in enumerate(proto.graph.node)
        if node.op_type in FLOAT_PREPACKED and any(name and name not in constants for name in node.input)
    ]
    dots = [proto.graph.node[index] for index in dot_indices]
    operands = list(dict.fromkeys(name for node in dots for name in node.input if name and name in constants))
    if not operands:
        return proto, []
    result = onnx.ModelProto()
    result.CopyFrom(proto)
    graph = result.graph
    computed = [name for name in operands if name not in initializers]
    renamed: dict[str, str] = {}
    if computed:
        taken = {init.name for init in graph.initializer} | {t for n in graph.node for t in (*n.input, *n.output)}
        taken |= {n.name for n in graph.node}
        values = _folded_values(proto, computed, producers)
        for name in computed:
            fresh, index = f"{name}_runtime", 0
            while fresh in taken:
                index += 1
                fresh = f"{name}_runtime{index}"
            taken.add(fresh)
            renamed[name] = fresh
            graph.initializer.append(numpy_helper.from_array(values[name], fresh))
        for position in dot_indices:  # the copy keeps the node order; nodes may be unnamed
            node = graph.node[position]
            for index, name in enumerate(node.input):
                node.input[index] = renamed.get(name, name)
    declared = {value.name for value in graph.input}
    inits = {init.name: init for init in graph.initializer}
    overridable = [renamed.get(name, name) for name in operands]
    for name in overridable:
        if name not in declared:
            init = inits[name]
            graph.input.append(helper.make_tensor_value_info(name, init.data_type, list(init.dims)))
    _prune_unused(graph)
    onnx.checker.check_model(result)
    return result, overridable


def _folded_values(proto: onnx.ModelProto, names: list[str], producers: dict[str, onnx.NodeProto]) -> dict[str, np.ndarray]:
    """Values of tensors computed from constants only, computed by ORT (its kernels, as its constant folding)."""
    position = {id(node): index for index, node in enumerate(proto.graph.node)}  # nodes may be unnamed
    seen: set[int] = set()
    stack = list(names)
    while stack:
        node = producers.get(stack.pop())
        if node is None or position[id(node)] in seen:
            continue
        seen.add(position[id(node)])
        stack += [i for i in node.input if i]
    needed = [proto.graph.node[index] for index in sorted(seen)]
    used = {i for node in needed for i in node.input}
    # element types as shape inference gives them (float32 where it cannot tell)
    inferred = onnx.shape_inference.infer_shapes(proto).graph.value_info
    types = {value.name: value.type.tensor_type.elem_type for value in inferred if value.type.tensor_type.elem_type}
    graph = helper.make_graph(
        [onnx.NodeProto.FromString(node.SerializeToString()) for node in needed],
        "folded_operands",
        [],
        [helper.make_tensor_value_info(name, types.get(name, onnx.TensorProto.FLOAT), None) for name in names],
        [init for init in proto.graph.initializer if init.name in used],
    )
    model = helper.make_model(graph, opset_imports=list(proto.opset_import))
    model.ir_version = proto.ir_version
    session = ort_session(model.SerializeToString(), {}, None, "the onnxruntime target")
    return dict(zip(names, session.run(names, {}), strict=True))


def _prune_unused(graph: onnx.GraphProto) -> None:
    """Drop nodes whose outputs nothing reads and initializers nothing reads (the constants the overridable
    copies replaced), repeatedly."""
    outputs = {value.name for value in graph.output}
    while True:
        read = {i for node in graph.node for i in node.input} | outputs
        dead = [node for node in graph.node if not any(o in read for o in node.output if o)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {i for node in graph.node for i in node.input} | outputs
    unused = {init.name for init in graph.initializer if init.name not in read}
    kept = [init for init in graph.initializer if init.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    inputs = [value for value in graph.input if value.name not in unused]
    del graph.input[:]
    graph.input.extend(inputs)


def plan_model(
    proto: onnx.ModelProto, origin: dict[str, str], integer_input: float | None = None
) -> tuple[onnx.ModelProto, dict[str, str], str]:
    """The model to write, the session config it runs exactly under, and the plan's name. First choice: integer
    layers (``integer.integerize``) for every dot product shown exact, the rest under reference kernels; then
    ``plan_session`` on the model as lowered."""
    from qdeploy.targets.onnxruntime.integer import integerize

    analysis = _Analysis(proto, integer_input)
    exact = {name for name, value in analysis.values.items() if value.exact}

    integer, plan = integerize(proto, dict(origin), exact, reference_config())
    if plan.changed:
        refusal = None
        if not analysis.inexact_nodes:
            # the integer layers compute the same numbers as the nodes they replace, so the float rest is exact as
            # the lowered model's was: any fusion of it gives the same numbers (plan "exact arithmetic")
            config = {**BASE_CONFIG, "optimization.disable_specified_optimizers": WEIGHT_BIAS_QUANTIZATION}
            kernels = {n.op_type for n in optimized_graph(integer, config).graph.node}
            if not (kernels & INTEGER_KERNEL_NAMES) - EXACT_INTEGER_KERNELS:
                return integer, config, f"integer layers ({plan.summary()}) + exact arithmetic"
        # the float dot products read their constant operands at run time, as the reference does
        integer, overridable = runtime_weights(integer)
        # first with ORT's NHWC layout for the integer convolutions (no transposes between them), then without it
        for nhwc in (True, False):
            config = {**reference_config(nhwc=nhwc), **_float_dot_entries(integer, overridable)}
            try:
                check_reference_kernels(integer, optimized_graph(integer, config), origin, exempt=plan.nodes)
            except UnsupportedModelError as exc:  # a float node rewritten: try the next config
                refusal = exc
                continue
            name = f"integer layers ({plan.summary()}) + reference kernels"
            if plan.kept_float:
                name += "; float: " + "; ".join(f"{k}: {v}" for k, v in sorted(plan.kept_float.items()))
            return integer, config, name
        plan.kept_float = {"*": f"integer model refused by the reference-kernel check ({refusal})"}
    proto, config = plan_session(proto, origin, integer_input)
    name = "reference kernels" if config.get("session.disable_quant_qdq") == "1" else "exact arithmetic"
    if plan.kept_float:
        name += "; no integer layer: " + "; ".join(f"{k}: {v}" for k, v in sorted(plan.kept_float.items()))
    return proto, config, name


def plan_session(
    proto: onnx.ModelProto, origin: dict[str, str], integer_input: float | None = None
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """The model and the ORT session config entries under which it computes exactly what the reference computes
    (see the module docstring; under reference kernels the float dot products read their constant operands at run
    time, ``runtime_weights``); raises UnsupportedModelError naming the user's node when no plan is exact."""
    inexact = analyse(proto, integer_input)
    if not inexact:
        config = {**BASE_CONFIG, "optimization.disable_specified_optimizers": WEIGHT_BIAS_QUANTIZATION}
        optimized = optimized_graph(proto, config)
        kernels = {n.op_type for n in optimized.graph.node}
        if not (kernels & INTEGER_KERNEL_NAMES) - EXACT_INTEGER_KERNELS:
            return proto, config
    proto, overridable = runtime_weights(proto)
    config = {**reference_config(), **_float_dot_entries(proto, overridable)}
    check_reference_kernels(proto, optimized_graph(proto, config), origin)
    return proto, config


#: ORT's integer kernels (com.microsoft and ai.onnx QLinear*/Integer ops)
INTEGER_KERNEL_NAMES = EXACT_INTEGER_KERNELS | {
    "QLinearAdd",
    "QLinearMul",
    "QLinearAveragePool",
    "QLinearGlobalAveragePool",
    "QLinearConcat",
    "QLinearSigmoid",
    "QLinearLeakyRelu",
    "QLinearSoftmax",
    "QLinearReduceMean",
    "QLinearWhere",
    "DynamicQuantizeMatMul",
    "QLinearConvTranspose",
    "MatMulNBits",
}


def optimized_graph(proto: onnx.ModelProto, config: dict[str, str]) -> onnx.ModelProto:
    """The graph ORT actually runs for ``proto`` under ``config`` (its optimized model, read back)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "optimized.onnx"
        ort_session(proto.SerializeToString(), config, path, "the onnxruntime target")
        return onnx.load(str(path))


def _is_no_op(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> bool:
    """x * 1, x / 1, x + 0, x - 0: ORT removes them (NoopElimination) and the value is x either way."""
    identity = {"Mul": 1.0, "Div": 1.0, "Add": 0.0, "Sub": 0.0}.get(node.op_type)
    if identity is None or len(node.input) != 2 or node.input[1] not in constants:
        return False
    operand = constants[node.input[1]]
    return operand.size == 1 and float(operand.ravel()[0]) == identity


def check_reference_kernels(
    proto: onnx.ModelProto, optimized: onnx.ModelProto, origin: dict[str, str], exempt: set[str] = frozenset()
) -> None:
    """Every arithmetic node of ``proto`` on runtime data must still be in ``optimized``, by name, as the same op
    (so ORT runs the kernel the reference runs: a fusion removes or replaces the node); raise naming the user's node
    otherwise. ORT may still move layout ops and copy QuantizeLinear/DequantizeLinear pairs across them: those keep
    every value. ``exempt`` nodes compute on integers (``integer``): any kernel layout gives their numbers."""
    values = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    constants = set(values)
    for node in proto.graph.node:  # tensors computed from constants only are folded by ORT, as by the reference
        if node.input and all(not name or name in constants for name in node.input):
            constants.update(node.output)
    kept_nodes = {node.name: node for node in optimized.graph.node}
    for node in proto.graph.node:
        if node.op_type in NON_ROUNDING or all(not name or name in constants for name in node.input):
            continue
        if node.name in exempt:
            continue
        if _is_no_op(node, values):
            continue
        kept = kept_nodes.get(node.name)
        if kept is None or kept.op_type != node.op_type or kept.domain not in ("", "ai.onnx"):
            replacement = "removed" if kept is None else f"{kept.domain + '.' if kept.domain else ''}{kept.op_type}"
            source = origin.get(node.name, node.name)
            raise UnsupportedModelError(
                f"node {source}: onnxruntime rewrites its {node.op_type} ({replacement}) even with its float "
                "rewrites disabled, so the result could differ from the graph; compile this model for another "
                "target or report the ORT version"
            )
