"""The shared training loop (QAT and binarisation): a run resumed at an epoch equals the uninterrupted run, the
regularizer is part of the loss, and a non-finite loss stops training naming the stage."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from qdeploy.errors import QDeployError
from qdeploy.passes.train import run_epochs


def _problem():
    torch.manual_seed(0)
    x, y = torch.randn(100, 6), torch.randint(0, 3, (100,))
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), x, y


def _trainer(model: nn.Module, total_steps: int):
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / total_steps)))
    return optimizer, schedule


def test_a_run_resumed_at_an_epoch_equals_the_uninterrupted_run():
    model, x, y = _problem()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer, schedule = _trainer(model, total_steps=3 * 4)
    straight = [loss for _, loss in run_epochs(model, x, y, optimizer, schedule, 3, 32, seed=1, label="t")]

    interrupted, _, _ = _problem()
    interrupted.load_state_dict(start)
    optimizer, schedule = _trainer(interrupted, total_steps=3 * 4)
    first = [loss for _, loss in itertools.islice(run_epochs(interrupted, x, y, optimizer, schedule, 3, 32, 1, "t"), 2)]
    saved = (interrupted.state_dict(), optimizer.state_dict(), schedule.state_dict())

    resumed, _, _ = _problem()
    resumed.load_state_dict(saved[0])
    optimizer, schedule = _trainer(resumed, total_steps=3 * 4)
    optimizer.load_state_dict(saved[1])
    schedule.load_state_dict(saved[2])
    rest = [loss for _, loss in run_epochs(resumed, x, y, optimizer, schedule, 3, 32, 1, "t", start_epoch=2)]
    assert first + rest == straight
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_the_regularizer_is_added_to_every_batch_loss():
    losses = []
    for regularizer in (None, lambda: torch.tensor(5.0)):
        model, x, y = _problem()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # no update: both runs see the same model
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        losses.append(next(run_epochs(model, x, y, optimizer, schedule, 1, 32, 0, "t", regularizer=regularizer))[1])
    assert losses[1] == pytest.approx(losses[0] + 5.0)


def test_a_non_finite_loss_stops_training_naming_the_stage():
    model, x, y = _problem()
    optimizer, schedule = _trainer(model, total_steps=4)
    with pytest.raises(QDeployError, match=r"BiPer stage 1: loss became nan in epoch 1"):
        list(
            run_epochs(
                model, x, y, optimizer, schedule, 1, 32, 0, "BiPer stage 1", regularizer=lambda: torch.tensor(math.nan)
            )
        )
