"""Importers (optional extras): a PennyLane ``qml.qnn.TorchLayer`` (``pip install 'qdeploy[pennylane]'``) or a
Qiskit-ML ``TorchConnector`` (``pip install 'qdeploy[qiskit-ml]'``) as a ``QuantumLayer``.

``torch.onnx.export`` cannot export a PennyLane layer; importing it gives a layer qdeploy exports, compiles and
verifies. The circuit is recorded with *sentinel* values (input ``i`` = 1000 + i, weight ``j`` = 5000 + j, then a
second recording with other sentinels) and decomposed into qdeploy's gate set: a gate parameter equal to a sentinel
in both recordings is that input or weight, one equal in both is a constant, anything else (an expression of
inputs) is refused. The imported layer is then checked against PennyLane on random inputs (max abs error 1e-6).

A TorchConnector's circuit is read directly: qiskit's gate names are qdeploy's; other gates go through qiskit's
basis translator; each angle must be a number, one input times a factor, or one weight. Checked like PennyLane's.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from qdeploy.custom_op.quantum.spec import (
    GATES,
    Angle,
    CircuitSpec,
    CircuitSpecError,
    Gate,
    Readout,
    parse_observable,
    real_number,
)
from qdeploy.quantum.layer import QuantumLayer

log = logging.getLogger(__name__)

#: PennyLane operation name -> qdeploy gate
PENNYLANE_GATES = {
    "RX": "rx",
    "RY": "ry",
    "RZ": "rz",
    "PhaseShift": "p",
    "Hadamard": "h",
    "PauliX": "x",
    "PauliY": "y",
    "PauliZ": "z",
    "S": "s",
    "Adjoint(S)": "sdg",
    "T": "t",
    "Adjoint(T)": "tdg",
    "SX": "sx",
    "CNOT": "cx",
    "CY": "cy",
    "CZ": "cz",
    "SWAP": "swap",
    "CRX": "crx",
    "CRY": "cry",
    "CRZ": "crz",
    "ControlledPhaseShift": "cp",
    "IsingZZ": "rzz",
}

IMPORT_TOLERANCE = 1e-6


def _record(torch_layer: Any, inputs: np.ndarray, weights: dict[str, np.ndarray]):
    import pennylane as qml

    tensors = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in weights.items()}
    tape = qml.workflow.construct_tape(torch_layer.qnode)(torch.as_tensor(inputs, dtype=torch.float64), **tensors)
    (tape,), _ = qml.transforms.decompose(tape, gate_set=set(PENNYLANE_GATES))
    return tape


def from_pennylane(torch_layer: Any, num_inputs: int, name: str = "pennylane", check_samples: int = 8) -> QuantumLayer:
    """A ``QuantumLayer`` computing what ``torch_layer`` (a ``qml.qnn.TorchLayer``) computes, with its weights."""
    from qdeploy.deps import require

    require("pennylane", "pennylane", "importing a PennyLane layer")
    where = f"PennyLane layer {name!r}"
    shapes = {k: tuple(v.shape) for k, v in torch_layer.qnode_weights.items()}
    sizes = {k: int(np.prod(s)) for k, s in shapes.items()}
    offsets = dict(zip(sizes, np.cumsum([0, *sizes.values()])[:-1], strict=True))

    def sentinels(base_in: float, base_w: float):
        inputs = base_in + np.arange(num_inputs, dtype=np.float64)
        weights = {k: (base_w + offsets[k] + np.arange(sizes[k], dtype=np.float64)).reshape(shapes[k]) for k in shapes}
        return inputs, weights

    tapes = [_record(torch_layer, *sentinels(1000.0, 5000.0)), _record(torch_layer, *sentinels(20000.0, 40000.0))]
    wires = {label: index for index, label in enumerate(torch_layer.qnode.device.wires.tolist())}
    gates = []
    for op_a, op_b in zip(tapes[0].operations, tapes[1].operations, strict=True):
        gate_name = PENNYLANE_GATES.get(op_a.name)
        if gate_name is None:
            raise CircuitSpecError(
                f"{where}: operation {op_a.name} has no qdeploy gate; use one of {sorted(PENNYLANE_GATES)}"
            )
        angle = None
        if op_a.parameters:
            a, b = float(op_a.parameters[0]), float(op_b.parameters[0])
            if a == b:
                angle = Angle("const", value=a)
            elif a - 1000 == b - 20000 and 0 <= a - 1000 < num_inputs and float(a).is_integer():
                angle = Angle("input", index=int(a - 1000))
            elif a - 5000 == b - 40000 and 0 <= a - 5000 < sum(sizes.values()) and float(a).is_integer():
                angle = Angle("weight", index=int(a - 5000))
            else:
                raise CircuitSpecError(
                    f"{where}: the angle of {op_a.name} on wires {op_a.wires.tolist()} is an expression of inputs or "
                    "weights; feed plain inputs/weights to gates (scale inputs in a classical layer before)"
                )
        gates.append(Gate(gate_name, tuple(wires[w] for w in op_a.wires.tolist()), angle))
    readout = _readout(tapes[0].measurements, wires, where)
    spec = CircuitSpec(len(wires), tuple(gates), readout, num_inputs, sum(sizes.values()), name)
    spec.validate()
    flat = np.concatenate([torch_layer.qnode_weights[k].detach().double().reshape(-1).numpy() for k in shapes])
    layer = QuantumLayer(spec, weights=flat)
    _, _, error = _compare(layer, torch_layer, num_inputs, check_samples)
    if not error <= IMPORT_TOLERANCE:
        raise CircuitSpecError(f"{where}: the imported circuit differs from PennyLane by {error:.3g}; report this as a bug")
    return layer


def _compare(layer: QuantumLayer, source: Any, num_inputs: int, samples: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The import check: random inputs in [-π, π], the imported layer's outputs on them, and the largest absolute
    difference from what the source layer computes."""
    x = torch.from_numpy(np.random.default_rng(0).uniform(-np.pi, np.pi, (samples, num_inputs)))
    with torch.no_grad():
        ours = layer(x)
        theirs = source(x).double().reshape(ours.shape)
    return x, ours, float((ours - theirs).abs().max())


