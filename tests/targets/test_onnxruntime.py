"""onnxruntime target: integer QDQ, bit-exact with the golden executor, clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

import qdeploy
from qdeploy.artifact import Artifact
from qdeploy.errors import UnsupportedModelError
from tests.targets.helpers import assert_no_output, copy_graph, set_activation_bits, set_rounding


@pytest.mark.parametrize("which", ["mlp_w4a8", "cnn_w4a8"])
def test_w4a8_digits_bit_exact_on_real_and_random_inputs(which, request, data, tmp_path):
    _, graph = request.getfixturevalue(which)
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=data.x_test)
    report = json.loads((tmp_path / "ort" / "report.json").read_text())
    assert report["bit_exact"] is True
    assert report["outputs_compared"] == report["outputs_equal"] == len(data.x_test) + 1000
    assert report["verification_inputs"] == {"user": len(data.x_test), "random": 1000}
    assert report["max_abs_error"] == 0.0
    # ORT fused the QDQ groups into integer kernels (power-of-two scales: their requantization is exact)
    assert report["integer_kernels"] >= 1
    assert "optimization.disable_specified_optimizers" not in report["session_config"]
    assert {"target", "model", "per_layer", "outputs_compared", "outputs_equal"} <= set(report)
    assert all(row["accumulator"] == "int32" for row in report["per_layer"])
    assert {(row["weight"], row["activation"]) for row in report["per_layer"]} == {("int4", "int8")}
    # the deployed model predicts what the golden executor computes
    assert np.array_equal(artifact.predict(data.x_test[:64]), qdeploy.run_golden(graph, data.x_test[:64]))


def test_float_scales_run_float_kernels_on_the_integers_and_stay_exact(float_cnn, data, tmp_path):
    """An integer kernel requantizes by a rounded float multiplier when scales are not powers of two, which
    differs from the graph's float32 arithmetic at rounding ties; such graphs keep ORT's float kernels."""
    qmodel = qdeploy.quantize(float_cnn, data.x_train[:256], weight_bits=4, act_bits=8, scale="float")
    graph = qdeploy.export(qmodel, data.x_train[:1])
    qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=data.x_test)
    report = json.loads((tmp_path / "ort" / "report.json").read_text())
    assert report["bit_exact"] and report["integer_kernels"] == 0
    assert report["session_config"]["optimization.disable_specified_optimizers"] == "QDQSelectorActionTransformer"
    # the folder's own runner (a fresh session from model.onnx) makes the same decision
    assert np.array_equal(Artifact(tmp_path / "ort").predict(data.x_test), qdeploy.run_golden(graph, data.x_test))


def test_verify_reruns_from_the_folder(mlp_w4a8, data, tmp_path):
    _, graph = mlp_w4a8
    qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", verify_samples=50)
    result = Artifact(tmp_path / "ort").verify(data.x_test[:300])
    assert result["bit_exact"] and result["outputs_compared"] == 300


def test_wider_than_8_bit_activation_is_refused_naming_the_node(mlp_w4a8, tmp_path):
    graph = copy_graph(mlp_w4a8[1])
    node = set_activation_bits(graph, 1, 10)
    with pytest.raises(UnsupportedModelError, match=rf"node {node}: 10-bit activation quantizer"):
        qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort")
    assert_no_output(tmp_path / "ort")


def test_rounding_mode_quantizelinear_cannot_express_is_refused(mlp_w4a8, tmp_path):
    graph = copy_graph(mlp_w4a8[1])
    node = set_rounding(graph, 1, "FLOOR")
    with pytest.raises(UnsupportedModelError, match=rf"node {node}: rounding mode FLOOR"):
        qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort")
    assert_no_output(tmp_path / "ort")


def test_narrow_bit_widths_use_clip_and_stay_exact(float_mlp, data, tmp_path):
    """W3A4: QONNX ranges narrower than int8/uint8 need the Clip of QCDQ."""
    graph = qdeploy.export(qdeploy.quantize(float_mlp, data.x_train[:256], weight_bits=3, act_bits=4), data.x_train[:1])
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=data.x_test)
    assert artifact.bit_exact
    model_ops = {n.op_type for n in __import__("onnx").load(str(tmp_path / "ort" / "model.onnx")).graph.node}
    assert "Clip" in model_ops


def test_raw_dynamo_export_with_bias_less_gemm(biasless_dynamo_path, data, tmp_path):
    artifact = qdeploy.compile(biasless_dynamo_path, target="onnxruntime", out=tmp_path / "ort", data=data.x_test[:200])
    assert artifact.bit_exact and artifact.report["outputs_compared"] == 1200


def test_verify_exits_non_zero_when_the_artefact_no_longer_matches(mlp_w4a8, tmp_path, capsys):
    """Tamper with one weight of the deployed model: `qdeploy verify` must notice and exit 3."""
    import onnx
    from onnx import numpy_helper

    from qdeploy.cli import EXIT_NOT_EXACT, main

    _, graph = mlp_w4a8
    qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", verify_samples=200)
    assert main(["verify", str(tmp_path / "ort"), "-q"]) == 0
    path = tmp_path / "ort" / "model.onnx"
    model = onnx.load(str(path))
    weights = next(init for init in model.graph.initializer if init.name.endswith("_int") and init.data_type == 3)
    values = numpy_helper.to_array(weights).copy()
    values.flat[0] = 7 if values.flat[0] != 7 else -7
    weights.CopyFrom(numpy_helper.from_array(values, weights.name))
    onnx.save(model, str(path))
    assert main(["verify", str(tmp_path / "ort"), "-q"]) == EXIT_NOT_EXACT
    assert "NOT EXACT" in capsys.readouterr().out
