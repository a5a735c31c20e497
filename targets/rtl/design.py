"""From a prepared QONNX graph to the integer datapath the Verilog describes: layers of constant matrix products
(adder graphs) followed by an activation (requantization, thresholds, or none), every width exact.

Each hardware vector element is an integer ``u`` whose meaning in the graph is ``k = scale * u + offset`` on the
tensor's grid (value ``k * 2**lsb``, grids from ``qdeploy.precision``). Bipolar activations are one bit
(``k = 2u - 1``), threshold outputs count the thresholds crossed (``k = out_bias + out_scale * u``). A layer folds
its input's encoding into its integer weights and bias, so its adder graph works on the raw bits.
Branches (a residual skip, QuantEltwiseAdd, Concat) keep the design a chain of layers: the vector between two layers
holds every tensor still to be read, and a layer passes the elements it does not compute through (``Layer.carry``);
an Add of two runtime tensors is a layer whose weights select both (or the skip joins the layer's own sum).

The host keeps what is not integer arithmetic: the graph input's quantizer (the prologue: the hardware takes the
quantizer's integer levels, as a sensor front end delivers them) and float ops after the last integer tensor (the
epilogue); both run on the golden executor, so the whole remains bit-exact with the graph.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import UnsupportedModelError
from qdeploy.input_quant import NODE_NAME as INPUT_QUANT_NODE
from qdeploy.ir import const_input, first_runtime_combiner, input_name, node_attr, output_name
from qdeploy.ops import PASS_THROUGH_OPS, SCALED_QUANT_OPS
from qdeploy.precision import LayerPrecision, constant_ints
from qdeploy.targets.rtl.adder_graph import AdderGraph, Term, _Builder, constant_matrix_product, signed_width

#: accumulators the simulation's 64-bit host arithmetic and numpy's int64 weights hold with margin
INT64_SAFE = 2**60
FIX = "use fewer bits, or --target hls4ml / onnxruntime"
#: what a refusal of an op lists
TAKES = "MatMul/Gemm, Conv, MaxPool, Pad, Add, Concat, Relu, Quant, BipolarQuant, MultiThreshold, Flatten/Reshape/Transpose"
#: an op with no circuit here: fewer bits would not help
OP_FIX = "use --target hls4ml or onnxruntime"
#: float ops that a scale or a lowering puts around an unsupported op: a refusal names that op, not them
_AFFINE_OPS = ("Mul", "Div", "Add", "Sub")


@dataclass
class Vector:
    """A hardware vector: per element the integer range of ``u`` and its meaning ``k = scale * u + offset`` on
    grid ``lsb``."""

    low: np.ndarray
    high: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    lsb: int

    @staticmethod
    def levels(low, high, lsb: int, size: int) -> Vector:
        ones = np.ones(size, dtype=np.int64)
        return Vector(ones * np.asarray(low), ones * np.asarray(high), ones.copy(), ones * 0, lsb)

    def __len__(self) -> int:
        return len(self.low)

    @property
    def signed(self) -> np.ndarray:
        return self.low < 0

    @property
    def widths(self) -> np.ndarray:
        """Port bits per element: unsigned when never negative, else two's complement."""
        pairs = zip(self.low, self.high, strict=True)
        return np.array([signed_width(lo, hi) if lo < 0 else max(int(hi).bit_length(), 1) for lo, hi in pairs], np.int64)

    @property
    def bits(self) -> int:
        return int(self.widths.sum())

    def take(self, places: np.ndarray) -> Vector:
        return Vector(self.low[places], self.high[places], self.scale[places], self.offset[places], self.lsb)

    def then(self, other: Vector) -> Vector:
        """This vector's elements, then ``other``'s, on the finer of the two grids (the coarser one's elements
        keep their bits: only their meaning's scale and offset grow)."""
        lsb = min(self.lsb, other.lsb)
        parts = [(v, 1 << (v.lsb - lsb)) for v in (self, other)]
        return Vector(
            np.concatenate([v.low for v, _ in parts]),
            np.concatenate([v.high for v, _ in parts]),
            np.concatenate([v.scale * f for v, f in parts]),
            np.concatenate([v.offset * f for v, f in parts]),
            lsb,
        )


@dataclass
class Requantize:
    """``clip(round(max(u, 0 if relu) / 2**shift), low, high)`` per element (shift <= 0 multiplies)."""

    shift: np.ndarray
    rounding: str
    relu: bool
    low: int
    high: int


@dataclass
class Thresholds:
    """Per element, the count of ascending integer thresholds ``u >= t`` (only those some input can cross both
    ways; ``always`` counts the ones every input crosses)."""

    thresholds: list[np.ndarray]
    always: np.ndarray


@dataclass
class MaxPool:
    """Per output element, the maximum of the accumulators (inputs aligned to one offset per channel) in its
    window: comparator trees."""

    windows: list[list[int]]


