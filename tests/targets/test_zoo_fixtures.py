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


@pytest.mark.parametrize(("name", "node"), [("TFC_2W2A.onnx", "Mul_7"), ("unsw_nb15-mlp-w2a2.onnx", "Add_0")])
def test_zoo_model_not_yet_lowered_to_hls4ml_is_refused_by_name(name, node, tmp_path):
    """FINN-style input pre-scaling is not lowered to firmware yet: refused, naming the node as the file names it
    (TFC keeps its own names; the UNSW file has brevitas path names, which are renumbered), nothing written."""
    pytest.importorskip("hls4ml")
    with pytest.raises(UnsupportedModelError, match=rf"node {node} "):
        qdeploy.compile(FIXTURES / name, target="hls4ml", out=tmp_path / "fpga")
    assert_no_output(tmp_path / "fpga")
