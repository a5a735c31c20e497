"""QAT: fine-tune a brevitas-quantized module (from ``qdeploy.quantize``) on labelled data.

Gradients pass the rounding with brevitas's straight-through estimator; scales that are parameters (activation
scales after calibration, weight scales with ``trainable_scales``) are learned, LSQ-style, in the power-of-two
(log2) domain when scales are po2, so the result still lowers exactly to fixed point. BatchNorm was folded into
the weights when the model was quantized. Checkpoints are written to a temporary file, then renamed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qdeploy.errors import QDeployError
from qdeploy.progress import progress

log = logging.getLogger(__name__)


def _save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, losses: list) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "losses": losses}, tmp)
    os.replace(tmp, path)


def qat_train(
    qmodel: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int = 5,
    lr: float = 1e-3,
    batch_size: int = 64,
    optimizer: str = "adamw",
    checkpoint: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
) -> tuple[nn.Module, list[float]]:
    """Train ``qmodel`` with cross-entropy on (x, y); returns the model and the mean loss of every epoch.

    ``optimizer``: 'adamw' (torch) or 'adamw4bit' (qdeploy's 4-bit-state AdamW). With ``checkpoint`` the state is
    saved after each epoch; ``resume`` continues from it (same seed: the continued run equals an uninterrupted one).
    """
    if len(x) != len(y):
        raise QDeployError(f"QAT data: {len(x)} inputs but {len(y)} labels")
    if epochs < 1:
        raise QDeployError(f"epochs={epochs} must be >= 1")
    if optimizer not in ("adamw", "adamw4bit"):
        raise QDeployError(f"optimizer {optimizer!r} must be 'adamw' or 'adamw4bit'")
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    start_epoch, losses, state = 0, [], None
    if resume:
        if checkpoint is None or not checkpoint.exists():
            raise QDeployError(f"cannot resume: checkpoint {checkpoint} does not exist")
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            # brevitas re-creates some scale parameters when loading: load the model before building the optimizer
            qmodel.load_state_dict(state["model"])
        except Exception as exc:
            raise QDeployError(f"checkpoint {checkpoint} could not be loaded: {type(exc).__name__}: {exc}") from exc
        start_epoch, losses = int(state["epoch"]), list(state["losses"])
    if optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(qmodel.parameters(), lr=lr)
    else:
        from qdeploy.passes.optim import AdamW4bit

        opt = AdamW4bit(qmodel.parameters(), lr=lr)
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    inputs, labels = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(np.asarray(y)).long()
    for epoch in range(start_epoch, epochs):
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)  # per-epoch order: resumable
        order = torch.randperm(len(inputs), generator=generator).split(batch_size)
        qmodel.train()
        total = 0.0
        for idx in progress(order, desc=f"QAT epoch {epoch + 1}/{epochs}", total=len(order)):
            opt.zero_grad()
            out = qmodel(inputs[idx])
            loss = nn.functional.cross_entropy(out.value if hasattr(out, "value") else out, labels[idx])
            if not torch.isfinite(loss):
                raise QDeployError(f"QAT loss became {float(loss)} in epoch {epoch + 1}; lower the learning rate")
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        losses.append(total / len(inputs))
        log.info("QAT epoch %d/%d: loss %.4f", epoch + 1, epochs, losses[-1])
        if checkpoint is not None:
            _save_checkpoint(checkpoint, qmodel, opt, epoch + 1, losses)
    qmodel.eval()
    return qmodel, losses
