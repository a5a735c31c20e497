"""Activation range calibration: brevitas's ``calibration_mode`` over the calibration data, with a progress bar."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from qdeploy.progress import progress


def calibrate(qmodel: nn.Module, calib: np.ndarray, batch_size: int = 256) -> nn.Module:
    """Collect activation statistics on ``calib`` and freeze them into the quantizers' scales."""
    from brevitas.graph.calibrate import calibration_mode

    from qdeploy.passes.ptq.layers import check_weights_quantized

    check_weights_quantized(qmodel)  # every pipeline calibrates first: the one place that sees all of them
    qmodel.eval()
    batches = [calib[i : i + batch_size] for i in range(0, len(calib), batch_size)]
    with torch.no_grad(), calibration_mode(qmodel):
        for batch in progress(batches, desc="calibrating", total=len(batches)):
            qmodel(torch.from_numpy(batch))
    qmodel.eval()
    return qmodel


def correct_bias(qmodel: nn.Module, calib: np.ndarray, batch_size: int = 256) -> nn.Module:
    """Empirical bias correction: shift each layer's bias by the mean output error (float vs quantized) it
    shows on ``calib`` (Nagel et al., "A White Paper on Neural Network Quantization", 4.2)."""
    from brevitas.graph.calibrate import bias_correction_mode

    qmodel.eval()
    batches = [calib[i : i + batch_size] for i in range(0, len(calib), batch_size)]
    with torch.no_grad(), bias_correction_mode(qmodel):
        for batch in progress(batches, desc="bias correction", total=len(batches)):
            qmodel(torch.from_numpy(batch))
    return qmodel
