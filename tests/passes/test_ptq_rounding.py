"""AdaRound, GPFQ alphabets/sparsity and method="auto": each test asserts the property the method is for."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

import qdeploy
from qdeploy.errors import QDeployError
from qdeploy.frontend import torch_forward


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Layer-wise rounding runs thousands of tiny ops: with 2 xdist workers on 2 cores, extra intra-op threads
    per worker only add contention (measured: several times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _quant_layers(qmodel):
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer

    return [m for m in qmodel.modules() if isinstance(m, QuantWeightBiasInputOutputLayer)]


def _integers(qmodel) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([layer.quant_weight().int().flatten() for layer in _quant_layers(qmodel)])


def _accuracy(qmodel, data) -> float:
    return float((torch_forward(qmodel, data.x_test).argmax(1) == data.y_test).mean())


def test_adaround_lowers_the_layer_reconstruction_error_against_nearest_rounding(float_mlp, data):
    from qdeploy.passes.ptq.adaround import reconstruction_error
    from qdeploy.passes.ptq.layers import capture_inputs

    calib = data.x_train[:512]
    nearest = qdeploy.quantize(float_mlp, calib, weight_bits=3, act_bits=8)
    learned = qdeploy.quantize(float_mlp, calib, weight_bits=3, act_bits=8, rounding="adaround", adaround_iters=300)
    first_nearest, first_learned = _quant_layers(nearest)[0], _quant_layers(learned)[0]
    # same frozen grid: only the up/down decisions differ, and at least some of them changed
    with torch.no_grad():
        assert torch.equal(first_nearest.quant_weight().scale, first_learned.quant_weight().scale)
        assert not torch.equal(first_nearest.quant_weight().int(), first_learned.quant_weight().int())
    for x in (calib, data.x_test):  # the calibration data it learned on, and unseen data
        inputs = capture_inputs(learned, first_learned, x, 256)
        with torch.no_grad():
            target = nn.functional.linear(inputs, float_mlp[1].weight.detach(), float_mlp[1].bias)
        err_nearest = reconstruction_error(first_nearest, inputs, target)
        err_learned = reconstruction_error(first_learned, inputs, target)
        assert err_learned < 0.8 * err_nearest, (err_learned, err_nearest)
    assert _accuracy(learned, data) > _accuracy(nearest, data)


def test_gpfq_sparsity_grows_with_lambda_and_keeps_accuracy_at_small_lambda(float_mlp, data):
    calib = data.x_train[:512]
    zeros, accuracies = [], []
    for sparsity in (0.0, 0.05, 0.3):
        qmodel = qdeploy.quantize(float_mlp, calib, weight_bits=4, act_bits=8, rounding="gpfq", gpfq_sparsity=sparsity)
        zeros.append(float((_integers(qmodel) == 0).float().mean()))
        accuracies.append(_accuracy(qmodel, data))
    assert zeros[0] < zeros[1] < zeros[2], zeros
    assert zeros[2] > zeros[0] + 0.1, zeros  # a real change, not rounding noise
    assert accuracies[1] > accuracies[0] - 0.05, accuracies


@pytest.mark.parametrize(("alphabet", "allowed"), [("binary", {-1, 1}), ("ternary", {-1, 0, 1})])
def test_gpfq_alphabet_is_respected_per_channel(float_mlp, data, alphabet, allowed):
    calib = data.x_train[:512]
    qmodel = qdeploy.quantize(float_mlp, calib, weight_bits=4, act_bits=8, rounding="gpfq", gpfq_alphabet=alphabet)
    assert set(_integers(qmodel).tolist()) == allowed
    with torch.no_grad():
        scales = _quant_layers(qmodel)[0].quant_weight().scale.flatten()
    assert len(scales.unique()) > 1  # the alphabet step is set per output channel
    assert torch.equal(torch.exp2(torch.round(torch.log2(scales))), scales)  # po2 default kept
    assert _accuracy(qmodel, data) > 0.6  # far above chance (10 %) even with one bit per weight


def test_new_methods_compile_bit_exactly_on_onnxruntime(float_cnn, data, tmp_path):
    calib = data.x_train[:256]
    methods = {
        "adaround": {"rounding": "adaround", "adaround_iters": 100},
        "gpfq_ternary_sparse": {"rounding": "gpfq", "gpfq_alphabet": "ternary", "gpfq_sparsity": 0.1},
        "gpfq_binary_float": {"rounding": "gpfq", "gpfq_alphabet": "binary", "scale": "float"},
    }
    for name, options in methods.items():
        qmodel = qdeploy.quantize(float_cnn, calib, weight_bits=3, act_bits=8, **options)
        graph = qdeploy.export(qmodel, calib[:1])
        artifact = qdeploy.compile(
            graph, target="onnxruntime", out=tmp_path / name, data=data.x_test[:200], verify_samples=200
        )
        assert artifact.bit_exact, name


@pytest.mark.parametrize(
    "options",
    [
        {"rounding": "gptq"},
        {"rounding": "adaround", "adaround_iters": 50},
        {"rounding": "gpfq", "gpfq_alphabet": "ternary", "gpfq_sparsity": 0.1},
        {"calibration": "mse", "bias_correction": True, "scale": "float"},
        {"per_channel": False, "calibration": "percentile", "percentile": 99.999, "scale": "float"},
    ],
    ids=["gptq", "adaround", "gpfq-ternary-l1", "mse-biascorr-float", "brevitas-defaults"],
)
def test_ptq_methods_compile_bit_exactly_on_hls4ml(options, float_mlp, data, tmp_path):
    """The methods' outputs (rounded integers, frozen or MSE scales, corrected biases) stay exact on the FPGA
    target's C simulation too, at coarse widths where any mismatch would show."""
    calib = data.x_train[:256]
    graph = qdeploy.export(qdeploy.quantize(float_mlp, calib, weight_bits=3, act_bits=4, **options), calib[:1])
    artifact = qdeploy.compile(graph, target="hls4ml", out=tmp_path / "hls", data=data.x_test[:100], verify_samples=100)
    assert artifact.bit_exact