@dataclass
class Layer:
    name: str
    nodes: list[str]
    kind: str  # "dense", "xnor_popcount", "elementwise" or "maxpool"
    graph: AdderGraph
    activation: Requantize | Thresholds | MaxPool | None
    input: Vector
    accumulator: Vector
    output: Vector
    multiplications: int = 0
    stages: int = 0
    #: input elements passed through unchanged behind the computed ones (a residual skip, a concatenation's other
    #: branch, read by a later layer); ``output`` ends with them
    carry: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class Design:
    layers: list[Layer]
    input: Vector
    output: Vector
    prologue_nodes: list[str]
    input_tensor: str
    output_tensor: str
    notes: list[str] = field(default_factory=list)
    #: nodes no quantizer depends on (``qdeploy.bounds.float_tail``): the output there is verified within the bound
    #: derived from the graph's float32 arithmetic, which the exact integer sum meets however wide it is
    float_tail: set[str] = field(default_factory=set)


def _round(values: np.ndarray, mode: str) -> np.ndarray:
    """QONNX's rounding modes on exact rationals (float64 here holds the few-bit values exactly)."""
    from qonnx.custom_op.general.intquant import resolve_rounding_mode

    return resolve_rounding_mode(mode)(values)


def _trailing_zeros(values: np.ndarray) -> int:
    nonzero = [abs(int(v)) for v in values if v != 0]
    if not nonzero:
        return 0
    return min((v & -v).bit_length() - 1 for v in nonzero)


#: what the RTL datapath computes (after the host epilogue is cut off)
SUPPORTED_OPS = (
    "MatMul",
    "Add",
    "Relu",
    "MultiThreshold",
    "MaxPool",
    "Pad",
    "Concat",
    *SCALED_QUANT_OPS,
    *PASS_THROUGH_OPS,
)


def check_supported(model: ModelWrapper) -> None:
    """Refuse, naming the node, any op the RTL target has no circuit for (before precisions are derived)."""
    unsupported = [node for node in model.graph.node if node.op_type not in SUPPORTED_OPS]
    if unsupported:
        # a float scale Mul before a Softmax is refused only because the Softmax keeps it from the host epilogue
        node = next((n for n in unsupported if n.op_type not in _AFFINE_OPS), unsupported[0])
        combiner = first_runtime_combiner(model, node.output[0]) if node.op_type in _AFFINE_OPS else None
        if combiner is not None:  # a float scale the lowering could not fold: it meets another branch's
            share = " or let the branches share one quantizer (one scale)" if combiner.op_type == "Concat" else ""
            raise UnsupportedModelError(
                f"node {combiner.name}: {combiner.op_type} of two runtime tensors that carry float (non-power-of-two) "
                "scales; no integer datapath holds the result exactly. Use power-of-two scales on the branches it "
                f"combines (brevitas *FixedPoint quantizers){share}, or use --target onnxruntime"
            )
        raise UnsupportedModelError(
            f"node {node.name}: op {node.op_type} is not supported by the RTL target (it takes MLPs and convolutions: "
            f"{TAKES}); {OP_FIX}"
        )


def csd_digit_counts(values: np.ndarray) -> np.ndarray:
    """Per integer, its number of non-zero canonical signed digits (``len(csd_digits(v))``, vectorized): the
    non-zero digits of the NAF of ``n`` are the set bits of ``3n ^ n`` (Reitwiesner)."""
    magnitude = np.abs(np.asarray(values, dtype=np.int64))
    return np.bitwise_count((3 * magnitude) ^ magnitude).astype(np.int64)


def weight_digits(model: ModelWrapper, layers: dict[str, LayerPrecision]) -> list[tuple[str, int]]:
    """Per MatMul with constant weights, the non-zero canonical signed digits of its integer weights: the adders
    of its fully unrolled product before sub-expressions are shared (sharing saves up to about half on binary
    layers), found in milliseconds where building the adder graphs takes minutes on a wide layer."""
    counts = []
    for node in model.graph.node:
        weights = const_input(model, node, 1) if node.op_type == "MatMul" else None
        precision = layers.get(node.name)
        if weights is None or precision is None or precision.weight is None:
            continue
        counts.append((node.name, int(csd_digit_counts(constant_ints(weights, precision.weight)).sum())))
    return counts


def _first_quantizer(model: ModelWrapper):
    """The quantizer the graph input reaches through layout ops: the hardware takes its integer levels."""
    tensor, prologue = input_name(model), []
    while True:
        consumers = model.find_consumers(tensor) or []
        if len(consumers) != 1:
            raise UnsupportedModelError(f"tensor {tensor} feeds {len(consumers)} nodes; the RTL target needs a chain")
        node = consumers[0]
        prologue.append(node.name)
        if node.op_type in SCALED_QUANT_OPS or node.op_type == "MultiThreshold":
            return node, prologue
        if node.op_type not in PASS_THROUGH_OPS:
            raise UnsupportedModelError(
                f"node {node.name} ({node.op_type}) computes on the float model input before any quantizer; "
                "quantize the input first (brevitas QuantIdentity / qdeploy quantize does)"
            )
        tensor = node.output[0]


