"""AdamW with 4-bit states: maps, decode error bounds, training, exact state_dict round trip, memory."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from qdeploy.errors import QDeployError
from qdeploy.passes.optim import AdamW4bit, fused
from qdeploy.passes.optim.quant4 import (
    DE_CODEBOOK,
    DE_MAP,
    LINEAR_CODEBOOK,
    LINEAR_MAP,
    dequantize_blockwise,
    dequantize_rank1,
    nearest_codes,
    pack,
    quantize_blockwise,
    quantize_rank1,
    rank1_maxima,
    rank1_scale,
    unpack,
)


def test_maps_follow_the_paper():
    assert DE_MAP.numel() == LINEAR_MAP.numel() == 16
    assert 0.0 in DE_MAP.tolist() and DE_MAP.max() == 1.0 and DE_MAP.min() > -1.0
    assert LINEAR_MAP.min() == 1 / 16 and 0.0 not in LINEAR_MAP.tolist()  # no zero: 1/sqrt(v) stays bounded


def test_pack_unpack_round_trip_for_odd_lengths():
    codes = torch.randint(0, 16, (1001,), dtype=torch.uint8)
    packed = pack(codes)
    assert packed.numel() == 501 and packed.dtype == torch.uint8
    assert torch.equal(unpack(packed, 1001), codes)


@pytest.mark.parametrize("codebook", [DE_CODEBOOK, LINEAR_CODEBOOK], ids=["dynamic-exponent", "linear"])
def test_table_and_arithmetic_coding_equal_the_nearest_map_value(codebook):
    torch.manual_seed(0)
    low = float(codebook.values[0]) if codebook is LINEAR_CODEBOOK else -1.0
    midpoints = codebook.midpoints
    x = torch.cat(
        [
            torch.rand(100_000) * (1 - low) + low,
            torch.randn(10_000) * 1e-3,
            # the decision boundaries themselves (ties go to the lower value) and their float neighbours
            midpoints,
            torch.nextafter(midpoints, torch.tensor(2.0)),
            torch.nextafter(midpoints, torch.tensor(-2.0)),
            torch.tensor([0.0, -0.0, 1.0, -1.0, 1e-40, -1e-40]),
        ]
    ).clamp(min(low, 0.0), 1.0)
    assert torch.equal(codebook.encode(x.clone()), nearest_codes(x, codebook.values))
    codes = torch.randint(0, 16, (1001,), dtype=torch.uint8)
    assert torch.equal(codebook.decode(pack(codes))[:1001], codebook.values[codes.long()])


def test_first_moment_decodes_within_half_the_widest_map_gap():
    torch.manual_seed(0)
    x = torch.randn(3, 1000) * torch.logspace(-4, 0, 1000)  # entries over four decades
    packed, scales = quantize_blockwise(x, DE_CODEBOOK)
    decoded = dequantize_blockwise(packed, scales, DE_CODEBOOK, x.shape)
    # widest half-gap of the map on [-1, 1] (including the gap from -1 to the most negative code)
    points = torch.cat([torch.tensor([-1.0]), DE_MAP])
    bound = (points[1:] - points[:-1]).max() / 2
    per_entry_scale = scales.repeat_interleave(128)[: x.numel()].view(x.shape)
    assert torch.all((decoded - x).abs() <= bound * per_entry_scale + 1e-7)
    assert packed.numel() == x.numel() // 2  # two codes per byte


def test_second_moment_rank1_decodes_within_one_sixteenth_of_its_scale():
    torch.manual_seed(0)
    v = torch.rand(64, 96) ** 4 * torch.rand(64, 1) * torch.rand(1, 96)
    packed, maxima = quantize_rank1(v, LINEAR_CODEBOOK)
    scale = rank1_scale(maxima).expand_as(v)
    assert torch.all(v <= scale)  # each entry is at most the min of its row and column maxima
    decoded = dequantize_rank1(packed, maxima, LINEAR_CODEBOOK, v.shape)
    assert torch.all((decoded - v).abs() <= scale / 16 + 1e-9)
    assert torch.all(decoded[v > 0] > 0)  # the linear map without zero never decodes a positive entry as 0
    assert [m.shape[0] for m in rank1_maxima(v)] == [64, 96]


def _digits_tensors():
    from examples.digits import load_digits_data

    data = load_digits_data()
    return (
        torch.from_numpy(data.x_train.reshape(len(data.x_train), -1)),
        torch.from_numpy(data.y_train),
        torch.from_numpy(data.x_test.reshape(len(data.x_test), -1)),
        torch.from_numpy(data.y_test),
    )


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


def _train(model, optimizer, x, y, steps: int, seed: int = 0) -> list[float]:
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=generator)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


def test_trains_as_well_as_32_bit_adamw_on_digits():
    x, y, x_test, y_test = _digits_tensors()
    results = {}
    for name, make in (("adamw", torch.optim.AdamW), ("adamw4bit", AdamW4bit)):
        model = _mlp()
        optimizer = make(model.parameters(), lr=2e-3)
        losses = _train(model, optimizer, x, y, steps=400)
        with torch.no_grad():
            results[name] = float((model(x_test).argmax(1) == y_test).float().mean())
        assert np.mean(losses[-50:]) < 0.25 * np.mean(losses[:10])  # the loss really went down
    optimizer_4bit_state = AdamW4bit(_mlp().parameters())
    assert results["adamw4bit"] >= results["adamw"] - 0.02, results
    assert optimizer_4bit_state.state_bytes() == 0  # no state before the first step


def test_large_tensors_are_quantized_small_ones_kept_in_32_bit():
    x, y, _, _ = _digits_tensors()
    model = _mlp()
    optimizer = AdamW4bit(model.parameters())
    _train(model, optimizer, x, y, steps=2)
    big = optimizer.state[model[2].weight]  # 128 x 128 = 16,384 > 4,096
    small = optimizer.state[model[0].bias]
    assert big["exp_avg_codes"].dtype == torch.uint8 and big["exp_avg_codes"].numel() == 128 * 128 // 2
    assert "exp_avg_sq_max0" in big and "exp_avg_sq_max1" in big
    assert small["exp_avg"].dtype == torch.float32 and "exp_avg_codes" not in small


def test_state_dict_round_trip_continues_bit_identically(tmp_path):
    x, y, _, _ = _digits_tensors()
    model = _mlp()
    optimizer = AdamW4bit(model.parameters(), lr=1e-3)
    _train(model, optimizer, x, y, steps=5)
    path = tmp_path / "opt.pt"
    torch.save({"model": model.state_dict(), "opt": optimizer.state_dict()}, path)
    restored_model = _mlp()
    restored = AdamW4bit(restored_model.parameters(), lr=1e-3)
    saved = torch.load(path, weights_only=True)
    restored_model.load_state_dict(saved["model"])
    restored.load_state_dict(saved["opt"])
    _train(model, optimizer, x, y, steps=5, seed=1)
    _train(restored_model, restored, x, y, steps=5, seed=1)
    for a, b in zip(model.parameters(), restored_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_state_dict_of_another_optimizer_is_refused():
    x, y, _, _ = _digits_tensors()
    model = _mlp()
    other = torch.optim.AdamW(model.parameters())
    _train(model, other, x, y, steps=1)
    with pytest.raises(QDeployError, match="not saved by qdeploy's AdamW4bit"):
        AdamW4bit(model.parameters()).load_state_dict(other.state_dict())


def test_state_memory_of_a_million_parameter_layer():
    layer = nn.Linear(1024, 1024, bias=False)
    optimizer = AdamW4bit(layer.parameters())
    layer(torch.randn(4, 1024)).square().mean().backward()
    optimizer.step()
    full_precision_bytes = 2 * 4 * layer.weight.numel()  # two fp32 moments
    assert optimizer.state_bytes() <= 0.16 * full_precision_bytes


@pytest.mark.parametrize("shape", [(), (5000,), (7, 30, 40), (16, 8, 3, 3), (3, 4097)])
def test_any_parameter_shape(shape):
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(shape))
    loss_before = float((p**2).sum())
    optimizer = AdamW4bit([p], lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        optimizer.zero_grad()
        (p**2).sum().backward()
        optimizer.step()
    assert float((p**2).sum()) < loss_before
    state = optimizer.state[p]
    assert int(state["step"]) == 3
    assert ("exp_avg_codes" in state) == (p.numel() > 4096)
    copy.deepcopy(optimizer.state_dict())  # serialisable


@pytest.mark.parametrize("shape", [(5000,), (5001,), (129, 33), (300, 70), (64, 9, 3, 3), (5, 7, 131), (100,), (3, 5)])
def test_fused_step_codes_the_states_as_the_torch_path(shape):
    pytest.importorskip("numba")
    torch.manual_seed(0)
    fused_param = nn.Parameter(torch.randn(shape))
    torch_param = nn.Parameter(fused_param.detach().clone())
    fused_optimizer = AdamW4bit([fused_param], lr=1e-2)
    torch_optimizer = AdamW4bit([torch_param], lr=1e-2, fused_step=False)
    for step in range(5):
        gradient = torch.randn(shape) * (1 + step)
        fused_param.grad, torch_param.grad = gradient.clone(), gradient.clone()
        assert fused.supports(fused_param)  # else both would take the torch path and agree trivially
        fused_optimizer.step()
        torch_optimizer.step()
    fused_state, torch_state = fused_optimizer.state[fused_param], torch_optimizer.state[torch_param]
    assert sorted(fused_state) == sorted(torch_state)
    for name, value in fused_state.items():
        if value.dtype == torch.uint8:
            assert torch.equal(value, torch_state[name]), name  # the same codes, pad code included
        else:  # float32 rounding of the same arithmetic in another order (vectorized)
            torch.testing.assert_close(value, torch_state[name], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(fused_param, torch_param, rtol=0, atol=1e-6)