def _readout(measurements, wires: dict, where: str) -> Readout:
    kinds = {type(m).__name__ for m in measurements}
    if kinds == {"ProbabilityMP"} and len(measurements) == 1:
        # PennyLane's first wire is the most significant bit, qdeploy's the least: reverse the order.
        return Readout("probs", wires=tuple(wires[w] for w in reversed(measurements[0].wires.tolist())))
    if kinds != {"ExpectationMP"}:
        raise CircuitSpecError(f"{where}: returns {sorted(kinds)}; import expectation values or one qml.probs")
    observables = []
    for k, m in enumerate(measurements):
        sentence = m.obs.pauli_rep if m.obs is not None else None
        if sentence is None:
            raise CircuitSpecError(f"{where}: observable {k} ({m.obs}) is not a sum of Pauli words")
        terms = []
        for word, coeff in sentence.items():
            letters = ["I"] * len(wires)
            for wire, pauli in word.items():
                letters[wires[wire]] = pauli
            terms.append((complex(coeff) if np.iscomplexobj(coeff) else float(coeff), "".join(letters)))
        observables.append(parse_observable(terms, len(wires), f"{where} observable {k}"))
    return Readout("expval", observables=tuple(observables))


#: qiskit instructions that carry no gate of the layer: skipped on import
_QISKIT_SKIP = {"barrier", "delay", "id"}


def _qiskit_angle(param: Any, inputs: dict, weights: dict, where: str) -> Angle:
    """A gate parameter as a qdeploy angle: a number (const), ``s * x`` of one input (scaled input) or one weight
    exactly. Offsets, products and weights times a factor have no qdeploy angle and are refused."""
    from qiskit.circuit import ParameterExpression

    if not isinstance(param, ParameterExpression):
        return Angle("const", value=real_number(param, where))
    if not param.parameters:
        return Angle("const", value=real_number(complex(param), where))
    if len(param.parameters) != 1:
        names = sorted(p.name for p in param.parameters)
        raise CircuitSpecError(
            f"{where}: angle {param} combines several parameters {names}; give each gate one input or weight "
            "(compute combinations in a classical layer before)"
        )
    (symbol,) = param.parameters

    def at(value: float) -> float:
        return float(complex(param.bind({symbol: value}).numeric()).real)

    scale = at(1.0)
    linear = at(0.0) == 0.0 and math.isclose(at(2.0), 2 * scale, rel_tol=1e-12, abs_tol=1e-12) and scale != 0.0
    if symbol in inputs and linear:
        return Angle("input", index=inputs[symbol], scale=scale)
    if symbol in weights and linear and scale == 1.0:
        return Angle("weight", index=weights[symbol])
    if symbol not in inputs and symbol not in weights:
        raise CircuitSpecError(f"{where}: parameter {symbol} is neither an input nor a weight of the QNN")
    raise CircuitSpecError(
        f"{where}: angle {param} is an expression of {symbol.name}; use the plain parameter "
        "(inputs may carry a factor, e.g. 2*x[0]; scale or shift in a classical layer before)"
    )


