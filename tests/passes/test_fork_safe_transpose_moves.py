"""ForkSafe: qonnx's transpose moves on a tensor read by two nodes keep the graph's outputs bit for bit (qonnx's own
move rewires the first reader only)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.channels_last import MoveChanFirstDownstream
from qonnx.transformation.infer_shapes import InferShapes

import qdeploy
from qdeploy.passes.graph.fork_safe_transpose_moves import ForkSafe


def _forked_after_transpose() -> ModelWrapper:
    """NHWC input -> Neg -> Transpose to NCHW -> Relu, read by a Sigmoid and a Tanh -> Add -> output (NCHW). (qonnx
    leaves a transpose on the graph input where it is.)"""
    nodes = [
        helper.make_node("Neg", ["x"], ["n"], name="neg"),
        helper.make_node("Transpose", ["n"], ["t"], perm=[0, 3, 1, 2], name="to_first"),
        helper.make_node("Relu", ["t"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["r"], ["s"], name="sigmoid"),
        helper.make_node("Tanh", ["r"], ["h"], name="tanh"),
        helper.make_node("Add", ["s", "h"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "fork",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return ModelWrapper(model).transform(InferShapes())


def test_moving_a_transpose_past_a_fork_keeps_every_readers_values():
    x = np.random.default_rng(0).standard_normal((1, 4, 4, 3)).astype(np.float32)
    model = _forked_after_transpose()
    expected = qdeploy.run_golden(model, x)
    moved = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString())).transform(
        ForkSafe(MoveChanFirstDownstream)
    )
    assert np.array_equal(qdeploy.run_golden(moved, x), expected)
    # the transpose went past the fork, down both branches: Relu, Sigmoid and Tanh read channels-last data
    for op in ("Relu", "Sigmoid", "Tanh"):
        (node,) = [node for node in moved.graph.node if node.op_type == op]
        assert moved.find_producer(node.input[0]).op_type != "Transpose", op
    assert moved.find_producer("y").op_type == "Transpose"
    # qonnx's own move rewires only the first reader: the other one reads a tensor of another layout (wrong values,
    # or shapes ONNX Runtime rejects) — the bug ForkSafe avoids
    plain = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString())).transform(MoveChanFirstDownstream())
    try:
        broken = not np.array_equal(qdeploy.run_golden(plain, x), expected)
    except Exception:  # noqa: BLE001 - any failure of the miswired graph shows the same bug
        broken = True
    assert broken


def test_a_cancelled_transpose_pair_rewires_every_reader():
    """Neg -> to channels-first -> to channels-last, read by a Relu and a Sigmoid: both read Neg's output after the
    pair goes (qonnx's pair removal rewired the first reader only and left the other reading a removed tensor)."""
    from qdeploy.passes.graph.fork_safe_transpose_moves import RemoveTransposePairs

    nodes = [
        helper.make_node("Neg", ["x"], ["n"], name="neg"),
        helper.make_node("Transpose", ["n"], ["f"], perm=[0, 3, 1, 2], name="to_first"),
        helper.make_node("Transpose", ["f"], ["l"], perm=[0, 2, 3, 1], name="to_last"),
        helper.make_node("Relu", ["l"], ["r"], name="relu"),
        helper.make_node("Sigmoid", ["l"], ["s"], name="sigmoid"),
        helper.make_node("Add", ["r", "s"], ["y"], name="add"),
    ]
    shape = [1, 4, 4, 3]
    graph = helper.make_graph(
        nodes,
        "pair",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    model = ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])).transform(InferShapes())
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    expected = qdeploy.run_golden(model, x)
    removed = model.transform(RemoveTransposePairs())
    assert "Transpose" not in [node.op_type for node in removed.graph.node]
    assert {node.input[0] for node in removed.graph.node if node.op_type in ("Relu", "Sigmoid")} == {"n"}
    assert np.array_equal(qdeploy.run_golden(removed, x), expected)
