"""GPFQ with general alphabets and the sparsity-promoting variant (Zhang, Zhou & Saab, "Post-training Quantization
for Neural Networks with Provable Guarantees", 2023), per channel.

Written here because brevitas's ``gpfq_mode`` only rounds to the quantizer's k-bit grid and has no L1 term.
For each output channel w and input feature t (columns of the im2col'd layer input, X float / X~ quantized):

    q_t = Q_A( s_lam(<X~_t, u + w_t X_t>) / ||X~_t||^2 ),    u <- u + w_t X_t - q_t X~_t

with Q_A the nearest element of the alphabet A = scale * {binary: -1, +1 | ternary: -1, 0, +1 | int: the k-bit
grid} and s_lam(z) = sign(z) max(|z| - lam, 0) the soft threshold (lam = 0: plain GPFQ). ``sparsity`` is given
in units that make it model-independent: lam = sparsity * scale * median_t ||X~_t||^2, i.e. a typical feature's
target is pulled one quantization step per unit towards zero. All channels run at once (vectorized over u's columns).

Binary and ternary alphabets sit inside the quantizer's integer grid (weight_bits >= 2), so the result exports as
an ordinary ``Quant`` weight whose integers happen to be in {-1, +1} or {-1, 0, +1}; their scale is reset per
channel from the usual L2 choice (binary: mean |w|; ternary: mean |w| over |w| > 0.7 mean |w|, as in TWN), widened
by the factor that reconstructs the layer best (see ``gpfq_layer``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from qdeploy.config import GPFQAlphabet as Alphabet
from qdeploy.errors import UnsupportedModelError
from qdeploy.passes.ptq.layers import (
    capture_inputs,
    check_enough_rows,
    fan_in,
    float_mode,
    float_reference,
    layer_rows,
    quant_layers,
    set_weight_scale,
    weight_grid,
    write_weight,
)
from qdeploy.progress import progress

log = logging.getLogger(__name__)

MAX_ROWS = 32768  # convolutions: a random subset of im2col rows keeps the greedy pass fast; plenty for small fan-ins


def _alphabet_scale(weight: torch.Tensor, alphabet: Alphabet) -> torch.Tensor:
    """Per-output-channel alphabet step for binary/ternary weights (L2-optimal for sign / thresholded weights)."""
    flat = weight.reshape(len(weight), -1).abs()
    mean = flat.mean(1, keepdim=True)
    if alphabet is Alphabet.BINARY:
        return mean.clamp_min(1e-8)
    keep = flat > 0.7 * mean
    return ((flat * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True).clamp_min(1)).clamp_min(1e-8)


def _nearest(values: torch.Tensor, alphabet: Alphabet, low: int, high: int) -> torch.Tensor:
    """Nearest alphabet element (in integer units)."""
    if alphabet is Alphabet.BINARY:
        return torch.where(values >= 0, 1.0, -1.0).to(values.dtype)
    if alphabet is Alphabet.TERNARY:
        return torch.clamp(torch.round(values), -1, 1)
    return torch.clamp(torch.round(values), low, high)


def _greedy(
    weight: torch.Tensor, x: torch.Tensor, x_q: torch.Tensor, scale: torch.Tensor, alphabet: Alphabet, grid, sparsity: float
) -> torch.Tensor:
    """The greedy path-following pass over the input features; returns integers (out, fan_in)."""
    norms = (x_q * x_q).sum(0)  # ||X~_t||^2 per input feature
    lam = sparsity * scale * float(norms[norms > 0].median()) if sparsity > 0 and bool((norms > 0).any()) else None
    u = torch.zeros(len(x), len(weight), dtype=torch.float64)
    integers = torch.zeros_like(weight)
    for t in range(weight.shape[1]):
        u += x[:, t : t + 1] * weight[:, t][None]
        if norms[t] > 0:
            z = x_q[:, t] @ u
            if lam is not None:
                z = torch.sign(z) * (z.abs() - lam).clamp_min(0)
            target = z / norms[t]
        else:  # the feature never fires on the calibration data: nothing to compensate, keep the nearest value
            target = weight[:, t]
        integers[:, t] = _nearest(target / scale, alphabet, grid.low, grid.high)
        u -= x_q[:, t : t + 1] * (integers[:, t] * scale)[None]
    return integers


def gpfq_layer(
    layer: nn.Module,
    rows_float: torch.Tensor,
    rows_quant: torch.Tensor,
    name: str,
    alphabet: Alphabet = Alphabet.INT,
    sparsity: float = 0.0,
) -> torch.Tensor:
    """Greedy path following for one layer; writes the rounded weights back and returns the integers.

    Binary/ternary steps: the L2 rule times a factor from a small grid, the one whose greedy result reconstructs
    the layer's float output best on the calibration rows (with error feedback a wider step than the plain
    L2 rule often wins)."""
    weight = layer.weight.detach().reshape(len(layer.weight), -1).double()  # (out, fan_in)
    x, x_q = rows_float.double(), rows_quant.double()
    factors = (1.0,) if alphabet is Alphabet.INT else (0.75, 1.0, 1.25, 1.5, 2.0)
    base = _alphabet_scale(layer.weight.detach(), alphabet) if alphabet is not Alphabet.INT else None
    best = None
    for factor in factors:
        if base is not None:
            set_weight_scale(layer, factor * base)
        grid = weight_grid(layer)
        if alphabet is not Alphabet.INT and grid.low > -1:
            raise UnsupportedModelError(f"layer {name}: a {alphabet.value} alphabet needs signed weights (weight_bits >= 2)")
        scale = grid.scale.reshape(-1).double()
        scale = scale.expand(len(weight)) if scale.numel() == 1 else scale
        integers = _greedy(weight, x, x_q, scale, alphabet, grid, sparsity)
        error = float((x @ weight.T - x_q @ (integers * scale[:, None]).T).pow(2).sum())
        if best is None or error < best[0]:
            best = (error, factor, integers, grid)
    _, factor, integers, grid = best
    if base is not None:
        set_weight_scale(layer, factor * base)
    integers = integers.reshape(layer.weight.shape).to(layer.weight.dtype)
    write_weight(layer, integers, grid, name)
    return integers


def apply_gpfq_alphabet(
    qmodel: nn.Module,
    calib: np.ndarray,
    alphabet: str = "int",
    sparsity: float = 0.0,
    batch_size: int = 256,
    seed: int = 0,
) -> nn.Module:
    """Run GPFQ (general alphabet, optional L1 sparsity) over every quantized Linear/Conv of ``qmodel``."""
    alphabet = Alphabet(alphabet)
    reference = float_reference(qmodel)
    layers = quant_layers(qmodel, calib)
    check_enough_rows(layers, qmodel, calib, "GPFQ")
    ref_layers = dict(quant_layers(reference, calib))
    generator = torch.Generator().manual_seed(seed)
    for name, layer in progress(layers, desc="gpfq", total=len(layers)):
        if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d)) or getattr(layer, "groups", 1) != 1:
            raise UnsupportedModelError(
                f"layer {name} ({type(layer).__name__}, groups={getattr(layer, 'groups', 1)}): GPFQ handles Linear and "
                "ungrouped Conv1d/Conv2d; use rounding='gptq' or 'adaround' for this model"
            )
        inputs = capture_inputs(qmodel, layer, calib, batch_size)
        with float_mode(reference):
            float_inputs = capture_inputs(reference, ref_layers[name], calib, batch_size)
        rows_quant, rows_float = layer_rows(layer, inputs), layer_rows(layer, float_inputs)
        if len(rows_quant) > MAX_ROWS:
            keep = torch.randperm(len(rows_quant), generator=generator)[:MAX_ROWS]
            rows_quant, rows_float = rows_quant[keep], rows_float[keep]
        integers = gpfq_layer(layer, rows_float, rows_quant, name, alphabet, sparsity)
        log.info(
            "gpfq %s: fan-in %d, %.1f %% zero weights", name, fan_in(layer), 100 * float((integers == 0).float().mean())
        )
    return qmodel
