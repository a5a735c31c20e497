"""The quantizer brevitas puts behind the last layer gets its own width (``QuantizeConfig.output_bits``, by default
``max(act_bits, 8)``).

``brevitas.graph.quantize`` puts a signed ``act_bits`` quantizer behind the last layer. At 4 bits that leaves 16
logit levels and two classes often tie on the top one (13 % of the digits test images with the digits CNN at
W4A4; ``tests/passes/test_ptq_grid.py``), which costs accuracy: ``benchmarks/results/ptq.md``. The quantizer
stays, so every target still reproduces the golden output exactly (an integer datapath cannot reproduce a
float-scale Gemm's float32 sum; a quantizer's rounding, lowered to thresholds, can), only wider; ``act_bits`` keeps
governing the input and the activations between layers. Only a quantizer that reads a Linear/Conv layer and feeds
the graph output directly is changed; a model ending in pooling, a reshape or an add keeps brevitas's output
quantizer (logged).
"""

from __future__ import annotations

import logging

from torch import nn

log = logging.getLogger(__name__)

#: the output quantizer's default minimum width
OUTPUT_BITS = 8


def apply(qmodel: nn.Module, output_quant: type) -> tuple[nn.Module, bool]:
    """Give every quantizer that brevitas put between a layer and the graph output (``qmodel`` is its traced
    GraphModule) the quantizer class ``output_quant``; before calibration. Returns ``(qmodel, changed)``."""
    import brevitas.nn as qnn
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer

    changed = False
    for node in qmodel.graph.nodes:
        if node.op != "call_module" or "." in node.target:
            continue
        if type(qmodel.get_submodule(node.target)) is not qnn.QuantIdentity:
            continue
        source = node.args[0] if node.args else None
        if getattr(source, "op", None) != "call_module":
            continue
        if not isinstance(qmodel.get_submodule(source.target), QuantWeightBiasInputOutputLayer):
            continue
        if any(user.op != "output" for user in node.users):
            continue
        returns_quant_tensor = qmodel.get_submodule(node.target).return_quant_tensor  # (False: one plain output)
        setattr(qmodel, node.target, qnn.QuantIdentity(act_quant=output_quant, return_quant_tensor=returns_quant_tensor))
        log.debug("output quantizer %s: %s", node.target, output_quant.__name__)  # an internal detail: the README says it
        changed = True
    if not changed:
        log.info("no quantizer reads a layer and feeds the output directly: the output quantizer keeps act_bits")
    return qmodel, changed
