"""Graph passes on the angles of QuantumCircuit nodes: WrapAngles and QuantizeAngles (qonnx Transformations,
registered as qdeploy passes)."""

from __future__ import annotations

import numpy as np
import pytest
from qonnx.transformation.base import Transformation
from torch import nn

from qdeploy.custom_op.quantum import quantum_nodes
from qdeploy.errors import QDeployError
from qdeploy.golden import run_golden
from qdeploy.quantum import CircuitBuilder, QuantumLayer, export_hybrid
from qdeploy.registry import get_pass
from tests.targets.helpers import copy_graph


def far_angle_graph():
    """A graph whose trainable angles lie far outside one period: weight 0 drives an ry (period 2 pi), weight 1 a
    controlled rotation crx (period 4 pi)."""
    builder = CircuitBuilder(2, name="far")
    builder.angle_embedding(range(2))
    builder.gate("ry", 0, angle=builder.weight()).gate("crx", 0, 1, angle=builder.weight())
    spec = builder.expval(["ZI", "IZ", [(0.5, "XX"), (0.5, "YY")]])
    model = nn.Sequential(QuantumLayer(spec, weights=[20.0, -13.0]))
    x = np.random.default_rng(0).uniform(-2, 2, (16, 2)).astype(np.float32)
    return export_hybrid(model, x), x


def angles(graph) -> np.ndarray:
    (node,) = quantum_nodes(graph)
    return graph.get_initializer(node.input[1]).astype(np.float64)


@pytest.mark.parametrize("name", ["wrap_angles", "quantize_angles"])
def test_angle_passes_are_registered_qonnx_transformations(name):
    assert issubclass(get_pass(name), Transformation)


def test_wrap_angles_wraps_into_one_period_per_weight_and_keeps_the_outputs():
    from qdeploy.passes.graph.wrap_angles import WrapAngles

    graph, x = far_angle_graph()
    wrapped, changed = WrapAngles().apply(copy_graph(graph))
    assert changed
    np.testing.assert_allclose(angles(wrapped), [20.0 - 6 * np.pi, -13.0 + 4 * np.pi], atol=1e-5)
    # same readout: the ry angle moved by whole turns (global phase), the crx angle by whole 4-pi periods
    assert np.max(np.abs(run_golden(wrapped, x) - run_golden(graph, x))) <= 1e-5
    _, changed_again = WrapAngles().apply(wrapped)
    assert not changed_again  # angles inside their period are left alone (wrapping is not idempotent in floats)


def test_wrap_angles_refuses_a_weight_count_that_does_not_match_the_spec():
    from qdeploy.passes.graph.wrap_angles import WrapAngles

    graph, _ = far_angle_graph()
    (node,) = quantum_nodes(graph)
    graph.set_initializer(node.input[1], np.zeros(3, np.float32))
    with pytest.raises(QDeployError, match=f"node {node.name}: 3 angles but the spec has 2 weights"):
        WrapAngles().apply(graph)


def test_quantize_angles_pass_puts_one_quant_per_node_and_refuses_bad_bits():
    from qdeploy.passes.graph.quantize_angles import QuantizeAngles

    graph, x = far_angle_graph()
    quantized = graph.transform(QuantizeAngles(6))
    quants = [n for n in quantized.graph.node if n.op_type == "Quant"]
    assert len(quants) == 1 and quants[0].output[0] == quantum_nodes(quantized)[0].input[1]
    _, changed = QuantizeAngles(6).apply(quantized)
    assert not changed  # angles produced by a Quant are left alone
    # 6 bits: the ry grid step is 2 pi / 64, the crx step 4 pi / 64; |d<P>/d theta| <= 1 per angle
    assert np.max(np.abs(run_golden(quantized, x) - run_golden(graph, x))) <= (2 * np.pi + 4 * np.pi) / 64
    with pytest.raises(QDeployError, match="choose an integer from 2 to 16"):
        QuantizeAngles(1)
