"""Rewrite grouped and depthwise ``Conv`` nodes as ordinary convolutions with block-diagonal weights.

hls4ml has no correct kernel for most grouped convolutions: a grouped ``Conv`` falls through to the dense kernel and
computes the wrong thing (hls4ml PR #1486 on its Keras front end), its ONNX depthwise conversion exists only for
io_stream with the Latency strategy and a depth multiplier of 1 (hls4ml #859), and groups between 1 and the channel
count have no kernel at all. An ungrouped convolution whose weights are zero outside each output channel's own group
computes the same sums — a zero weight adds an exact zero — so the grouped layer becomes one every backend
implements correctly. The price is the zero weights: they cost no multiplier (a constant zero is optimised away
and qdeploy's report counts only non-zero weights), but a Resource-strategy layer still spends cycles on them.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation

from qdeploy.ir import node_attr
from qdeploy.ops import SCALED_QUANT_OPS


def block_diagonal(weights: np.ndarray, groups: int) -> np.ndarray:
    """ONNX grouped-conv weights [filters, channels / groups, *kernel] -> ungrouped [filters, channels, *kernel]."""
    filters, per_group = weights.shape[:2]
    dense = np.zeros((filters, per_group * groups, *weights.shape[2:]), dtype=weights.dtype)
    filters_per_group = filters // groups
    for group in range(groups):
        rows = slice(group * filters_per_group, (group + 1) * filters_per_group)
        dense[rows, group * per_group : (group + 1) * per_group] = weights[rows]
    return dense


def _stored_weights(model: ModelWrapper, weights: str) -> str | None:
    """The initializer holding a conv's weights: the weights themselves, or the float weights of the quantizer that
    produces them (brevitas's export) when its scale is per tensor or per output channel — a zero weight quantizes
    to an exact zero. None when the layout cannot be changed locally (shared, or computed otherwise)."""
    if len(model.find_consumers(weights) or []) > 1:
        return None  # shared weights: another consumer still needs the grouped layout
    if model.get_initializer(weights) is not None:
        return weights
    quant = model.find_producer(weights)
    if quant is None or quant.op_type not in SCALED_QUANT_OPS or model.get_initializer(quant.input[0]) is None:
        return None
    if len(model.find_consumers(quant.input[0]) or []) > 1:
        return None
    for parameter in quant.input[1:3]:
        value = model.get_initializer(parameter)
        if value is None or (value.size > 1 and (value.ndim < 2 or value.shape[1] != 1)):
            return None  # a per-input-channel scale or zero point would change shape with the weights
    return quant.input[0]


class UngroupConv(Transformation):
    """Conv with ``group > 1`` and constant (or constant quantized) weights -> Conv with ``group = 1`` and
    block-diagonal weights."""

    def apply(self, model: ModelWrapper) -> tuple[ModelWrapper, bool]:
        changed = False
        for node in model.graph.node:
            groups = int(node_attr(node, "group", 1)) if node.op_type == "Conv" else 1
            if groups == 1:
                continue
            stored = _stored_weights(model, node.input[1])
            if stored is None:
                continue  # weights computed at run time: left as they are
            model.set_initializer(stored, block_diagonal(model.get_initializer(stored), groups))
            for attribute in node.attribute:
                if attribute.name == "group":
                    attribute.i = 1
            changed = True
        return model, changed
