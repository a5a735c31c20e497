"""Derived error bounds of the float tail: sound against exact (float64) arithmetic and against another float32
implementation of the same operations, tight enough to catch a one-step error, absent where no rule exists."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.bounds import derive_bound, float_tail
from qdeploy.golden import run_golden_context
from qdeploy.ir import reference_of
from qdeploy.verify import compare

RNG = np.random.default_rng(0)
W = RNG.normal(0, 1, (32, 10)).astype(np.float32)
B = RNG.normal(0, 1, 10).astype(np.float32)
GAMMA, BETA = RNG.uniform(0.5, 2, 10).astype(np.float32), RNG.normal(0, 1, 10).astype(np.float32)
MEAN, VAR = RNG.normal(0, 1, 10).astype(np.float32), RNG.uniform(0.1, 3, 10).astype(np.float32)
SCALE = np.float32(0.37)  # not a power of two: products and sums round


def tail_graph(tail: str = "softmax") -> ModelWrapper:
    """x -> 4-bit Quant -> Gemm (float weights and bias) -> BatchNorm -> Mul(scale) -> Softmax or Erf."""
    inits = [
        numpy_helper.from_array(np.float32(0.125), "s"),
        numpy_helper.from_array(np.float32(0), "z"),
        numpy_helper.from_array(np.float32(4), "bits"),
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(B, "B"),
        *(numpy_helper.from_array(v, n) for v, n in ((GAMMA, "g"), (BETA, "b"), (MEAN, "m"), (VAR, "v"))),
        numpy_helper.from_array(SCALE, "k"),
    ]
    last = helper.make_node("Softmax", ["h"], ["y"], axis=-1) if tail == "softmax" else helper.make_node("Erf", ["h"], ["y"])
    nodes = [
        helper.make_node("Quant", ["x", "s", "z", "bits"], ["q"], domain="qonnx.custom_op.general", signed=1, narrow=0),
        helper.make_node("Gemm", ["q", "W", "B"], ["a"]),
        helper.make_node("BatchNormalization", ["a", "g", "b", "m", "v"], ["n"], epsilon=1e-5),
        helper.make_node("Mul", ["n", "k"], ["h"]),
        last,
    ]
    graph = helper.make_graph(
        nodes,
        "tail",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return reference_of(ModelWrapper(model))


def exact_and_reordered(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tail in float64 (near the exact real result) and in float32 with the sums in reverse order."""
    q = np.clip(np.round(x / 0.125), -8, 7) * 0.125
    outputs = []
    for dtype in (np.float64, np.float32):
        w, b = W.astype(dtype), B.astype(dtype)
        if dtype == np.float32:  # another summation order: reversed, one term at a time
            a = np.zeros((len(x), 10), dtype)
            for k in reversed(range(32)):
                a = (a + q[:, k : k + 1].astype(dtype) * w[k]).astype(dtype)
            a = a + b
        else:
            a = q.astype(dtype) @ w + b
        n = (a - MEAN.astype(dtype)) / np.sqrt(VAR.astype(dtype) + dtype(1e-5)) * GAMMA.astype(dtype) + BETA.astype(dtype)
        h = n * dtype(SCALE)
        e = np.exp(h - h.max(axis=1, keepdims=True))
        outputs.append((e / e.sum(axis=1, keepdims=True)).astype(dtype))
    return outputs[0], outputs[1]


def test_the_float_tail_is_what_no_quantizer_depends_on():
    model = tail_graph()
    assert [model.graph.node[i].op_type for i in float_tail(model)] == ["Gemm", "BatchNormalization", "Mul", "Softmax"]


def test_bound_holds_against_exact_arithmetic_and_another_float32_order():
    model = tail_graph()
    x = RNG.uniform(-1.2, 1.2, (500, 32)).astype(np.float32)
    context = run_golden_context(model, x)
    bound = derive_bound(model, context)
    assert bound.per_element is not None and bound.per_element.shape == (500, 10)
    golden = context["y"].astype(np.float64)
    exact, reordered = exact_and_reordered(x)
    # one implementation is within half the bound of the exact result; any two are within the bound
    assert np.all(np.abs(golden - exact) <= bound.per_element / 2)
    assert np.all(np.abs(reordered - golden) <= bound.per_element)
    # and tight enough to mean something: a worst case linear in the number of terms, still far below the
    # probabilities themselves (<= 1) and the effect of one input quantization step
    assert bound.max < 1e-3


def test_an_error_outside_the_bound_is_not_verified():
    model = tail_graph()
    x = RNG.uniform(-1.2, 1.2, (50, 32)).astype(np.float32)
    context = run_golden_context(model, x)
    bound = derive_bound(model, context)
    golden = context["y"]
    assert compare(golden, golden, bound.per_element)["bit_exact"]
    nudged = golden.astype(np.float64) + bound.per_element / 2
    result = compare(nudged, golden, bound.per_element)
    assert not result["bit_exact"] and result["verified"]
    wrong = golden.copy()
    wrong[3, 4] += 1e-3  # a logit off by far more than rounding could explain
    assert not compare(wrong, golden, bound.per_element)["verified"]


def test_an_op_without_a_rule_leaves_no_bound_so_outputs_must_be_exact():
    model = tail_graph("erf")
    x = RNG.uniform(-1, 1, (8, 32)).astype(np.float32)
    context = run_golden_context(model, x)
    bound = derive_bound(model, context)
    assert bound.per_element is None and "no error rule for Erf" in bound.reason
    golden = context["y"]
    assert not compare(np.nextafter(golden, np.inf), golden, bound.per_element)["verified"]


def test_a_graph_without_float_tail_has_a_zero_bound(mlp_w4a8):
    model = reference_of(mlp_w4a8[1])
    x = RNG.uniform(0, 16, (20, 1, 8, 8)).astype(np.float32)
    bound = derive_bound(model, run_golden_context(model, x))
    assert bound.max == 0.0 and bound.tail_ops == ()


@pytest.mark.parametrize("opset", [11, 17])
def test_softmax_bound_follows_the_opset_axis_semantics(opset):
    model = tail_graph()
    model.model.opset_import[0].version = opset
    for node in model.graph.node:
        if node.op_type == "Softmax":
            del node.attribute[:]
            node.attribute.append(helper.make_attribute("axis", 1))
    x = RNG.uniform(-1, 1, (40, 32)).astype(np.float32)
    context = run_golden_context(model, x)
    bound = derive_bound(model, context)
    exact, _ = exact_and_reordered(x)
    assert np.all(np.abs(context["y"] - exact) <= bound.per_element / 2)