class _Pending:
    """A layer being collected: MatMul (weights over every element of the current vector), then optional bias Add,
    residual Add and Relu, until its activation. ``tensor`` is the graph tensor its rows compute so far."""

    def __init__(self, nodes: list[str], weights: np.ndarray, weight_lsb: int, multiplications: int, tensor: str):
        self.nodes = nodes
        self.weights = weights  # [outputs, inputs] integers on weight_lsb
        self.weight_lsb = weight_lsb
        self.bias: np.ndarray | None = None
        self.bias_lsb = 0
        self.relu = False
        self.multiplications = multiplications
        self.tensor = tensor


def build_design(model: ModelWrapper, layers: dict[str, LayerPrecision], share: bool = True) -> Design:
    """The integer datapath of ``model`` (a prepared graph whose last tensor is integer) from its precisions."""
    first, prologue = _first_quantizer(model)
    precision = layers[first.name]
    size = int(np.prod(model.get_tensor_shape(first.output[0])[1:]))
    vector = _input_vector(model, first, precision.output.collapse(), size)
    design = Design([], vector, vector, prologue, first.output[0], output_name(model))
    builder = _DatapathBuilder(model, layers, design, share, first.output[0])
    for node in _chain_order(model, set(prologue), first.output[0]):
        builder.visit(node)
    builder.close()
    if not design.layers:
        if first.name.startswith(INPUT_QUANT_NODE):  # the graph's own quantizers folded into the declared one
            raise UnsupportedModelError(
                f"node {first.name}: the graph's quantizers fold into the declared input quantizer (--input-quant), "
                "which the host applies before the hardware, so no circuit is left; use --target hls4ml or "
                "onnxruntime"
            )
        raise UnsupportedModelError(
            f"node {first.name}: the graph has nothing after this input quantizer, which the host applies before the "
            "hardware (the RTL takes its integer levels), so no circuit is left; declare the input precision "
            "(--input-quant 'fixed<16,6>': the quantizer then runs in hardware) or use --target hls4ml or onnxruntime"
        )
    return design


def _runtime_inputs(model: ModelWrapper, node) -> list[str]:
    return [name for name in node.input if name and model.get_initializer(name) is None]


def _chain_order(model: ModelWrapper, prologue: set[str], start: str) -> list:
    """The nodes after the input quantizer in a topological order that follows one branch as far as it goes
    before taking up another (ONNX exporters interleave parallel branches node by node; a layer is collected from
    consecutive nodes)."""
    todo = [node for node in model.graph.node if node.name not in prologue]
    produced = {start}
    order, last = [], {start}
    while todo:
        ready = [n for n in todo if all(name in produced for name in _runtime_inputs(model, n))]
        if not ready:
            node = todo[0]
            missing = next(name for name in _runtime_inputs(model, node) if name not in produced)
            raise UnsupportedModelError(
                f"node {node.name}: its input {missing} is not computed from the graph's input quantizer (a second "
                f"graph input or a runtime constant); {OP_FIX}"
            )
        node = next((n for n in ready if last & set(n.input)), ready[0])
        todo.remove(node)
        order.append(node)
        produced.update(node.output)
        last = set(node.output)
    return order


