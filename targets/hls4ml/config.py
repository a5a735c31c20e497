"""The hls4ml configuration (``HLSConfig``) of a prepared graph: every precision derived from the graph by
``qdeploy.precision``, spelled in hls4ml's types; the user's own hls4ml sections merged over it."""

from __future__ import annotations

import contextlib
import io

from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.deps import require
from qdeploy.ops import LAYOUT_OPS
from qdeploy.precision import FixedType, LayerPrecision, infer_precisions
from qdeploy.targets.hls4ml.implementation import LayerImplementation
from qdeploy.targets.hls4ml.multithreshold import thresholds_as_attributes
from qdeploy.targets.hls4ml.options import Hls4mlOptions
from qdeploy.targets.hls4ml.types import hls_type, layer_types


def _layer_config(layer: LayerPrecision) -> dict[str, str]:
    """hls4ml precision keys for one ONNX node's layer (hls4ml names layers after the ONNX nodes)."""
    types = layer_types(layer)
    if layer.quant is not None:
        return {}  # hls4ml derives a Quant's type from the node itself; the C simulation checks it
    if layer.op in ("MatMul", "Conv"):
        config = {"weight": types["weight"], "accum": types["accumulator"], "result": types["result"]}
        config["bias"] = types.get("bias", "fixed<1,1>")  # MatMul has no bias (it is the following Add)
        return config
    if layer.op == "Add" and "bias" in types:
        return {"bias": types["bias"], "result": types["result"]}
    if layer.op in ("AveragePool", "GlobalAveragePool"):
        return {"accum": types["accumulator"], "result": types["result"]}
    if layer.op == "MultiThreshold":
        return {"thresholds": types["thresholds"], "result": types["result"]}
    if layer.op in ("MaxPool", "GlobalMaxPool"):
        return {"accum": types["result"], "result": types["result"]}  # hls4ml keeps the running maximum in accum_t
    return {"result": types["result"]}


def _deep_merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def build_hls_config(
    model: ModelWrapper, options: Hls4mlOptions, implementations: dict[str, LayerImplementation]
) -> tuple[dict, FixedType]:
    """hls4ml HLSConfig with every precision derived from the graph and each layer's implementation (strategy and
    reuse factor, ``implementation.py``, which already resolved the user's own sections); the user's ``hls4ml``
    block overrides the rest."""
    hls4ml = require("hls4ml", "hls4ml", "the hls4ml target")
    input_type, layers = infer_precisions(model)
    for node in model.graph.node:
        layer = layers.get(node.name)
        if layer is not None and layer.threshold_values is not None:
            # clamped to the input's reachable range: same outcome, and every threshold is a finite fixed-point value
            model.set_initializer(node.input[1], layer.threshold_values)
    with contextlib.redirect_stdout(io.StringIO()):
        config = hls4ml.utils.config.config_from_onnx_model(
            thresholds_as_attributes(model),  # the graph hls4ml converts (its parsers read it so)
            granularity="name",
            backend=options.backend.value,
            default_precision="fixed<16,6>",
            default_reuse_factor=1,
        )
    # Layers without multiplications do not use these; each multiplying layer gets its own below (and must: hls4ml
    # turns layers without their own setting to Resource after a Resource conv, hls4ml #759).
    config["Model"]["Strategy"] = "Latency"
    config["Model"]["ReuseFactor"] = 1
    by_name = config.setdefault("LayerName", {})
    # the input layer is named as the graph's input (qonnx's cleanup calls it global_in, a file's own name stays)
    by_name.setdefault(model.graph.input[0].name, {}).setdefault("Precision", {})["result"] = hls_type(input_type)
    for node in model.graph.node:
        if node.name in layers:
            precision = _layer_config(layers[node.name])
        elif node.op_type in (*LAYOUT_OPS, "Relu"):
            precision = {"result": hls_type(input_type)}  # layout ops and ReLU on the raw input keep the input type
        else:
            continue
        if precision:
            by_name.setdefault(node.name, {}).setdefault("Precision", {}).update(precision)
    _deep_merge(config, dict(options.hls_config))
    for name, implementation in implementations.items():
        layer = by_name.setdefault(name, {})
        layer["Strategy"] = implementation.strategy.value
        layer["ReuseFactor"] = implementation.reuse_factor
    return config, input_type
