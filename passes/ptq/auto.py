"""``method="auto"``: pick a PTQ pipeline for the bit widths asked, by trying a few candidates.

The candidates depend on the weight/activation bit widths (plain rounding is enough at 8 bits; learned or greedy
rounding matters at 4 bits and below; MSE activation ranges at 4-bit activations). Each is fitted on 75 % of the
calibration data and scored on the other 25 % against the float model itself: top-1 agreement with the float
model's outputs first, then output mean-squared error. No labels are needed and the test data are never seen.
Power-of-two scales are respected when asked (``scale="po2"``); with ``scale="float"`` both kinds compete.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from qdeploy.config import QuantizeConfig, ScaleKind
from qdeploy.errors import QDeployError

log = logging.getLogger(__name__)

#: options auto chooses itself; giving them together with method="auto" is a contradiction, refused
PIPELINE_FIELDS = ("calibration", "percentile", "equalize", "bias_correction", "rounding", "gpfq_alphabet", "gpfq_sparsity")


def candidates(weight_bits: int, act_bits: int, scale: ScaleKind) -> list[dict[str, Any]]:
    """Candidate pipelines (QuantizeConfig overrides) for these bit widths."""
    # AdaRound is not a candidate: on CPU it costs 10-50x a GPTQ pass and did not beat GPTQ/GPFQ in
    # benchmarks/results/ptq.md
    if weight_bits >= 6:
        base = [{}, {"bias_correction": True}, {"rounding": "gptq"}]
    elif weight_bits >= 4:
        base = [{"bias_correction": True}, {"rounding": "gptq"}, {"rounding": "gpfq"}]
    else:
        base = [{"rounding": "gptq"}, {"rounding": "gpfq"}, {"equalize": True, "rounding": "gptq"}]
    if act_bits <= 5:  # coarse activation grids: MSE-optimal or percentile ranges usually beat min-max
        base += [{**options, "calibration": "mse"} for options in base if options.get("rounding") != "gpfq"]
        base += [{"bias_correction": True, "calibration": "percentile"}]
    scales = ("po2",) if scale is ScaleKind.PO2 else ("po2", "float")
    return [{**options, "scale": kind} for kind in scales for options in base]


def _score(reference: np.ndarray, output: np.ndarray) -> tuple[float, float]:
    """(agreement with the float model's top-1, -output MSE); higher is better."""
    mse = float(np.mean((output - reference) ** 2))
    if reference.ndim == 2 and reference.shape[1] > 1:
        return float(np.mean(output.argmax(1) == reference.argmax(1))), -mse
    return 0.0, -mse


def quantize_auto(
    model: nn.Module,
    calib: np.ndarray,
    config: QuantizeConfig,
    quantize_fn: Callable[[nn.Module, np.ndarray, QuantizeConfig], nn.Module],
    forward: Callable[[nn.Module, np.ndarray], np.ndarray],
) -> nn.Module:
    """Fit every candidate on part of ``calib``, keep the one closest to the float model on the rest.

    The chosen module carries ``qdeploy_pipeline`` (its options) and ``qdeploy_auto_scores`` (every candidate's
    held-out agreement, MSE and seconds).
    """
    defaults = QuantizeConfig()
    given = [f for f in PIPELINE_FIELDS if getattr(config, f) != getattr(defaults, f)]
    if given:
        raise QDeployError(f"method='auto' chooses {', '.join(given)} itself; drop those options or use method='custom'")
    if len(calib) < 128:
        raise QDeployError(
            f"method='auto' needs at least 128 calibration samples (it holds out a quarter), got {len(calib)}"
        )
    order = np.random.default_rng(config.seed).permutation(len(calib))
    split = len(calib) * 3 // 4
    fit, held_out = calib[np.sort(order[:split])], calib[np.sort(order[split:])]
    with torch.no_grad():
        reference = model.eval()(torch.from_numpy(held_out)).numpy()
    best: tuple[tuple[float, float], nn.Module, dict[str, Any]] | None = None
    scores = []
    failure: QDeployError | None = None
    for options in candidates(config.weight_bits, config.act_bits, config.scale):
        start = time.perf_counter()
        candidate_config = dataclasses.replace(config, method="custom", **options)
        try:
            qmodel = quantize_fn(model, fit, candidate_config)
        except QDeployError as exc:  # e.g. a layer GPFQ cannot handle: the other candidates still compete
            log.info("auto: candidate %s skipped: %s", options, exc)
            failure = exc
            continue
        score = _score(reference, forward(qmodel, held_out))
        scores.append({**options, "agreement": score[0], "mse": -score[1], "seconds": time.perf_counter() - start})
        log.info("auto: %s -> agreement %.4f, mse %.4g", options, score[0], -score[1])
        if best is None or score > best[0]:
            best = (score, qmodel, options)
    if best is None:
        raise failure or QDeployError("method='auto' found no candidate pipeline for these bit widths")
    _, qmodel, options = best
    log.info("auto chose %s", options)
    qmodel.qdeploy_pipeline = dict(options)
    qmodel.qdeploy_auto_scores = scores
    return qmodel