class _DatapathBuilder:
    """Layers from the nodes in chain order. The hardware vector between two layers holds every tensor still to be
    read: the tensor the last layer computed, and the elements of others (a residual skip, a concatenation's other
    branch) the layer passes through unchanged. ``where`` maps each such tensor to its elements' places in the
    vector (-1: a constant zero, from a Pad), so layout ops (Reshape, Transpose, Pad, Concat) are only relabelings
    that a following layer's weights absorb."""

    def __init__(self, model: ModelWrapper, layers: dict[str, LayerPrecision], design: Design, share: bool, start: str):
        self.model, self.layers, self.design, self.share = model, layers, design, share
        self.current = design.input
        self.where: dict[str, np.ndarray] = {start: np.arange(len(design.input))}
        self.wiring: dict[str, list[str]] = {start: []}  # layout nodes a tensor went through since its layer
        self.pending: _Pending | None = None
        self.reading: set[str] = set()  # the inputs of the node being visited
        self.reads: dict[str, int] = {}  # per tensor, the node inputs (and graph outputs) still to read it
        for node in model.graph.node:
            for name in _runtime_inputs(model, node):
                self.reads[name] = self.reads.get(name, 0) + 1
        for output in model.graph.output:
            self.reads[output.name] = self.reads.get(output.name, 0) + 1

    # -- the node kinds ------------------------------------------------------------------------------------------
    def visit(self, node) -> None:
        # the node's inputs stay in the vector while an earlier layer is finished, not after the node takes them
        self.reading = set(_runtime_inputs(self.model, node))
        for name in _runtime_inputs(self.model, node):
            self.reads[name] -= 1
        op = node.op_type
        if op in PASS_THROUGH_OPS or op == "Pad":
            self._relabel(node)
        elif op == "Concat":
            self._concat(node)
        elif op == "MatMul":
            self._matmul(node)
        elif op == "Add":
            self._add(node)
        elif op == "Relu":
            pending = self._extendable(node, lambda p: not p.relu)
            pending.nodes.append(node.name)
            pending.relu = True
            pending.tensor = node.output[0]
        elif op == "MaxPool":
            self._max_pool(node)
        elif (op in SCALED_QUANT_OPS and self.model.get_initializer(node.input[0]) is None) or op == "MultiThreshold":
            pending = self._extendable(node, lambda p: True)
            pending.nodes.append(node.name)
            self._flush((node, self.layers[node.name]), node.output[0])
        else:
            raise UnsupportedModelError(
                f"node {node.name}: op {op} is not supported by the RTL target (it takes MLPs and convolutions: "
                f"{TAKES}); {OP_FIX}"
            )
        self.reading = set()

    def close(self) -> None:
        """The graph output alone, in order, as the last layer's output."""
        self._flush(None)
        out = self.design.output_tensor
        if out not in self.where:
            raise UnsupportedModelError(f"tensor {out}: the graph output is not computed by the datapath; {OP_FIX}")
        if not np.array_equal(self.where[out], np.arange(len(self.current))):
            self.pending = self._selection(out, "output")
            self._flush(None)
        self.design.output = self.current

    def _relabel(self, node) -> None:
        """Reshape/Flatten/Identity/Dropout keep the element order; Transpose and Pad select elements."""
        source, output = node.input[0], node.output[0]
        size = len(self.pending.weights) if self._is_pending(source) else len(self._places(node, source))
        order = None
        if node.op_type == "Transpose":
            order = _transpose_order(self.model, node, size)
        elif node.op_type == "Pad":
            order = _pad_order(self.model, node)
        if self._is_pending(source):
            if self.reads[source] == 0:  # the layer computes its outputs in this order
                if order is not None:
                    self.pending = _rewire(self.pending, node.name, order)
                self.pending.tensor = output
                return
            self._flush(None)  # another node reads the layer's tensor as it is
        places = self._places(node, source)
        if order is not None:
            places = np.where(order >= 0, places[np.maximum(order, 0)], -1)
        self.where[output] = places
        self.wiring[output] = [*self.wiring[source], node.name]

    def _concat(self, node) -> None:
        """A concatenation is a relabeling of its inputs' elements (each already in the vector)."""
        if any(self._is_pending(name) for name in node.input):
            self._flush(None)
        shape = self.model.get_tensor_shape(node.output[0])
        axis = int(node_attr(node, "axis", 0))
        axis = axis + len(shape) if shape is not None and axis < 0 else axis
        parts = []
        for name in node.input:
            part_shape = self.model.get_tensor_shape(name)
            if shape is None or part_shape is None or axis == 0 or name not in self.where:
                raise UnsupportedModelError(
                    f"node {node.name}: Concat of constants, of tensors of unknown shape or along the batch axis; {OP_FIX}"
                )
            parts.append(self.where[name].reshape(part_shape[1:]))
        self.where[node.output[0]] = np.concatenate(parts, axis=axis - 1).ravel()
        self.wiring[node.output[0]] = [node.name]

    def _matmul(self, node) -> None:
        source = node.input[0]
        self._flush(None)
        weights = const_input(self.model, node, 1)
        lp = self.layers[node.name]
        if weights is None or lp.weight is None:
            raise UnsupportedModelError(f"node {node.name}: MatMul needs constant weights on the RTL target")
        ints = constant_ints(weights, lp.weight).T
        places = self._places(node, source)
        if ints.shape[1] != len(places):
            raise UnsupportedModelError(f"node {node.name}: {ints.shape[1]} weight rows for {len(places)} inputs")
        full = _gather_columns(ints, places, len(self.current))
        names = [*self.wiring.get(source, []), node.name]
        self.pending = _Pending(names, full, lp.weight.lsb, int(np.count_nonzero(full)), node.output[0])
        self.reading = set()

    def _add(self, node) -> None:
        bias = const_input(self.model, node, 1)
        if bias is not None:
            lp = self.layers[node.name]
            if lp.bias is None:
                raise UnsupportedModelError(f"node {node.name}: Add with a constant of no fixed-point form; {FIX}")
            pending = self._extendable(node, lambda p: p.bias is None and not p.relu)
            pending.nodes.append(node.name)
            pending.bias = np.broadcast_to(constant_ints(bias, lp.bias).ravel(), (len(pending.weights),)).copy()
            pending.bias_lsb = lp.bias.lsb
            pending.tensor = node.output[0]
            return
        left, right = node.input[0], node.input[1]
        shapes = [self.model.get_tensor_shape(name) for name in (left, right)]
        if shapes[0] is None or shapes[0] != shapes[1]:
            raise UnsupportedModelError(
                f"node {node.name}: Add of two runtime tensors of shapes {shapes[0]} and {shapes[1]} (the RTL target "
                f"adds equal shapes, no broadcasting); {OP_FIX}"
            )
        pending = self.pending
        layer_side = next((name for name in (left, right) if self._is_pending(name)), None)
        if layer_side is not None and not pending.relu and self.reads[layer_side] == 0 and left != right:
            # a layer's sum plus the skip (a residual block): the skip's elements join the layer's sum with weight
            # 2**-weight_lsb (the skip is on the vector's grid, the products on the weights' grid times it)
            skip = self._places(node, right if layer_side == left else left)
            if pending.weight_lsb > 0:
                pending.weights = pending.weights << pending.weight_lsb
                pending.weight_lsb = 0
            pending.weights = pending.weights + _gather_columns(
                np.eye(len(skip), dtype=np.int64) << -pending.weight_lsb, skip, len(self.current)
            )
        else:  # two tensors in the vector: an element-wise layer with both selections
            self._flush(None)
            pending = self._selection(left, node.name)
            pending.weights = pending.weights + self._selection(right, node.name).weights
            pending.nodes = [*pending.nodes, *self.wiring.get(right, [])]
        if node.name not in pending.nodes:
            pending.nodes.append(node.name)
        pending.tensor = node.output[0]
        self.pending = pending
        self.reading = set()

    def _max_pool(self, node) -> None:
        source = node.input[0]
        self._flush(None)
        if np.any(self._places(node, source) < 0):  # a zero-padded tensor: its zeros become elements first
            self.pending = self._selection(source, node.name)
            self._flush(None)
        self.reading = set()
        carry = self._carried()
        output = _max_pool(self.design, self.model, node, self.current, self.where[source], carry)
        self._moved(output, carry, node.output[0], len(output) - len(carry))

    # -- the vector ----------------------------------------------------------------------------------------------
    def _is_pending(self, tensor: str) -> bool:
        return self.pending is not None and self.pending.tensor == tensor

    def _places(self, reader, tensor: str) -> np.ndarray:
        """Where ``tensor``'s elements are in the vector; ``reader`` (a node or its name) names the refusal."""
        if tensor not in self.where:
            name = getattr(reader, "name", reader)
            raise UnsupportedModelError(f"node {name}: its input {tensor} has no place in the datapath; {OP_FIX}")
        return self.where[tensor]

    def _extendable(self, node, fits) -> _Pending:
        """The pending layer when ``node`` can join it (it reads the layer's tensor, nothing else does, and
        ``fits``); else an element-wise layer on ``node``'s input."""
        source = node.input[0]
        if self._is_pending(source) and self.reads[source] == 0 and fits(self.pending):
            return self.pending
        self._flush(None)
        self.pending = self._selection(source, node.name)
        self.reading = set()
        return self.pending

    def _selection(self, tensor: str, reader: str) -> _Pending:
        """An element-wise layer whose rows select the tensor's elements (a zero row for a padded zero)."""
        places = self._places(reader, tensor)
        weights = _gather_columns(np.eye(len(places), dtype=np.int64), places, len(self.current))
        return _Pending(list(self.wiring.get(tensor, [])), weights, 0, 0, tensor)

    def _live(self, tensor: str) -> bool:
        return self.reads.get(tensor, 0) > 0 or tensor in self.reading

    def _carried(self, exclude: str | None = None) -> np.ndarray:
        """The elements of every tensor still to be read (but ``exclude``), which the next layer passes through."""
        live = [name for name in self.where if self._live(name) and name != exclude]
        places = [self.where[name] for name in live]
        return np.unique(np.concatenate([p[p >= 0] for p in places])) if places else np.zeros(0, np.int64)

    def _flush(self, activation, output: str | None = None) -> None:
        """Finish the pending layer: its outputs (``output``, else the pending tensor, which they then replace),
        then the carried elements, are the new vector."""
        pending = self.pending
        if pending is None:
            return
        self.pending = None
        output = output or pending.tensor
        carry = self._carried(exclude=output)
        vector = _finish(self.design, pending, self.current, activation, self.share, carry)
        self._moved(vector, carry, output, len(vector) - len(carry))

    def _moved(self, vector: Vector, carry: np.ndarray, tensor: str, computed: int) -> None:
        """The vector after a layer: ``computed`` new elements (``tensor``), then ``carry`` from the old one."""
        moved = np.full(len(self.current), -1, dtype=np.int64)
        moved[carry] = computed + np.arange(len(carry))
        self.where = {
            name: np.where(places >= 0, moved[np.maximum(places, 0)], -1)
            for name, places in self.where.items()
            if self._live(name)
        }
        self.where[tensor] = np.arange(computed)
        self.wiring = {name: self.wiring.get(name, []) for name in self.where}
        self.wiring[tensor] = []
        self.current = vector


