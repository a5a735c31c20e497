"""Optimizers: AdamW with 4-bit states (Li, Chen, Zhu, NeurIPS 2023)."""

from qdeploy.passes.optim.adamw4bit import AdamW4bit

__all__ = ["AdamW4bit"]
