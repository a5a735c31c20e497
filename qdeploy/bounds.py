"""Derived error bounds for graphs that compute in float past their last quantizer.

Everything a quantizer depends on must come out of a target bit for bit: a different rounding there can flip a
quantized value. The *float tail* -- the nodes no quantizer depends on (an output scale, BatchNorm on the logits, a
float bias, Softmax, a float head, a quantum circuit simulated in float64) -- is ordinary floating-point arithmetic,
and two correct implementations of it (the golden executor's ONNX Runtime kernels at one batch size, a target's fused
kernels, qiskit's simulator) may round differently. For that part qdeploy derives, per output element and per input
sample, how far any implementation that rounds each operation correctly (relative error at most ``u`` per rounding,
sums in any order) can be from the exact real result, by forward error analysis (Higham, *Accuracy and Stability of
Numerical Algorithms*, ch. 3): ``|fl(sum w_i x_i) - sum w_i x_i| <= gamma_K sum |w_i| |x_i|`` with
``gamma_K = K u / (1 - K u)``, propagated through the tail from the magnitudes the golden executor computed. Two
such implementations differ by at most twice that: the bound a target is verified against. A node with no rule here
gets no bound, and the graph must then come out bit-exact.

Written by hand: no library derives forward error bounds for ONNX graphs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.ops import QUANT_OPS

log = logging.getLogger(__name__)

#: ops that fix a tensor's value set; everything they depend on must be exact
QUANTIZER_OPS = (*QUANT_OPS, "FloatQuant", "MultiThreshold", "QuantizeLinear")
#: unit roundoff by element type
UNIT_ROUNDOFF = {onnx.TensorProto.FLOAT: 2.0**-24, onnx.TensorProto.DOUBLE: 2.0**-53}
#: relative error allowed per transcendental evaluation (exp, tanh, sigmoid): vectorized kernels are not correctly
#: rounded; a few units in the last place, taken with a margin
TRANSCENDENTAL_ULPS = 8
#: float64 roundings allowed per logical gate of a simulated circuit (a gate touches each amplitude with a few
#: multiply-adds; transpiling may expand it into several device gates)
ROUNDINGS_PER_GATE = 64


@dataclasses.dataclass(frozen=True)
class Bound:
    """Per output element, how far two correct implementations of the graph's float tail may be apart."""

    per_element: np.ndarray | None  # None: the tail has an op without an error rule, so outputs must be exact
    tail_ops: tuple[str, ...]  # op types of the float tail, in graph order
    reason: str  # how the bound was derived, or why there is none

    @property
    def max(self) -> float:
        return float(self.per_element.max()) if self.per_element is not None and self.per_element.size else 0.0

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "derived" if self.per_element is not None else "none",
            "max": self.max,
            "float_tail_ops": list(self.tail_ops),
            "derivation": self.reason,
        }


def float_tail(model: ModelWrapper) -> list[int]:
    """Indices of the nodes no quantizer depends on (the graph's float tail), in graph order."""
    producers = {out: i for i, node in enumerate(model.graph.node) for out in node.output}
    exact: set[int] = set()
    stack = [i for i, node in enumerate(model.graph.node) if node.op_type in QUANTIZER_OPS]
    while stack:
        i = stack.pop()
        if i in exact:
            continue
        exact.add(i)
        stack.extend(producers[t] for t in model.graph.node[i].input if t in producers)
    return [i for i in range(len(model.graph.node)) if i not in exact]


def tail_tensors(model: ModelWrapper) -> set[str]:
    """The tensors ``derive_bound`` reads: every input and output of the float tail (keep these, not all)."""
    return {name for i in float_tail(model) for node in [model.graph.node[i]] for name in (*node.input, *node.output)}


