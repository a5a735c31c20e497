"""hls4ml: residual sums of branches with float (non-power-of-two) scales, through the threshold lowering."""

from __future__ import annotations

import pytest

import qdeploy

pytest.importorskip("brevitas")
pytest.importorskip("hls4ml")


@pytest.mark.parametrize("kind", ["residual_shared", "eltwise_add"])
def test_float_scale_residual_sums_of_quantized_branches_are_bit_exact(tmp_path, kind):
    """A ProxylessNAS-style residual through a shared float-scale quantizer, and brevitas's QuantEltwiseAdd of two
    differently quantized branches: the quantizer after each sum becomes thresholds on an integer sum of the two
    branches' levels (refused before as an Add no fixed-point type holds), and the firmware is bit-exact."""
    from tests.targets.test_hls4ml_models import export_random
    from tests.targets.wild_corpus import layer_model

    path = export_random(layer_model(kind, "float", 4), (1, 8, 8), tmp_path / f"{kind}.onnx")
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=300)
    assert artifact.bit_exact
    assert artifact.report["outputs_equal"] == artifact.report["outputs_compared"]
