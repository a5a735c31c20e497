"""``method="auto"``: pick a PTQ pipeline for the bit widths asked, by trying a few candidates.

The candidates depend on the weight/activation bit widths (plain rounding is enough at 8 bits; learned or greedy
rounding matters at 4 bits and below; MSE activation ranges at 4-bit activations), and include brevitas's default
range setting and granularity (per-tensor weights, 99.999th-percentile activation ranges) at 4 bits and above, on
qdeploy's graph (``qdeploy.quantize``'s input, Flatten and output handling). Each candidate is fitted on 75 % of
the calibration data and scored on the other 25 %
against the float model itself: the mean KL divergence from the float model's softmax outputs (output mean-squared
error for models that are not classifiers). The winner is then fitted again on all the calibration data, as every
other method is. No labels are needed and the test data are never seen. Power-of-two scales are respected when
asked (``scale="po2"``); with ``scale="float"`` both kinds compete.
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
from qdeploy.passes.ptq.pipeline import run_pipeline, torch_forward
from qdeploy.progress import progress

log = logging.getLogger(__name__)

#: options auto chooses itself; giving them together with method="auto" is a contradiction, refused
PIPELINE_FIELDS = ("calibration", "percentile", "equalize", "bias_correction", "rounding", "gpfq_alphabet", "gpfq_sparsity")
#: a candidate is an ordinary pipeline: not auto, and without auto's own option
CUSTOM: dict[str, Any] = {"method": "custom", "auto_objective": "kl"}
#: what ``brevitas.graph.quantize`` + ``calibration_mode`` give by default: one weight scale per tensor, activation
#: ranges at the 99.999th percentile
BREVITAS_DEFAULTS: dict[str, Any] = {"per_channel": False, "calibration": "percentile", "percentile": 99.999}


def candidates(weight_bits: int, act_bits: int, scale: ScaleKind) -> list[dict[str, Any]]:
    """Candidate pipelines (QuantizeConfig overrides) for these bit widths."""
    # AdaRound is not a candidate: on CPU it takes ~3x as long as GPTQ and was not better than GPTQ/GPFQ beyond one
    # test image in benchmarks/results/ptq.md
    if weight_bits >= 6:
        base = [{}, {"bias_correction": True}, {"rounding": "gptq"}]
    elif weight_bits >= 4:
        base = [{"bias_correction": True}, {"rounding": "gptq"}, {"rounding": "gpfq"}]
    else:
        base = [{"rounding": "gptq"}, {"rounding": "gpfq"}, {"equalize": True, "rounding": "gptq"}]
    if weight_bits == 2:  # the per-channel ternary step often fits 2-bit weights better than the 4-level grid
        base.append({"rounding": "gpfq", "gpfq_alphabet": "ternary"})
    if act_bits <= 5:  # coarse activation grids: MSE-optimal or percentile ranges usually beat min-max
        base += [{**options, "calibration": "mse"} for options in base if options.get("rounding") != "gpfq"]
        base += [{"bias_correction": True, "calibration": "percentile"}]
    if weight_bits >= 4:  # below 4 bits per-tensor weights collapse (benchmarks/results/ptq.md)
        base.append(dict(BREVITAS_DEFAULTS))
    scales = ("po2",) if scale is ScaleKind.PO2 else ("po2", "float")
    return [{**options, "scale": kind} for kind in scales for options in base]


def _score(reference: np.ndarray, output: np.ndarray, objective: str = "kl") -> dict[str, float]:
    """Distance from the float model on held-out samples: ``loss`` (lower is better) is, with ``objective='kl'``,
    the mean KL divergence between softmax outputs (for classifiers' logits: smoother than top-1 agreement, which
    ties on a few hundred samples), with ``'mse'`` the output MSE (regression: KL would ignore a constant shift of
    the outputs); ``agreement`` (top-1 with the float model, classifiers) is reported alongside."""
    mse = float(np.mean((output - reference) ** 2))
    if reference.ndim != 2 or reference.shape[1] < 2:
        return {"loss": mse, "agreement": float("nan"), "mse": mse}
    agreement = float(np.mean(output.argmax(1) == reference.argmax(1)))
    if objective == "mse":
        return {"loss": mse, "agreement": agreement, "mse": mse}
    log_p = torch.log_softmax(torch.from_numpy(reference).double(), 1)
    log_q = torch.log_softmax(torch.from_numpy(output).double(), 1)
    kl = float((log_p.exp() * (log_p - log_q)).sum(1).mean())
    return {"loss": kl, "agreement": agreement, "mse": mse}


def quantize_auto(
    model: nn.Module,
    calib: np.ndarray,
    config: QuantizeConfig,
    evaluate: Callable[[nn.Module], float] | None = None,
) -> nn.Module:
    """Fit every candidate on part of ``calib``, choose the one closest to the float model on the rest, and fit
    the chosen pipeline again on all of ``calib``.

    The returned module carries ``qdeploy_pipeline`` (the chosen options) and ``qdeploy_auto_scores`` (every
    candidate's held-out loss, agreement, MSE and seconds). ``evaluate`` (optional) scores each fitted candidate on
    the caller's labelled data (``--eval``); its value is recorded as the candidate's ``eval`` and never chooses.
    """
    defaults = QuantizeConfig()
    given = [f for f in PIPELINE_FIELDS if getattr(config, f) != getattr(defaults, f)]
    if given:
        raise QDeployError(f"method='auto' chooses {', '.join(given)} itself; drop those options or use method='custom'")
    if len(calib) < 128:
        raise QDeployError(
            f"method='auto' needs at least 128 calibration samples (it holds out a quarter), got {len(calib)}"
        )
    if config.unsigned_input is None:  # decided once, on all of calib: the candidates and the final fit agree
        config = dataclasses.replace(config, unsigned_input=bool(np.all(calib >= 0)))
        log.info(
            "auto: the input quantizer is %s for every candidate",
            "unsigned (no calibration input < 0)" if config.unsigned_input else "signed (a calibration input is negative)",
        )
    order = np.random.default_rng(config.seed).permutation(len(calib))
    split = len(calib) * 3 // 4
    fit, held_out = calib[np.sort(order[:split])], calib[np.sort(order[split:])]
    with torch.no_grad():
        reference = model.eval()(torch.from_numpy(held_out)).numpy()
    best: tuple[float, dict[str, Any]] | None = None
    scores = []
    failure: QDeployError | None = None
    seen: set[tuple] = set()
    pipelines = candidates(config.weight_bits, config.act_bits, config.scale)
    for options in progress(pipelines, desc="auto: candidates", total=len(pipelines)):
        candidate_config = dataclasses.replace(config, **CUSTOM, **options)
        key = tuple(getattr(candidate_config, f) for f in (*PIPELINE_FIELDS, "per_channel", "scale"))
        if key in seen:  # e.g. brevitas's defaults when the caller already asked for per-tensor weights
            continue
        seen.add(key)
        start = time.perf_counter()
        try:
            qmodel = run_pipeline(model, fit, candidate_config)
        except QDeployError as exc:  # e.g. a layer GPFQ cannot handle: the other candidates still compete
            log.debug("auto: candidate %s skipped: %s", options, exc)
            failure = exc
            continue
        score = _score(reference, torch_forward(qmodel, held_out), config.auto_objective)
        scores.append({**options, **score, "seconds": time.perf_counter() - start})
        if evaluate is not None:
            scores[-1]["eval"] = evaluate(qmodel)
        log.debug("auto: %s -> held-out loss %.4g, agreement %.4f", options, score["loss"], score["agreement"])
        if best is None or score["loss"] < best[0]:
            best = (score["loss"], options)
    if best is None:
        raise failure or QDeployError("method='auto' found no candidate pipeline for these bit widths")
    options = best[1]
    log.info("auto chose %s; fitting it on all %d calibration samples", options, len(calib))
    qmodel = run_pipeline(model, calib, dataclasses.replace(config, **CUSTOM, **options))
    qmodel.qdeploy_pipeline = dict(options)
    qmodel.qdeploy_auto_scores = scores
    return qmodel
