"""GPTQ and GPFQ (greedy path following, Zhang & Saab) weight rounding, through brevitas's implementations.

brevitas's ``gpfq_mode`` writes unclipped targets back into the weights; with the default runtime-statistics
weight scale the scale then grows and retroactively changes already-quantized columns, and a small model collapses
to chance. So both run only on quantizers whose scale is a parameter frozen from the initial weight statistics
(``freeze_weight_scales`` / ``ScalingImplType.PARAMETER_FROM_STATS``); ``tests/passes/test_ptq.py`` guards it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from qdeploy.errors import QDeployError
from qdeploy.progress import progress


def initialize_frozen_weight_scales(qmodel: nn.Module, sample: np.ndarray) -> None:
    """PARAMETER_FROM_STATS weight scales initialize on the first training-mode forward: run one, without grads."""
    qmodel.train()
    with torch.no_grad():
        qmodel(torch.from_numpy(sample))
    qmodel.eval()
    pending = [name for name, m in qmodel.named_modules() if getattr(m, "init_done", True) is False]
    if pending:
        raise QDeployError(f"weight scales of {pending[0]} did not initialize; the layer may not be reached by the input")


def apply_gpxq(qmodel: nn.Module, calib: np.ndarray, algorithm: str, batch_size: int = 256) -> nn.Module:
    """Run GPTQ or GPFQ layer by layer over ``calib`` (quantized activations upstream, as the methods intend)."""
    from brevitas.graph.gpfq import gpfq_mode
    from brevitas.graph.gptq import gptq_mode

    from qdeploy.passes.ptq.layers import check_enough_rows, quant_layers

    modes = {"gptq": gptq_mode, "gpfq": gpfq_mode}
    if algorithm not in modes:
        raise QDeployError(f"unknown weight-rounding algorithm {algorithm!r}; choose gptq or gpfq")
    # brevitas would run on any number of rows and silently fit the calibration set: refuse, naming the layer
    check_enough_rows(quant_layers(qmodel, calib), qmodel, calib, algorithm.upper())
    batches = [calib[i : i + batch_size] for i in range(0, len(calib), batch_size)]
    qmodel.eval()
    with torch.no_grad(), modes[algorithm](qmodel, use_quant_activations=True) as runner:
        for _ in progress(range(runner.num_layers), desc=algorithm, total=runner.num_layers):
            for batch in batches:
                runner.model(torch.from_numpy(batch))
            runner.update()
    return qmodel
