"""Training of binarised networks: BiPer's two stages or the sign-STE baseline, then freezing for export."""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch import nn

from qdeploy.data import check_array
from qdeploy.errors import QDeployError
from qdeploy.passes.binarize.convert import build, freeze
from qdeploy.passes.binarize.layers import METHODS, BinarizedNet, _QLayer
from qdeploy.passes.train import run_epochs

log = logging.getLogger(__name__)

# tau of the released BiPer CIFAR-10 stage-1 script; 0 switches the regulariser off.
DEFAULT_TAU = 0.037


def train_epochs(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    tau: float,
    seed: int,
    label: str,
) -> list[float]:
    """AdamW with a cosine learning-rate decay over ``epochs``; returns the mean loss (cross-entropy plus
    the regulariser of BiPer layers) of every epoch. Works on any classifier (the benchmark's float baseline)."""
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    steps = epochs * math.ceil(len(x) / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    binary = [m for m in net.modules() if isinstance(m, _QLayer) and m.mode == "biper"]

    def regularizer() -> torch.Tensor:
        return tau * sum(m.regularizer() for m in binary)

    penalty = regularizer if tau and binary else None
    return [loss for _, loss in run_epochs(net, x, y, opt, schedule, epochs, batch_size, seed, label, regularizer=penalty)]


def binarize(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    method: str = "biper",
    omega: float = 30.0,
    epochs: int = 10,
    stage1_epochs: int | None = None,
    lr: float = 2e-3,
    batch_size: int = 64,
    tau: float = DEFAULT_TAU,
    keep_first_last: bool = True,
    first_last_bits: int = 8,
    seed: int = 0,
) -> BinarizedNet:
    """Binarise ``model`` (weights and activations to +-1 with a learned per-channel scale) and train it on (x, y).

    ``method``: 'biper' (square-wave weights ``sign(sin(omega w))`` with the sine's gradient; stage 1 trains
    ``stage1_epochs`` (default half of ``epochs``) with ``sin(omega w)`` weights and binary activations, stage 2 the
    rest with binary weights, warm-started; regulariser ``tau * mean(sin^2(omega w))``) or 'ste' (sign with a
    straight-through estimator, BinaryConnect / XNOR-Net). With ``keep_first_last`` the first and last Linear/Conv
    layers keep ``first_last_bits``-bit fixed-point weights. The model input is quantized to 8-bit fixed point.
    Returns the frozen (eval, BatchNorm folded) module; ``qdeploy.export`` writes it as QONNX with
    ``BipolarQuant`` weights and activations. The caller's model is not modified.
    """
    if method not in METHODS:
        raise QDeployError(f"binarize method {method!r} must be one of {', '.join(METHODS)}")
    if not (isinstance(omega, int | float) and math.isfinite(omega) and omega > 0):
        raise QDeployError(f"omega={omega} must be a positive number (BiPer's frequency; the paper's scripts use 20)")
    if epochs < 1:
        raise QDeployError(f"epochs={epochs} must be >= 1")
    if method == "biper":
        stage1_epochs = epochs // 2 if stage1_epochs is None else stage1_epochs
        if not 0 <= stage1_epochs < epochs:
            raise QDeployError(f"stage1_epochs={stage1_epochs} must be in [0, epochs={epochs}) (stage 2 needs an epoch)")
    if not 2 <= first_last_bits <= 8:
        raise QDeployError(f"first_last_bits={first_last_bits} must be 2-8")
    if lr <= 0 or batch_size < 1 or tau < 0:
        raise QDeployError(f"lr={lr}, batch_size={batch_size} must be positive and tau={tau} >= 0")
    x = check_array(x, None, "training data")
    y = np.asarray(y)
    if len(x) != len(y) or y.ndim != 1:
        raise QDeployError(f"training data: {len(x)} inputs but labels of shape {y.shape}; give one label per input")
    torch.manual_seed(seed)
    net, plan = build(model, method, omega, (float(x.min()), float(x.max())), keep_first_last, first_last_bits)
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = torch.from_numpy(y.astype(np.int64))
    try:
        with torch.no_grad():
            net.eval()(inputs[:2])
    except Exception as exc:
        raise QDeployError(f"the model fails on inputs of shape {tuple(x.shape[1:])}: {type(exc).__name__}: {exc}") from exc
    common = {"lr": lr, "batch_size": batch_size}
    if method == "biper":
        for layer in net.binary_layers():
            layer.stage = 1
        history = train_epochs(net, inputs, labels, stage1_epochs, tau=tau, seed=seed, label="BiPer stage 1", **common)
        for layer in net.binary_layers():
            layer.stage = 2
        # stage 2 warm-starts from the stage-1 weights; its own optimizer and schedule, as the released scripts
        history += train_epochs(
            net, inputs, labels, epochs - stage1_epochs, tau=tau, label="BiPer stage 2", seed=seed + 1, **common
        )
    else:
        history = train_epochs(net, inputs, labels, epochs, tau=0.0, seed=seed, label="sign-STE", **common)
    frozen = freeze(net, plan)
    frozen.history = history
    return frozen