def test_auto_respects_po2_beats_rounding_and_compiles_bit_exactly(float_mlp, data, tmp_path):
    calib = data.x_train[:512]
    rtn = _accuracy(qdeploy.quantize(float_mlp, calib, weight_bits=2, act_bits=8), data)
    auto = qdeploy.quantize(float_mlp, calib, weight_bits=2, act_bits=8, method="auto", scale="po2")
    assert auto.qdeploy_pipeline["scale"] == "po2"
    assert {s["scale"] for s in auto.qdeploy_auto_scores} == {"po2"}  # float-scale candidates never ran
    with torch.no_grad():
        scales = torch.cat([layer.quant_weight().scale.flatten() for layer in _quant_layers(auto)])
    assert torch.equal(torch.exp2(torch.round(torch.log2(scales))), scales)
    # it kept the candidate closest to the float model (KL divergence) on the held-out quarter
    best = min(auto.qdeploy_auto_scores, key=lambda s: s["loss"])
    assert {k: v for k, v in best.items() if k not in ("loss", "agreement", "mse", "seconds")} == auto.qdeploy_pipeline
    assert _accuracy(auto, data) > rtn + 0.15, (_accuracy(auto, data), rtn)
    graph = qdeploy.export(auto, calib[:1])
    assert qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "auto", data=data.x_test[:200]).bit_exact


def test_auto_may_choose_float_scales_when_allowed():
    from qdeploy.config import ScaleKind
    from qdeploy.passes.ptq.auto import candidates

    for bits in ((8, 8), (4, 8), (4, 4), (2, 8)):
        assert {c["scale"] for c in candidates(*bits, ScaleKind.FLOAT)} == {"po2", "float"}
        assert {c["scale"] for c in candidates(*bits, ScaleKind.PO2)} == {"po2"}


