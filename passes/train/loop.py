"""The one training loop of the torch-module stages (QAT, binarisation): per-epoch seeded batch order, cross-entropy
(plus an optional regularizer), a finiteness check, optimizer and learning-rate-schedule steps, a progress bar.

It yields after every epoch, so the caller scores, selects and checkpoints between epochs (QAT's held-out selection
and resumable checkpoints) without the loop knowing about either. The batch order of an epoch depends only on
``seed`` and the epoch index, so a run resumed at ``start_epoch`` draws the batches the uninterrupted run drew.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import torch
from torch import nn

from qdeploy.errors import QDeployError
from qdeploy.progress import progress

log = logging.getLogger(__name__)

#: the epoch's batch order is drawn from a generator seeded with seed * SEED_STRIDE + epoch
SEED_STRIDE = 100_003


def logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The model's output as a plain tensor (brevitas layers return QuantTensors)."""
    out = model(inputs)
    return out.value if hasattr(out, "value") else out


def run_epochs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    epochs: int,
    batch_size: int,
    seed: int,
    label: str,
    start_epoch: int = 0,
    regularizer: Callable[[], torch.Tensor] | None = None,
) -> Iterator[tuple[int, float]]:
    """Train ``model`` on (x, y) for epochs ``start_epoch`` .. ``epochs - 1``; after each yield ``(epoch, mean loss)``.

    The loss of a batch is the cross-entropy of the model's logits, plus ``regularizer()`` when given. ``schedule``
    steps after every optimizer step. A loss that is not finite stops training with an error naming ``label``.
    """
    for epoch in range(start_epoch, epochs):
        generator = torch.Generator().manual_seed(seed * SEED_STRIDE + epoch)
        batches = torch.randperm(len(x), generator=generator).split(batch_size)
        model.train()  # the caller may have scored the model in eval mode since the last epoch
        total = 0.0
        for idx in progress(batches, desc=f"{label} epoch {epoch + 1}/{epochs}", total=len(batches)):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(logits(model, x[idx]), y[idx])
            if regularizer is not None:
                loss = loss + regularizer()
            if not torch.isfinite(loss):
                raise QDeployError(f"{label}: loss became {float(loss)} in epoch {epoch + 1}; lower the learning rate")
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(idx)
        mean = total / len(x)
        log.info("%s epoch %d/%d: loss %.4f", label, epoch + 1, epochs, mean)
        yield epoch, mean
