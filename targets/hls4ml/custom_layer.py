"""Registering one of qdeploy's own layers with hls4ml (its extension API): the layer class, its ONNX handler, and per
backend the config and function-call templates and the C++ headers (``templates/nnet_<name>.h``, and
``nnet_<name>_stream.h`` on the backends whose streams are Xilinx's ``hls::stream``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from typing import Any

from qdeploy.targets.hls4ml.options import Backend

STREAM_BACKENDS = (Backend.VIVADO, Backend.VITIS)  # the streaming variants use Xilinx's hls::stream


@dataclass
class CustomLayer:
    """One layer: ``header`` names its C++ (``nnet_<header>.h`` and ``nnet_<header>_stream.h``); ``config_params`` and
    ``function_params`` add to hls4ml's default template parameters for a node."""

    class_name: str
    header: str
    layer_class: Callable[[], type]
    parse_onnx: Callable[..., Any]
    config_template: str
    function_template: str
    config_params: Callable[[Any], dict[str, str]] = lambda node: {}
    function_params: Callable[[Any], dict[str, str]] = lambda node: {}
    registered: set[str] = field(default_factory=set)

    def register(self, backend_name: str) -> None:
        """Make hls4ml parse, configure and emit the layer for ``backend_name`` (idempotent)."""
        import hls4ml
        from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate

        if "layer" not in self.registered:
            hls4ml.model.layers.register_layer(self.class_name, self.layer_class())
            if self.class_name not in hls4ml.converters.get_supported_onnx_layers():
                hls4ml.converters.register_onnx_layer_handler(self.class_name, self.parse_onnx)
            self.registered.add("layer")
        if backend_name in self.registered:
            return
        layer = self
        layer_class = hls4ml.model.layers.layer_map[self.class_name]
        sources = [f"nnet_{self.header}.h"]
        if backend_name in STREAM_BACKENDS:
            sources.append(f"nnet_{self.header}_stream.h")

        class ConfigTemplate(LayerConfigTemplate):
            def __init__(self):
                super().__init__(layer_class)
                self.template = layer.config_template

            def format(self, node):
                return self.template.format(**{**self._default_config_params(node), **layer.config_params(node)})

        class FunctionTemplate(FunctionCallTemplate):
            def __init__(self):
                super().__init__(layer_class, include_header=[f"nnet_utils/{source}" for source in sources])
                self.template = layer.function_template

            def format(self, node):
                return self.template.format(**{**self._default_function_params(node), **layer.function_params(node)})

        backend = hls4ml.backends.get_backend(backend_name)
        backend.register_template(ConfigTemplate)
        backend.register_template(FunctionTemplate)
        templates = files("qdeploy.targets.hls4ml") / "templates"
        for source in sources:
            with as_file(templates / source) as path:
                backend.register_source(path.resolve())
        self.registered.add(backend_name)
