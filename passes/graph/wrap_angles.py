"""Wrap the trainable angles of every ``QuantumCircuit`` node into one period around zero."""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.custom_op.quantum import node_spec, quantum_nodes
from qdeploy.custom_op.quantum.spec import CircuitSpecError, weight_periods


def wrap(values: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """``values`` mod ``periods`` into ``[-period/2, period/2)``."""
    values = np.asarray(values, dtype=np.float64)
    return np.mod(values + periods / 2, periods) - periods / 2


class WrapAngles(Transformation):
    """Replace each QuantumCircuit weight initializer by its wrapped values: mod 2 pi, or 4 pi for weights driving
    controlled rotations (the same operator up to global phase).

    Angles far outside one period lose precision in float32 and give needlessly large numbers in QASM."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        changed = False
        for node in quantum_nodes(model):
            weights = model.get_initializer(node.input[1])
            if weights is None or weights.size == 0:
                continue
            spec = node_spec(node)
            if weights.size != spec.num_weights:
                raise CircuitSpecError(
                    f"node {node.name}: {weights.size} angles but the spec has {spec.num_weights} weights"
                )
            periods = np.asarray(weight_periods(spec))
            flat = weights.reshape(-1).astype(np.float64)
            outside = (flat < -periods / 2) | (flat >= periods / 2)
            if outside.any():  # only touch values outside: wrapping is not idempotent in floating point
                flat[outside] = wrap(flat[outside], periods[outside])
                model.set_initializer(node.input[1], flat.astype(weights.dtype).reshape(weights.shape))
                changed = True
        return model, changed