def _qiskit_gates(circuit: Any, where: str) -> tuple[list[tuple[str, Any, tuple[int, ...]]], dict[int, int]]:
    """The circuit in qdeploy's gate set (qiskit's names are qdeploy's) as ``(origin, operation, qubits)`` rows, and
    its final measurements (qubit -> clbit). ``origin`` names the user's instruction a row came from.

    Gates outside the set are translated one instruction at a time by qiskit's basis translator (optimization
    level 0: no rewriting of the parameters beyond the equivalence library), so errors name the user's gate, not
    one of its pieces; what it cannot translate is refused naming the gate."""
    from qiskit import QuantumCircuit, transpile

    measured: dict[int, int] = {}
    rows = []
    for k, inst in enumerate(circuit.data):
        name = inst.operation.name
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if name == "measure":
            measured[qubits[0]] = circuit.find_bit(inst.clbits[0]).index
            continue
        if name in _QISKIT_SKIP:
            continue
        origin = f"{where} gate {k} ({name} on qubits {qubits})"
        if any(q in measured for q in qubits) or name == "reset" or inst.clbits or inst.operation.num_clbits:
            raise CircuitSpecError(
                f"{where}: instruction {name} on qubits {qubits} after or besides a measurement (mid-circuit "
                "measurement, reset or classical control); import circuits that measure only at the end"
            )
        if name in GATES:
            rows.append((origin, inst.operation, tuple(qubits)))
            continue
        single = QuantumCircuit(len(qubits))
        single.append(inst.operation, range(len(qubits)))
        try:
            translated = transpile(single, basis_gates=sorted(GATES), optimization_level=0)
        except Exception as exc:
            raise CircuitSpecError(
                f"{origin}: no decomposition into qdeploy's gate set {sorted(GATES)} ({type(exc).__name__}: "
                f"{' '.join(str(exc).split())}); build the circuit from those gates"
            ) from exc
        for piece in translated.data:
            local = [translated.find_bit(q).index for q in piece.qubits]
            rows.append(
                (f"{origin}, translated to {piece.operation.name}", piece.operation, tuple(qubits[i] for i in local))
            )
    return rows, measured


def from_qiskit_ml(connector: Any, name: str = "qiskit", check_samples: int = 8) -> QuantumLayer:
    """A ``QuantumLayer`` computing what ``connector`` (a qiskit-machine-learning ``TorchConnector`` around an
    ``EstimatorQNN`` or ``SamplerQNN``) computes, with its trained weights (``pip install 'qdeploy[qiskit-ml]'``).

    EstimatorQNN: one output per observable (Pauli sums with real coefficients). SamplerQNN without ``interpret``:
    the probabilities of the measured bits (all qubits when the circuit measures none), bit ``j`` of the index
    being classical bit ``j``, as in qiskit. Checked against the connector on ``check_samples`` random inputs (max
    abs error 1e-6); when the connector is not exact (a shot-based primitive), against an exact copy of its QNN."""
    from qdeploy.deps import require

    require("qiskit_machine_learning", "qiskit-ml", "importing a Qiskit-ML TorchConnector")
    from qiskit_machine_learning.neural_networks import EstimatorQNN, SamplerQNN

    where = f"Qiskit-ML layer {name!r}"
    qnn = getattr(connector, "neural_network", None)
    if not isinstance(qnn, (EstimatorQNN, SamplerQNN)):
        raise CircuitSpecError(f"{where}: expected a TorchConnector around an EstimatorQNN or SamplerQNN, got {qnn!r}")
    circuit = qnn.circuit
    if circuit.layout is not None:
        raise CircuitSpecError(
            f"{where}: the QNN's circuit is already transpiled for a device; import the logical circuit (qdeploy "
            "transpiles for the target device)"
        )
    inputs = {p: i for i, p in enumerate(qnn.input_params)}
    weights = {p: j for j, p in enumerate(qnn.weight_params)}
    rows, measured = _qiskit_gates(circuit, where)
    gates = []
    for gate_where, op, qubits in rows:
        if op.name not in GATES:
            raise CircuitSpecError(f"{gate_where}: gate {op.name!r} is not in qdeploy's gate set {sorted(GATES)}")
        angle = _qiskit_angle(op.params[0], inputs, weights, gate_where) if GATES[op.name][1] else None
        gates.append(Gate(op.name, qubits, angle))
    if isinstance(qnn, EstimatorQNN):
        readout = _qiskit_observables(qnn.observables, circuit.num_qubits, where)
    else:
        readout = _qiskit_probs(qnn, circuit, measured, where)
    spec = CircuitSpec(circuit.num_qubits, tuple(gates), readout, len(inputs), len(weights), name)
    spec.validate()
    trained = connector.weight.detach().double().reshape(-1).numpy()
    layer = QuantumLayer(spec, weights=trained)
    x, ours, error = _compare(layer, connector, len(inputs), check_samples)
    if not error <= IMPORT_TOLERANCE:
        # A shot-based primitive, or qiskit-machine-learning 0.9's exact sampler, which mixes the rows of a batch
        # when the circuit measures into its own register: ask qiskit again, exactly and one row at a time.
        exact = torch.from_numpy(_qiskit_exact(qnn, x.numpy(), trained).reshape(ours.shape))
        exact_error = float((ours - exact).abs().max())
        if not exact_error <= IMPORT_TOLERANCE:
            raise CircuitSpecError(
                f"{where}: the imported circuit differs from qiskit by {exact_error:.3g}; report this as a bug"
            )
        log.warning(
            "%s: the TorchConnector's outputs differ from qiskit's exact values by %.3g (a shot-based primitive?); "
            "the imported layer computes the exact values",
            where,
            error,
        )
    return layer


