"""Loading QONNX from any producer, and the batched golden executor agreeing with its references."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from qonnx.core.onnx_exec import execute_onnx

import qdeploy
from qdeploy.errors import ModelLoadError
from qdeploy.frontend import torch_forward
from qdeploy.ir import load_model


def test_golden_equals_brevitas_module_exactly(mlp_w4a8, cnn_w4a8, data):
    for qmodel, graph in (mlp_w4a8, cnn_w4a8):
        assert np.array_equal(qdeploy.run_golden(graph, data.x_test), torch_forward(qmodel, data.x_test))


def test_batched_golden_equals_per_sample_execute_onnx(mlp_w4a8, data):
    _, graph = mlp_w4a8
    x = data.x_test[:5]
    per_sample = [
        execute_onnx(graph, {graph.graph.input[0].name: x[i : i + 1]})[graph.graph.output[0].name] for i in range(5)
    ]
    assert np.array_equal(qdeploy.run_golden(graph, x, chunk=2), np.concatenate(per_sample))


def test_external_data_model_loads(tmp_path, mlp_w4a8, data):
    """brevitas's dynamo exporter writes weights to `<model>.onnx.data` beside the model."""
    _, graph = mlp_w4a8
    path = tmp_path / "ext.onnx"
    proto = onnx.ModelProto()
    proto.CopyFrom(graph.model)  # save_as_external_data rewrites the proto it is given
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.onnx.data",
        size_threshold=0,
    )
    assert (tmp_path / "ext.onnx.data").exists()
    loaded = load_model(path)
    assert np.array_equal(qdeploy.run_golden(loaded, data.x_test[:50]), qdeploy.run_golden(graph, data.x_test[:50]))


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_text("this is not protobuf")
    with pytest.raises(ModelLoadError, match="bad.onnx is not a readable ONNX model"):
        load_model(bad)


def test_inspect_reports_bits_params_and_bops(mlp_w4a8):
    _, graph = mlp_w4a8
    info = qdeploy.inspect(graph)
    assert [row["op"] for row in info["layers"]] == ["Gemm", "Gemm", "Gemm"]
    first = info["layers"][0]
    assert first["weight_bits"] == 4 and first["activation_bits"] == 8
    assert first["params"] == 64 * 32 + 32
    assert first["macs"] == 64 * 32 and first["bops"] == 64 * 32 * 4 * 8
    assert "per-channel po2" in first["weight_scale"]


def test_a_resize_with_the_exported_batch_in_its_sizes_runs_batched():
    """torch exports a fixed-size ``interpolate`` as a Resize whose constant sizes include the batch ([1, C, H, W]);
    the golden executor runs such a graph on a batch with each sample resized alike, equal to one at a time."""
    from onnx import TensorProto, helper

    from qdeploy.golden import run_golden
    from qdeploy.ir import load_model

    resize = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="up", mode="nearest")
    graph = helper.make_graph(
        [resize],
        "sizes_with_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 2, 6, 6])],
    )
    model = load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    x = np.random.default_rng(0).standard_normal((5, 2, 3, 3)).astype(np.float32)
    batched = run_golden(model, x)
    one_at_a_time = np.concatenate([run_golden(model, x[i : i + 1]) for i in range(len(x))])
    assert batched.shape == (5, 2, 6, 6)
    np.testing.assert_array_equal(batched, one_at_a_time)
    np.testing.assert_array_equal(batched, x.repeat(2, axis=2).repeat(2, axis=3))


def test_a_node_taking_one_tensor_twice_keeps_both_uses_through_renaming():
    """``torch.cat([a, b, a])``: the cleanup's readable names reach both uses of ``a`` (qonnx renames only a node's
    first use, and the second then had no producer and no shape)."""
    from onnx import TensorProto, helper

    from qdeploy.golden import run_golden
    from qdeploy.ir import load_model

    nodes = [
        helper.make_node("Relu", ["/in"], ["/relu/out"], name="/relu/Relu"),
        helper.make_node("Neg", ["/in"], ["/neg/out"], name="/neg/Neg"),
        helper.make_node("Concat", ["/relu/out", "/neg/out", "/relu/out"], ["/cat/out"], name="/cat/Concat", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "repeated_input",
        [helper.make_tensor_value_info("/in", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("/cat/out", TensorProto.FLOAT, [1, 9])],
    )
    model = load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))
    concat = model.get_nodes_by_op_type("Concat")[0]
    assert concat.input[0] == concat.input[2] == model.get_nodes_by_op_type("Relu")[0].output[0]
    assert all(model.get_tensor_shape(name) == [1, 3] for name in concat.input)
    x = np.array([[-1.0, 0.5, 2.0]], dtype=np.float32)
    np.testing.assert_array_equal(run_golden(model, x), np.concatenate([np.maximum(x, 0), -x, np.maximum(x, 0)], 1))


def test_refusals_name_derived_nodes_after_the_file_node_they_came_from():
    """Cleanup renumbers nodes (``Quant_0``); a pass derives more from them (``Quant_0_scale``). A refusal names each as
    the user's file does, the derived one after the node it came from; names that only start alike stay as they are."""
    from qdeploy.ir import with_file_names

    mapping = {"Quant_0": "/input_quant/Quant", "Conv_1": "/conv1/Conv", "Conv_10": "/conv10/Conv"}
    assert with_file_names("node Quant_0_scale: op Mul", mapping) == (
        "node /input_quant/Quant (scale qdeploy derived from it): op Mul"
    )
    assert with_file_names("Conv_10, Conv_1.", mapping) == "/conv10/Conv, /conv1/Conv."
    assert with_file_names("Quant_01 Quant_0_1 /x/Quant_0", mapping) == "Quant_01 Quant_0_1 /x/Quant_0"