def _gather_columns(weights: np.ndarray, places: np.ndarray, size: int) -> np.ndarray:
    """Weights over a tensor's elements as weights over the whole vector of ``size`` elements, element ``i`` being
    at ``places[i]`` (-1: a constant zero, whose column is dropped; a place read twice, as reflect padding does,
    sums its columns). The product with the selection matrix without a dense integer product: numpy has no BLAS
    for integers, and a 6,272 x 2,352 unrolled convolution behind a Transpose took over 10 minutes that way."""
    result = np.zeros((weights.shape[0], size), dtype=np.result_type(weights, np.int64))
    keep = places >= 0
    np.add.at(result.T, places[keep], weights.T[keep])
    return result


def _rewire(pending: _Pending, name: str, order: np.ndarray) -> _Pending:
    """Element ``j`` of the result is element ``order[j]`` of the tensor (-1: a zero, a constant pad): before its
    activation the layer computes its outputs in that order (weight rows and bias gathered)."""
    keep = (order >= 0)[:, None]
    pending.nodes.append(name)
    pending.weights = np.where(keep, pending.weights[np.maximum(order, 0)], 0)
    if pending.bias is not None:
        pending.bias = np.where(order >= 0, pending.bias[np.maximum(order, 0)], 0)
    return pending


def _pad_order(model: ModelWrapper, node) -> np.ndarray:
    """The flat input index of each flat output element of a Pad (-1 where a constant zero is padded in):
    constant (zero), edge, reflect and wrap modes are all wiring."""
    shape = model.get_tensor_shape(node.input[0])
    if len(node.input) > 1 and node.input[1]:
        pads = const_input(model, node, 1)
    else:
        pads = node_attr(node, "pads")
    value = const_input(model, node, 2) if len(node.input) > 2 and node.input[2] else node_attr(node, "value", 0.0)
    axes = const_input(model, node, 3) if len(node.input) > 3 and node.input[3] else None
    mode = node_attr(node, "mode", "constant")
    numpy_mode = {"constant": "constant", "edge": "edge", "reflect": "reflect", "wrap": "wrap"}.get(mode)
    if shape is None or pads is None or value is None or axes is not None or numpy_mode is None:
        raise UnsupportedModelError(f"node {node.name}: Pad with runtime pads, axes or mode {mode!r}; {OP_FIX}")
    pads = np.asarray(pads, dtype=np.int64).ravel()
    rank = len(shape)
    widths = [(int(pads[d]), int(pads[d + rank])) for d in range(rank)]
    if widths[0] != (0, 0) or np.any(pads < 0) or (mode == "constant" and float(np.asarray(value).ravel()[0]) != 0.0):
        raise UnsupportedModelError(
            f"node {node.name}: Pad of the batch axis, cropping, or a non-zero constant is not supported by the RTL "
            f"target; {OP_FIX}"
        )
    index = np.arange(int(np.prod(shape[1:]))).reshape(shape[1:])
    extra = {"constant_values": -1} if numpy_mode == "constant" else {}
    return np.pad(index, widths[1:], mode=numpy_mode, **extra).ravel()


