"""Post-training quantization: range setting, bias correction, GPTQ/GPFQ (brevitas), AdaRound, GPFQ with general
alphabets and L1 sparsity, and ``method="auto"``; ``qdeploy.quantize`` composes them."""

from qdeploy.passes.ptq.adaround import apply_adaround
from qdeploy.passes.ptq.auto import quantize_auto
from qdeploy.passes.ptq.calibrate import calibrate, correct_bias
from qdeploy.passes.ptq.gpfq_alphabet import apply_gpfq_alphabet
from qdeploy.passes.ptq.gpxq import apply_gpxq

__all__ = ["apply_adaround", "apply_gpfq_alphabet", "apply_gpxq", "calibrate", "correct_bias", "quantize_auto"]
