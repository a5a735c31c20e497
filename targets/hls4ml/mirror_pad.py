"""ONNX ``Pad`` in ``edge``, ``reflect`` and ``wrap`` mode (PyTorch's replicate, reflect and circular padding) as an
hls4ml layer, through hls4ml's extension API.

hls4ml pads with zeros only (``ZeroPadding``). These modes only copy input pixels into the border: each output pixel
(i, j) reads input pixel (map(i - top, H), map(j - left, W)), ``map`` clamping (edge), mirroring without repeating
the edge (reflect) or wrapping around (wrap), as ONNX Runtime does. The output type is the input type; the C++ is
``templates/nnet_mirror_pad*.h`` for io_parallel and io_stream. qdeploy hands it the Pad channels-last
(``MoveTransposeAcrossPad``).
"""

from __future__ import annotations

from qdeploy.errors import UnsupportedModelError
from qdeploy.targets.hls4ml.custom_layer import CustomLayer

CLASS_NAME = "MirrorPad"
#: ONNX mode -> the C++ ``mode`` constant
MODES = {"edge": 0, "reflect": 1, "wrap": 2}

_CONFIG_TEMPLATE = """struct config{index} : nnet::mirror_pad_config {{
    static const unsigned in_height = {in_height};
    static const unsigned in_width = {in_width};
    static const unsigned n_chan = {n_chan};
    static const unsigned out_height = {out_height};
    static const unsigned out_width = {out_width};
    static const int pad_top = {pad_top};
    static const int pad_left = {pad_left};
    static const int mode = {mode};
}};\n"""
_FUNCTION_TEMPLATE = "nnet::mirror_pad<{input_t}, {output_t}, {config}>({input}, {output});"


def _layer_class():
    from hls4ml.model.attributes import Attribute
    from hls4ml.model.layers import Layer

    class MirrorPad(Layer):
        _expected_attributes = [
            Attribute("in_height"),
            Attribute("in_width"),
            Attribute("n_chan"),
            Attribute("out_height"),
            Attribute("out_width"),
            Attribute("pad_top"),
            Attribute("pad_left"),
            Attribute("mode"),
            Attribute("rank"),
        ]

        def initialize(self):
            shape = [self.get_attr("out_width"), self.get_attr("n_chan")]
            if self.get_attr("rank") == 4:
                shape.insert(0, self.get_attr("out_height"))
            self.add_output_variable(shape, precision=self.get_input_variable().type.precision)

    return MirrorPad


def pad_mode(node) -> str:
    from onnx import helper

    for attribute in node.attribute:
        if attribute.name == "mode":
            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else str(value)
    return "constant"


def pads_as_attribute(model, node) -> None:
    """An edge/reflect/wrap Pad's constant pads as its ``pads`` attribute, and no constant inputs: hls4ml makes every
    initializer a layer, and one that feeds no hls4ml layer breaks its passes (``thresholds_as_attributes``)."""
    from onnx import helper

    pads = model.get_initializer(node.input[1]) if pad_mode(node) in MODES and len(node.input) > 1 else None
    if pads is None:
        return
    node.attribute.append(helper.make_attribute("pads", [int(p) for p in pads.ravel()]))
    names = [name for name in node.input[1:] if name]
    del node.input[1:]
    for name in names:
        if not model.find_consumers(name):
            model.del_initializer(name)


def _parse_onnx(node, input_names, input_shapes, graph):
    from onnx import helper, numpy_helper

    initializers = {i.name: i for i in graph.initializer}
    mode = pad_mode(node)
    shape = [int(d) for d in input_shapes[0]]
    attribute = next((a for a in node.attribute if a.name == "pads"), None)
    if attribute is not None:
        pads = [int(p) for p in helper.get_attribute_value(attribute)]
    elif len(node.input) > 1 and node.input[1] in initializers:
        pads = numpy_helper.to_array(initializers[node.input[1]]).astype(int).tolist()
    else:
        pads = []
    rank = len(shape)
    if rank not in (3, 4) or len(pads) != 2 * rank or pads[0] or pads[rank] or pads[rank - 1] or pads[-1]:
        raise UnsupportedModelError(
            f"node {node.name}: {mode} padding on hls4ml pads the height and width of a channels-last image with "
            f"constant pads (got shape {shape}, pads {pads})"
        )
    begins, ends = pads[1 : rank - 1], pads[rank + 1 : 2 * rank - 1]
    spatial = shape[1:-1]
    if rank == 3:  # N, W, C: one row
        begins, ends, spatial = [0, *begins], [0, *ends], [1, *spatial]
    if mode == "reflect" and any(p >= n for p, n in zip(begins + ends, spatial + spatial, strict=True)):
        raise UnsupportedModelError(f"node {node.name}: reflect padding wider than the image less one pixel")
    return {
        "class_name": CLASS_NAME,
        "name": node.name,
        "inputs": input_names[:1],  # the pads are attributes here, not a layer
        "outputs": list(node.output),
        "in_height": spatial[0],
        "in_width": spatial[1],
        "n_chan": shape[-1],
        "out_height": spatial[0] + begins[0] + ends[0],
        "out_width": spatial[1] + begins[1] + ends[1],
        "pad_top": begins[0],
        "pad_left": begins[1],
        "mode": MODES[mode],
        "rank": rank,
    }


_LAYER = CustomLayer(CLASS_NAME, "mirror_pad", _layer_class, _parse_onnx, _CONFIG_TEMPLATE, _FUNCTION_TEMPLATE)
_installed: set[str] = set()


def _pad_handler(original):
    """hls4ml's Pad handler for constant padding (ZeroPadding), this layer for the other modes."""

    def parse(node, input_names, input_shapes, graph):
        if pad_mode(node) in MODES:
            return _parse_onnx(node, input_names, input_shapes, graph)
        return original(node, input_names, input_shapes, graph)

    return parse


def register(backend_name: str) -> None:
    """Make hls4ml parse, configure and emit edge/reflect/wrap Pad for ``backend_name`` (idempotent)."""
    _LAYER.register(backend_name)
    if "pad" not in _installed:
        import importlib

        onnx_to_hls = importlib.import_module("hls4ml.converters.onnx_to_hls")
        onnx_to_hls.layer_handlers["Pad"] = _pad_handler(onnx_to_hls.layer_handlers["Pad"])
        _installed.add("pad")
