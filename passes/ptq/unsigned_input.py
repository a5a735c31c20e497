"""An unsigned input quantizer when every calibration input is non-negative.

brevitas quantizes the model input with its *signed* identity quantizer, always: for non-negative data (images in
[0, 1], counts, spectra) half the grid is never used, so a 4-bit input keeps 8 levels and an 8-bit input 128. When
the calibration data has no negative value the input quantizer is made unsigned: twice the levels over the same
range. (A negative input at inference then clips to 0, as any value outside the calibrated range clips;
``QuantizeConfig.unsigned_input=False`` keeps brevitas's signed quantizer.) An input quantizer that brevitas shares
with another branch (a residual add or concat of the input) stays as it is.
"""

from __future__ import annotations

import logging

import numpy as np
from torch import nn

log = logging.getLogger(__name__)


def apply(qmodel: nn.Module, calib: np.ndarray, unsigned_quant: type, force: bool = False) -> tuple[nn.Module, bool]:
    """Replace the quantizer brevitas put on each graph input by one with ``unsigned_quant`` if ``calib`` has no
    negative value (or ``force``: negative inputs will clip to 0); before calibration (the new quantizer collects
    its own range). Returns ``(qmodel, changed)``."""
    import brevitas.nn as qnn

    if not force and not bool(np.all(calib >= 0)):
        log.info("a calibration input is negative: the input quantizer stays signed")
        return qmodel, False
    changed = False
    for node in qmodel.graph.nodes:
        if node.op != "call_module" or not node.args or getattr(node.args[0], "op", None) != "placeholder":
            continue
        quantizer = qmodel.get_submodule(node.target)
        if type(quantizer) is not qnn.QuantIdentity or "." in node.target:
            continue
        if _shared(qmodel, quantizer):
            # brevitas aligned another branch (a residual add, a concat) to this very quantizer: replacing it here
            # would leave the two sides with different scales
            log.info("input quantizer %s is shared with another branch; it stays signed", node.target)
            continue
        setattr(qmodel, node.target, qnn.QuantIdentity(act_quant=unsigned_quant, return_quant_tensor=True))
        if force:  # the caller asked (method auto asks for each candidate): it already told the user
            log.debug("input quantizer %s is unsigned (asked)", node.target)
        else:
            log.info("input quantizer %s is unsigned (no calibration input < 0)", node.target)
        changed = True
    return qmodel, changed


def _shared(qmodel: nn.Module, quantizer: nn.Module) -> bool:
    """Whether ``quantizer`` (or its tensor quantizer) also serves another place in the model."""
    uses = [m for _, m in qmodel.named_modules(remove_duplicate=False) if m is quantizer]
    if len(uses) > 1:
        return True
    core = quantizer.act_quant.fused_activation_quant_proxy.tensor_quant
    for module in qmodel.modules():
        act_quant = getattr(module, "act_quant", None)
        proxy = getattr(act_quant, "fused_activation_quant_proxy", None)
        if module is not quantizer and proxy is not None and proxy.tensor_quant is core:
            return True
    return False
