"""PTQ passes: each asserts the property the method is for, and the result still compiles bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import qdeploy
from qdeploy.frontend import torch_forward


def _per_channel_ranges(weight: torch.Tensor, dim: int) -> torch.Tensor:
    other = [d for d in range(weight.dim()) if d != dim]
    return weight.abs().amax(dim=other)


def test_cross_layer_equalization_balances_ranges_and_keeps_the_function(data):
    """After CLE the output-channel ranges of layer 1 match the input-channel ranges of layer 2 (sqrt rule)."""
    from brevitas.graph.quantize import preprocess_for_quantize

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    with torch.no_grad():
        model[1].weight.mul_(torch.logspace(-2, 1, 32)[:, None])  # badly imbalanced channels
    x = torch.from_numpy(data.x_test[:200])
    before = model(x)
    range1_before = _per_channel_ranges(model[1].weight, 0).detach().clone()
    range2_before = _per_channel_ranges(model[3].weight, 1).detach().clone()
    equalized = preprocess_for_quantize(model, equalize_iters=20, equalize_merge_bias=True)
    linears = [m for m in equalized.modules() if isinstance(m, nn.Linear)]
    r1 = _per_channel_ranges(linears[0].weight, 0)
    r2 = _per_channel_ranges(linears[1].weight, 1)

    def spread(t: torch.Tensor) -> float:
        return float(t.max() / t.min())

    assert spread(range1_before) > 100
    assert spread(r1) < spread(range1_before) / 4  # layer 1's channel ranges are far more even
    assert spread(r1 / r2) < spread(range1_before / range2_before) / 4  # and matched to layer 2's
    assert torch.allclose(equalized(x), before, atol=1e-4)  # positive rescaling through ReLU: same function


def test_bias_correction_removes_the_output_mean_shift(float_mlp, data):
    calib = data.x_train[:512]
    state_before = {k: v.clone() for k, v in float_mlp.state_dict().items()}
    plain = qdeploy.quantize(float_mlp, calib, weight_bits=3, act_bits=8)
    corrected = qdeploy.quantize(float_mlp, calib, weight_bits=3, act_bits=8, bias_correction=True)
    with torch.no_grad():
        reference = float_mlp(torch.from_numpy(calib)).numpy()
    shift_plain = np.abs((torch_forward(plain, calib) - reference).mean(axis=0)).mean()
    shift_corrected = np.abs((torch_forward(corrected, calib) - reference).mean(axis=0)).mean()
    assert shift_corrected < 0.5 * shift_plain, (shift_plain, shift_corrected)
    # the caller's float model is untouched
    assert all(torch.equal(v, float_mlp.state_dict()[k]) for k, v in state_before.items())


def test_equalized_and_bias_corrected_model_compiles_bit_exactly(float_cnn, data, tmp_path):
    qmodel = qdeploy.quantize(float_cnn, data.x_train[:256], weight_bits=4, act_bits=8, equalize=True, bias_correction=True)
    graph = qdeploy.export(qmodel, data.x_train[:1])
    for target in ("onnxruntime", "hls4ml"):
        artifact = qdeploy.compile(graph, target=target, out=tmp_path / target, data=data.x_test)
        assert artifact.bit_exact, target


def _accuracy(qmodel, data) -> float:
    return float((torch_forward(qmodel, data.x_test).argmax(1) == data.y_test).mean())


def test_gpfq_and_gptq_beat_rounding_at_2_bits_and_never_collapse(float_mlp, data):
    """Guards the brevitas pitfall: GPFQ with runtime-statistics weight scales collapses to chance (~10 %)."""
    calib = data.x_train[:512]
    rtn = _accuracy(qdeploy.quantize(float_mlp, calib, weight_bits=2, act_bits=8), data)
    for rounding in ("gpfq", "gptq"):
        accuracy = _accuracy(qdeploy.quantize(float_mlp, calib, weight_bits=2, act_bits=8, rounding=rounding), data)
        assert accuracy > 0.8, (rounding, accuracy)  # far from chance
        assert accuracy > rtn + 0.1, (rounding, accuracy, rtn)  # plain rounding loses much more at 2 bits


def test_brevitas_gpfq_collapses_without_frozen_scales_and_qdeploy_freezes_them(float_mlp, data):
    """The pitfall itself: brevitas's gpfq_mode on runtime-statistics weight scales (the scale follows the weights
    GPFQ rewrites) drops the 2-bit digits MLP to chance; qdeploy's GPFQ keeps every weight scale where the float
    weights put it. If the first assertion ever fails, brevitas has fixed the bug and the freezing may go."""
    import brevitas.nn as qnn

    from qdeploy.passes.ptq.gpxq import apply_gpxq

    calib = data.x_train[:512]
    runtime_stats = qdeploy.quantize(float_mlp, calib, weight_bits=2, act_bits=8)  # rtn: scales from weight stats
    assert _accuracy(apply_gpxq(runtime_stats, calib, "gpfq"), data) < 0.3  # ten classes: chance is 0.1

    def scales(qmodel) -> list[torch.Tensor]:
        with torch.no_grad():
            return [m.quant_weight().scale for m in qmodel.modules() if isinstance(m, qnn.QuantLinear)]

    frozen = qdeploy.quantize(float_mlp, calib, weight_bits=2, act_bits=8, rounding="gpfq")
    nearest = qdeploy.quantize(float_mlp, calib, weight_bits=2, act_bits=8)  # scales from the float weights
    assert all(torch.equal(a, b) for a, b in zip(scales(frozen), scales(nearest), strict=True))
    assert _accuracy(frozen, data) > 0.8


def test_gpfq_model_compiles_bit_exactly(float_cnn, data, tmp_path):
    qmodel = qdeploy.quantize(float_cnn, data.x_train[:256], weight_bits=3, act_bits=8, rounding="gpfq")
    graph = qdeploy.export(qmodel, data.x_train[:1])
    for target in ("onnxruntime", "hls4ml"):
        assert qdeploy.compile(graph, target=target, out=tmp_path / target, data=data.x_test).bit_exact, target


def test_mse_range_setting_lowers_the_weight_quantization_error(float_mlp, data):
    import brevitas.nn as qnn

    def weight_errors(qmodel) -> list[float]:
        layers = [m for m in qmodel.modules() if isinstance(m, qnn.QuantLinear)]
        with torch.no_grad():
            return [float(((layer.quant_weight().value - layer.weight) ** 2).sum()) for layer in layers]

    calib = data.x_train[:256]
    for scale in ("po2", "float"):
        minmax = weight_errors(qdeploy.quantize(float_mlp, calib, weight_bits=2, act_bits=8, scale=scale))
        mse = weight_errors(qdeploy.quantize(float_mlp, calib, weight_bits=2, act_bits=8, scale=scale, calibration="mse"))
        assert all(m <= n * (1 + 1e-6) for m, n in zip(mse, minmax, strict=True)), (scale, mse, minmax)
        assert sum(mse) < sum(minmax)


def test_quantize_command_line_flags_are_the_config_fields():
    """The flags of qdeploy quantize are generated from QuantizeConfig: names as before, values reach the config."""
    from qdeploy.cli import build_parser
    from qdeploy.config import QuantizeConfig, from_mapping
    from qdeploy.options import flag_values

    def config(*flags: str) -> QuantizeConfig:
        args = build_parser().parse_args(["quantize", "m.py:f", "--calib", "c.npz", "-o", "m.onnx", *flags])
        return from_mapping(QuantizeConfig, flag_values(args, QuantizeConfig))

    assert config() == QuantizeConfig()
    given = config(
        *("--wbits", "3", "--abits", "6", "--per-tensor", "--signed-input", "--scale", "float"),
        *("--calibration", "percentile", "--percentile", "99.9", "--equalize", "--bias-correction"),
        *("--rounding", "gpfq", "--gpfq-alphabet", "ternary", "--gpfq-sparsity", "0.1", "--output-bits", "7"),
    )
    assert given == QuantizeConfig(
        weight_bits=3,
        act_bits=6,
        per_channel=False,
        unsigned_input=False,
        scale="float",
        calibration="percentile",
        percentile=99.9,
        equalize=True,
        bias_correction=True,
        rounding="gpfq",
        gpfq_alphabet="ternary",
        gpfq_sparsity=0.1,
        output_bits=7,
    )
    assert config("--method", "auto", "--auto-objective", "mse").auto_objective == "mse"
    with pytest.raises(SystemExit):  # the choices are the enum's
        config("--rounding", "nearest")
    # --wbits/--abits are QuantizeConfig's on every command that quantizes a PyTorch model
    for command in (["mixed", "--average-bits", "3"], ["qat"]):
        args = build_parser().parse_args([command[0], "m.py:f", "--data", "d.npz", "-o", "m.onnx", *command[1:]])
        assert (args.wbits, args.abits) == (QuantizeConfig().weight_bits, QuantizeConfig().act_bits)
