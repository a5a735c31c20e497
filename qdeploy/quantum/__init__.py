"""Hybrid quantum-classical layers, the front end of the ``QuantumCircuit`` op: templates, ``QuantumLayer`` (trained
with the op's differentiable torch simulator), importers from PennyLane / Qiskit-ML, export to a QONNX graph with
``QuantumCircuit`` nodes, and angle quantization. The op itself -- its spec, simulator and qonnx execution -- is
``qdeploy.custom_op.quantum``; its spec types are re-exported here.

    from qdeploy.quantum import CircuitBuilder, QuantumLayer, export_hybrid
    b = CircuitBuilder(4, name="iris")
    b.angle_embedding(range(4)).strongly_entangling_layers(layers=2)
    layer = QuantumLayer(b.expval_z(range(3)))
    graph = export_hybrid(nn.Sequential(layer), x_train)   # then qdeploy.compile(graph, target="quantum")

torch is imported on first use of the layer, simulator or export.
"""

from __future__ import annotations

from typing import Any

from qdeploy.custom_op.quantum.spec import Angle, CircuitSpec, CircuitSpecError, Gate, Readout, to_qasm3
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
    "simulate": "qdeploy.custom_op.quantum.simulator",
    "export_hybrid": "qdeploy.quantum.export",
    "quantize_angles": "qdeploy.quantum.angles",
    # the graph pass, by module path: the core imports passes only on first use
    "QuantizeAngles": "qdeploy.passes.graph.quantize_angles",
    "from_pennylane": "qdeploy.quantum.importers",
    "from_qiskit_ml": "qdeploy.quantum.importers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qdeploy.quantum' has no attribute {name!r}")
