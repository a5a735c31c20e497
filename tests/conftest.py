"""Shared fixtures: the bundled digits example, trained once per test session, quantized W4A8 (po2)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from examples import digits  # noqa: E402

FIXTURES = ROOT.parent / "shared" / "fixtures" / "qonnx"


@pytest.fixture(scope="session")
def data() -> digits.DigitsData:
    return digits.load_digits_data()


@pytest.fixture(scope="session")
def float_mlp():
    return digits.mlp()


@pytest.fixture(scope="session")
def float_cnn():
    return digits.cnn()


def _quantized_graph(model, data, **options):
    import qdeploy

    qmodel = qdeploy.quantize(model, data.x_train[:256], **options)
    return qmodel, qdeploy.export(qmodel, data.x_train[:1])


@pytest.fixture(scope="session")
def mlp_w4a8(float_mlp, data):
    """(brevitas module, QONNX graph) of the digits MLP, 4-bit weights / 8-bit activations, po2 scales."""
    return _quantized_graph(float_mlp, data, weight_bits=4, act_bits=8)


@pytest.fixture(scope="session")
def cnn_w4a8(float_cnn, data):
    return _quantized_graph(float_cnn, data, weight_bits=4, act_bits=8)


@pytest.fixture(scope="session")
def mlp_float_scales(float_mlp, data):
    return _quantized_graph(float_mlp, data, weight_bits=4, act_bits=8, scale="float")


@pytest.fixture(scope="session")
def cnn_float_scales(float_cnn, data):
    """Float (non-power-of-two) per-channel scales, 4-bit: lowered to thresholds on the FPGA target."""
    return _quantized_graph(float_cnn, data, weight_bits=4, act_bits=4, scale="float", per_channel=True)


@pytest.fixture
def calib_npz(tmp_path, data) -> Path:
    path = tmp_path / "calib.npz"
    np.savez(path, x=data.x_train[:128])
    return path


@pytest.fixture(scope="session")
def biasless_dynamo_path(data, tmp_path_factory) -> Path:
    """A bias-less MLP exported by brevitas's dynamo exporter: 2-input Gemms, Reshape flatten (raw brevitas)."""
    import torch
    from brevitas.export import export_qonnx
    from torch import nn

    import qdeploy

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16, bias=False), nn.ReLU(), nn.Linear(16, 10, bias=False))
    digits.train(model, data, epochs=5)
    qmodel = qdeploy.quantize(model, data.x_train[:128])
    path = tmp_path_factory.mktemp("dynamo") / "biasless.onnx"
    export_qonnx(qmodel, torch.from_numpy(data.x_train[:1]), export_path=str(path), dynamo=True)
    return path