def derive_bound(model: ModelWrapper, context: dict[str, np.ndarray]) -> Bound:
    """The bound on ``|target - golden|`` for the graph's (single) output, per element, given the golden executor's
    full execution ``context`` (every tensor, batch first) on the verification inputs."""
    output = model.graph.output[0].name
    tail = float_tail(model)
    ops = tuple(model.graph.node[i].op_type for i in tail)
    if not tail:
        exact = np.zeros_like(np.asarray(context[output], dtype=np.float64))
        return Bound(exact, ops, "no float arithmetic after the last quantizer")
    errors: dict[str, np.ndarray] = {}  # tensor -> bound on |computed - exact real|, one implementation

    def error_of(name: str) -> np.ndarray:
        if name not in errors:  # a tensor entering the tail: a graph input, a constant or a quantizer's exact output
            value = context[name] if name in context else model.get_initializer(name)
            errors[name] = np.zeros(np.shape(value), dtype=np.float64)
        return errors[name]

    opset = next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")), 13)
    for i in tail:
        node = model.graph.node[i]
        rule = RULES.get(node.op_type)
        if rule is None or any(name not in context for name in node.output if name):
            return Bound(None, ops, f"no error rule for {node.op_type} (node {node.name or i}) in the float tail")
        step = _Step(model, node, context, [error_of(n) if n else None for n in node.input], opset)
        try:
            result = rule(step)
        except _NoBound as exc:
            return Bound(None, ops, f"node {node.name or i} ({node.op_type}): {exc}")
        errors[node.output[0]] = np.asarray(result, dtype=np.float64)
    if output not in errors:
        return Bound(np.zeros_like(np.asarray(context[output], dtype=np.float64)), ops, "the output is exact")
    per_element = 2.0 * errors[output]  # golden and target each within the error of the exact real result
    reason = (
        "forward error analysis of the float tail after the last quantizer ("
        + ", ".join(dict.fromkeys(ops))
        + "): each rounding within u (2^-24 float32, 2^-53 float64), sums of K terms within gamma_K x sum of |terms|, "
        "from the magnitudes the golden executor computed; twice the one-implementation error"
    )
    return Bound(per_element, ops, reason)


class _NoBound(Exception):
    """This node's arithmetic has no bound here (unsupported attribute, runtime operand, ...)."""


@dataclasses.dataclass
class _Step:
    """One tail node with what its rule needs: input values and error bounds, its output value."""

    model: ModelWrapper
    node: onnx.NodeProto
    context: dict[str, np.ndarray]
    input_errors: list[np.ndarray | None]
    opset: int

    def value(self, index: int) -> np.ndarray:
        return np.asarray(self.context[self.node.input[index]], dtype=np.float64)

    def magnitude(self, index: int) -> np.ndarray:
        """|x| + its error: a bound on the magnitude of the exact real value."""
        return np.abs(self.value(index)) + self.input_errors[index]

    @property
    def output(self) -> np.ndarray:
        return np.asarray(self.context[self.node.output[0]], dtype=np.float64)

    @property
    def u(self) -> float:
        dtype = self.context[self.node.output[0]].dtype
        if dtype == np.float32:
            return UNIT_ROUNDOFF[onnx.TensorProto.FLOAT]
        if dtype == np.float64:
            return UNIT_ROUNDOFF[onnx.TensorProto.DOUBLE]
        raise _NoBound(f"output type {dtype} has no rounding model here")

    def attr(self, name: str, default: Any = None) -> Any:
        for attribute in self.node.attribute:
            if attribute.name == name:
                return helper.get_attribute_value(attribute)
        return default

    def same_op(self, inputs: Sequence[np.ndarray | None], **attributes: Any) -> np.ndarray:
        """This node's own op (with ``attributes`` overridden) applied to other data through ONNX Runtime: layout
        ops move error bounds exactly as they move values. Float inputs are rounded up so the bound stays a bound."""
        import onnxruntime

        names = [f"in{k}" if value is not None else "" for k, value in enumerate(inputs)]
        feeds = {}
        for name, value, original in zip(names, inputs, self.node.input, strict=False):
            if value is None:
                continue
            dtype = self.context[original].dtype
            if np.issubdtype(dtype, np.floating) and dtype != np.float64:
                rounded = np.asarray(value, dtype=dtype)
                value = np.where(rounded > 0, np.nextafter(rounded, np.inf), rounded).astype(dtype)
            feeds[name] = np.asarray(value, dtype=dtype)
        node = onnx.NodeProto()
        node.CopyFrom(self.node)
        del node.input[:]
        node.input.extend(names)
        del node.output[:]
        node.output.extend(["out"])
        for key, value in attributes.items():
            for attribute in list(node.attribute):
                if attribute.name == key:
                    node.attribute.remove(attribute)
            node.attribute.append(helper.make_attribute(key, value))
        elem = {np.dtype(np.float32): onnx.TensorProto.FLOAT, np.dtype(np.float64): onnx.TensorProto.DOUBLE}
        graph = helper.make_graph(
            [node],
            "bound",
            [
                helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(feeds[n].dtype), None)
                for n in names
                if n in feeds
            ],
            [helper.make_tensor_value_info("out", elem.get(self.context[self.node.output[0]].dtype, 1), None)],
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.asarray(session.run(None, feeds)[0], dtype=np.float64)


