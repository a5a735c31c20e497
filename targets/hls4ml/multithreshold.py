"""qonnx ``MultiThreshold`` as an hls4ml layer, through hls4ml's extension API (layer, ONNX handler, templates, C++).

hls4ml has no thresholding layer; FINN has one but targets its own dataflow. This one is small: a comparison
bank per element against the channel's thresholds, in ``templates/nnet_multithreshold*.h``.
"""

from __future__ import annotations

import numpy as np

from qdeploy.errors import UnsupportedModelError
from qdeploy.targets.hls4ml.custom_layer import CustomLayer

CLASS_NAME = "MultiThreshold"


_CONFIG_TEMPLATE = """struct config{index} : nnet::multithreshold_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_chan = {n_chan};
    static const unsigned n_thresholds = {n_thresholds};
    static const int out_scale = {out_scale};
    static const int out_bias = {out_bias};
    typedef {thresholds_t.name} threshold_t;
}};\n"""
_FUNCTION_TEMPLATE = "nnet::multithreshold<{input_t}, {output_t}, {config}>({input}, {output}, {thresholds});"


def _layer_class():
    from hls4ml.model.attributes import Attribute, TypeAttribute, WeightAttribute
    from hls4ml.model.layers import Layer

    class MultiThreshold(Layer):
        _expected_attributes = [
            Attribute("n_in"),
            Attribute("n_chan"),
            Attribute("n_thresholds"),
            Attribute("out_scale"),
            Attribute("out_bias"),
            WeightAttribute("thresholds"),
            TypeAttribute("thresholds"),
        ]

        def initialize(self):
            source = self.get_input_variable()
            self.add_output_variable(source.shape)
            self.add_weights_variable(name="thresholds", var_name="t{index}")

    return MultiThreshold


def thresholds_as_attributes(model):
    """The graph hls4ml converts: a copy of the model whose MultiThresholds carry their thresholds, and Resizes their
    scales, as node attributes instead of inputs: hls4ml turns every initializer into a ``Constant`` layer, and one
    that feeds no hls4ml layer breaks its passes."""
    from onnx import helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper

    copy = ModelWrapper(model.model, make_deepcopy=True)
    for node in copy.graph.node:
        if node.op_type in ("Resize", "Upsample"):
            _resize_scales_as_attribute(copy, node)
        if node.op_type == "Pad":
            from qdeploy.targets.hls4ml.mirror_pad import pads_as_attribute

            pads_as_attribute(copy, node)
        if node.op_type == CLASS_NAME and len(node.input) > 1:
            values = copy.get_initializer(node.input[1])
            node.attribute.append(helper.make_attribute("thresholds", numpy_helper.from_array(values, "thresholds")))
            threshold_name = node.input[1]
            del node.input[1]
            if not copy.find_consumers(threshold_name):
                copy.del_initializer(threshold_name)
    return copy


def _resize_scales_as_attribute(model, node) -> None:
    """A Resize/Upsample's per-axis scales (from ``scales``, or ``sizes`` over the input shape) as its ``scales``
    attribute, and no constant inputs: hls4ml looks every input up as a tensor (an empty ``roi`` stops it) and makes
    every initializer a layer."""
    from onnx import helper

    shape = model.get_tensor_shape(node.input[0])
    constants = {index: model.get_initializer(name) for index, name in enumerate(node.input) if index and name}
    sizes = constants.get(3)
    scales = constants.get(2 if node.op_type == "Resize" else 1)
    if (scales is None or np.size(scales) == 0) and sizes is not None:
        scales = np.asarray(sizes, dtype=np.float64) / np.asarray(shape, dtype=np.float64)
    for attribute in list(node.attribute):
        if attribute.name == "scales":
            node.attribute.remove(attribute)
    node.attribute.append(helper.make_attribute("scales", [float(s) for s in np.asarray(scales).ravel()]))
    names = [name for name in node.input[1:] if name]
    del node.input[1:]
    node.op_type = "Resize"  # hls4ml parses Resize only; ONNX's older Upsample is the same nearest resize here
    for name in names:
        if not model.find_consumers(name):
            model.del_initializer(name)


def _parse_onnx(node, input_names, input_shapes, graph):
    from onnx import numpy_helper

    attributes = {a.name: a for a in node.attribute}
    initializers = {i.name: i for i in graph.initializer}
    if "thresholds" in attributes:
        thresholds = numpy_helper.to_array(attributes["thresholds"].t).astype(np.float64)
    elif len(node.input) > 1 and node.input[1] in initializers:  # hls4ml's config pass parses the graph as it is
        thresholds = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float64)
    else:
        raise UnsupportedModelError(f"node {node.name}: MultiThreshold thresholds must be a constant")
    layout = attributes["data_layout"].s.decode() if "data_layout" in attributes else ""
    shape = input_shapes[0]
    channels = thresholds.shape[0]
    if channels > 1 and len(shape) > 2 and layout not in ("NHWC", "NWC"):
        raise UnsupportedModelError(
            f"node {node.name}: per-channel thresholds on a {layout or 'NCHW'} tensor; hls4ml is NHWC"
        )
    if channels > 1 and shape[-1] != channels:
        raise UnsupportedModelError(f"node {node.name}: {channels} rows of thresholds for {shape[-1]} channels")
    layer = {
        "class_name": CLASS_NAME,
        "name": node.name,
        "inputs": input_names[:1],  # the thresholds are the layer's weights, not an input stream
        "outputs": list(node.output),
        "n_in": int(np.prod(shape[1:])),
        "n_chan": int(channels),
        "n_thresholds": int(thresholds.shape[1]),
        "out_scale": int(attributes["out_scale"].f) if "out_scale" in attributes else 1,
        "out_bias": int(attributes["out_bias"].f) if "out_bias" in attributes else 0,
        "thresholds_data": thresholds.ravel(),
    }
    return layer


_LAYER = CustomLayer(
    CLASS_NAME,
    "multithreshold",
    _layer_class,
    _parse_onnx,
    _CONFIG_TEMPLATE,
    _FUNCTION_TEMPLATE,
    function_params=lambda node: {"thresholds": node.get_weights("thresholds").name},
)


def register(backend_name: str) -> None:
    """Make hls4ml parse, configure and emit MultiThreshold for ``backend_name`` (idempotent); with it, the corrected
    parsers of ``parsers.py`` and qdeploy's DepthToSpace layer."""
    from qdeploy.targets.hls4ml import depth_to_space, mirror_pad, parsers

    parsers.install()
    depth_to_space.register(backend_name)
    mirror_pad.register(backend_name)
    _LAYER.register(backend_name)