def _transpose_order(model: ModelWrapper, node, size: int) -> np.ndarray:
    """The flat input index of each flat output element of a Transpose (one sample, row-major): pure wiring."""
    shape = model.get_tensor_shape(node.input[0])
    perm = node_attr(node, "perm")
    if shape is not None and perm is None:
        perm = list(range(len(shape)))[::-1]
    if shape is None or int(np.prod(shape[1:])) != size or perm[0] != 0:
        raise UnsupportedModelError(
            f"node {node.name}: Transpose of a tensor of unknown shape or across the batch axis; {OP_FIX}"
        )
    return np.arange(size).reshape(shape[1:]).transpose([p - 1 for p in perm[1:]]).ravel()


def _pool_windows(node, in_shape: list[int], out_shape: list[int]) -> list[list[int]]:
    """Per output element (NC + spatial, row-major), the flat input indices its MaxPool window covers; padding is
    -inf in ONNX, so padded positions are left out."""
    spatial = len(in_shape) - 2
    kernel = list(node_attr(node, "kernel_shape"))
    strides = list(node_attr(node, "strides", [1] * spatial))
    dilations = list(node_attr(node, "dilations", [1] * spatial))
    pads = list(node_attr(node, "pads", [0] * 2 * spatial))
    if node_attr(node, "auto_pad", "NOTSET") != "NOTSET" or int(node_attr(node, "storage_order", 0)) != 0:
        raise UnsupportedModelError(f"node {node.name}: MaxPool with auto_pad or storage_order; {OP_FIX}")
    channels, sizes, out_sizes = in_shape[1], in_shape[2:], out_shape[2:]
    flat = np.arange(int(np.prod(in_shape[1:]))).reshape(in_shape[1:])
    windows = []
    for c in range(channels):
        for position in itertools.product(*(range(n) for n in out_sizes)):
            ranges = []
            for d in range(spatial):
                start = position[d] * strides[d] - pads[d]
                ranges.append([i for i in range(start, start + dilations[d] * kernel[d], dilations[d]) if 0 <= i < sizes[d]])
            window = [int(flat[(c, *index)]) for index in itertools.product(*ranges)]
            if not window:
                raise UnsupportedModelError(f"node {node.name}: a MaxPool window covers padding only; {OP_FIX}")
            windows.append(window)
    return windows


