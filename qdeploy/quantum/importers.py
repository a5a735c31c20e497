"""Importers: a PennyLane ``qml.qnn.TorchLayer`` as a ``QuantumLayer`` (``pip install pennylane``; optional).

``torch.onnx.export`` cannot export a PennyLane layer; importing it gives a layer qdeploy exports, compiles and
verifies. The circuit is recorded with *sentinel* values (input ``i`` = 1000 + i, weight ``j`` = 5000 + j, then a
second recording with other sentinels) and decomposed into qdeploy's gate set: a gate parameter equal to a sentinel
in both recordings is that input or weight, one equal in both is a constant, anything else (an expression of
inputs) is refused. The imported layer is then checked against PennyLane on random inputs (max abs error 1e-6).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from qdeploy.quantum.layer import QuantumLayer
from qdeploy.quantum.spec import Angle, CircuitSpec, CircuitSpecError, Gate, Readout, _observable

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
    x = torch.from_numpy(np.random.default_rng(0).uniform(-np.pi, np.pi, (check_samples, num_inputs)))
    with torch.no_grad():
        theirs = torch_layer(x).double()
        error = float((layer(x) - theirs).abs().max())
    if not error <= IMPORT_TOLERANCE:
        raise CircuitSpecError(f"{where}: the imported circuit differs from PennyLane by {error:.3g}; report this as a bug")
    return layer


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
        observables.append(_observable(terms, len(wires), f"{where} observable {k}"))
    return Readout("expval", observables=tuple(observables))
