"""Hybrid quantum-classical layers: circuit specs, templates, a differentiable torch simulator, ``QuantumLayer``,
export to a QONNX graph with ``QuantumCircuit`` nodes, and angle quantization.

    from qdeploy.quantum import CircuitBuilder, QuantumLayer, export_hybrid
    b = CircuitBuilder(4, name="iris")
    b.angle_embedding(range(4)).strongly_entangling_layers(layers=2)
    layer = QuantumLayer(b.expval_z(range(3)))
    graph = export_hybrid(nn.Sequential(layer), x_train)   # then qdeploy.compile(graph, target="quantum")

torch is imported on first use of the layer, simulator or export.
"""

from __future__ import annotations

from typing import Any

from qdeploy.quantum.spec import Angle, CircuitSpec, CircuitSpecError, Gate, Readout, to_qasm3
from qdeploy.quantum.templates import CircuitBuilder, pauli_on

__all__ = [
    "Angle",
    "CircuitSpec",
    "CircuitSpecError",
    "Gate",
    "Readout",
    "to_qasm3",
    "CircuitBuilder",
    "pauli_on",
    "QuantumLayer",
    "simulate",
    "export_hybrid",
    "quantize_angles",
    "QuantizeAngles",
    "from_pennylane",
    "from_qiskit_ml",
]

_LAZY = {
    "QuantumLayer": "qdeploy.quantum.layer",
    "simulate": "qdeploy.quantum.simulator",
    "export_hybrid": "qdeploy.quantum.export",
    "quantize_angles": "qdeploy.quantum.angles",
    "QuantizeAngles": "qdeploy.quantum.angles",
    "from_pennylane": "qdeploy.quantum.importers",
    "from_qiskit_ml": "qdeploy.quantum.importers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qdeploy.quantum' has no attribute {name!r}")
