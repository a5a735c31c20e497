"""qdeploy.quantum core: spec, templates, the torch simulator (checked against qiskit), QuantumLayer, export."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from qdeploy.custom_op.quantum.simulator import simulate_state
from qdeploy.quantum import CircuitBuilder, CircuitSpec, CircuitSpecError, QuantumLayer, simulate, to_qasm3

qiskit = pytest.importorskip("qiskit")
pytest.importorskip("qiskit_qasm3_import")


def every_gate_spec() -> CircuitSpec:
    """All templates and every gate of the set, with observables mixing X, Y, Z and a weighted sum."""
    b = CircuitBuilder(4, name="all_gates")
    b.angle_embedding(range(4), scale=0.7).strongly_entangling_layers(2).basic_entangler_layers(1, rotation="Z")
    b.data_reuploading([0, 1], layers=1).qcnn_conv().qcnn_pool([0, 2], [1, 3]).hadamard_transform([0, 2])
    for name in ("x", "y", "z", "s", "sdg", "t", "tdg", "sx"):
        b.gate(name, 1)
    b.gate("p", 2, angle=b.weight()).gate("rx", 3, angle=0.3).gate("cy", 1, 2).gate("cz", 0, 3).gate("swap", 0, 2)
    b.gate("crx", 1, 0, angle=b.weight()).gate("cry", 2, 1, angle=b.weight()).gate("crz", 3, 2, angle=b.weight())
    b.gate("cp", 0, 1, angle=b.weight()).gate("rzz", 2, 3, angle=b.weight())
    return b.expval(["ZIII", "IXII", "IIYZ", [(0.5, "XYZI"), (-1.25, "IIXX"), (0.25, "IIII")]])


def bind_values(circuit, x_row, weights):
    values = {f"x_{i}": v for i, v in enumerate(x_row)} | {f"w_{j}": v for j, v in enumerate(weights)}
    return circuit.assign_parameters({p: values[p.name] for p in circuit.parameters})


def test_simulator_matches_qiskit_statevector_on_every_gate_and_template():
    from qiskit import qasm3
    from qiskit.quantum_info import SparsePauliOp, Statevector

    spec = every_gate_spec()
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, (5, spec.num_inputs))
    w = rng.uniform(-6, 6, spec.num_weights)
    states = simulate_state(spec, torch.from_numpy(x), torch.from_numpy(w)).reshape(5, -1).numpy()
    values = simulate(spec, torch.from_numpy(x), torch.from_numpy(w)).numpy()
    circuit = qasm3.loads(to_qasm3(spec))  # the QASM text the IR carries, read by qiskit
    for i in range(5):
        reference = Statevector(bind_values(circuit, x[i], w))
        np.testing.assert_allclose(states[i], reference.data, atol=1e-12)
        for k, observable in enumerate(spec.readout.observables):
            # qiskit's Pauli labels are little-endian (rightmost = qubit 0); ours read wire 0 first.
            op = SparsePauliOp.from_list([(p[::-1], c) for c, p in observable])
            assert values[i, k] == pytest.approx(reference.expectation_value(op).real, abs=1e-12)


def test_probs_readout_matches_qiskit_bit_order():
    from qiskit import qasm3
    from qiskit.quantum_info import Statevector

    b = CircuitBuilder(3)
    spec = b.angle_embedding(range(3)).basic_entangler_layers(2).probs([2, 0])
    x, w = np.array([[0.3, -1.2, 2.0]]), np.linspace(-1, 1, spec.num_weights)
    got = simulate(spec, torch.from_numpy(x), torch.from_numpy(w)).numpy()[0]
    reference = Statevector(bind_values(qasm3.loads(to_qasm3(spec)), x[0], w)).probabilities([2, 0])
    np.testing.assert_allclose(got, reference, atol=1e-12)
    assert got.sum() == pytest.approx(1.0)


def test_backprop_gradient_equals_parameter_shift_rule():
    """For rotations exp(-i theta P / 2), d<O>/dtheta = (f(theta + pi/2) - f(theta - pi/2)) / 2 exactly."""
    b = CircuitBuilder(3)
    spec = b.angle_embedding(range(3)).strongly_entangling_layers(1).expval_z([0])
    x = torch.tensor([[0.1, 0.5, -0.7]], dtype=torch.float64)
    w = torch.linspace(-2, 2, spec.num_weights, dtype=torch.float64, requires_grad=True)
    simulate(spec, x, w).sum().backward()
    for j in range(spec.num_weights):
        shift = torch.zeros_like(w)
        shift[j] = math.pi / 2
        with torch.no_grad():
            expected = (simulate(spec, x, w + shift) - simulate(spec, x, w - shift)).item() / 2
        assert w.grad[j].item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("which", ["every_gate", "six_qubit_layers"])
def test_gradients_equal_finite_differences(which):
    """Inputs' and weights' gradients through every path of the simulator (product state, composed permutations,
    shared trainable gates on every axis, per-sample gates, controlled gates, both readouts) against torch's
    numerical Jacobian."""
    if which == "every_gate":
        spec = every_gate_spec()
    else:
        b = CircuitBuilder(6).angle_embedding(range(6)).strongly_entangling_layers(3)
        spec = b.data_reuploading(range(6), layers=1).gate("cz", 0, 5).gate("swap", 1, 4).rot(2).expval_z()
    x = torch.rand(3, spec.num_inputs, dtype=torch.float64, requires_grad=True)
    w = (torch.rand(spec.num_weights, dtype=torch.float64) * 6).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, w: simulate(spec, x, w), (x, w), eps=1e-6, atol=1e-7)


def test_float32_simulation_is_close_to_float64():
    spec = every_gate_spec()
    x = torch.rand(8, spec.num_inputs, dtype=torch.float64)
    w = torch.rand(spec.num_weights, dtype=torch.float64)
    y64 = simulate(spec, x, w)
    y32 = simulate(spec, x.float(), w.float())
    assert y32.dtype == torch.float32
    assert torch.max(torch.abs(y64 - y32.double())).item() < 1e-5


def test_spec_json_round_trip_and_qasm_symbols():
    spec = every_gate_spec()
    again = CircuitSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again == spec
    qasm = to_qasm3(spec)
    assert "input float[64] x_0;" in qasm and f"input float[64] w_{spec.num_weights - 1};" in qasm
    b = CircuitBuilder(4)
    assert b.strongly_entangling_layers(3).num_weights == 3 * 4 * 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["gates"].append({"name": "ccx", "wires": [0, 1, 2]}), "not in the gate set"),
        (lambda d: d["readout"].update(observables=[[[1j, "ZIII"]]]), "not Hermitian"),
        (lambda d: d["gates"].append({"name": "rx", "wires": [0], "angle": {"const": float("nan")}}), "non-finite"),
        (lambda d: d["gates"].append({"name": "rx", "wires": [0], "angle": {"const": 1 + 2j}}), "complex"),
        (lambda d: d["gates"].append({"name": "cx", "wires": [0, 7]}), "outside"),
        (lambda d: d["readout"].update(observables=["ZQ"]), "letters from I, X, Y, Z"),
    ],
)
def test_bad_specs_name_the_layer_and_the_fix(change, message):
    data = CircuitBuilder(4, name="clf").angle_embedding(range(4)).expval_z().to_json()
    change(data)
    with pytest.raises(CircuitSpecError, match=message) as info:
        CircuitSpec.from_json(data)
    assert "'clf'" in str(info.value) and "\n" not in str(info.value)


def test_layer_rejects_non_finite_inputs():
    layer = QuantumLayer(CircuitBuilder(2, name="q").angle_embedding(range(2)).expval_z())
    with pytest.raises(CircuitSpecError, match="non-finite input angles"):
        layer(torch.tensor([[0.1, float("inf")]]))


def test_quantum_layer_trains():
    torch.manual_seed(0)
    spec = CircuitBuilder(2).angle_embedding(range(2)).strongly_entangling_layers(2).expval_z([0])
    layer = QuantumLayer(spec, seed=1)
    x = torch.rand(32, 2) * math.pi
    target = torch.cos(x[:, :1]) * torch.cos(x[:, 1:])
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = torch.mean((layer(x) - target) ** 2)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_export_hybrid_model_to_one_quantumcircuit_node_equal_to_torch(tmp_path):
    from qiskit import qasm3
    from qonnx.custom_op.registry import getCustomOp

    from qdeploy.custom_op.quantum import QuantumCircuit
    from qdeploy.golden import run_golden
    from qdeploy.ir import load_model, node_attr
    from qdeploy.quantum import export_hybrid

    spec = CircuitBuilder(3).angle_embedding(range(3)).strongly_entangling_layers(1).expval(["ZII", "IXI"])
    model = nn.Sequential(nn.Linear(5, 3), nn.Tanh(), QuantumLayer(spec), nn.Linear(2, 2))
    x = np.random.default_rng(0).normal(size=(32, 5)).astype(np.float32)
    graph = export_hybrid(model, x)
    nodes = [n for n in graph.graph.node if n.op_type == "QuantumCircuit"]
    # the domain saved graphs carry: qonnx imports it as a module and finds the op in its custom_op dict
    assert len(nodes) == 1 and nodes[0].domain == "qdeploy.custom_op.quantum"
    assert isinstance(getCustomOp(nodes[0]), QuantumCircuit)
    angles = graph.get_initializer(nodes[0].input[1])
    np.testing.assert_array_equal(angles, model[2].weight.detach().numpy())  # trainable angles: an initializer
    assert qasm3.loads(node_attr(nodes[0], "qasm")).num_qubits == 3
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(run_golden(graph, x) - expected)) <= 1e-6
    graph.save(str(tmp_path / "hybrid.onnx"))  # a saved file runs as it is
    assert np.max(np.abs(run_golden(load_model(tmp_path / "hybrid.onnx"), x) - expected)) <= 1e-6


def test_quantize_angles_inserts_quant_on_the_angles_and_3_bits_is_the_clifford_t_grid():
    from qdeploy.golden import run_golden
    from qdeploy.quantum import export_hybrid, quantize_angles

    spec = CircuitBuilder(2).angle_embedding(range(2)).basic_entangler_layers(2).expval_z()
    model = nn.Sequential(QuantumLayer(spec, weights=[0.1, 7.0, -3.3, 2.9]))
    x = np.random.default_rng(1).uniform(-1, 1, (8, 2)).astype(np.float32)
    graph = export_hybrid(model, x)
    quantized = quantize_angles(graph, bits=3)
    quant = [n for n in quantized.graph.node if n.op_type == "Quant"]
    assert len(quant) == 1 and quant[0].output[0] == quantized.graph.node[-1].input[1]
    # the golden executor runs the Quant: same outputs as a layer holding the pi/4-grid angles
    grid = np.round(np.array([0.1, 7.0 - 2 * np.pi, -3.3 + 2 * np.pi, 2.9]) / (np.pi / 4)) * (np.pi / 4)
    grid_model = nn.Sequential(QuantumLayer(spec, weights=grid))
    with torch.no_grad():
        expected = grid_model(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(run_golden(quantized, x) - expected)) <= 1e-6


def test_qdeploy_export_handles_hybrid_models():
    import qdeploy

    spec = CircuitBuilder(2).angle_embedding(range(2)).basic_entangler_layers(1).expval_z()
    model = nn.Sequential(nn.Linear(3, 2), QuantumLayer(spec))
    graph = qdeploy.export(model, np.zeros((4, 3), np.float32))
    assert [n.op_type for n in graph.graph.node] == ["Gemm", "QuantumCircuit"]


def test_pennylane_torch_layer_imports_and_matches():
    qml = pytest.importorskip("pennylane")
    from qdeploy.quantum.importers import from_pennylane

    device = qml.device("default.qubit", wires=3)

    @qml.qnode(device, interface="torch")
    def circuit(inputs, weights, extra):
        qml.AngleEmbedding(inputs, wires=range(3))
        qml.StronglyEntanglingLayers(weights, wires=range(3))
        qml.CRZ(extra[0], wires=[0, 2])
        qml.IsingZZ(extra[1], wires=[1, 2])
        qml.adjoint(qml.S(wires=0))
        return [qml.expval(qml.PauliZ(0)), qml.expval(qml.PauliX(1) @ qml.PauliY(2)), qml.expval(0.5 * qml.PauliZ(0))]

    torch_layer = qml.qnn.TorchLayer(circuit, {"weights": (2, 3, 3), "extra": (2,)})
    layer = from_pennylane(torch_layer, num_inputs=3, name="pl")
    assert layer.spec.num_weights == 20 and [g.name for g in layer.spec.gates][:3] == ["rx", "rx", "rx"]
    x = torch.rand(5, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.max(torch.abs(layer(x) - torch_layer(x).double())).item() <= 1e-6

    @qml.qnode(device, interface="torch")
    def scaled(inputs, weights):
        qml.RY(np.pi * inputs[0], wires=0)
        return [qml.expval(qml.PauliZ(0))]

    with pytest.raises(CircuitSpecError, match="expression of inputs"):
        from_pennylane(qml.qnn.TorchLayer(scaled, {"weights": (1,)}), num_inputs=1)
