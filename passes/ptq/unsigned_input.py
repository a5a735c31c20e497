"""An unsigned input quantizer when every calibration input is non-negative.

brevitas quantizes the model input with its *signed* identity quantizer, always: for non-negative data (images in
[0, 1], counts, spectra) half the grid is never used, so a 4-bit input keeps 8 levels and an 8-bit input 128. When
the calibration data has no negative value the input quantizer is made unsigned: twice the levels over the same
range. (A negative input at inference then clips to 0, as any value outside the calibrated range clips.)
"""

from __future__ import annotations

import logging

import numpy as np
from torch import nn

log = logging.getLogger(__name__)


def apply(qmodel: nn.Module, calib: np.ndarray, unsigned_quant: type) -> tuple[nn.Module, bool]:
    """Replace the quantizer brevitas put on each graph input by one with ``unsigned_quant`` if ``calib`` has no
    negative value; before calibration (the new quantizer collects its own range). Returns ``(qmodel, changed)``."""
    import brevitas.nn as qnn

    if not bool(np.all(calib >= 0)):
        return qmodel, False
    changed = False
    for node in qmodel.graph.nodes:
        if node.op != "call_module" or not node.args or getattr(node.args[0], "op", None) != "placeholder":
            continue
        if type(qmodel.get_submodule(node.target)) is not qnn.QuantIdentity or "." in node.target:
            continue
        setattr(qmodel, node.target, qnn.QuantIdentity(act_quant=unsigned_quant, return_quant_tensor=True))
        log.info("input quantizer %s is unsigned: no calibration input is negative", node.target)
        changed = True
    return qmodel, changed