def test_auto_offers_brevitas_defaults_and_refits_its_choice_on_all_calibration_data(float_mlp, data):
    """brevitas's own PTQ defaults compete at 4+ bits (auto never has fewer options than a brevitas user), and the
    returned model is the chosen pipeline fitted on every calibration sample, not the 3/4 it was scored on."""
    from qdeploy.passes.ptq.auto import BREVITAS_DEFAULTS

    calib = data.x_train[:512]
    auto = qdeploy.quantize(float_mlp, calib, weight_bits=4, act_bits=8, method="auto", scale="float")
    per_tensor = [s for s in auto.qdeploy_auto_scores if s.get("per_channel") is False]
    assert {s["scale"] for s in per_tensor} == {"po2", "float"}
    assert all(s[k] == v for s in per_tensor for k, v in BREVITAS_DEFAULTS.items())
    refit = qdeploy.quantize(float_mlp, calib, weight_bits=4, act_bits=8, **auto.qdeploy_pipeline)
    assert np.array_equal(torch_forward(auto, data.x_test), torch_forward(refit, data.x_test))
    fit_part = calib[np.sort(np.random.default_rng(0).permutation(512)[:384])]  # what auto scored it on (seed 0)
    on_fit_part_only = qdeploy.quantize(float_mlp, fit_part, weight_bits=4, act_bits=8, **auto.qdeploy_pipeline)
    assert not np.array_equal(torch_forward(auto, data.x_test), torch_forward(on_fit_part_only, data.x_test))
    # a caller who asks for per-tensor weights gets them whatever auto picks
    tensor_auto = qdeploy.quantize(float_mlp, calib, weight_bits=8, act_bits=8, method="auto", per_channel=False)
    assert all(layer.quant_weight().scale.numel() == 1 for layer in _quant_layers(tensor_auto))


def test_auto_objective_mse_scores_regression_outputs_by_their_squared_error(float_mlp, data):
    """KL of softmaxes ignores a constant shift of the outputs: meaningless for regression. Shifting the outputs by
    a constant changes nothing under kl and everything under mse; auto ranks by the objective asked for; a custom
    pipeline refuses the option."""
    from qdeploy.config import QuantizeConfig
    from qdeploy.passes.ptq.auto import _score

    reference = np.random.default_rng(0).normal(size=(64, 3))
    shifted = reference + 5.0
    assert _score(reference, shifted, "kl")["loss"] < 1e-12
    assert _score(reference, shifted, "mse")["loss"] == pytest.approx(25.0)
    auto = qdeploy.quantize(float_mlp, data.x_train[:256], weight_bits=8, method="auto", auto_objective="mse")
    assert all(score["loss"] == score["mse"] for score in auto.qdeploy_auto_scores)
    with pytest.raises(QDeployError, match="auto_objective applies to method='auto' only"):
        QuantizeConfig(auto_objective="mse")
    with pytest.raises(QDeployError, match="auto_objective"):
        QuantizeConfig(method="auto", auto_objective="accuracy")


def test_too_little_calibration_data_for_adaround_names_the_layer(float_mlp, data):
    # 64 samples are enough for the 64-input first layer, not for the 800-input second one
    wide = nn.Sequential(nn.Flatten(), nn.Linear(64, 800), nn.ReLU(), nn.Linear(800, 10))
    with pytest.raises(QDeployError, match=r"layer 3: AdaRound needs at least 100 calibration rows.*give at least 100"):
        qdeploy.quantize(wide, data.x_train[:64], weight_bits=4, rounding="adaround", adaround_iters=1)
    for rounding in ("gptq", "gpfq"):  # brevitas's implementations too, and GPFQ's own variant
        with pytest.raises(QDeployError, match=rf"layer 3: {rounding.upper()} needs at least 100 calibration rows"):
            qdeploy.quantize(wide, data.x_train[:64], weight_bits=4, rounding=rounding)
    with pytest.raises(QDeployError, match=r"layer 3: GPFQ needs at least 100 calibration rows"):
        qdeploy.quantize(wide, data.x_train[:64], weight_bits=4, rounding="gpfq", gpfq_alphabet="ternary")
    with pytest.raises(QDeployError, match=r"method='auto' needs at least 128 calibration samples"):
        qdeploy.quantize(float_mlp, data.x_train[:100], method="auto")
    with pytest.raises(QDeployError, match=r"needs at least 64 calibration samples"):
        qdeploy.quantize(float_mlp, data.x_train[:32], weight_bits=4, rounding="gpfq", gpfq_sparsity=0.1)


