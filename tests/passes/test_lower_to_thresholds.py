"""LowerToThresholds: golden outputs unchanged (bit for bit), and the graph is integer layers + MultiThresholds."""

from __future__ import annotations

import numpy as np
import pytest

import qdeploy
from qdeploy.ir import load_model, sample_shape
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
            assert producer is not None and producer.op_type in ("MultiThreshold", "Flatten", "Reshape", "MaxPool")


def _outputs_equal(before, after, x) -> None:
    assert np.array_equal(qdeploy.run_golden(after, x), qdeploy.run_golden(before, x))


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
