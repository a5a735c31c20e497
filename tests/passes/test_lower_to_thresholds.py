"""LowerToThresholds: golden outputs unchanged (bit for bit), and the graph is integer layers + MultiThresholds."""

from __future__ import annotations

import numpy as np
import pytest

import qdeploy
from qdeploy.ir import load_model, node_attr, sample_shape
from qdeploy.passes.graph.lower_to_thresholds import LowerToThresholds
from qdeploy.verify import random_inputs
from tests.conftest import FIXTURES

FLOAT_OPS = {"BatchNormalization", "Quant", "BipolarQuant", "Gemm", "Relu", "Div", "Sub"}


def _assert_integer_layers(graph) -> None:
    for node in graph.graph.node:
        if node.op_type in ("MatMul", "Conv"):
            weights = graph.get_initializer(node.input[1])
            assert weights is not None and np.array_equal(weights, np.round(weights)), node.name
            producer = graph.find_producer(node.input[0])
            assert producer is not None and producer.op_type in ("MultiThreshold", "Flatten", "Reshape", "MaxPool", "Pad")


def _outputs_equal(before, after, x) -> None:
    assert np.array_equal(qdeploy.run_golden(after, x), qdeploy.run_golden(before, x))


QONNX_DOMAIN = "qonnx.custom_op.general"


