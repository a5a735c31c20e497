"""Corrections to hls4ml's ONNX layer parsers, installed once per process before a conversion.

- hls4ml 1.3's ``MaxPool``/``AveragePool`` parser reads a 1-D (``N, W, C`` after qonnx's channels-last conversion)
  input as ``N, C, W``: filters and width swapped, and no ``pad_left``/``pad_right``, so a Conv1d network (FINN's
  RadioML VGG10) fails to convert. 2-D pooling keeps hls4ml's own parser.
- Its ``GlobalAveragePool``/``GlobalMaxPool`` parser reads the shape as ``N, C, H, W`` while computing channels-last;
  qdeploy hands it channels-last ops (``ImageOpsChannelsLast``), read here as ``N, H, W, C``.
- Its ``Resize`` parser takes height from axis 2 and width from axis 1 and scales width by ``scales[1]``: right only
  for square images and equal scales; ONNX's empty ``roi`` input also stops hls4ml's shape lookup ("Could not find
  the shape for input"). qdeploy hands hls4ml a Resize whose scales are an attribute (``hls4ml_graph``), read here.
- A ``Transpose`` of a tensor with one axis longer than 1 (after a global pooling) is hls4ml's identity transpose.
- ``DepthToSpace`` has no hls4ml layer: qdeploy's own (``depth_to_space.py``) parses it.
"""

from __future__ import annotations

import numpy as np

_installed: set[str] = set()


def _ceil_mode_as_end_padding(node, layer: dict, input_shapes) -> None:
    """A ``ceil_mode`` pooling as floor-mode pooling with the end padding that gives ONNX's output size (hls4ml reads
    no ceil_mode). Exact for MaxPool where hls4ml pads with the type's most negative value (io_parallel, signed
    types: ``explicit_max_pool_padding`` makes every other padding explicit, and the target refuses the rest)."""
    if not int(_attribute(node, "ceil_mode") or 0):
        return
    kernel = [int(k) for k in _attribute(node, "kernel_shape")]
    strides = [int(s) for s in _attribute(node, "strides") or [1] * len(kernel)]
    pads = [int(p) for p in _attribute(node, "pads") or [0] * (2 * len(kernel))]
    spatial = len(kernel)
    sizes = [int(d) for d in input_shapes[0][1 : 1 + spatial]]  # channels-last: N, spatial..., C
    outs, ends = [], []
    for axis in range(spatial):
        begin, end = pads[axis], pads[axis + spatial]
        count = -(-(sizes[axis] + begin + end - kernel[axis]) // strides[axis]) + 1
        if (count - 1) * strides[axis] >= sizes[axis] + begin:  # ONNX Runtime: no window starts in the end padding
            count -= 1
        outs.append(count)
        ends.append(max(end, (count - 1) * strides[axis] + kernel[axis] - sizes[axis] - begin))
    if spatial == 2:
        layer.update(pad_bottom=ends[0], pad_right=ends[1], out_height=outs[0], out_width=outs[1])
        layer["pads"] = [pads[0], pads[1], ends[0], ends[1]]
    elif spatial == 1:
        layer.update(pad_right=ends[0], n_out=outs[0])
        layer["pads"] = [pads[0], ends[0]]


def _pooling_1d_fixed(original):
    def parse(node, input_names, input_shapes, graph):
        layer = original(node, input_names, input_shapes, graph)
        if len(input_shapes[0]) != 3:
            _ceil_mode_as_end_padding(node, layer, input_shapes)
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
        _ceil_mode_as_end_padding(node, layer, input_shapes)
        return layer

    return parse


CHANNELS_LAST_DOMAIN = "qonnx.custom_op.channels_last"


def _global_pooling_channels_last(original):
    def parse(node, input_names, input_shapes, graph):
        layer = original(node, input_names, input_shapes, graph)
        if node.domain != CHANNELS_LAST_DOMAIN:
            return layer
        shape = [int(d) for d in input_shapes[0]]
        if len(shape) == 4:  # N, H, W, C
            layer.update(in_height=shape[1], in_width=shape[2], n_filt=shape[3])
        elif len(shape) == 3:  # N, W, C
            layer.update(n_in=shape[1], n_filt=shape[2])
        return layer

    return parse


def _attribute(node, name: str):
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return None


def _resize_channels_last(node, input_names, input_shapes, graph):
    """A channels-last nearest Resize whose per-axis integer scales are the ``scales`` attribute (``hls4ml_graph``)."""
    scales = [float(s) for s in (_attribute(node, "scales") or [])]
    shape = [int(d) for d in input_shapes[0]]
    if len(shape) != 4 or len(scales) != 4:
        raise ValueError(f"node {node.name}: hls4ml resizes N, H, W, C images with constant scales")
    height, width, channels = shape[1:]
    return {
        "name": node.name,
        "class_name": "Resize",
        "inputs": input_names[:1],  # the scales are attributes here, not a layer
        "outputs": list(node.output),
        "in_height": height,
        "in_width": width,
        "out_height": int(round(height * scales[1])),
        "out_width": int(round(width * scales[2])),
        "n_chan": channels,
        "algorithm": "nearest",
        "data_format": "channels_last",
    }


def _transpose_of_a_vector(original):
    """The to-channels-first Transpose of an ``N, 1, 1, C`` tensor (after a global pooling, whose output hls4ml holds
    as a vector of C) moves no data: hls4ml gets its identity transpose (``perm = [0]``,
    which it removes), not a permutation of axes its vector does not have."""

    def parse(node, input_names, input_shapes, graph):
        layer = original(node, input_names, input_shapes, graph)
        shape = [int(d) for d in input_shapes[0]] if input_shapes else []
        perm = [int(p) for p in (_attribute(node, "perm") or [])]
        to_channels_first = [0, len(shape) - 1, *range(1, len(shape) - 1)]
        if len(shape) > 2 and all(d == 1 for d in shape[1:-1]) and perm == to_channels_first:
            layer["perm"] = [0]
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
    for op in ("GlobalAveragePool", "GlobalMaxPool"):
        onnx_to_hls.layer_handlers[op] = _global_pooling_channels_last(onnx_to_hls.layer_handlers[op])
    onnx_to_hls.layer_handlers["Resize"] = _resize_channels_last
    onnx_to_hls.layer_handlers["Transpose"] = _transpose_of_a_vector(onnx_to_hls.layer_handlers["Transpose"])
    _installed.add("pooling")
