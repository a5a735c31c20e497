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
from qdeploy.passes.mixed import allocate_bits, hessian_traces, layer_macs

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
    assert allocation["cost"] <= allocation["budget"] and set(allocation["bits"].values()) <= {2, 3, 4, 6, 8}
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
