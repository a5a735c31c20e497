"""``QuantizeAngles``: put a QONNX ``Quant`` on the trainable angles of every ``QuantumCircuit`` node.

The quantized angles are then part of the specification (the golden executor runs the ``Quant``), so every
target stays exact against it; the error against float angles is what the quantum target reports per node.
Angles are first wrapped into one period ``P`` (2 pi, or 4 pi for weights driving controlled rotations) and then
rounded to the grid ``k * P / 2**bits``: ``bits=3`` on 2-pi weights gives multiples of pi/4, the Clifford+T grid.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.errors import QDeployError
from qdeploy.ir import node_attr
from qdeploy.quantum.spec import GATES, CircuitSpec


def weight_periods(spec: CircuitSpec) -> np.ndarray:
    """Per weight, the angle period up to global phase: 2 pi, or 4 pi when it drives a controlled rotation
    (there ``theta + 2 pi`` flips a *relative* phase). Unused weights get 2 pi."""
    periods = np.full(spec.num_weights, 2 * np.pi)
    for gate in spec.gates:
        if gate.angle is not None and gate.angle.kind == "weight":
            periods[gate.angle.index] = max(periods[gate.angle.index], GATES[gate.name][2])
    return periods


class QuantizeAngles(Transformation):
    """Insert ``Quant(bits, signed, ROUND)`` with scale ``P / 2**bits`` per weight on each QuantumCircuit's angle
    initializer (nodes whose angles already come from a Quant are left alone)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        if not isinstance(bits, int) or not 2 <= bits <= 16:
            raise QDeployError(f"angle bits={bits!r}; choose an integer from 2 to 16")
        self.bits = bits

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for index, node in enumerate(model.graph.node):
            if node.op_type != "QuantumCircuit":
                continue
            weights = model.get_initializer(node.input[1])
            if weights is None or weights.size == 0:
                continue  # already quantized (a Quant produces it) or no trainable angles
            spec = CircuitSpec.from_json(node_attr(node, "spec"))
            periods = weight_periods(spec)
            scale = periods / 2**self.bits
            flat = weights.reshape(-1).astype(np.float64)
            # Wrap into [-P/2 - step/2, P/2 - step/2): rounding then never leaves the signed integer range.
            shift = periods / 2 + scale / 2
            wrapped = np.mod(flat + shift, periods) - shift
            name = node.input[1]
            base = f"{node.name}_angles"
            model.set_initializer(f"{base}_float", wrapped.astype(np.float32))
            model.set_initializer(f"{base}_scale", scale.astype(np.float32))
            model.set_initializer(f"{base}_zeropt", np.zeros(1, dtype=np.float32))
            model.set_initializer(f"{base}_bits", np.array([float(self.bits)], dtype=np.float32))
            model.graph.initializer.remove(next(i for i in model.graph.initializer if i.name == name))
            quant = helper.make_node(
                "Quant",
                [f"{base}_float", f"{base}_scale", f"{base}_zeropt", f"{base}_bits"],
                [name],
                name=f"{base}_Quant",
                domain="qonnx.custom_op.general",
                signed=1,
                narrow=0,
                rounding_mode="ROUND",
            )
            model.graph.node.insert(index, quant)
            if model.get_tensor_valueinfo(name) is None:
                model.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(weights.shape)))
            return model, True
        return model, False


def quantize_angles(model: ModelWrapper, bits: int) -> ModelWrapper:
    """A copy of ``model`` with every QuantumCircuit's trainable angles quantized to ``bits`` (see module doc)."""
    from qdeploy.ir import cleanup, load_model

    return cleanup(load_model(model, clean=False).transform(QuantizeAngles(bits)))