def _qiskit_observables(observables: Any, num_qubits: int, where: str) -> Readout:
    from qiskit.quantum_info import SparsePauliOp

    result = []
    for k, op in enumerate(observables):
        # EstimatorQNN accepts a bare Pauli as well as a SparsePauliOp.
        try:
            op = op if isinstance(op, SparsePauliOp) else SparsePauliOp.from_operator(op)
        except Exception as exc:
            raise CircuitSpecError(
                f"{where} observable {k}: {type(op).__name__} is not a Pauli sum qiskit can decompose "
                f"({exc}); give a SparsePauliOp"
            ) from exc
        terms = []
        for label, coeff in op.to_list():
            # qiskit labels are little-endian (rightmost letter = qubit 0); qdeploy reads wire 0 first.
            coeff = complex(coeff)
            terms.append((coeff if coeff.imag else coeff.real, label[::-1]))
        result.append(parse_observable(terms, num_qubits, f"{where} observable {k}"))
    return Readout("expval", observables=tuple(result))


def _qiskit_probs(qnn: Any, circuit: Any, measured: dict[int, int], where: str) -> Readout:
    size = 2**circuit.num_qubits
    interpret = qnn.interpret or (lambda k: k)
    # SamplerQNN stores the identity as a lambda: recognise it by what it does.
    identity = tuple(qnn.output_shape) == (size,) and all(interpret(k) == k for k in range(size))
    if not identity or qnn.sparse:
        raise CircuitSpecError(
            f"{where}: SamplerQNN with an interpret function or sparse output has no qdeploy readout; import it "
            "without interpret (probabilities of the measured bits) and apply the mapping in a classical layer"
        )
    if not measured:
        return Readout("probs", wires=tuple(range(circuit.num_qubits)))
    by_clbit = {c: q for q, c in measured.items()}
    if len(measured) != circuit.num_qubits or sorted(by_clbit) != list(range(circuit.num_clbits)):
        # SamplerQNN pads a partial measurement's distribution to 2**num_qubits entries, which no readout matches.
        raise CircuitSpecError(
            f"{where}: the circuit measures qubits {sorted(measured)} into {circuit.num_clbits} classical bits; "
            "measure every qubit into its own classical bit (or measure none: then all qubits are read)"
        )
    return Readout("probs", wires=tuple(by_clbit[c] for c in range(circuit.num_clbits)))


def _qiskit_exact(qnn: Any, x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The QNN's outputs from a copy with qiskit-machine-learning's default exact primitive, one row at a time."""
    from qiskit_machine_learning.neural_networks import EstimatorQNN, SamplerQNN

    common = {"circuit": qnn.circuit, "input_params": qnn.input_params, "weight_params": qnn.weight_params}
    if isinstance(qnn, EstimatorQNN):
        exact = EstimatorQNN(observables=qnn.observables, **common)
    else:
        exact = SamplerQNN(**common)
    return np.concatenate([np.asarray(exact.forward(row[None, :], weights), dtype=np.float64) for row in x])