def _signed_quant(source: str, output: str, name: str, scale: float, bits: float) -> tuple:
    """A signed ROUND Quant node ``name`` with its scale and bit width initializers (zero point: tensor ``zero``)."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "Quant",
        [source, f"{name}_s", "zero", f"{name}_b"],
        [output],
        name=name,
        domain=QONNX_DOMAIN,
        signed=1,
        narrow=0,
        rounding_mode="ROUND",
    )
    return node, [
        helper.make_tensor(f"{name}_s", TensorProto.FLOAT, [], [scale]),
        helper.make_tensor(f"{name}_b", TensorProto.FLOAT, [], [bits]),
    ]


@pytest.mark.parametrize(
    ("name", "thresholds"),
    [
        ("TFC_2W2A.onnx", 4),  # input (2x - 1 -> Quant) + 3 x (BatchNorm -> Quant)
        ("unsw_nb15-mlp-w2a2.onnx", 5),  # bipolar input (x + 1) / 2 + 3 x (BN -> ReLU -> Quant) + BipolarQuant output
    ],
)
def test_zoo_models_lower_to_thresholds_with_identical_outputs(name, thresholds):
    model = load_model(FIXTURES / name)
    lowered = model.transform(LowerToThresholds())
    ops = [n.op_type for n in lowered.graph.node]
    assert ops.count("MultiThreshold") == thresholds and ops.count("MatMul") == 4
    # every quantizer, BatchNorm and float input pre-scaling is gone before the last layer
    last_layer = max(i for i, op in enumerate(ops) if op == "MatMul")
    assert not FLOAT_OPS & set(ops[:last_layer]), ops
    _assert_integer_layers(lowered)
    _outputs_equal(model, lowered, random_inputs(model, sample_shape(model), 1000, 0))


def test_float_input_thresholds_reproduce_float32_rounding_ties():
    """TFC quantizes 2x - 1 to {-1, 0, 1}: the golden float32 arithmetic moves the thresholds off 0.25 and 0.75
    by an ulp or so (2x - 1 rounds to -0.5 just below 0.25); the thresholds must follow it, not the real numbers."""
    model = load_model(FIXTURES / "TFC_2W2A.onnx")
    lowered = model.transform(LowerToThresholds())
    points = np.array([0.25, 0.75, 0.0, 1.0, 0.5], dtype=np.float32)
    probes = np.concatenate([points, np.nextafter(points, -1), np.nextafter(points, 2)])
    probes = np.concatenate([probes, np.nextafter(np.nextafter(probes, -1), -1), probes - 2**-26, probes + 2**-26])
    x = np.repeat(probes.astype(np.float32)[:, None], 784, axis=1).reshape(-1, 1, 28, 28)
    _outputs_equal(model, lowered, x)
    first = next(n for n in lowered.graph.node if n.op_type == "MultiThreshold")
    thresholds = lowered.get_initializer(first.input[1]).ravel()
    assert thresholds.size == 2 and thresholds[0] < 0.25 < 0.75 < thresholds[1]  # off the real-number ideal


@pytest.mark.parametrize("options", [{"scale": "float"}, {"scale": "float", "per_channel": True, "weight_bits": 2}])
def test_brevitas_float_scale_models_lower_exactly(float_cnn, data, options):
    qmodel = qdeploy.quantize(float_cnn, data.x_train[:128], act_bits=4, **{"weight_bits": 4, **options})
    graph = qdeploy.export(qmodel, data.x_train[:1])
    lowered = graph.transform(LowerToThresholds())
    ops = [n.op_type for n in lowered.graph.node]
    assert "Quant" not in ops and "Gemm" not in ops
    # input, 2 conv, output (no requantizer after Flatten: qdeploy.passes.ptq.flatten_function)
    assert ops.count("MultiThreshold") == 4
    _assert_integer_layers(lowered)
    x = np.concatenate([data.x_test[:200], random_inputs(graph, sample_shape(graph), 200, 1)])
    _outputs_equal(graph, lowered, x)


def test_negative_batchnorm_gamma_flips_channel_weights(tmp_path):
    """A decreasing chain (negative BN scale) is made increasing by negating that channel's integer weights."""
    import torch
    from brevitas import nn as qnn
    from brevitas.quant import Int8ActPerTensorFloat, Int8WeightPerTensorFloat

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat, return_quant_tensor=True),
        qnn.QuantLinear(6, 5, bias=False, weight_quant=Int8WeightPerTensorFloat, return_quant_tensor=False),
        torch.nn.BatchNorm1d(5),
        qnn.QuantIdentity(act_quant=Int8ActPerTensorFloat),
    )
    with torch.no_grad():
        net[2].weight.copy_(torch.tensor([1.0, -2.0, 0.5, -0.7, 3.0]))
        net[2].running_mean.uniform_(-1, 1)
        net[2].running_var.uniform_(0.5, 2)
    net.train()
    net(torch.randn(64, 6))
    net.eval()
    path = tmp_path / "bn.onnx"
    from brevitas.export import export_qonnx

    export_qonnx(net, torch.randn(1, 6), export_path=str(path), dynamo=False)
    model = load_model(path)
    assert "BatchNormalization" in [n.op_type for n in model.graph.node]
    lowered = model.transform(LowerToThresholds())
    assert "BatchNormalization" not in [n.op_type for n in lowered.graph.node]
    x = np.random.default_rng(0).normal(0, 2, (2000, 6)).astype(np.float32)
    _outputs_equal(model, lowered, x)
    _, changed = LowerToThresholds().apply(lowered)
    assert not changed


