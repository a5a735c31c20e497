"""Post-training quantization (torch-module stages): range setting, bias correction, GPTQ/GPFQ (brevitas), AdaRound,
GPFQ with general alphabets and L1 sparsity, and ``method="auto"``. ``compose.quantize`` composes them (brevitas's
graph quantization + qdeploy's graph fixes + these stages); ``qdeploy.quantize`` is its API entry."""

from qdeploy.passes.ptq.adaround import apply_adaround
from qdeploy.passes.ptq.auto import quantize_auto
from qdeploy.passes.ptq.calibrate import calibrate, correct_bias
from qdeploy.passes.ptq.compose import quantize
from qdeploy.passes.ptq.gpfq_alphabet import apply_gpfq_alphabet
from qdeploy.passes.ptq.gpxq import apply_gpxq
from qdeploy.passes.ptq.pipeline import run_pipeline, torch_forward

__all__ = [
    "apply_adaround",
    "apply_gpfq_alphabet",
    "apply_gpxq",
    "calibrate",
    "correct_bias",
    "quantize",
    "quantize_auto",
    "run_pipeline",
    "torch_forward",
]
