"""Trained hybrid models export and compile within the bound derived from their float arithmetic (no fixed
tolerance): a PennyLane-imported layer between float32 classical layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import qdeploy


def test_trained_hybrid_with_a_pennylane_layer_exports_and_compiles(tmp_path):
    qml = pytest.importorskip("pennylane")
    pytest.importorskip("qiskit")
    from qdeploy.quantum import from_pennylane

    device = qml.device("default.qubit", wires=3)

    @qml.qnode(device, interface="torch")
    def circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(3))
        qml.BasicEntanglerLayers(weights, wires=range(3))
        return [qml.expval(qml.PauliZ(w)) for w in range(3)]

    torch.manual_seed(0)
    layer = from_pennylane(qml.qnn.TorchLayer(circuit, {"weights": (2, 3)}), num_inputs=3, name="pl")
    model = nn.Sequential(nn.Linear(6, 3), nn.Tanh(), layer, nn.Linear(3, 2))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = torch.from_numpy((x[:, 0] > 0).astype(np.int64))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(15):  # trained weights: not the initial ones
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(torch.from_numpy(x)), y).backward()
        optimizer.step()
    graph = qdeploy.export(model, x)  # checked against torch within the derived bound
    artifact = qdeploy.compile(graph, target="quantum", out=tmp_path / "q", data=x, verify_samples=16)
    report = artifact.report
    assert report["verified"] and report["bound"]["kind"] == "derived"
    assert report["max_abs_error"] <= report["bound"]["max"] < 1e-2
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(artifact.predict(x) - expected)) <= report["bound"]["max"]
