"""ONNX ``DepthToSpace`` (pixel shuffle: ESPCN super-resolution) as an hls4ml layer, through hls4ml's extension API.

hls4ml has no DepthToSpace layer. qdeploy hands it channels-last (``ImageOpsChannelsLast``); the layer only moves
values (its output type is its input type), in ``templates/nnet_depth_to_space*.h`` for io_parallel and io_stream.
"""

from __future__ import annotations

from qdeploy.errors import UnsupportedModelError
from qdeploy.targets.hls4ml.custom_layer import CustomLayer

CLASS_NAME = "DepthToSpace"
CHANNELS_LAST_DOMAIN = "qonnx.custom_op.channels_last"

_CONFIG_TEMPLATE = """struct config{index} : nnet::depth_to_space_config {{
    static const unsigned in_height = {in_height};
    static const unsigned in_width = {in_width};
    static const unsigned n_chan = {n_chan};
    static const unsigned block = {block};
    static const bool crd = {crd};
}};\n"""
_FUNCTION_TEMPLATE = "nnet::depth_to_space<{input_t}, {output_t}, {config}>({input}, {output});"


def _layer_class():
    from hls4ml.model.attributes import Attribute
    from hls4ml.model.layers import Layer

    class DepthToSpace(Layer):
        _expected_attributes = [
            Attribute("in_height"),
            Attribute("in_width"),
            Attribute("n_chan"),
            Attribute("block"),
            Attribute("crd", value_type=bool, default=False),
        ]

        def initialize(self):
            block = self.get_attr("block")
            shape = [self.get_attr("in_height") * block, self.get_attr("in_width") * block, self.get_attr("n_chan")]
            self.add_output_variable(shape, precision=self.get_input_variable().type.precision)

    return DepthToSpace


def _parse_onnx(node, input_names, input_shapes, graph):
    from onnx import helper

    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    shape = [int(d) for d in input_shapes[0]]
    block = int(attributes.get("blocksize", 0))
    mode = attributes.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if node.domain != CHANNELS_LAST_DOMAIN or len(shape) != 4 or block < 1 or shape[3] % (block * block):
        raise UnsupportedModelError(
            f"node {node.name}: DepthToSpace on hls4ml needs a channels-last N, H, W, C image (got {node.domain or 'NCHW'}"
            f" {shape}, blocksize {block})"
        )
    return {
        "class_name": CLASS_NAME,
        "name": node.name,
        "inputs": input_names[:1],
        "outputs": list(node.output),
        "in_height": shape[1],
        "in_width": shape[2],
        "n_chan": shape[3] // (block * block),
        "block": block,
        "crd": mode.upper() == "CRD",
    }


_LAYER = CustomLayer(
    CLASS_NAME,
    "depth_to_space",
    _layer_class,
    _parse_onnx,
    _CONFIG_TEMPLATE,
    _FUNCTION_TEMPLATE,
    config_params=lambda node: {"crd": "true" if node.get_attr("crd") else "false"},
)


def register(backend_name: str) -> None:
    """Make hls4ml parse, configure and emit DepthToSpace for ``backend_name`` (idempotent)."""
    _LAYER.register(backend_name)
