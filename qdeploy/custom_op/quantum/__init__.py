"""ONNX domain ``qdeploy.custom_op.quantum``: the ``QuantumCircuit`` node, executed by qonnx's ``execute_onnx``.

The op's definition lives here and nowhere else: its name and domain (``OP_TYPE``, ``DOMAIN``), its semantics (the
circuit spec, ``spec.py``) and the reference simulator the golden executor runs (``simulator.py``). The torch layer,
templates, importers and export that *produce* such nodes are the front end, ``qdeploy.quantum``.

qonnx resolves a node's domain as a Python module and looks the op type up in its ``custom_op`` dict / ``__all__``,
so importing nothing else is needed: the golden executor runs hybrid graphs as they are. Saved graphs name this
module, so it must stay importable under this path.

Node: ``y = QuantumCircuit(x, weights)`` with ``x`` (batch, num_inputs) angles and ``weights`` (num_weights,);
attributes ``spec`` (JSON circuit spec, the executable definition), ``qasm`` (the same circuit as OpenQASM 3 with
``input float[64]`` symbols ``x_i``/``w_j``) and ``float64`` (simulation precision). ``y`` is (batch, num_outputs).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.base import CustomOp

from qdeploy.custom_op.quantum.spec import CircuitSpec, CircuitSpecError

#: the node's op type
OP_TYPE = "QuantumCircuit"
#: the node's ONNX domain: this module's import path, because that is how qonnx finds the op's implementation
DOMAIN = __name__


def is_quantum_node(node: onnx.NodeProto) -> bool:
    return node.op_type == OP_TYPE and node.domain == DOMAIN


def quantum_nodes(model: ModelWrapper) -> list[onnx.NodeProto]:
    """The graph's ``QuantumCircuit`` nodes, in graph order."""
    return [node for node in model.graph.node if is_quantum_node(node)]


def node_spec(node: onnx.NodeProto) -> CircuitSpec:
    """The circuit spec a ``QuantumCircuit`` node carries; an invalid one is refused naming the node and layer."""
    spec_json = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "spec"), None)
    if spec_json is None:
        raise CircuitSpecError(f"node {node.name}: QuantumCircuit node without a 'spec' attribute; re-export the model")
    try:
        return CircuitSpec.from_json(spec_json.decode() if isinstance(spec_json, bytes) else spec_json)
    except CircuitSpecError as exc:
        raise CircuitSpecError(f"node {node.name}: {exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # malformed JSON or a missing / mistyped key
        raise CircuitSpecError(
            f"node {node.name}: its spec attribute is not a circuit spec ({type(exc).__name__}: {exc}); re-export the model"
        ) from exc


class QuantumCircuit(CustomOp):
    def get_nodeattr_types(self):
        return {"spec": ("s", True, ""), "qasm": ("s", True, ""), "float64": ("i", False, 1, {0, 1})}

    def circuit_spec(self) -> CircuitSpec:
        return CircuitSpec.from_json(self.get_nodeattr("spec"))

    def make_shape_compatible_op(self, model):
        shape = model.get_tensor_shape(self.onnx_node.input[0])
        # Shapes upstream may not be inferred yet (qonnx infers the whole graph at once): the batch dimension is
        # the graph input's.
        batch = shape[0] if shape else model.get_tensor_shape(model.graph.input[0].name)[0]
        return self.make_const_shape_op([batch, self.circuit_spec().num_outputs])

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

    def execute_node(self, context, graph):
        # torch only when a graph is executed: importing the op (qonnx does it for every graph naming the domain)
        # stays light
        import torch

        from qdeploy.custom_op.quantum.simulator import simulate

        node = self.onnx_node
        x = np.array(context[node.input[0]])
        weights = np.array(context[node.input[1]]).reshape(-1)
        work = torch.float64 if self.get_nodeattr("float64") else torch.float32
        with torch.no_grad():
            y = simulate(self.circuit_spec(), torch.from_numpy(x).to(work), torch.from_numpy(weights).to(work))
        context[node.output[0]] = y.numpy().astype(x.dtype)

    def verify_node(self):
        messages = []
        try:
            self.circuit_spec()
            messages.append("spec is valid")
        except Exception as exc:  # verify_node reports, it does not raise (qonnx convention)
            messages.append(f"invalid spec: {exc}")
        if len(self.onnx_node.input) != 2:
            messages.append("QuantumCircuit needs 2 inputs (angles, weights)")
        return messages


def make_node(inputs: list[str], outputs: list[str], spec_json: str, qasm: str, name: str = "") -> onnx.NodeProto:
    """A ``QuantumCircuit`` NodeProto (for graph passes that build or rewrite quantum nodes)."""
    return helper.make_node(OP_TYPE, inputs, outputs, name=name, domain=DOMAIN, spec=spec_json, qasm=qasm, float64=1)


custom_op = {OP_TYPE: QuantumCircuit}
# qonnx reads a domain module's __all__ as the list of its op classes: list ops only
__all__ = ["QuantumCircuit"]