def test_float_scale_layer_thresholds_round_its_output_once():
    """A float-scale Gemm computes sum * (s_x * s_w) + bias and rounds once to float32 (the order-free value the
    order-dependence check compares the golden executor with); the thresholds must follow that value for every
    accumulator, not the float32 Mul and Add the layer is rewritten into, which round twice (RadioML VGG10: a
    BatchNorm output landed exactly on a tie one way, the rewritten layer one ulp off the other way)."""
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.general.quant import quant

    rng = np.random.default_rng(3)
    inputs, channels = 16, 512
    s_x, s_w, s_out = np.float32(0.0371), np.float32(0.0173), np.float32(0.00113)
    weights = (rng.integers(-8, 8, (channels, inputs)) * s_w).astype(np.float32)
    bias = rng.normal(0, 0.05, channels).astype(np.float32)
    constants = {
        "sx": s_x,
        "sw": s_w,
        "so": s_out,
        "z": np.float32(0),
        "b4": np.float32(4),
        "b8": np.float32(8),
        "W": weights,
        "C": bias,
    }

    def quant_node(source, scale, bits, output):
        return helper.make_node(
            "Quant",
            [source, scale, "z", bits],
            [output],
            domain="qonnx.custom_op.general",
            signed=1,
            narrow=0,
            rounding_mode="ROUND",
            name=f"{output}_quant",
        )

    nodes = [
        quant_node("x", "sx", "b4", "qx"),
        quant_node("W", "sw", "b4", "qw"),
        helper.make_node("Gemm", ["qx", "qw", "C"], ["acc"], transB=1, name="layer"),
        quant_node("acc", "so", "b8", "y"),
    ]
    graph = helper.make_graph(
        nodes,
        "float_scale_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    lowered = load_model(ModelWrapper(helper.make_model(graph, opset_imports=opsets))).transform(LowerToThresholds())
    layer = next(n for n in lowered.graph.node if n.op_type in ("MatMul", "Gemm"))
    threshold_node = lowered.find_consumer(layer.output[0])
    assert threshold_node.op_type == "MultiThreshold"
    thresholds = lowered.get_initializer(threshold_node.input[1])  # [channels, levels - 1]
    assert np.array_equal(np.abs(lowered.get_initializer(layer.input[1])).T, np.abs(np.round(weights / s_w)))
    # every accumulator value the layer can reach, per channel: one float32 rounding of sum * scale + bias
    accumulators = np.arange(-inputs * 64, inputs * 64 + 1, dtype=np.int64)
    exact_scale = np.float64(s_x) * np.float64(s_w)
    once = (accumulators[:, None] * exact_scale + bias.astype(np.float64)[None, :]).astype(np.float32)
    levels = np.round(quant(once, s_out, np.float32(0), np.float32(8), 1, 0, "ROUND") / s_out).astype(np.int64)
    counts = (accumulators[:, None, None] >= thresholds[None, :, :]).sum(axis=2)
    integer_weights = np.round(weights / s_w).astype(np.int64)  # [channels, inputs]; inputs' levels -8..7
    reach_low = np.minimum(integer_weights * -8, integer_weights * 7).sum(axis=1)
    reach_high = np.maximum(integer_weights * -8, integer_weights * 7).sum(axis=1)
    reached = (accumulators[:, None] >= reach_low[None, :]) & (accumulators[:, None] <= reach_high[None, :])
    np.testing.assert_array_equal((counts - 128)[reached], levels[reached])


def test_shared_quantizer_fanout_and_concat_lower_to_integer_layers(tmp_path):
    """A quantized tensor read by two layers, and two branches sharing one float-scale quantizer concatenated: every
    layer takes integer levels (the fan-out keeps the scale for no one; the common scale moves behind the Concat),
    with the golden outputs unchanged bit for bit."""
    pytest.importorskip("brevitas")
    from tests.targets.test_hls4ml_models import branches_concatenated, export_random

    built = branches_concatenated(output_quant=True)  # a quantized output: no float tail rounding differently
    model = load_model(export_random(built, (1, 8, 8), tmp_path / "branches.onnx"))
    lowered = model.transform(LowerToThresholds())
    ops = [n.op_type for n in lowered.graph.node]
    assert "Quant" not in ops and ops.count("Conv") == 3 and ops.count("MultiThreshold") == 5
    for node in lowered.graph.node:
        if node.op_type in ("MatMul", "Conv"):
            producer = lowered.find_producer(node.input[0])
            assert producer.op_type in ("MultiThreshold", "Flatten", "Concat"), (node.name, producer.op_type)
    (concat,) = [n for n in lowered.graph.node if n.op_type == "Concat"]
    assert all(lowered.find_producer(name).op_type == "MultiThreshold" for name in concat.input)
    x = random_inputs(model, sample_shape(model), 300, 0)
    _outputs_equal(model, lowered, x)


def test_a_requantizer_reaching_past_the_upstream_levels_folds_into_it():
    """Float input -> 4-bit Quant (s=0.5, levels -4..3.5) -> 8-bit Quant (s=0.0625, levels -8..7.94) whose
    thresholds reach past the 4-bit levels on both sides: the second folds into the first's thresholds, the
    unreachable ones at -inf/+inf (an out-of-range index raised IndexError; brevitas QuantIdentity 4 bits -> an
    8-bit QuantReLU/QuantIdentity after it)."""
    from onnx import TensorProto, helper

    domain = QONNX_DOMAIN
    quant = _signed_quant

    narrow, narrow_init = quant("x", "n", "narrow", 0.5, 4.0)
    wide, wide_init = quant("n", "y", "wide", 0.0625, 8.0)
    graph = helper.make_graph(
        [narrow, wide],
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [*wide_init, *narrow_init, helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])],
    )
    model = load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)]))
    lowered = model.transform(LowerToThresholds())
    ops = [n.op_type for n in lowered.graph.node]
    assert ops.count("MultiThreshold") == 1 and "Quant" not in ops, ops
    x = np.concatenate([random_inputs(model, [16], 200, 0) * 4, np.linspace(-8, 8, 32 * 16).reshape(-1, 16)])
    _outputs_equal(model, lowered, x.astype(np.float32))


