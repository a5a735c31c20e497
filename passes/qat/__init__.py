"""Quantization-aware training of brevitas-quantized models (straight-through estimator, learned scales)."""

from qdeploy.passes.qat.train import qat_train

__all__ = ["qat_train"]
