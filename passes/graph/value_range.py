"""What a graph says about a tensor's values before any target types exist: bounds and the power-of-two grid they lie on.

Read backwards from the quantizer (or ReLU, or integer graph input) that produces the tensor, through ops that only
select, move or average values, so graph passes can decide rewrites that hold for every input (a padding value
below every value, a rounding that is the identity). Anything else gives ``None``: unknown, and the pass leaves the
graph as it is.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.ir import const_input, is_power_of_two, node_attr

#: ops whose output values are some of their (first) input's values
SELECTING_OPS = (
    "Transpose", "Reshape", "Flatten", "Identity", "Dropout", "Squeeze", "Unsqueeze", "MaxPool", "GlobalMaxPool",
    "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Slice", "Gather",
)  # fmt: skip

Range = tuple[float | None, float | None]


def _scalar(values) -> float | None:
    array = np.asarray(values, dtype=np.float64).ravel()
    return float(array[0]) if array.size and np.all(array == array[0]) else None


def value_range(model: ModelWrapper, tensor: str) -> Range:
    """(lowest, highest) bounds of ``tensor``'s values, either None where the graph does not say."""
    producer = model.find_producer(tensor)
    if producer is None:
        declared = model.get_tensor_datatype(tensor)
        return (float(declared.min()), float(declared.max())) if declared.is_integer() else (None, None)
    op = producer.op_type
    if op in SELECTING_OPS or op in ("AveragePool", "GlobalAveragePool"):
        low, high = value_range(model, producer.input[0])
        if op == "AveragePool" and any(int(p) for p in node_attr(producer, "pads", []) or []):
            # a padded average may count the padding as zeros
            low, high = (None if low is None else min(low, 0.0)), (None if high is None else max(high, 0.0))
        return low, high
    if op == "Concat":
        parts = [value_range(model, name) for name in producer.input]
        lows, highs = [p[0] for p in parts], [p[1] for p in parts]
        return (None if None in lows else min(lows)), (None if None in highs else max(highs))
    if op == "Pad":
        low, high = value_range(model, producer.input[0])
        mode = node_attr(producer, "mode", "constant")
        if (mode.decode() if isinstance(mode, bytes) else str(mode)) != "constant":
            return low, high
        value = const_input(model, producer, 2) if len(producer.input) > 2 and producer.input[2] else 0.0
        pad = _scalar(value if value is not None else np.nan)
        if pad is None or np.isnan(pad):
            return None, None
        return (None if low is None else min(low, pad)), (None if high is None else max(high, pad))
    if op == "Relu":
        low, high = value_range(model, producer.input[0])
        return max(low, 0.0) if low is not None else 0.0, None if high is None else max(high, 0.0)
    if op == "Clip":
        low, high = value_range(model, producer.input[0])
        bounds = [
            _scalar(const_input(model, producer, i)) if len(producer.input) > i and producer.input[i] else None
            for i in (1, 2)
        ]
        if bounds[0] is not None:
            low = bounds[0] if low is None else max(low, bounds[0])
        if bounds[1] is not None:
            high = bounds[1] if high is None else min(high, bounds[1])
        return low, high
    if op == "Quant":
        return _quant_range(model, producer)
    if op == "BipolarQuant":
        scale = const_input(model, producer, 1)
        return (None, None) if scale is None else (float(-np.max(np.abs(scale))), float(np.max(np.abs(scale))))
    if op == "MultiThreshold":
        thresholds = const_input(model, producer, 1)
        if thresholds is None:
            return None, None
        out_scale = float(node_attr(producer, "out_scale", 1.0))
        out_bias = float(node_attr(producer, "out_bias", 0.0))
        ends = (out_bias, out_bias + out_scale * thresholds.shape[-1])
        return min(ends), max(ends)
    if op in ("Mul", "Div"):
        factor = const_input(model, producer, 1)
        low, high = value_range(model, producer.input[0])
        if factor is None or low is None or high is None or np.any(np.asarray(factor) == 0):
            return None, None
        factor = np.asarray(factor, dtype=np.float64).ravel()
        if op == "Div":
            factor = 1.0 / factor
        products = np.concatenate([factor * low, factor * high])
        return float(products.min()), float(products.max())
    return None, None


def lowest_value(model: ModelWrapper, tensor: str) -> float | None:
    """A value no element of ``tensor`` is below, or None when the graph does not say."""
    return value_range(model, tensor)[0]


def _quant_range(model: ModelWrapper, node) -> Range:
    """The lowest and highest level of a qonnx ``Quant``: ``(min_int - zeropt) * scale`` ... over its channels."""
    from qdeploy.precision import quant_int_range

    scale, zeropt, bits = (const_input(model, node, index) for index in (1, 2, 3))
    if scale is None or zeropt is None or bits is None or np.size(bits) != 1 or np.any(np.asarray(scale) <= 0):
        return None, None
    low, high = quant_int_range(
        int(np.asarray(bits).ravel()[0]), bool(node_attr(node, "signed", 1)), bool(node_attr(node, "narrow", 0))
    )
    zeropt, scale = np.asarray(zeropt, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    return float(np.min((low - zeropt) * scale)), float(np.max((high - zeropt) * scale))


def grid_step(model: ModelWrapper, tensor: str) -> float | None:
    """A power of two every value of ``tensor`` is an integer multiple of, or None when the graph does not say."""
    producer = model.find_producer(tensor)
    if producer is None:
        return 1.0 if model.get_tensor_datatype(tensor).is_integer() else None
    op = producer.op_type
    if op in (*SELECTING_OPS, "Relu"):
        return grid_step(model, producer.input[0])
    if op == "Concat":
        steps = [grid_step(model, name) for name in producer.input]
        return None if None in steps else min(steps)
    if op == "Quant":
        scale, zeropt = const_input(model, producer, 1), const_input(model, producer, 2)
        if scale is None or zeropt is None or np.any(np.asarray(zeropt) != np.round(zeropt)):
            return None
        scale = np.abs(np.asarray(scale, dtype=np.float64))
        return float(scale.min()) if is_power_of_two(scale) else None
    if op in ("AveragePool", "GlobalAveragePool"):
        inner = grid_step(model, producer.input[0])
        if op == "AveragePool":
            if any(int(p) for p in node_attr(producer, "pads", []) or []):
                return None  # edge windows may divide by other counts
            count = int(np.prod(node_attr(producer, "kernel_shape", [])))
        else:
            shape = model.get_tensor_shape(producer.input[0]) or [0]
            spatial = shape[1:-1] if producer.domain == "qonnx.custom_op.channels_last" else shape[2:]
            count = int(np.prod(spatial)) if shape is not None else 0
        return inner / count if inner is not None and count and is_power_of_two(np.asarray([count])) else None
    if op in ("Mul", "Div"):
        factor = _scalar(const_input(model, producer, 1)) if const_input(model, producer, 1) is not None else None
        inner = grid_step(model, producer.input[0])
        if factor is None or inner is None or factor == 0 or not is_power_of_two(np.asarray([abs(factor)])):
            return None
        return inner * abs(factor) if op == "Mul" else inner / abs(factor)
    if op == "MultiThreshold":
        out_scale = abs(float(node_attr(producer, "out_scale", 1.0)))
        out_bias = float(node_attr(producer, "out_bias", 0.0))
        if out_scale == 0 or not is_power_of_two(np.asarray([out_scale])) or out_bias % out_scale:
            return None
        return out_scale
    return None
