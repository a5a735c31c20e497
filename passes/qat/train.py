"""QAT: fine-tune a brevitas-quantized module (from ``qdeploy.quantize``) on labelled data.

Gradients pass the rounding with brevitas's straight-through estimator; scales that are parameters (activation
scales after calibration, weight scales with ``trainable_scales``) are learned, LSQ-style, in the power-of-two
(log2) domain when scales are po2, so the result still lowers exactly to fixed point. BatchNorm was folded into
the weights when the model was quantized. Checkpoints are written to a temporary file, then renamed.

Fine-tuning from a PTQ initialization must not end below its starting point, so a share of the training data
(``val_fraction``, never the test set) is held out: the model is scored on it before training and after every
epoch, and the best of these states is the result. The learning rate follows a cosine decay to zero (QAT
fine-tuning, e.g. LSQ), scales have their own learning rate, and weight decay applies to weights only: decaying a
log2-domain scale would pull it towards 1.0, not towards 0.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from qdeploy.config import QATOptimizer
from qdeploy.errors import QDeployError
from qdeploy.passes.train import logits, run_epochs
from qdeploy.staging import staged_file

log = logging.getLogger(__name__)


def _save_checkpoint(path: Path, payload: dict) -> None:
    with staged_file(path) as tmp:
        torch.save(payload, tmp)


def _accuracy(qmodel: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    qmodel.eval()
    with torch.no_grad():
        correct = sum(
            int((logits(qmodel, inputs[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
            for i in range(0, len(inputs), batch_size)
        )
    return correct / len(inputs)


def _parameter_groups(qmodel: nn.Module, lr: float, scale_lr: float, weight_decay: float) -> list[dict]:
    """Weights (decayed), biases and quantizer scales (not decayed; scales at ``scale_lr``)."""
    # brevitas's learned (log2-domain when po2) scales live in its quantizer modules (brevitas.core): found by
    # owner, not by attribute name, so a renamed attribute cannot slip into the decayed weights
    quantizer = {
        id(p) for m in qmodel.modules() if type(m).__module__.startswith("brevitas.core") for p in m.parameters(False)
    }
    weights, biases, scales = [], [], []
    for parameter in qmodel.parameters():
        if not parameter.requires_grad:
            continue
        if id(parameter) in quantizer:
            scales.append(parameter)
        elif parameter.dim() <= 1:
            biases.append(parameter)
        else:
            weights.append(parameter)
    groups = [
        {"params": weights, "lr": lr, "weight_decay": weight_decay},
        {"params": biases, "lr": lr, "weight_decay": 0.0},
        {"params": scales, "lr": scale_lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def _split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


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
    val_fraction: float = 0.1,
    scale_lr: float | None = None,
    weight_decay: float = 1e-2,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    schedule: str = "cosine",
    history: dict | None = None,
) -> tuple[nn.Module, list[float]]:
    """Train ``qmodel`` with cross-entropy on (x, y); returns the model and the mean loss of every epoch.

    ``optimizer``: 'adamw' (torch) or 'adamw4bit' (qdeploy's 4-bit-state AdamW). ``val_fraction`` of (x, y) is
    held out (0 trains on everything and keeps the last epoch), unless ``validation`` = (x_val, y_val) gives the
    held-out data itself (best not seen by the float model either); the returned model is the state with the best
    held-out accuracy among the starting point and every epoch (ties keep the earlier state). ``scale_lr``: learning
    rate of the quantizer scales (default ``lr``; 0 freezes them). ``schedule``: 'cosine' decay to 0 over ``epochs``
    or 'constant'. With ``checkpoint`` the state is saved after each epoch; ``resume`` continues from it (the
    continued run equals an uninterrupted one; a checkpoint written with other options or data sizes is refused).
    ``history``, when given, is filled with 'loss', 'val_accuracy' (index 0: before training) and 'best_epoch'.
    """
    if len(x) != len(y):
        raise QDeployError(f"QAT data: {len(x)} inputs but {len(y)} labels")
    if epochs < 1:
        raise QDeployError(f"epochs={epochs} must be >= 1")
    if optimizer not in tuple(QATOptimizer):
        raise QDeployError(f"optimizer {optimizer!r} must be one of {', '.join(QATOptimizer)}")
    if schedule not in ("cosine", "constant"):
        raise QDeployError(f"schedule {schedule!r} must be 'cosine' or 'constant'")
    if not 0.0 <= val_fraction < 1.0:
        raise QDeployError(f"val_fraction={val_fraction} must lie in [0, 1)")
    if lr <= 0 or (scale_lr is not None and scale_lr < 0):
        raise QDeployError(f"lr={lr}, scale_lr={scale_lr}: lr must be > 0 and scale_lr >= 0")
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = torch.from_numpy(np.asarray(y)).long()
    if validation is not None:
        if len(validation[0]) != len(validation[1]) or len(validation[0]) < 10:
            raise QDeployError(
                f"QAT validation data: {len(validation[0])} inputs and {len(validation[1])} labels; give >= 10 pairs"
            )
        train_x, train_y = inputs, labels
        val_x = torch.from_numpy(np.ascontiguousarray(validation[0], dtype=np.float32))
        val_y = torch.from_numpy(np.asarray(validation[1])).long()
    else:
        train_idx, val_idx = _split(len(x), val_fraction, seed)
        if val_fraction > 0 and len(val_idx) < 10:
            raise QDeployError(f"val_fraction={val_fraction} holds out {len(val_idx)} of {len(x)} samples; give more data")
        train_x, train_y, val_x, val_y = inputs[train_idx], labels[train_idx], inputs[val_idx], labels[val_idx]

    held_out = len(val_x) > 0
    # What a resumed run must repeat to continue the same run (the schedule, batch order and held-out split
    # depend on them): stored in every checkpoint, compared on resume.
    run = {
        "optimizer": optimizer,
        "epochs": epochs,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "scale_lr": scale_lr,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "train_samples": len(train_x),
        "held_out_samples": len(val_x),
    }
    start_epoch, losses, val_accuracies, state = 0, [], [], None
    best_epoch, best_state = 0, None
    if resume:
        if checkpoint is None or not checkpoint.exists():
            raise QDeployError(f"cannot resume: checkpoint {checkpoint} does not exist")
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise QDeployError(f"checkpoint {checkpoint} could not be loaded: {type(exc).__name__}: {exc}") from exc
        saved = state.get("run") if isinstance(state, dict) else None
        if not isinstance(saved, dict):
            raise QDeployError(f"checkpoint {checkpoint} is not a qdeploy QAT checkpoint (no run options in it)")
        changed = {key: (saved.get(key), value) for key, value in run.items() if saved.get(key) != value}
        if changed:
            details = ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items())
            raise QDeployError(
                f"cannot resume from {checkpoint}: it was written by a run with other options ({details}); resume "
                "with the same options and data, or start a new checkpoint"
            )
        try:
            # brevitas re-creates some scale parameters when loading: load the model before building the optimizer
            qmodel.load_state_dict(state["model"])
        except Exception as exc:
            raise QDeployError(f"checkpoint {checkpoint} could not be loaded: {type(exc).__name__}: {exc}") from exc
        start_epoch, losses = int(state["epoch"]), list(state["losses"])
        val_accuracies, best_epoch = list(state.get("val_accuracy", [])), int(state.get("best_epoch", start_epoch))
        best_state = state.get("best_model")
    elif held_out:
        val_accuracies.append(_accuracy(qmodel, val_x, val_y))
        best_state = copy.deepcopy(qmodel.state_dict())
        log.info("QAT start: held-out accuracy %.4f", val_accuracies[0])

    groups = _parameter_groups(qmodel, lr, lr if scale_lr is None else scale_lr, weight_decay)
    if optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(groups)
    else:
        from qdeploy.passes.optim import AdamW4bit

        opt = AdamW4bit(groups)
    steps_per_epoch = math.ceil(len(train_x) / batch_size)
    total_steps = epochs * steps_per_epoch

    def decay(step: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * step / total_steps)) if schedule == "cosine" else 1.0

    if state is not None:
        opt.load_state_dict(state["optimizer"])  # with each group's 'initial_lr', the rate the schedule decays from
        if any("initial_lr" not in group for group in opt.param_groups):
            raise QDeployError(f"checkpoint {checkpoint} was written by an older qdeploy; start a new checkpoint")
    # the decay is a function of the step alone, so a resumed schedule continues where the checkpoint left off
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(opt, decay, last_epoch=start_epoch * steps_per_epoch - 1)

    for epoch, loss in run_epochs(
        qmodel, train_x, train_y, opt, lr_schedule, epochs, batch_size, seed, "QAT", start_epoch=start_epoch
    ):
        losses.append(loss)
        if held_out:
            val_accuracies.append(_accuracy(qmodel, val_x, val_y))
            if val_accuracies[-1] > val_accuracies[best_epoch]:
                best_epoch, best_state = epoch + 1, copy.deepcopy(qmodel.state_dict())
            log.info("QAT epoch %d/%d: held-out accuracy %.4f", epoch + 1, epochs, val_accuracies[-1])
        else:
            best_epoch = epoch + 1
        if checkpoint is not None:
            payload = {
                "model": qmodel.state_dict(),
                "optimizer": opt.state_dict(),
                "epoch": epoch + 1,
                "losses": losses,
                "val_accuracy": val_accuracies,
                "best_epoch": best_epoch,
                "run": run,
            }
            if best_state is not None:
                payload["best_model"] = best_state
            _save_checkpoint(checkpoint, payload)
    if best_state is not None and best_epoch != epochs:
        log.info("QAT: keeping the state after epoch %d (held-out accuracy %.4f)", best_epoch, val_accuracies[best_epoch])
        qmodel.load_state_dict(best_state)
    if history is not None:
        history.update({"loss": losses, "val_accuracy": val_accuracies, "best_epoch": best_epoch})
    qmodel.eval()
    return qmodel, losses