def test_a_linear_resize_keeps_the_quantizer_after_it_exact():
    """Quant -> Resize(linear) -> Quant: a linear resize mixes neighbouring levels with fractional weights, so its
    output is no integer level and the scale may not move across it (nearest resizing only moves values). The
    lowering treated every Resize as moving values: outputs off by up to a step (brevitas bilinear upsampling)."""
    from onnx import TensorProto, helper

    domain = QONNX_DOMAIN
    quant = _signed_quant

    first, first_init = quant("x", "q", "quant_in", 0.25, 4.0)
    last, last_init = quant("r", "y", "quant_out", 0.125, 6.0)
    resize = helper.make_node(
        "Resize", ["q", "", "scales"], ["r"], name="up", mode="linear", coordinate_transformation_mode="half_pixel"
    )
    graph = helper.make_graph(
        [first, resize, last],
        "linear_resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])],
        [
            *first_init,
            *last_init,
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, 2.0, 2.0]),
        ],
    )
    model = load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(domain, 1)]))
    lowered = model.transform(LowerToThresholds())
    _outputs_equal(model, lowered, (random_inputs(model, [1, 4, 4], 200, 0) * 2).astype(np.float32))


def _residual_sum_model(s_skip: float, s_branch: float, s_sum: float, skip_is_input: bool = False):
    """x -> Quant(s_skip) = skip; x -> Quant(0.5) -> MatMul -> Quant(s_branch) = branch; Add(skip, branch) -> Relu
    -> Quant(s_sum): two quantized branches with different float scales summed. The layer reads a power-of-two
    grid, so its float32 sum is exact in any order and only the Add decides. ``skip_is_input``: the layer reads the
    skip (the graph's one input quantizer) instead."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(5)
    weights = (rng.integers(-8, 8, (16, 16)) * 0.0625).astype(np.float32)  # a fixed-point grid: integer weights
    skip, skip_init = _signed_quant("x", "skip", "skip_quant", s_skip, 4.0)
    layer_in, layer_in_init = _signed_quant("skip" if skip_is_input else "x", "layer_in", "layer_quant", 0.5, 4.0)
    branch, branch_init = _signed_quant("acc", "branch", "branch_quant", s_branch, 4.0)
    total, total_init = _signed_quant("relu", "y", "sum_quant", s_sum, 4.0)
    graph = helper.make_graph(
        [
            skip,
            layer_in,
            helper.make_node("MatMul", ["layer_in", "W"], ["acc"], name="layer"),
            branch,
            helper.make_node("Add", ["skip", "branch"], ["sum"], name="residual_add"),
            helper.make_node("Relu", ["sum"], ["relu"], name="relu"),
            total,
        ],
        "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [
            *skip_init,
            *layer_in_init,
            *branch_init,
            *total_init,
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("W", TensorProto.FLOAT, [16, 16], weights.ravel().tolist()),
        ],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)]
    return load_model(helper.make_model(graph, opset_imports=opsets))


def test_a_quantizer_on_a_float_scale_residual_sum_thresholds_an_integer_sum():
    """Add of two quantized branches with different float scales, then ReLU and a quantizer: no fixed-point type
    holds the float sum, but the quantizer's output is a function of the two branches' levels. It becomes
    MultiThreshold(skip * mA + branch * mB), weights mA, mB scaling copies of the branches' MultiThresholds; the
    golden outputs stay equal bit for bit over inputs reaching many level pairs."""
    model = _residual_sum_model(0.375, 0.1234, 0.29)
    lowered = model.transform(LowerToThresholds())
    ops = [n.op_type for n in lowered.graph.node]
    assert "Quant" not in ops and ops.count("Add") == 1, ops
    (add,) = [n for n in lowered.graph.node if n.op_type == "Add"]
    assert all(lowered.find_producer(name).op_type == "MultiThreshold" for name in add.input)
    assert lowered.find_consumer(add.output[0]).op_type == "MultiThreshold"
    scales = sorted(node_attr(lowered.find_producer(name), "out_scale", 1.0) for name in add.input)
    assert scales[0] == 1.0 and scales[1] > 1, scales  # the skip's levels weighted (0.375 / 0.1234 ~ 3)
    x = (random_inputs(model, [16], 2000, 0) * 3).astype(np.float32)
    from qonnx.custom_op.general.quant import quant

    def levels(values, scale):  # a signed 4-bit ROUND quantizer's integer levels
        return np.round(quant(values, np.float32(scale), np.float32(0), np.float32(4), 1, 0, "ROUND") / scale)

    (layer,) = [node for node in model.graph.node if node.op_type == "MatMul"]
    weights = model.get_initializer(layer.input[1])
    pairs = zip(levels(x, 0.375).ravel(), levels(levels(x, 0.5) * 0.5 @ weights, 0.1234).ravel(), strict=True)
    assert len(set(pairs)) > 150  # most of the 256 level pairs are reached
    _outputs_equal(model, lowered, x)


def test_a_skip_from_the_input_quantizer_is_weighted_without_a_second_input_quantizer():
    """The skip is the graph's input quantizer itself: its weighted copy counts that quantizer's levels (thresholds
    between neighbours) instead of quantizing the float input a second time, which the fixed-point targets refuse
    (the hardware takes one quantizer's levels). Precisions derive; outputs equal bit for bit."""
    from qdeploy.ir import split_float_epilogue
    from qdeploy.precision import infer_precisions

    model = _residual_sum_model(0.375, 0.1234, 0.29, skip_is_input=True)
    lowered = model.transform(LowerToThresholds())
    (quantizer,) = lowered.find_consumers(lowered.graph.input[0].name)
    (copy,) = [n for n in lowered.graph.node if n.name.startswith(f"{quantizer.name}_times_")]
    assert copy.input[0] == quantizer.output[0]  # the levels, not the float input
    infer_precisions(split_float_epilogue(lowered)[0])  # the targets' datapath (the output scale runs on the host)
    _outputs_equal(model, lowered, (random_inputs(model, [16], 2000, 0) * 3).astype(np.float32))


def test_a_residual_sum_whose_float32_rounding_breaks_every_integer_order_stays_float():
    """Scales 0.1 and 0.3 summed, quantized at 0.2: real sums land on rounding ties everywhere and float32 rounds
    pairs with equal real sums apart, so no integer sum orders them; the quantizer stays (the target refuses it by
    name) and the lowered graph still computes the golden outputs."""
    model = _residual_sum_model(0.1, 0.3, 0.2)
    lowered = model.transform(LowerToThresholds())
    ops = [n.op_type for n in lowered.graph.node]
    assert "Quant" in ops and "Add" in ops
    _outputs_equal(model, lowered, (random_inputs(model, [16], 500, 0) * 2).astype(np.float32))


def _layer_plus_skip_model(read_twice: bool = False):
    """x -> Quant(0.2) = skip; x -> Quant(0.5) -> Gemm (weights on a 3/64 grid, float bias) = branch; Add(branch,
    skip) -> Relu -> Quant(0.29). ``read_twice``: a second quantizer (0.31) reads the sum as well, both
    concatenated."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(7)
    weights = (rng.integers(-8, 8, (16, 16)) * 0.046875).astype(np.float32)  # [out, in]
    bias = rng.normal(0, 0.3, 16).astype(np.float32)
    skip, skip_init = _signed_quant("x", "skip", "skip_quant", 0.2, 4.0)
    layer_in, layer_in_init = _signed_quant("x", "layer_in", "layer_quant", 0.5, 4.0)
    weight, weight_init = _signed_quant("W", "Wq", "weight_quant", 0.046875, 4.0)
    total, total_init = _signed_quant("relu", "y" if read_twice else "out", "sum_quant", 0.29, 4.0)
    extra, extra_init = [], []
    if read_twice:
        other, extra_init = _signed_quant("sum", "z", "other_quant", 0.31, 4.0)
        extra = [other, helper.make_node("Concat", ["y", "z"], ["out"], axis=1, name="both")]
    graph = helper.make_graph(
        [
            skip,
            layer_in,
            weight,
            helper.make_node("Gemm", ["layer_in", "Wq", "B"], ["branch"], transB=1, name="layer"),
            helper.make_node("Add", ["branch", "skip"], ["sum"], name="residual_add"),
            helper.make_node("Relu", ["sum"], ["relu"], name="relu"),
            total,
            *extra,
        ],
        "layer_plus_skip",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 32 if read_twice else 16])],
        [
            *skip_init,
            *layer_in_init,
            *weight_init,
            *extra_init,
            *total_init,
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("W", TensorProto.FLOAT, [16, 16], weights.ravel().tolist()),
            helper.make_tensor("B", TensorProto.FLOAT, [16], bias.tolist()),
        ],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)]
    return load_model(helper.make_model(graph, opset_imports=opsets))


def test_a_layer_output_plus_quantized_skip_thresholds_an_integer_sum():
    """brevitas ResNets add the conv branch's float output (scale, bias) to the quantized skip before requantizing:
    per skip level the quantizer is a step function of the layer's accumulator, found by bisection with the golden
    executor; the layer's weights (per channel) and a copy of the skip's MultiThreshold take the integer weights
    of one integer sum, so the quantizer becomes one MultiThreshold and the golden outputs stay equal bit for
    bit. The layer's weight scale 3/64 keeps its float32 sum exact in any order; the bias is a float."""
    model = _layer_plus_skip_model()
    lowered = model.transform(LowerToThresholds())
    ops = [n.op_type for n in lowered.graph.node]
    assert "Quant" not in ops and "Gemm" not in ops and ops.count("Add") == 1, ops
    (add,) = [n for n in lowered.graph.node if n.op_type == "Add"]
    assert {lowered.find_producer(name).op_type for name in add.input} == {"MatMul", "MultiThreshold"}
    assert lowered.find_consumer(add.output[0]).op_type == "MultiThreshold"
    _assert_integer_layers(lowered)
    _outputs_equal(model, lowered, (random_inputs(model, [16], 2000, 0) * 2).astype(np.float32))


def test_a_power_of_two_residual_sum_in_a_thresholded_graph_lowers_too():
    """Branch scales 1/2 and 1/4, a float scale after the sum: the graph is thresholded, so the quantizer after the
    sum becomes levels as well (left as a Quant, the layers after it would stay float)."""
    model = _residual_sum_model(0.5, 0.25, 0.29)
    lowered = model.transform(LowerToThresholds())
    ops = [n.op_type for n in lowered.graph.node]
    assert "Quant" not in ops and ops.count("MultiThreshold") == 4, ops
    _outputs_equal(model, lowered, (random_inputs(model, [16], 1000, 0) * 3).astype(np.float32))


def test_a_layer_plus_skip_sum_read_twice_keeps_the_float_sum_for_its_other_reader():
    """The sum feeds two quantizers: the layer's float output must stay for the one the rewrite does not take, so the
    sum is left as it is (the target refuses it by name), never a graph with a dangling tensor."""
    model = _layer_plus_skip_model(read_twice=True)
    lowered = model.transform(LowerToThresholds())
    assert "Quant" in [n.op_type for n in lowered.graph.node]
    _outputs_equal(model, lowered, (random_inputs(model, [16], 500, 0) * 2).astype(np.float32))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_a_pad_between_a_float_scale_quantizer_and_a_conv_carries_the_levels(mode):
    """Quant (scale 3/8) -> Pad -> Conv -> Quant: a Pad copies values (edge, reflect) or adds level 0 (zero border:
    0 * s = 0), so the scale moves behind it and the conv takes integer levels, bit for bit."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(11)
    weights = (rng.integers(-8, 8, (3, 2, 3, 3)) / 16).astype(np.float32)
    quant_in, in_init = _signed_quant("x", "q", "in_quant", 0.375, 4.0)
    quant_out, out_init = _signed_quant("conv", "y", "out_quant", 0.29, 4.0)
    graph = helper.make_graph(
        [
            quant_in,
            helper.make_node("Pad", ["q", "pads"], ["padded"], name="pad", mode=mode),
            helper.make_node("Conv", ["padded", "W"], ["conv"], name="conv", kernel_shape=[3, 3]),
            quant_out,
        ],
        "pad_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 6, 6])],
        [
            *in_init,
            *out_init,
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("pads", TensorProto.INT64, [8], [0, 0, 1, 1, 0, 0, 1, 1]),
            helper.make_tensor("W", TensorProto.FLOAT, list(weights.shape), weights.ravel().tolist()),
        ],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)]
    model = load_model(helper.make_model(graph, opset_imports=opsets))
    lowered = model.transform(LowerToThresholds())
    (pad,) = [n for n in lowered.graph.node if n.op_type == "Pad"]
    assert lowered.find_producer(pad.input[0]).op_type == "MultiThreshold"
    assert "Quant" not in [n.op_type for n in lowered.graph.node]
    _assert_integer_layers(lowered)
    _outputs_equal(model, lowered, (random_inputs(model, [2, 6, 6], 500, 0) * 2).astype(np.float32))


def test_a_zero_batchnorm_gamma_is_a_constant_channel_not_a_stop():
    """A pruned channel's BatchNorm gamma 0 makes that channel a constant before its quantizer: one level, all its
    thresholds reached or none. The lowering stopped at the zero slope (the layer stayed float and the targets
    refused an internal Mul); now every channel lowers, bit for bit."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(13)
    weights = (rng.integers(-8, 8, (16, 8)) / 16).astype(np.float32)
    gamma = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    gamma[3] = 0.0
    quant_in, in_init = _signed_quant("x", "q", "in_quant", 0.5, 4.0)
    quant_out, out_init = _signed_quant("bn", "y", "out_quant", 0.29, 4.0)
    constants = {
        "W": weights,
        "gamma": gamma,
        "beta": rng.normal(0, 0.5, 8).astype(np.float32),
        "mean": rng.normal(0, 0.5, 8).astype(np.float32),
        "var": rng.uniform(0.5, 2, 8).astype(np.float32),
    }
    graph = helper.make_graph(
        [
            quant_in,
            helper.make_node("MatMul", ["q", "W"], ["acc"], name="layer"),
            helper.make_node("BatchNormalization", ["acc", "gamma", "beta", "mean", "var"], ["bn"], name="bn"),
            quant_out,
        ],
        "pruned_channel",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [
            *in_init,
            *out_init,
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            *[helper.make_tensor(k, TensorProto.FLOAT, list(v.shape), v.ravel().tolist()) for k, v in constants.items()],
        ],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(QONNX_DOMAIN, 1)]
    model = load_model(helper.make_model(graph, opset_imports=opsets))
    lowered = model.transform(LowerToThresholds())
    ops = [n.op_type for n in lowered.graph.node]
    assert "BatchNormalization" not in ops and "Quant" not in ops, ops
    _outputs_equal(model, lowered, (random_inputs(model, [16], 1000, 0) * 2).astype(np.float32))
