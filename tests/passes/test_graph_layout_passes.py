"""RemovePassThrough, CompleteConvAttributes, UngroupConv: golden output unchanged, plus a structural assert each."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
from qonnx.transformation.infer_shapes import InferShapes

import qdeploy
from qdeploy.ir import node_attr
from qdeploy.passes.graph.complete_conv_attributes import CompleteConvAttributes
from qdeploy.passes.graph.remove_pass_through import RemovePassThrough
from qdeploy.passes.graph.ungroup_conv import UngroupConv, block_diagonal
from tests.conftest import FIXTURES

WILD = FIXTURES.parent / "wild"
RNG = np.random.default_rng(0)


def _conv_graph(weights: np.ndarray, input_shape: list[int], **attributes) -> ModelWrapper:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="Conv_0", **attributes)
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel().tolist())],
    )
    return ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])).transform(InferShapes())


def test_identity_producing_the_graph_output_is_removed_keeping_the_output_name():
    """QKeras conversions end in an Identity; hls4ml drops it and loses the output (its top function then has no
    output argument and does not compile)."""
    path = WILD / "qkeras_qactivation_4.onnx"
    if not path.exists():
        pytest.skip(f"{path} not found")
    graph = qdeploy.load(path)
    x = RNG.normal(size=(64, 16)).astype(np.float32)
    before = qdeploy.run_golden(graph, x)
    cleaned = graph.transform(RemovePassThrough())
    assert not [n for n in cleaned.graph.node if n.op_type == "Identity"]
    assert cleaned.graph.output[0].name == graph.graph.output[0].name
    assert cleaned.find_producer(cleaned.graph.output[0].name).op_type == "Quant"
    assert np.array_equal(qdeploy.run_golden(cleaned, x), before)


def test_identity_between_the_graph_input_and_output_stays():
    """Nothing can produce the output instead: removing it would leave no node at all."""
    node = helper.make_node("Identity", ["x"], ["y"], name="Identity_0")
    graph = helper.make_graph(
        [node],
        "copy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model, changed = RemovePassThrough().apply(ModelWrapper(helper.make_model(graph)))
    assert not changed and len(model.graph.node) == 1


@pytest.mark.parametrize(
    ("attributes", "expected_pads"),
    [
        ({}, [0, 0, 0, 0]),  # every attribute left to ONNX's defaults, as QKeras conversions do
        ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, [0, 0, 1, 1]),
        ({"auto_pad": "SAME_LOWER", "strides": [2, 2]}, [1, 1, 0, 0]),
        ({"auto_pad": "VALID"}, [0, 0, 0, 0]),
    ],
)
def test_conv_defaults_and_auto_pad_become_explicit(attributes, expected_pads):
    weights = RNG.integers(-3, 4, size=(4, 2, 3, 3)).astype(np.float32)
    graph = _conv_graph(weights, [1, 2, 8, 8], **attributes)
    x = RNG.integers(-8, 8, size=(5, 2, 8, 8)).astype(np.float32)
    before = qdeploy.run_golden(graph, x)
    explicit = graph.transform(CompleteConvAttributes())
    node = explicit.graph.node[0]
    assert node_attr(node, "pads") == expected_pads and node_attr(node, "auto_pad") is None
    assert node_attr(node, "kernel_shape") == [3, 3] and node_attr(node, "group") == 1
    assert np.array_equal(qdeploy.run_golden(explicit, x), before)
    explicit.transform(ConvertToChannelsLastAndClean())  # qonnx needs explicit pads ("Required attribute pads")


@pytest.mark.parametrize(("channels", "filters", "groups"), [(8, 8, 8), (8, 16, 8), (8, 8, 2), (6, 12, 3)])
def test_grouped_and_depthwise_conv_become_block_diagonal(channels, filters, groups):
    weights = RNG.integers(-4, 4, size=(filters, channels // groups, 3, 3)).astype(np.float32)
    graph = _conv_graph(weights, [1, channels, 6, 6], group=groups, pads=[1, 1, 1, 1])
    x = RNG.integers(-8, 8, size=(5, channels, 6, 6)).astype(np.float32)
    before = qdeploy.run_golden(graph, x)
    ungrouped = copy.deepcopy(graph).transform(UngroupConv())
    assert node_attr(ungrouped.graph.node[0], "group") == 1
    dense = ungrouped.get_initializer("w")
    assert dense.shape == (filters, channels, 3, 3)
    assert np.count_nonzero(dense) == np.count_nonzero(weights)  # only zeros were added
    assert np.array_equal(qdeploy.run_golden(ungrouped, x), before)


def test_block_diagonal_places_each_group_on_its_own_channels():
    weights = np.arange(4 * 1 * 1 * 1, dtype=np.float32).reshape(4, 1, 1, 1) + 1
    dense = block_diagonal(weights, 2)[..., 0, 0]  # 4 filters, 2 groups of 1 input channel each
    assert dense.tolist() == [[1, 0], [2, 0], [0, 3], [0, 4]]


def test_grouped_conv_with_quantized_float_weights_is_ungrouped_before_the_quantizer():
    """brevitas exports float weights through a Quant (per-output-channel scale): the float weights are laid out
    block-diagonally, and the zeros quantize to exact zeros."""
    channels, filters, groups = 8, 8, 4
    weights = RNG.normal(size=(filters, channels // groups, 3, 3)).astype(np.float32)
    scale = np.abs(RNG.normal(size=(filters, 1, 1, 1))).astype(np.float32) / 7 + 0.01
    constants = [
        helper.make_tensor("w_float", TensorProto.FLOAT, weights.shape, weights.ravel().tolist()),
        helper.make_tensor("w_scale", TensorProto.FLOAT, scale.shape, scale.ravel().tolist()),
        helper.make_tensor("w_zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("w_bits", TensorProto.FLOAT, [], [4.0]),
    ]
    nodes = [
        helper.make_node(
            "Quant",
            ["w_float", "w_scale", "w_zero", "w_bits"],
            ["w"],
            name="Quant_0",
            domain="qonnx.custom_op.general",
            signed=1,
            narrow=1,
            rounding_mode="ROUND",
        ),
        helper.make_node("Conv", ["x", "w"], ["y"], name="Conv_0", group=groups, pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
    ]
    graph = helper.make_graph(
        nodes,
        "quantized_grouped_conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        constants,
    )
    model = ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])).transform(InferShapes())
    x = RNG.integers(-8, 8, size=(5, channels, 6, 6)).astype(np.float32)
    before = qdeploy.run_golden(model, x)
    ungrouped = copy.deepcopy(model).transform(UngroupConv())
    assert node_attr(ungrouped.graph.node[1], "group") == 1
    assert ungrouped.get_initializer("w_float").shape == (filters, channels, 3, 3)
    assert np.array_equal(qdeploy.run_golden(ungrouped, x), before)
