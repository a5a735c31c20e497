"""Put a QONNX ``Quant`` on the trainable angles of every ``QuantumCircuit`` node (``qdeploy.quantum.quantize_angles``
is the user-facing call).

Angles are first wrapped into one period ``P`` (2 pi, or 4 pi for weights driving controlled rotations) and then
rounded to the grid ``k * P / 2**bits``: ``bits=3`` on 2-pi weights gives multiples of pi/4, the Clifford+T grid.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.custom_op.quantum import node_spec, quantum_nodes
from qdeploy.custom_op.quantum.spec import CircuitSpecError, weight_periods
from qdeploy.errors import QDeployError


class QuantizeAngles(Transformation):
    """Insert ``Quant(bits, signed, ROUND)`` with scale ``P / 2**bits`` per weight on each QuantumCircuit's angle
    initializer (nodes whose angles already come from a Quant are left alone). One node per ``apply``: qonnx's
    ``transform`` repeats it until nothing changes."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        if not isinstance(bits, int) or not 2 <= bits <= 16:
            raise QDeployError(f"angle bits={bits!r}; choose an integer from 2 to 16")
        self.bits = bits

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        for node in quantum_nodes(model):
            weights = model.get_initializer(node.input[1])
            if weights is None or weights.size == 0:
                continue  # already quantized (a Quant produces it) or no trainable angles
            spec = node_spec(node)
            if weights.size != spec.num_weights:
                raise CircuitSpecError(
                    f"node {node.name}: {weights.size} angles but the spec has {spec.num_weights} weights"
                )
            periods = np.asarray(weight_periods(spec))
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
            model.graph.node.insert(list(model.graph.node).index(node), quant)
            if model.get_tensor_valueinfo(name) is None:
                model.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(weights.shape)))
            return model, True
        return model, False
