"""What runs on the host around the hardware, exactly as the graph computes it (golden executor): the prologue
(graph input -> the input quantizer's levels, which the hardware takes) and the epilogue (float ops after the
last integer tensor: an output scale, BatchNorm on the logits)."""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.ir import keep_nodes, split_float_epilogue

PROLOGUE_FILE = "prologue.onnx"
EPILOGUE_FILE = "epilogue.onnx"

__all__ = ["EPILOGUE_FILE", "PROLOGUE_FILE", "prologue", "split_float_epilogue"]


def prologue(model: ModelWrapper, nodes: list[str], output: str) -> ModelWrapper:
    """The graph from its input to ``output`` (the input quantizer's), made of ``nodes``."""
    return keep_nodes(model, set(nodes), output)
