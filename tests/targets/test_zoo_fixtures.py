"""QONNX model-zoo models that no one here wrote (../shared/fixtures/qonnx), ingested as they are."""

from __future__ import annotations

import pytest

import qdeploy
from qdeploy.errors import UnsupportedModelError
from tests.conftest import FIXTURES
from tests.targets.helpers import assert_no_output

ZOO = ["TFC_2W2A.onnx", "unsw_nb15-mlp-w2a2.onnx"]


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_runs_bit_exact_on_onnxruntime(name, tmp_path):
    artifact = qdeploy.compile(FIXTURES / name, target="onnxruntime", out=tmp_path / "ort")
    assert artifact.bit_exact
    assert artifact.report["outputs_compared"] == 1000


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_runs_bit_exact_on_hls4ml(name, tmp_path):
    """FINN-style float pre-scaling (TFC: 2x - 1), BatchNorm -> Quant, float scales and biases, a bipolar input and
    BipolarQuant output (UNSW), float BatchNorm on the logits: thresholds in firmware + a host epilogue, exact."""
    pytest.importorskip("hls4ml")
    out = tmp_path / "fpga"
    # 784x64 and 600x64 layers are past what a Latency-strategy layer unrolls: Resource, as the refusal says
    artifact = qdeploy.compile(FIXTURES / name, target="hls4ml", strategy="Resource", reuse_factor=16, out=out)
    assert artifact.bit_exact
    assert artifact.report["outputs_compared"] == artifact.report["outputs_equal"] == 1000
    assert artifact.report["multiplications"] == 0  # 2-bit and bipolar weights: shifts/negations, no multipliers
    assert [row["op"] for row in artifact.report["per_layer"]].count("MultiThreshold") >= 4


def test_zoo_model_on_latency_strategy_is_refused_with_the_fix(tmp_path):
    """An explicit Latency strategy is the user's word: a layer it cannot unroll is refused with the fix (the
    default, strategy auto, picks Resource for that layer itself)."""
    pytest.importorskip("hls4ml")
    with pytest.raises(UnsupportedModelError, match=r"50,176 multiplications .* --strategy Resource"):
        qdeploy.compile(FIXTURES / "TFC_2W2A.onnx", target="hls4ml", strategy="Latency", out=tmp_path / "fpga")
    assert_no_output(tmp_path / "fpga")
