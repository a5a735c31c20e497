"""Importing Qiskit-ML TorchConnectors (EstimatorQNN / SamplerQNN) as QuantumLayers: equal outputs, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from qdeploy.quantum import CircuitSpecError, export_hybrid

pytest.importorskip("qiskit_qasm3_import")
pytest.importorskip("qiskit_machine_learning")

from qiskit import ClassicalRegister, QuantumCircuit  # noqa: E402
from qiskit.circuit import ParameterVector  # noqa: E402
from qiskit.circuit.library import real_amplitudes, z_feature_map, zz_feature_map  # noqa: E402
from qiskit.quantum_info import Pauli, SparsePauliOp, Statevector  # noqa: E402
from qiskit_machine_learning.connectors import TorchConnector  # noqa: E402
from qiskit_machine_learning.neural_networks import EstimatorQNN, SamplerQNN  # noqa: E402

from qdeploy.quantum.importers import from_qiskit_ml  # noqa: E402

X = ParameterVector("x", 3)
W = ParameterVector("w", 7)


def mixed_circuit() -> QuantumCircuit:
    """Scaled inputs, a controlled rotation on weights, a constant u gate (translated) and an rxx (translated)."""
    qc = QuantumCircuit(3)
    for i in range(3):
        qc.ry(2 * X[i], i)
    qc.cx(0, 1)
    qc.cx(1, 2)
    qc.crz(W[6], 2, 0)
    for i in range(3):
        qc.rz(W[i], i)
        qc.rx(W[3 + i], i)
    qc.u(0.3, 0.2, 0.1, 1)
    qc.rxx(0.7, 0, 2)
    return qc


def inputs(n: int = 6, width: int = 3) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(1).uniform(-np.pi, np.pi, (n, width)))


def max_error(layer, connector, x) -> float:
    with torch.no_grad():
        return float((layer(x) - connector(x).double()).abs().max())


def test_estimator_qnn_imports_with_its_weights_and_matches():
    observables = [SparsePauliOp("ZII"), SparsePauliOp.from_list([("XYI", 0.5), ("IIZ", -1.25)])]
    qnn = EstimatorQNN(circuit=mixed_circuit(), input_params=list(X), weight_params=list(W), observables=observables)
    connector = TorchConnector(qnn, initial_weights=np.linspace(-2, 2, 7))
    layer = from_qiskit_ml(connector, name="est")
    spec = layer.spec
    assert (spec.num_qubits, spec.num_inputs, spec.num_weights, spec.num_outputs) == (3, 3, 7, 2)
    scales = [g.angle.scale for g in spec.gates if g.angle is not None and g.angle.kind == "input"]
    assert scales == [2.0, 2.0, 2.0]  # ry(2*x[i]) keeps its factor
    # qiskit's "XYI" is I on qubit 0, Y on 1, X on 2: qdeploy's wire-0-first string reverses it.
    assert spec.readout.observables[1] == ((0.5, "IYX"), (-1.25, "ZII"))
    assert np.allclose(layer.weight.detach().numpy(), np.linspace(-2, 2, 7))
    assert max_error(layer, connector, inputs()) <= 1e-6


def test_pauli_observables_import_as_pauli_sums():
    # EstimatorQNN takes a bare Pauli (with its sign) as well as a SparsePauliOp.
    observables = [Pauli("ZIX"), Pauli("-YZI")]
    qnn = EstimatorQNN(circuit=mixed_circuit(), input_params=list(X), weight_params=list(W), observables=observables)
    connector = TorchConnector(qnn, initial_weights=np.linspace(-1, 1, 7))
    layer = from_qiskit_ml(connector)
    assert layer.spec.readout.observables == (((1.0, "XIZ"),), ((-1.0, "IZY"),))
    assert max_error(layer, connector, inputs()) <= 1e-6


def test_feature_map_and_ansatz_library_circuits_import():
    feature_map, ansatz = z_feature_map(2), real_amplitudes(2, reps=2)
    qnn = EstimatorQNN(
        circuit=feature_map.compose(ansatz), input_params=feature_map.parameters, weight_params=ansatz.parameters
    )
    connector = TorchConnector(qnn)
    layer = from_qiskit_ml(connector)
    assert {g.name for g in layer.spec.gates} <= {"h", "p", "ry", "cx"}
    assert max_error(layer, connector, inputs(width=2)) <= 1e-6


def test_sampler_qnn_probabilities_follow_the_classical_bits():
    qc = mixed_circuit()
    qc.add_register(ClassicalRegister(3))
    for qubit, clbit in ((2, 0), (0, 1), (1, 2)):
        qc.measure(qubit, clbit)
    connector = TorchConnector(SamplerQNN(circuit=qc, input_params=list(X), weight_params=list(W)))
    layer = from_qiskit_ml(connector, name="sampler")
    assert layer.spec.readout.wires == (2, 0, 1)
    # Row by row: qiskit-machine-learning 0.9.1's exact sampler averages a batch's rows when the circuit measures
    # into its own register (the importer's check falls back to one row at a time for that reason).
    x = inputs()
    assert max(max_error(layer, connector, x[i : i + 1]) for i in range(len(x))) <= 1e-6
    # no measurement: SamplerQNN measures all qubits in order
    connector = TorchConnector(SamplerQNN(circuit=mixed_circuit(), input_params=list(X), weight_params=list(W)))
    assert from_qiskit_ml(connector).spec.readout.wires == (0, 1, 2)


def test_shot_based_primitive_is_checked_against_the_exact_statevector():
    from qiskit_machine_learning.primitives import QMLEstimator

    qnn = EstimatorQNN(
        circuit=mixed_circuit(),
        input_params=list(X),
        weight_params=list(W),
        estimator=QMLEstimator(default_precision=0.05, seed=3),
    )
    connector = TorchConnector(qnn)
    layer = from_qiskit_ml(connector)
    x = inputs(2)
    assert max_error(layer, connector, x) > 1e-6  # the connector samples
    bound = mixed_circuit().assign_parameters(
        dict(zip(X, x[0].tolist(), strict=True)) | dict(zip(W, connector.weight.tolist(), strict=True))
    )
    exact = Statevector(bound).expectation_value(SparsePauliOp("ZZZ")).real
    with torch.no_grad():
        assert float(layer(x)[0, 0]) == pytest.approx(exact, abs=1e-9)


def test_imported_layer_exports_compiles_and_runs(tmp_path):
    import qdeploy

    qnn = EstimatorQNN(circuit=mixed_circuit(), input_params=list(X), weight_params=list(W))
    model = nn.Sequential(nn.Linear(4, 3), from_qiskit_ml(TorchConnector(qnn)), nn.Linear(1, 2))
    x = np.random.default_rng(0).uniform(-1, 1, (8, 4)).astype(np.float32)
    artifact = qdeploy.compile(export_hybrid(model, x), target="quantum", out=tmp_path / "q", data=x, verify_samples=4)
    assert artifact.report["verified"]
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.max(np.abs(artifact.predict(x) - expected)) <= 1e-6


def estimator(circuit, input_params, weight_params, **kwargs) -> TorchConnector:
    return TorchConnector(EstimatorQNN(circuit=circuit, input_params=input_params, weight_params=weight_params, **kwargs))


def test_refusals_name_the_gate_and_the_fix():
    feature_map, ansatz = zz_feature_map(2), real_amplitudes(2, reps=1)
    with pytest.raises(CircuitSpecError, match=r"gate \d+ \(p on qubits \[1\]\).*combines several parameters"):
        from_qiskit_ml(estimator(feature_map.compose(ansatz), feature_map.parameters, ansatz.parameters))
    shifted = QuantumCircuit(1)
    shifted.rx(X[0], 0)
    shifted.ry(W[0] + 0.5, 0)
    with pytest.raises(CircuitSpecError, match=r"ry on qubits \[0\].*expression of w\[0\]; use the plain parameter"):
        from_qiskit_ml(estimator(shifted, [X[0]], [W[0]]))
    translated = QuantumCircuit(1)
    translated.u(X[0], W[0] + 0.5, 0.0, 0)  # u is translated into qdeploy's gates: errors still name the u gate
    with pytest.raises(CircuitSpecError, match=r"gate 0 \(u on qubits \[0\]\), translated to rz: .*expression of x\[0\]"):
        from_qiskit_ml(estimator(translated, [X[0]], [W[0]]))
    complex_obs = QuantumCircuit(1)
    complex_obs.rx(X[0], 0)
    with pytest.raises(CircuitSpecError, match="not Hermitian"):
        from_qiskit_ml(estimator(complex_obs, [X[0]], [], observables=[SparsePauliOp(["Z"], coeffs=[1j])]))
    mid = QuantumCircuit(2, 2)
    mid.rx(X[0], 0)
    mid.measure(0, 0)
    mid.cx(0, 1)
    mid.measure(1, 1)
    with pytest.raises(CircuitSpecError, match="cx on qubits \\[0, 1\\] after or besides a measurement"):
        from_qiskit_ml(TorchConnector(SamplerQNN(circuit=mid, input_params=[X[0]])))
    partial = QuantumCircuit(2, 1)
    partial.rx(X[0], 0)
    partial.measure(1, 0)
    with pytest.raises(CircuitSpecError, match="measure every qubit"):
        from_qiskit_ml(TorchConnector(SamplerQNN(circuit=partial, input_params=[X[0]])))
    parity = SamplerQNN(circuit=partial.remove_final_measurements(inplace=False), input_params=[X[0]])
    parity.set_interpret(lambda k: bin(k).count("1") % 2, 2)
    with pytest.raises(CircuitSpecError, match="interpret function"):
        from_qiskit_ml(TorchConnector(parity))
    with pytest.raises(CircuitSpecError, match="TorchConnector around an EstimatorQNN or SamplerQNN"):
        from_qiskit_ml(nn.Linear(1, 1))


def test_missing_extra_names_the_pip_install(monkeypatch):
    import sys

    from qdeploy.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "qiskit_machine_learning", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'qdeploy\[qiskit-ml\]'"):
        from_qiskit_ml(object())
