"""hls4ml target: firmware whose g++ C simulation is bit-exact with the golden executor, for named boards."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import qdeploy
from qdeploy.artifact import Artifact
from qdeploy.errors import QDeployError, UnsupportedModelError
from tests.targets.helpers import assert_no_output, copy_graph, set_rounding

pytest.importorskip("hls4ml")


@pytest.mark.parametrize(
    ("which", "board", "part"), [("mlp_w4a8", "pynq-z2", "xc7z020clg400-1"), ("cnn_w4a8", "zcu104", "xczu7ev-ffvc1156-2-e")]
)
def test_w4a8_digits_firmware_bit_exact(which, board, part, request, data, tmp_path):
    _, graph = request.getfixturevalue(which)
    out = tmp_path / "fpga"
    artifact = qdeploy.compile(graph, target="hls4ml", board=board, out=out, data=data.x_test)
    report = json.loads((out / "report.json").read_text())
    assert report["bit_exact"] is True
    assert report["outputs_compared"] == report["outputs_equal"] == len(data.x_test) + 1000
    assert report["board"] == board and report["part"] == part
    # every layer's precisions were derived (none left at hls4ml's fixed<16,6> default)
    for row in report["per_layer"]:
        assert '"fixed<16,6,TRN,WRAP,0>"' not in json.dumps(row["precisions"]), row
        assert {"name", "op", "weight", "activation", "accumulator"} <= set(row)
    dense_or_conv = [row for row in report["per_layer"] if row["op"] in ("Dense", "Conv2D")]
    assert dense_or_conv and all(row["weight"] and row["accumulator"] for row in dense_or_conv)
    assert report["input_precision"].startswith("fixed<")
    # the project is complete for the board: build script with the part, testbench vectors, README
    assert part in (out / "firmware" / "project.tcl").read_text() + (out / "firmware" / "build_prj.tcl").read_text()
    assert (out / "firmware" / "tb_data" / "tb_input_features.dat").stat().st_size > 0
    assert (out / "firmware" / "tb_data" / "tb_output_predictions.dat").stat().st_size > 0
    assert "build_prj.tcl" in (out / "firmware" / "README.md").read_text()
    # re-verification from the folder alone (a fresh runner linking the compiled C simulation)
    assert Artifact(out).verify(data.x_test[:200])["bit_exact"]
    assert artifact.bit_exact


def test_floor_rounding_is_lowered_exactly(mlp_w4a8, tmp_path):
    graph = copy_graph(mlp_w4a8[1])
    set_rounding(graph, 1, "FLOOR")
    set_rounding(graph, 2, "FLOOR")
    artifact = qdeploy.compile(graph, target="hls4ml", out=tmp_path / "fpga", verify_samples=1000)
    assert artifact.bit_exact
    assert any(
        "TRN,SAT" in json.dumps(row["precisions"]) and row["op"] == "Activation" for row in artifact.report["per_layer"]
    )


def test_float_scales_compile_bit_exact_through_thresholds(mlp_float_scales, data, tmp_path):
    """brevitas's float-scale default has no fixed-point form: each activation becomes a MultiThreshold layer and the
    output scale runs on the host (epilogue.onnx); the C simulation is still bit-exact."""
    _, graph = mlp_float_scales
    out = tmp_path / "fpga"
    artifact = qdeploy.compile(graph, target="hls4ml", out=out, data=data.x_test)
    assert artifact.bit_exact and artifact.report["outputs_compared"] == len(data.x_test) + 1000
    ops = [row["op"] for row in artifact.report["per_layer"]]
    assert ops.count("MultiThreshold") == 4 and "Dense" in ops  # input (its requantizer folded in), 2 hidden, output
    assert artifact.report["thresholds"] > 0 and artifact.report["host_epilogue"] == ["Mul"]
    assert (out / "epilogue.onnx").exists()
    assert '"fixed<16,6,TRN,WRAP,0>"' not in json.dumps(artifact.report["per_layer"])
    assert Artifact(out).verify(data.x_test[:100])["bit_exact"]


@pytest.mark.parametrize(
    ("which", "options"),
    [
        ("mlp_float_scales", {"backend": "Vivado"}),
        ("mlp_float_scales", {"backend": "Quartus"}),
        ("mlp_float_scales", {"backend": "Catapult"}),
        ("cnn_float_scales", {"io_type": "io_stream"}),
        ("cnn_float_scales", {"strategy": "Resource", "reuse_factor": 4}),
    ],
)
def test_thresholded_models_are_bit_exact_on_every_backend_and_io_type(which, options, request, data, tmp_path):
    _, graph = request.getfixturevalue(which)
    artifact = qdeploy.compile(graph, target="hls4ml", out=tmp_path / "fw", data=data.x_test[:200], **options)
    assert artifact.bit_exact and artifact.report["outputs_compared"] == 1200
    assert all(artifact.report[key] == value for key, value in options.items())


def test_unsupported_op_is_refused_naming_the_node(data, tmp_path):
    torch.manual_seed(0)
    # Softmax mixes a layer's outputs before the next quantizer (an elementwise Tanh there lowers to thresholds)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Softmax(dim=1), nn.Linear(16, 10))
    graph = qdeploy.export(qdeploy.quantize(model, data.x_train[:64]), data.x_train[:1])
    with pytest.raises(UnsupportedModelError, match=r"node Softmax_0: op Softmax is not supported"):
        qdeploy.compile(graph, target="hls4ml", out=tmp_path / "fpga")
    assert_no_output(tmp_path / "fpga")


def test_unknown_board_is_refused(mlp_w4a8, tmp_path):
    with pytest.raises(QDeployError, match="unknown board 'pynq'"):
        qdeploy.compile(mlp_w4a8[1], target="hls4ml", board="pynq", out=tmp_path / "fpga")
    assert_no_output(tmp_path / "fpga")


def test_raw_dynamo_export_with_bias_less_gemm(biasless_dynamo_path, data, tmp_path):
    """Raw brevitas dynamo output (2-input Gemm, which crashes qonnx's GemmToMatMul) compiles exactly."""
    artifact = qdeploy.compile(biasless_dynamo_path, target="hls4ml", out=tmp_path / "fpga", data=data.x_test[:200])
    assert artifact.bit_exact and artifact.report["outputs_compared"] == 1200


@pytest.mark.parametrize("backend", ["Vivado", "Quartus", "Catapult"])
def test_every_backend_is_bit_exact(backend, cnn_w4a8, data, tmp_path):
    """The same exactness test as Vitis (the default), for the other backends whose C simulation needs no vendor tool."""
    artifact = qdeploy.compile(cnn_w4a8[1], target="hls4ml", backend=backend, out=tmp_path / "fw", data=data.x_test)
    assert artifact.report["backend"] == backend
    assert artifact.bit_exact and artifact.report["outputs_compared"] == len(data.x_test) + 1000
    assert Artifact(tmp_path / "fw").verify(data.x_test[:100])["bit_exact"]


@pytest.mark.parametrize(("io_type", "strategy", "reuse"), [("io_stream", "Latency", 1), ("io_parallel", "Resource", 8)])
def test_exact_under_io_type_and_strategy(io_type, strategy, reuse, cnn_w4a8, data, tmp_path):
    artifact = qdeploy.compile(
        cnn_w4a8[1],
        target="hls4ml",
        io_type=io_type,
        strategy=strategy,
        reuse_factor=reuse,
        out=tmp_path / "fw",
        data=data.x_test,
    )
    assert artifact.bit_exact
    assert (artifact.report["io_type"], artifact.report["strategy"], artifact.report["reuse_factor"]) == (
        io_type,
        strategy,
        reuse,
    )


def test_cnn_with_batchnorm_and_bias_less_conv_at_2_bits(data, tmp_path):
    """Conv(bias=False) -> BatchNorm -> ReLU: BN is folded exactly by the front end; W2A2 still bit-exact."""
    from examples.digits import train

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    train(model, data, epochs=3)
    graph = qdeploy.export(qdeploy.quantize(model, data.x_train[:256], weight_bits=2, act_bits=2), data.x_train[:1])
    assert not [n for n in graph.graph.node if n.op_type == "BatchNormalization"]
    artifact = qdeploy.compile(graph, target="hls4ml", out=tmp_path / "fw", data=data.x_test)
    assert artifact.bit_exact and artifact.report["outputs_compared"] == len(data.x_test) + 1000


def test_layer_too_large_for_an_explicit_latency_strategy_is_refused_with_the_fix(data, tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    graph = qdeploy.export(qdeploy.quantize(model, data.x_train[:64]), data.x_train[:1])
    with pytest.raises(
        UnsupportedModelError,
        match=r"node MatMul_0: 8,192 multiplications .* leave --strategy at auto, or use --strategy Resource "
        r"--reuse-factor 2",
    ):
        qdeploy.compile(graph, target="hls4ml", strategy="Latency", out=tmp_path / "fw")
    assert_no_output(tmp_path / "fw")


@pytest.mark.parametrize("mode", ["CEIL", "HALF_UP"])
def test_rounding_mode_without_fixed_point_form_is_lowered_to_thresholds(mode, mlp_w4a8, tmp_path):
    """hls4ml types round only as ROUND (RND_CONV) or FLOOR (TRN); other modes become thresholds, still exact."""
    graph = copy_graph(mlp_w4a8[1])
    node = set_rounding(graph, 2, mode)  # a hidden layer's quantizer
    artifact = qdeploy.compile(graph, target="hls4ml", out=tmp_path / "fw")
    assert artifact.bit_exact
    assert f"{node}_thresholds" in [row["name"] for row in artifact.report["per_layer"]]


@pytest.mark.parametrize("target", ["hls4ml", "onnxruntime"])
def test_dynamic_input_shape_is_refused(target, mlp_w4a8, tmp_path):
    graph = copy_graph(mlp_w4a8[1])
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    dims[2].ClearField("dim_value")
    dims[2].dim_param = "height"
    del graph.graph.value_info[:]
    with pytest.raises(QDeployError, match=r"model input global_in has a dynamic or unknown shape"):
        qdeploy.compile(graph, target=target, out=tmp_path / "out")
    assert_no_output(tmp_path / "out")


def test_conv_reuse_factor_hls4ml_computes_wrongly_is_capped(cnn_w4a8, data, tmp_path):
    """hls4ml #817: a Resource Conv with reuse factor > kernel x channels builds, but its outputs are wrong; a
    requested reuse factor is capped there ("the maximum legal value", as the maintainers expect), and reported."""
    artifact = qdeploy.compile(
        cnn_w4a8[1], target="hls4ml", strategy="Resource", reuse_factor=10, out=tmp_path / "fw", data=data.x_test[:100]
    )
    assert artifact.bit_exact
    first_conv = next(row for row in artifact.report["per_layer"] if row["op"] == "Conv2D")
    assert first_conv["reuse_factor"] <= 9 and first_conv["requested_reuse_factor"] == 10
    assert first_conv["strategy"] == "Resource" and first_conv["decided_by"] == "options"