def _max_pool(design: Design, model: ModelWrapper, node, vector: Vector, places: np.ndarray, carry: np.ndarray) -> Vector:
    """A MaxPool layer on the integer levels: ``k = scale * u + offset`` with ``scale > 0`` is monotonic in ``u``,
    so the maximum of the levels is the maximum of ``u + (offset - channel offset) / scale`` over the window, on
    one scale and offset per channel (a threshold layer's offset differs by element where some thresholds are
    always crossed). The pooled tensor is at ``places`` in the vector; ``carry`` passes through."""
    x = vector.take(places)
    in_shape, out_shape = model.get_tensor_shape(node.input[0]), model.get_tensor_shape(node.output[0])
    if in_shape is None or out_shape is None or int(np.prod(in_shape[1:])) != len(x) or len(in_shape) < 3:
        raise UnsupportedModelError(f"node {node.name}: MaxPool on a tensor of unknown shape; {OP_FIX}")
    channels = in_shape[1]
    per_channel = len(x) // channels
    aligned = np.zeros(len(x), np.int64)
    channel_scale, channel_offset = np.zeros(channels, np.int64), np.zeros(channels, np.int64)
    for c in range(channels):
        part = slice(c * per_channel, (c + 1) * per_channel)
        scales, offsets = x.scale[part], x.offset[part]
        base = int(offsets.min())
        if np.any(scales != scales[0]) or scales[0] <= 0 or np.any((offsets - base) % scales[0]):
            raise UnsupportedModelError(
                f"node {node.name}: MaxPool over a channel whose elements are encoded on different scales; {OP_FIX}"
            )
        aligned[part] = (offsets - base) // scales[0]
        channel_scale[c], channel_offset[c] = scales[0], base
    builder = _Builder(list(zip(vector.low.tolist(), vector.high.tolist(), strict=True)))
    for i in range(len(x)):
        builder.output(Term(builder.leaf(int(places[i])), 0, 1), int(aligned[i]))
    graph = builder.graph
    accumulator = Vector(
        x.low + aligned,
        x.high + aligned,
        np.repeat(channel_scale, per_channel),
        np.repeat(channel_offset, per_channel),
        x.lsb,
    )
    windows = _pool_windows(node, in_shape, out_shape)
    per_output = len(windows) // channels
    output = Vector(
        np.array([accumulator.low[w].max() for w in windows], np.int64),
        np.array([accumulator.high[w].max() for w in windows], np.int64),
        np.repeat(channel_scale, per_output),
        np.repeat(channel_offset, per_output),
        x.lsb,
    )
    output = output.then(vector.take(carry))
    layer = Layer(node.name, [node.name], "maxpool", graph, MaxPool(windows), vector, accumulator, output, carry=carry)
    design.layers.append(layer)
    design.output = output
    return output


def _input_vector(model: ModelWrapper, first, grid, size: int) -> Vector:
    """The hardware input's encoding: the input quantizer's integer levels, or, when that quantizer is a
    MultiThreshold (a lowered BipolarQuant or thresholded quantizer), the count ``u`` of thresholds crossed with
    ``k = out_scale * u + out_bias`` when that is narrower: a bipolar input is then one bit, not two."""
    levels = Vector.levels(int(grid.kmin), int(grid.kmax), grid.lsb, size)
    if first.op_type != "MultiThreshold":
        return levels
    thresholds = model.get_initializer(first.input[1])
    if thresholds is None:
        return levels
    scale = float(node_attr(first, "out_scale", 1.0)) * 2.0**-grid.lsb
    offset = float(node_attr(first, "out_bias", 0.0)) * 2.0**-grid.lsb
    if scale <= 0 or scale != int(scale) or offset != int(offset):
        return levels
    ones = np.ones(size, dtype=np.int64)
    counted = Vector(ones * 0, ones * int(thresholds.shape[-1]), ones * int(scale), ones * int(offset), grid.lsb)
    return counted if counted.bits < levels.bits else levels