def gamma(terms: int, u: float) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of a sum of n terms in any order."""
    n = max(int(terms), 1)
    if n * u >= 0.5:
        raise _NoBound(f"{n} terms exceed what a rounding-error bound can cover at u={u:g}")
    return n * u / (1 - n * u)


def _layout(step: _Step) -> np.ndarray:
    """Ops that move, select or pad values (and 1-Lipschitz selections such as MaxPool/Relu): the error moves along."""
    inputs = [
        step.input_errors[k] if np.issubdtype(step.context[name].dtype, np.floating) else step.context[name]
        for k, name in enumerate(step.node.input)
    ]
    return step.same_op(inputs)


def _elementwise_lipschitz(factor: float) -> Callable[[_Step], np.ndarray]:
    def rule(step: _Step) -> np.ndarray:
        return factor * step.input_errors[0] + TRANSCENDENTAL_ULPS * step.u * (np.abs(step.output) + step.u)

    return rule


def _relu(step: _Step) -> np.ndarray:
    return step.input_errors[0]


def _add_sub(step: _Step) -> np.ndarray:
    ea, eb = step.input_errors[0], step.input_errors[1]
    return ea + eb + step.u * (step.magnitude(0) + step.magnitude(1))


def _mul(step: _Step) -> np.ndarray:
    ea, eb = step.input_errors[0], step.input_errors[1]
    a, b = np.abs(step.value(0)), np.abs(step.value(1))
    return a * eb + b * ea + ea * eb + step.u * step.magnitude(0) * step.magnitude(1)


def _div(step: _Step) -> np.ndarray:
    if np.any(step.input_errors[1]):
        raise _NoBound("a divisor computed in float")
    divisor = np.abs(step.value(1))
    if np.any(divisor == 0):
        raise _NoBound("division by zero")
    # 2 roundings: a kernel may multiply by a rounded reciprocal
    return step.input_errors[0] / divisor + 2 * step.u * step.magnitude(0) / divisor


def _matmul(step: _Step) -> np.ndarray:
    a, b = step.magnitude(0), step.magnitude(1)
    exact_magnitude = np.matmul(np.abs(step.value(0)), np.abs(step.value(1)))
    total = np.matmul(a, b)
    return gamma(step.value(0).shape[-1], step.u) * total + (total - exact_magnitude)


def _gemm(step: _Step) -> np.ndarray:
    a, b = step.magnitude(0), step.magnitude(1)
    a0, b0 = np.abs(step.value(0)), np.abs(step.value(1))
    if step.attr("transA", 0):
        a, a0 = a.T, a0.T
    if step.attr("transB", 0):
        b, b0 = b.T, b0.T
    alpha, beta = abs(float(step.attr("alpha", 1.0))), abs(float(step.attr("beta", 1.0)))
    total, exact_magnitude = alpha * (a @ b), alpha * (a0 @ b0)
    terms = a.shape[-1]
    if len(step.node.input) > 2 and step.node.input[2]:
        total = total + beta * step.magnitude(2)
        exact_magnitude = exact_magnitude + beta * np.abs(step.value(2))
        terms += 1
    return gamma(terms + 2, step.u) * total + (total - exact_magnitude)  # + alpha/beta scalings


def _conv(step: _Step) -> np.ndarray:
    import torch
    import torch.nn.functional as functional

    auto_pad = step.attr("auto_pad", b"NOTSET")
    if (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) not in ("NOTSET", "VALID"):
        raise _NoBound("auto_pad SAME_* has no bound rule here")
    weights = step.value(1)
    spatial = weights.ndim - 2
    if spatial not in (1, 2):
        raise _NoBound(f"{spatial}-D convolution")
    pads = list(step.attr("pads", [0] * (2 * spatial)))
    if pads[:spatial] != pads[spatial:]:
        raise _NoBound("asymmetric padding")
    conv = functional.conv1d if spatial == 1 else functional.conv2d

    def apply(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return conv(
            torch.from_numpy(x),
            torch.from_numpy(w),
            None if b is None else torch.from_numpy(b),
            stride=tuple(step.attr("strides", [1] * spatial)),
            padding=tuple(pads[:spatial]),
            dilation=tuple(step.attr("dilations", [1] * spatial)),
            groups=int(step.attr("group", 1)),
        ).numpy()

    has_bias = len(step.node.input) > 2 and bool(step.node.input[2])
    total = apply(step.magnitude(0), step.magnitude(1), step.magnitude(2) if has_bias else None)
    exact_magnitude = apply(np.abs(step.value(0)), np.abs(weights), np.abs(step.value(2)) if has_bias else None)
    terms = int(np.prod(weights.shape[1:])) + int(has_bias)
    # the float64 evaluation of the magnitudes itself rounds: a relative 2^-40 margin covers it
    return (gamma(terms, step.u) * total + (total - exact_magnitude)) * (1 + 2.0**-40)


def _batchnorm(step: _Step) -> np.ndarray:
    scale, bias, mean, var = (step.value(k) for k in range(1, 5))
    if any(np.any(step.input_errors[k]) for k in range(1, 5)):
        raise _NoBound("BatchNormalization parameters computed in float")
    epsilon = float(step.attr("epsilon", 1e-5))
    factor = np.abs(scale / np.sqrt(var + epsilon))
    shape = (1, -1) + (1,) * (step.value(0).ndim - 2)
    factor, shift = factor.reshape(shape), np.abs(mean * scale / np.sqrt(var + epsilon)).reshape(shape)
    # a kernel may fold the normalization into x * a + b (a and b rounded: sqrt, division, products): 8 roundings
    return factor * step.input_errors[0] + 8 * step.u * (step.magnitude(0) * factor + shift + np.abs(bias).reshape(shape))


def _average(step: _Step) -> np.ndarray:
    x = step.value(0)
    if step.node.op_type == "GlobalAveragePool":
        count = int(np.prod(x.shape[2:]))
    elif step.node.op_type == "AveragePool":
        count = int(np.prod(step.attr("kernel_shape")))
    else:  # ReduceMean
        axes = step.attr("axes")
        if axes is None and len(step.node.input) > 1 and step.node.input[1]:
            axes = step.value(1).astype(int).tolist()
        count = int(np.prod([x.shape[a] for a in axes])) if axes else int(x.size // x.shape[0])
    magnitude = step.same_op([step.magnitude(0)] + [step.context[n] for n in step.node.input[1:]])
    moved = step.same_op([step.input_errors[0]] + [step.context[n] for n in step.node.input[1:]])
    return moved + (gamma(count, step.u) + step.u) * magnitude


def _softmax(step: _Step) -> np.ndarray:
    x, errors = step.value(0), step.input_errors[0]
    axis = int(step.attr("axis", -1 if step.opset >= 13 else 1))
    axis = axis % x.ndim
    if step.opset >= 13:
        worst = errors.max(axis=axis, keepdims=True)
        count = x.shape[axis]
    else:  # opset < 13 normalizes over the flattened trailing dimensions
        lead = x.shape[:axis]
        worst = errors.reshape(*lead, -1).max(axis=-1).reshape(*lead, *([1] * (x.ndim - axis)))
        count = int(np.prod(x.shape[axis:]))
    # shifting every input by at most E scales each exp by exp(+-E): the ratio by exp(+-2E); exps, the sum of
    # `count` terms and the division round
    roundings = gamma(count, step.u) + (2 * TRANSCENDENTAL_ULPS + 1) * step.u
    relative = np.expm1(2 * worst) + (1 + np.expm1(2 * worst)) * roundings
    return np.abs(step.output) * relative + step.u * 2.0**-126


def _quantum_circuit(step: _Step) -> np.ndarray:
    """A simulated circuit. Input errors move an output by at most ``sum_i |df/dx_i| eps_i`` plus a second-order
    remainder: angles are ``scale x_i``, rotation generators are P/2 with ||P|| = 1, so every second derivative in
    the angles is at most ||O|| (Pauli sums: sum |c|; probabilities: projectors, 1). The Jacobian at the golden
    executor's inputs comes from the simulator (float64, autograd); by the mean value theorem
    ``|f(x + d) - f(x)| <= sum_i (|J_i| + ||O|| c_i E) eps_i + ||O|| E^2 / 2`` with ``c_i = sum of |scale|`` over
    the uses of ``x_i`` and ``E = sum_i c_i eps_i``. Plus the float64 simulation's own roundings per gate, and the
    cast of the result to the output type."""
    import torch

    from qdeploy.custom_op.quantum import node_spec
    from qdeploy.custom_op.quantum.simulator import simulate

    spec = node_spec(step.node)
    x_errors = step.input_errors[0]
    if len(step.input_errors) > 1 and step.input_errors[1] is not None and np.any(step.input_errors[1]):
        raise _NoBound("circuit weights computed in float")
    uses = np.zeros(spec.num_inputs)
    for gate in spec.gates:
        if gate.angle is not None and gate.angle.kind == "input":
            uses[gate.angle.index] += abs(gate.angle.scale)
    if spec.readout.kind == "expval":
        norms = np.array([sum(abs(c) for c, _ in obs) for obs in spec.readout.observables])
    else:
        norms = np.ones(spec.readout.num_outputs)
    jacobian = np.zeros((x_errors.shape[0], spec.readout.num_outputs, spec.num_inputs))
    if np.any(x_errors):
        x = torch.from_numpy(step.value(0)).requires_grad_(True)
        weights = torch.from_numpy(step.value(1).reshape(-1)) if len(step.node.input) > 1 else torch.zeros(0)
        y = simulate(spec, x, weights.to(torch.float64))
        for o in range(spec.readout.num_outputs):  # samples are independent: one backward pass per output
            (grad,) = torch.autograd.grad(y[:, o].sum(), x, retain_graph=True)
            jacobian[:, o, :] = np.abs(grad.numpy())
    total = x_errors @ uses  # E per sample
    first_order = np.einsum("boi,bi->bo", jacobian * (1 + 2.0**-40), x_errors)
    curvature = 1.5 * norms[None, :] * total[:, None] ** 2  # sum_i ||O|| c_i E eps_i + ||O|| E^2 / 2
    simulation = ROUNDINGS_PER_GATE * len(spec.gates) * UNIT_ROUNDOFF[onnx.TensorProto.DOUBLE] * norms[None, :]
    output_rounding = step.u * np.abs(step.output)  # float64 result cast to the output type
    return first_order + curvature + simulation + output_rounding


def _cast(step: _Step) -> np.ndarray:
    if not np.issubdtype(step.context[step.node.output[0]].dtype, np.floating):
        raise _NoBound("cast to an integer type")
    return step.input_errors[0] + step.u * np.abs(step.output)


RULES: dict[str, Callable[[_Step], np.ndarray]] = {
    **{op: _layout for op in ("Identity", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat")},
    **{op: _layout for op in ("Slice", "Gather", "Pad", "MaxPool", "GlobalMaxPool", "DepthToSpace", "SpaceToDepth")},
    "Dropout": _relu,
    "Relu": _relu,
    "Neg": _relu,
    "Abs": _relu,
    "Add": _add_sub,
    "Sub": _add_sub,
    "Mul": _mul,
    "Div": _div,
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "GlobalAveragePool": _average,
    "AveragePool": _average,
    "ReduceMean": _average,
    "Softmax": _softmax,
    "Sigmoid": _elementwise_lipschitz(0.25),
    "Tanh": _elementwise_lipschitz(1.0),
    "Cast": _cast,
    "QuantumCircuit": _quantum_circuit,
}
