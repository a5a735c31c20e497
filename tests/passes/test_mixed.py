"""Hessian-aware mixed precision: trace estimates, exact budgeted allocation, mixed export that compiles exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import qdeploy
from qdeploy.errors import QDeployError
from qdeploy.passes.mixed import allocate_bits, hessian_traces, layer_macs, measure_sensitivity, measured_perturbations

ROOT = Path(__file__).resolve().parents[2]


def test_hutchinson_trace_matches_the_exact_hessian_trace():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    estimated = hessian_traces(model, x, y, probes=2000)
    for name in ("0", "2"):
        weight = dict(model.named_modules())[name].weight

        def loss_of(w, name=name, weight=weight):
            layer = dict(model.named_modules())[name]
            original = layer.weight
            del layer.weight
            layer.weight = w
            try:
                return nn.functional.cross_entropy(model(x), y)
            finally:
                layer.weight = original

        hessian = torch.autograd.functional.hessian(loss_of, weight.detach().clone())
        matrix = hessian.reshape(weight.numel(), weight.numel()).double()
        exact = float(matrix.diagonal().sum()) / weight.numel()
        # Hutchinson with Rademacher probes: variance 2 * sum of squared off-diagonal entries per probe
        off_diagonal = float((matrix**2).sum() - (matrix.diagonal() ** 2).sum())
        sigma = (2 * off_diagonal / 2000) ** 0.5 / weight.numel()
        assert abs(estimated[name] - exact) <= 4 * sigma, (name, estimated[name], exact, sigma)
        assert sigma < abs(exact)  # the check is meaningful: the tolerance is below the value itself


def _digits_model_and_data(data):
    model = qdeploy_example_mlp()
    x = torch.from_numpy(data.x_train[:512])
    y = torch.from_numpy(data.y_train[:512])
    return model, x, y


def qdeploy_example_mlp():
    from examples.digits import mlp

    return mlp()


def test_allocation_respects_the_budget_and_follows_sensitivity(data):
    model, x, y = _digits_model_and_data(data)
    traces = hessian_traces(model, x, y, probes=16)
    macs = layer_macs(model, x)
    uniform4 = sum(macs.values()) * 4 * 8
    allocation = allocate_bits(traces, model, macs, budget=uniform4)
    assert allocation.cost <= uniform4
    # never worse than the uniform 4-bit assignment, which is feasible at this budget
    uniform_sensitivity = sum(allocation.table[n][4]["omega"] for n in macs)
    assert allocation.sensitivity <= uniform_sensitivity + 1e-12
    # make one layer far more sensitive: it must get at least as many bits as before, and more than the least one
    boosted = {**traces, "5": traces["5"] * 1e4}
    skewed = allocate_bits(boosted, model, macs, budget=uniform4)
    assert skewed.bits["5"] >= allocation.bits["5"]
    assert skewed.bits["5"] > min(skewed.bits.values())
    assert len(set(skewed.bits.values())) > 1  # differs from uniform where sensitivities differ


def test_budget_below_the_minimum_is_refused(data):
    model, x, y = _digits_model_and_data(data)
    macs = layer_macs(model, x)
    traces = dict.fromkeys(macs, 1.0)
    with pytest.raises(QDeployError, match="below the .* that 2 bits everywhere cost"):
        allocate_bits(traces, model, macs, budget=1000)


def test_mixed_precision_model_exports_and_compiles_exactly(data, tmp_path):
    model, x, y = _digits_model_and_data(data)
    macs = layer_macs(model, x)
    allocation = allocate_bits(hessian_traces(model, x, y, probes=8), model, macs, budget=sum(macs.values()) * 3 * 8)
    qmodel = qdeploy.quantize(model, data.x_train[:256], act_bits=8, layer_weight_bits=allocation.bits)
    graph = qdeploy.export(qmodel, data.x_train[:1])
    per_layer = [row["weight_bits"] for row in qdeploy.inspect(graph)["layers"]]
    assert per_layer == [allocation.bits[name] for name in ("1", "3", "5")]
    for target in ("onnxruntime", "hls4ml"):
        assert qdeploy.compile(graph, target=target, out=tmp_path / target, data=data.x_test).bit_exact


def test_unknown_layer_name_is_refused(float_mlp, data):
    with pytest.raises(QDeployError, match="names 'fc9', which is not a Linear/Conv layer"):
        qdeploy.quantize(float_mlp, data.x_train[:64], layer_weight_bits={"fc9": 4})


def test_mixed_command_line_respects_the_budget_and_exports(tmp_path, data, capsys):
    from qdeploy.cli import main

    train = tmp_path / "train.npz"
    np.savez(train, x=data.x_train[:256], y=data.y_train[:256])
    out = tmp_path / "mixed.onnx"
    args = ["mixed", f"{ROOT / 'examples' / 'digits.py'}:mlp", "--data", str(train), "--probes", "4", "-q"]
    assert main([*args, "--average-bits", "3", "-o", str(out)]) == 0
    allocation = json.loads(out.with_suffix(".json").read_text())
    assert allocation["cost"] <= allocation["budget"] and set(allocation["bits"].values()) <= set(range(2, 9))
    graph = qdeploy.load(out)
    weight_bits = sorted(
        int(graph.get_initializer(n.input[3]))
        for n in graph.graph.node
        if n.op_type == "Quant"
        and graph.get_initializer(n.input[0]) is not None
        and graph.get_initializer(n.input[0]).ndim == 2
    )
    assert weight_bits == sorted(allocation["bits"].values())
    # a budget below 2 bits everywhere is refused with one line, no output
    low = tmp_path / "low.onnx"
    assert main([*args, "--average-bits", "1", "-o", str(low)]) == 1
    assert "below" in capsys.readouterr().err and not low.exists()


def test_mixed_verb_allocates_within_the_budget_and_quantizes_with_the_allocation(float_mlp, data):
    x, y = data.x_train[:256], data.y_train[:256]
    qmodel, allocation = qdeploy.mixed(float_mlp, x, y, average_bits=3, probes=4)
    assert allocation.cost <= allocation.budget == sum(layer_macs(float_mlp, torch.from_numpy(x)).values()) * 3 * 8
    graph = qdeploy.export(qmodel, x[:1])
    assert [row["weight_bits"] for row in qdeploy.inspect(graph)["layers"]] == [allocation.bits[n] for n in ("1", "3", "5")]
    # one measurement serves many budgets (benchmarks/mixed.py): the same sequence as the verb's
    assert measure_sensitivity(float_mlp, x, y, probes=4).allocate(3).bits == allocation.bits
    with pytest.raises(QDeployError, match="below the .* that 2 bits everywhere cost"):
        qdeploy.mixed(float_mlp, x, y, average_bits=1.5)
    with pytest.raises(QDeployError, match="candidates"):
        qdeploy.mixed(float_mlp, x, y, average_bits=3, candidates=(1, 4))


def test_measured_perturbation_is_the_exported_quantizers_error(data):
    """||Q_b(W) - W||^2 in the objective is the error of the weights the exported QONNX graph really holds."""
    from qonnx.custom_op.general.quant import quant

    model = qdeploy_example_mlp()
    calib = data.x_train[:128]
    measured = measured_perturbations(model, calib, (2, 4))
    float_weights = [dict(model.named_modules())[name].weight.detach().numpy() for name in ("1", "3", "5")]
    for bits in (2, 4):
        graph = qdeploy.export(qdeploy.quantize(model, calib, weight_bits=bits), calib[:1])
        errors = []
        for node in graph.graph.node:
            weight = graph.get_initializer(node.input[0]) if node.op_type == "Quant" else None
            if weight is None or weight.ndim != 2:
                continue
            scale, zero, width = (graph.get_initializer(name) for name in node.input[1:4])
            attrs = {a.name: a.i if a.type == a.INT else a.s.decode() for a in node.attribute}
            q = quant(weight, scale, zero, width, attrs["signed"], attrs["narrow"], attrs["rounding_mode"])
            # the exporter may store W transposed (MatMul layout): compare in the float layer's layout
            float_weight = next(w for w in float_weights if w.size == weight.size)
            w = weight if weight.shape == float_weight.shape else weight.T
            assert np.allclose(w, float_weight, atol=1e-6)
            errors.append(float(((q - weight) ** 2).sum()))
        assert np.allclose(errors, [measured[name][bits] for name in ("1", "3", "5")], rtol=1e-4)
    assert all(measured[name][2] > measured[name][4] > 0 for name in measured)


def test_perturbations_must_cover_every_candidate(data):
    model, x, _ = _digits_model_and_data(data)
    macs = layer_macs(model, x)
    partial = {name: {2: 1.0} for name in macs}
    with pytest.raises(QDeployError, match="perturbations lack"):
        allocate_bits(dict.fromkeys(macs, 1.0), model, macs, sum(macs.values()) * 32, (2, 4), perturbations=partial)


def test_model_without_quantizable_layer_is_refused():
    model = nn.Sequential(nn.Flatten(), nn.ReLU())
    with pytest.raises(QDeployError, match="no Linear or Conv layer"):
        hessian_traces(model, torch.randn(4, 8), torch.zeros(4, dtype=torch.long))