def _finish(design: Design, pending: _Pending, x: Vector, activation, share: bool, carry: np.ndarray) -> Vector:
    weights = pending.weights
    product_lsb = x.lsb + pending.weight_lsb
    lsb = min(product_lsb, pending.bias_lsb) if pending.bias is not None else product_lsb
    up = product_lsb - lsb
    effective = (weights * x.scale[None, :]) << up
    constant = (weights @ x.offset) << up
    if pending.bias is not None:
        constant = constant + (pending.bias << (pending.bias_lsb - lsb))
    name = "_".join(pending.nodes) if pending.nodes else "identity"
    first_node = pending.nodes[0] if pending.nodes else name

    # The accumulator is exact however wide. Where the graph's float32 sum of it passes 2^24 steps, the core decides
    # before any target runs (Target.exact_sums): a quantizer whose level there depends on the float32 rounding is
    # refused by qdeploy.order_dependence, and past the last quantizer the output is verified within the bound
    # derived from the graph's float arithmetic, which the exact sum meets.
    magnitude = np.abs(effective) @ np.maximum(np.abs(x.low), np.abs(x.high)) + np.abs(constant)
    if np.any(magnitude >= INT64_SAFE):
        raise UnsupportedModelError(
            f"node {first_node}: its accumulator reaches {int(magnitude.max()):,} steps, beyond the 2^60 the RTL "
            f"target's simulation holds; {FIX}"
        )
    binary_input = bool(np.all((x.low == 0) & (x.high == 1) & (x.scale == 2) & (x.offset == -1)))
    binary_weights = bool(np.all(np.abs(weights) == 1))
    quant = activation is not None and activation[0].op_type != "MultiThreshold"
    n_out = len(weights)

    # one-bit inputs meaning -1/+1 and weights of magnitude 1 (a bipolar layer): the XNOR-popcount arithmetic,
    # sum_i w_i (2 b_i - 1) = 2 * sum_i w_i b_i - sum_i w_i, built below as a +-1 matrix on the bits so that pairs
    # b_a +- b_b are shared across rows (a per-row popcount of XNORs shares nothing: 4x the adder bits at 64x64)
    if binary_input and binary_weights:
        kind = "xnor_popcount"
    else:
        kind = "dense" if pending.nodes and pending.multiplications else "elementwise"
    fold_constant = quant or pending.relu  # requantization/Relu need k itself; thresholds and raw outputs do not
    shifts = np.array(
        [_trailing_zeros(np.append(effective[j], constant[j] if fold_constant else 0)) for j in range(n_out)],
        dtype=np.int64,
    )
    reduced = effective >> shifts[:, None]
    in_constant = (constant >> shifts) if fold_constant else np.zeros(n_out, np.int64)
    graph = constant_matrix_product(reduced, list(zip(x.low.tolist(), x.high.tolist(), strict=True)), in_constant, share)
    factor = np.left_shift(np.ones(n_out, dtype=np.int64), shifts)
    offset = np.zeros(n_out, np.int64) if fold_constant else constant
    acc_low = np.array([o.low for o in graph.outputs], dtype=np.int64)
    acc_high = np.array([o.high for o in graph.outputs], dtype=np.int64)
    accumulator = Vector(acc_low, acc_high, factor, offset, lsb)

    if activation is None:
        act, output = None, accumulator
    elif not quant:
        act, output = _thresholds(activation, accumulator)
    else:
        if np.any(offset != 0):  # a requantizer needs k = factor * u exactly
            raise AssertionError("requantization after a layer whose constant was not folded")
        act, output = _requantize(activation, accumulator, pending.relu)
    output = output.then(x.take(carry))
    layer = Layer(name, pending.nodes, kind, graph, act, x, accumulator, output, pending.multiplications, carry=carry)
    design.layers.append(layer)
    design.output = output
    return output


def _requantize(activation, acc: Vector, relu: bool) -> tuple[Requantize, Vector]:
    node, precision = activation
    spec = precision.quant
    if spec is None:
        raise UnsupportedModelError(f"node {node.name}: quantizer without a fixed-point form; {FIX}")
    low_int, high_int = spec.int_range
    shifts = np.array([spec.scale_exp - acc.lsb - (int(f).bit_length() - 1) for f in acc.scale], dtype=np.int64)
    lows, highs = [], []
    for lo, hi, shift in zip(acc.low, acc.high, shifts, strict=True):
        lo, hi = (max(lo, 0), max(hi, 0)) if relu else (lo, hi)
        bounds = _round(np.array([lo, hi], dtype=np.float64) / 2.0 ** int(shift), spec.rounding)
        lows.append(int(np.clip(bounds[0], low_int, high_int)))
        highs.append(int(np.clip(bounds[1], low_int, high_int)))
    output = Vector(
        np.array(lows), np.array(highs), np.ones(len(acc), np.int64), np.zeros(len(acc), np.int64), spec.scale_exp
    )
    return Requantize(shifts, spec.rounding, relu, low_int, high_int), output


def _thresholds(activation, acc: Vector) -> tuple[Thresholds, Vector]:
    node, precision = activation
    values = np.asarray(precision.threshold_values, dtype=np.float64)
    # one row per channel: on a flattened NCHW tensor (a convolution's) a channel is a run of len / rows elements
    # (the layout as the node says: qonnx reads an unannotated rank-3 tensor as channels-last)
    channel_major = node_attr(node, "data_layout", None) in ("NC", "NCW", "NCHW")
    if values.shape[0] not in (1, len(acc)) and not (channel_major and len(acc) % values.shape[0] == 0):
        raise UnsupportedModelError(f"node {node.name}: {values.shape[0]} rows of thresholds for {len(acc)} channels")
    run = len(acc) // values.shape[0]
    out_scale = int(float(node_attr(node, "out_scale", 1.0)))
    out_bias = int(float(node_attr(node, "out_bias", 0.0)))
    rows, always, counts = [], [], []
    for j in range(len(acc)):
        row = values[j // run]
        # x >= t with x = k * 2**lsb and k integer  <=>  k >= ceil(t / 2**lsb)
        k_thresholds = np.ceil(np.ldexp(row, -acc.lsb)).astype(np.int64)
        # k = factor * u + offset  <=>  u >= ceil((K - offset) / factor)
        u_thresholds = -((-(k_thresholds - acc.offset[j])) // acc.scale[j])
        u_thresholds = np.sort(u_thresholds)
        crossed_by_all = u_thresholds <= acc.low[j]
        variable = u_thresholds[~crossed_by_all & (u_thresholds <= acc.high[j])]
        rows.append(variable)
        always.append(int(crossed_by_all.sum()))
        counts.append(len(variable))
    always_arr = np.array(always, dtype=np.int64)
    output = Vector(
        np.zeros(len(acc), np.int64),
        np.array(counts, np.int64),
        np.full(len(acc), out_scale, np.int64),
        out_bias + out_scale * always_arr,
        0,
    )
    return Thresholds(rows, always_arr), output