def test_gpfq_variant_refuses_grouped_convolutions_by_name(data):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(QDeployError, match=r"layer 2 \(QuantConv2d, groups=2\): GPFQ handles Linear"):
        qdeploy.quantize(model, data.x_train[:256].reshape(-1, 1, 8, 8), rounding="gpfq", gpfq_alphabet="ternary")


def test_a_weight_layer_qdeploy_cannot_quantize_is_refused_by_name(data):
    from qdeploy.errors import UnsupportedModelError

    model = nn.Sequential(nn.Conv3d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 6 * 6, 10))
    x = np.random.default_rng(0).random((64, 1, 4, 8, 8), dtype=np.float32)
    for options in ({}, {"rounding": "gptq"}):
        with pytest.raises(UnsupportedModelError, match=r"layer 0 \(Conv3d\) cannot be quantized"):
            qdeploy.quantize(model, x, **options)


class CellClassifier(nn.Module):
    """A recurrent cell between two Linears: torch's cells are no nn.RNNBase, so no blocklist would catch them."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.cell, self.head = nn.Linear(64, 16), nn.GRUCell(16, 16), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cell(self.embed(x.flatten(1))))


def test_a_recurrent_cell_is_refused_not_left_in_float(data):
    from qdeploy.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match=r"layer cell \(GRUCell\) cannot be quantized: its weight_ih"):
        qdeploy.quantize(CellClassifier(), data.x_train[:64], weight_bits=4)


def test_nan_weights_and_contradictory_options_are_refused(float_mlp, data):
    broken = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():
        broken[3].weight[0, 0] = float("nan")
    with pytest.raises(QDeployError, match=r"float model's 3.weight contains NaN or Inf"):
        qdeploy.quantize(broken, data.x_train[:64])
    x = data.x_train[:64].copy()
    x[5, 0] = np.inf
    with pytest.raises(QDeployError, match="NaN or Inf"):
        qdeploy.quantize(float_mlp, x)
    with pytest.raises(QDeployError, match="apply to rounding='gpfq' only"):
        qdeploy.quantize(float_mlp, data.x_train[:64], gpfq_alphabet="binary")
    with pytest.raises(QDeployError, match="method='auto' chooses rounding itself"):
        qdeploy.quantize(float_mlp, data.x_train[:256], method="auto", rounding="gptq")


def test_cli_method_auto_and_refused_options(capsys, tmp_path, calib_npz, float_mlp):
    from qdeploy.cli import main
    from tests.conftest import ROOT

    weights = tmp_path / "mlp.pt"
    torch.save(float_mlp.state_dict(), weights)
    out_path = tmp_path / "auto.onnx"
    model = [f"{ROOT / 'examples' / 'digits.py'}:build_mlp", "--weights", str(weights)]
    args = ["quantize", *model, "--calib", str(calib_npz), "--wbits", "8", "-o", str(out_path), "-q"]
    assert main([*args, "--method", "auto", "--scale", "float"]) == 0
    out = capsys.readouterr().out
    # the summary line names auto's pick and what it wrote, which may be narrower than what was allowed
    written = re.search(r"W8A8 auto: (.+), (po2|float) scales, (per-channel|per-tensor) weights", out)
    assert written is not None and out_path.exists(), out
    from qdeploy.inspection import inspect_model
    from qdeploy.ir import load_model

    layers = inspect_model(load_model(out_path))["layers"]
    assert all(written.group(2) in row["weight_scale"] for row in layers)  # the file holds what the line says
    bad = tmp_path / "bad.onnx"
    assert main([*args[:-3], "-o", str(bad), "-q", "--gpfq-alphabet", "binary"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "apply to rounding='gpfq' only" in err[0]
    assert not bad.exists()
