"""AdaRound: learned up/down rounding of each weight, layer by layer on calibration data (Nagel et al. 2020,
"Up or Down? Adaptive Rounding for Post-Training Quantization"; the white paper's section 3.5).

Written here because brevitas 0.13 ships AdaRound only inside ``brevitas_examples`` (an ImageNet/LLM trainer that
needs ``accelerate`` and fp16 autocast); the rectified sigmoid is brevitas's ``LearnedRoundHardSigmoid``.

Per layer, in forward order: the input is what the already-rounded quantized model feeds the layer, the target is
the float model's output of that layer (the paper's asymmetric reconstruction, which also absorbs upstream error).
The weight scale is frozen (``PARAMETER_FROM_STATS``), so the rounded weights written back quantize to exactly
the learned integers and export/compile like any other weights.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from qdeploy.passes.ptq.layers import (
    capture_inputs,
    check_enough_rows,
    float_mode,
    float_reference,
    quant_layers,
    weight_grid,
    write_weight,
)
from qdeploy.progress import progress

log = logging.getLogger(__name__)

ZETA, GAMMA = 1.1, -0.1  # rectified-sigmoid stretch (paper's values)


def _layer_output(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    bias = layer.bias.detach() if layer.bias is not None else None
    return layer.inner_forward_impl(x, weight, bias)


def adaround_layer(
    layer: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    name: str,
    iters: int = 500,
    batch_size: int = 64,
    reg: float = 0.01,
    lr: float = 1e-2,
    seed: int = 0,
) -> torch.Tensor:
    """Learn the rounding of ``layer``'s weights minimizing ||W~ x - target||^2 + reg * f_reg(V); write the rounded
    weights back and return the chosen integers."""
    from brevitas.core.function_wrapper.learned_round import LearnedRoundHardSigmoid

    grid = weight_grid(layer)
    weight = layer.weight.detach()
    scaled = weight / grid.scale
    floor = torch.floor(scaled)
    rest = (scaled - floor).clamp(1e-4, 1 - 1e-4)
    # V initialized so that h(V) equals the fractional part: training starts from the float weights.
    value = nn.Parameter(-torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1))
    hard_sigmoid = LearnedRoundHardSigmoid(ZETA, GAMMA).train()
    optimizer = torch.optim.Adam([value], lr=lr)
    generator = torch.Generator().manual_seed(seed)
    warmup = int(0.2 * iters)
    for step in range(iters):
        idx = torch.randint(0, len(inputs), (min(batch_size, len(inputs)),), generator=generator)
        soft = hard_sigmoid(value)
        quantized = grid.scale * torch.clamp(floor + soft, grid.low, grid.high)
        out = _layer_output(layer, inputs[idx], quantized)
        reconstruction = (out - targets[idx]).pow(2).flatten(1).sum(1).mean()
        if step < warmup:
            loss = reconstruction
        else:
            # beta anneals 20 -> 2: early on the regularizer only nudges, at the end it forces h(V) to 0 or 1.
            beta = 2 + 18 * (1 - (step - warmup) / max(iters - warmup, 1))
            loss = reconstruction + reg * (1 - (2 * soft - 1).abs().pow(beta)).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        integers = torch.clamp(floor + (value > 0).to(floor.dtype), grid.low, grid.high)
    write_weight(layer, integers, grid, name)
    return integers


def reconstruction_error(layer: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean squared error of the layer's quantized output against ``targets`` (the quantity AdaRound minimizes)."""
    with torch.no_grad():
        out = _layer_output(layer, inputs, layer.quant_weight().value)
    return float((out - targets).pow(2).flatten(1).sum(1).mean())


def apply_adaround(
    qmodel: nn.Module, calib: np.ndarray, iters: int = 500, batch_size: int = 256, seed: int = 0
) -> nn.Module:
    """AdaRound every quantized Linear/Conv of ``qmodel`` (calibrated, weight scales frozen), layer by layer."""
    reference = float_reference(qmodel)
    layers = quant_layers(qmodel, calib)
    check_enough_rows(layers, qmodel, calib, "AdaRound")
    ref_layers = dict(quant_layers(reference, calib))
    for name, layer in progress(layers, desc="adaround", total=len(layers)):
        inputs = capture_inputs(qmodel, layer, calib, batch_size)
        with float_mode(reference):
            float_inputs = capture_inputs(reference, ref_layers[name], calib, batch_size)
            with torch.no_grad():
                targets = _layer_output(layer, float_inputs, layer.weight.detach())
        before = reconstruction_error(layer, inputs, targets)
        nearest = layer.weight.detach().clone()
        with torch.enable_grad():
            adaround_layer(layer, inputs, targets, name, iters=iters, seed=seed)
        if reconstruction_error(layer, inputs, targets) > before:
            # short schedules can end worse than nearest rounding on hard layers: keep nearest then
            log.info("adaround %s: learned rounding did not beat nearest rounding; keeping nearest", name)
            with torch.no_grad():
                layer.weight.copy_(nearest)
        log.info(
            "adaround %s: reconstruction error %.4g -> %.4g", name, before, reconstruction_error(layer, inputs, targets)
        )
    return qmodel
