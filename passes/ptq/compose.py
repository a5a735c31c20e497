"""The PTQ composer behind ``qdeploy.quantize``: checks the float model and the calibration data once, then runs
the pipeline the configuration describes (``pipeline.py``) or lets ``method="auto"`` choose one (``auto.py``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from qdeploy.config import Method, QuantizeConfig
from qdeploy.data import check_array
from qdeploy.errors import QDeployError
from qdeploy.passes.ptq.auto import quantize_auto
from qdeploy.passes.ptq.pipeline import run_pipeline


def quantize(
    model: nn.Module,
    calib: np.ndarray,
    config: QuantizeConfig,
    evaluate: Callable[[nn.Module], float] | None = None,
) -> nn.Module:
    """Post-training quantization of ``model`` as ``config`` says, calibrated on ``calib`` (batch first). Returns a
    brevitas-quantized module ready for ``qdeploy.export``; the caller's float model is not modified.
    ``evaluate`` scores method auto's candidates on the caller's labelled data (recorded, never deciding)."""
    calib = check_array(calib, None, "calibration data")
    if len(calib) < 8:
        raise QDeployError(f"calibration data has {len(calib)} samples; give at least 8 (hundreds are better)")
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise QDeployError(f"the float model's {name} contains NaN or Inf; fix or retrain the layer before quantizing")
    if config.method is Method.AUTO:
        return quantize_auto(model, calib, config, evaluate)
    return run_pipeline(model, calib, config)
