"""Quantum target: hybrid QONNX graphs (``QuantumCircuit`` nodes) to transpiled OpenQASM 3, verified."""

from qdeploy.targets.quantum.target import QuantumTarget

__all__ = ["QuantumTarget"]
