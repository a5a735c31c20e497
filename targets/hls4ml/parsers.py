"""Corrections to hls4ml's ONNX layer parsers, installed once per process before a conversion.

hls4ml 1.3's ``MaxPool``/``AveragePool`` parser reads a 1-D (``N, W, C`` after qonnx's channels-last conversion)
input as ``N, C, W``: filters and width swapped, and no ``pad_left``/``pad_right``, so a Conv1d network (FINN's
RadioML VGG10) fails to convert. 2-D pooling keeps hls4ml's own parser.
"""

from __future__ import annotations

import numpy as np

_installed: set[str] = set()


def _pooling_1d_fixed(original):
    def parse(node, input_names, input_shapes, graph):
        layer = original(node, input_names, input_shapes, graph)
        if len(input_shapes[0]) != 3:
            return layer
        pads = list(layer.get("pads") or [0, 0])
        dilation = int((layer.get("dilations") or [1])[0])
        width, channels = int(input_shapes[0][1]), int(input_shapes[0][2])  # channels-last: N, W, C
        kernel, stride = int(layer["pool_width"]), int(layer["stride_width"])
        layer.update(
            n_in=width,
            n_filt=channels,
            pad_left=int(pads[0]),
            pad_right=int(pads[1]) if len(pads) > 1 else int(pads[0]),
            n_out=int(np.floor((width + sum(pads[:2]) - ((kernel - 1) * dilation + 1)) / stride + 1)),
        )
        return layer

    return parse


def install() -> None:
    """Replace the parsers above in hls4ml's ONNX handler table (idempotent)."""
    if "pooling" in _installed:
        return
    import importlib

    onnx_to_hls = importlib.import_module("hls4ml.converters.onnx_to_hls")  # the module, not its function

    for op in ("MaxPool", "AveragePool"):
        onnx_to_hls.layer_handlers[op] = _pooling_1d_fixed(onnx_to_hls.layer_handlers[op])
    _installed.add("pooling")
