"""Verification against the golden executor: exact comparison, and inputs that stress the quantizers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.golden import run_golden
from qdeploy.ir import const_input, input_name, node_attr
from qdeploy.ops import LAYOUT_OPS, QUANT_OPS, SCALED_QUANT_OPS
from qdeploy.precision import quant_int_range


def compare(y_target: np.ndarray, y_golden: np.ndarray, tolerance: float = 0.0) -> dict[str, Any]:
    """Bit-exact comparison per input sample (an output is equal when every element is).

    ``verified`` is ``bit_exact`` when ``tolerance`` is 0, else whether the max abs error is within ``tolerance``."""
    y_target = np.asarray(y_target, dtype=np.float64).reshape(y_golden.shape)
    y_golden = np.asarray(y_golden, dtype=np.float64)
    rows = len(y_golden)
    equal_rows = np.all((y_target == y_golden).reshape(rows, -1), axis=1)
    diff = np.abs(y_target - y_golden)
    max_error = float(diff.max()) if diff.size else 0.0
    flat_t, flat_g = y_target.reshape(rows, -1), y_golden.reshape(rows, -1)
    return {
        "bit_exact": bool(equal_rows.all()),
        "outputs_compared": int(rows),
        "outputs_equal": int(equal_rows.sum()),
        "elements_compared": int(y_golden.size),
        "elements_equal": int((y_target == y_golden).sum()),
        "max_abs_error": max_error,
        "tolerance": tolerance,
        "verified": bool(equal_rows.all()) if tolerance == 0 else max_error <= tolerance,
        "argmax_agreement": float(np.mean(flat_t.argmax(axis=1) == flat_g.argmax(axis=1))),
    }


def verify_against_golden(
    golden: ModelWrapper, run: Callable[[np.ndarray], np.ndarray], x: np.ndarray, tolerance: float = 0.0
) -> dict[str, Any]:
    """Run the target and the golden executor on ``x`` and compare bit for bit (or within ``tolerance``)."""
    return compare(run(x), run_golden(golden, x), tolerance)


def _input_quantizer(model: ModelWrapper):
    """The first Quant reached from the graph input through layout-only ops, if any."""
    tensor = input_name(model)
    while True:
        consumers = model.find_consumers(tensor)
        if len(consumers) != 1:
            return None
        node = consumers[0]
        if node.op_type in QUANT_OPS:
            return node
        if node.op_type not in LAYOUT_OPS:
            return None
        tensor = node.output[0]


def random_inputs(model: ModelWrapper, shape: tuple[int, ...], count: int, seed: int) -> np.ndarray:
    """Random inputs spanning the input quantizer's range and 25 % beyond, half of them on exact rounding ties.

    Ties (``(k + 0.5) * scale``) are where rounding modes differ, so an inexact lowering shows up there first.
    """
    rng = np.random.default_rng(seed)
    if count == 0:
        return np.zeros((0, *shape), dtype=np.float32)
    datatype = model.get_tensor_datatype(input_name(model))
    if datatype.is_integer():
        # The graph declares an integer input (e.g. FINN's BIPOLAR features): draw only allowed values.
        if datatype.name == "BIPOLAR":
            return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(count, *shape))
        low, high = int(datatype.min()), int(datatype.max())
        return rng.integers(low, high, size=(count, *shape), endpoint=True).astype(np.float32)
    quant = _input_quantizer(model)
    scale = bits = None
    if quant is not None and quant.op_type in SCALED_QUANT_OPS:
        scale, bits = const_input(model, quant, 1), const_input(model, quant, 3)
    if scale is None or bits is None:
        return rng.standard_normal((count, *shape)).astype(np.float32)
    step = float(np.max(scale))
    k_low, k_high = quant_int_range(int(np.asarray(bits).ravel()[0]), bool(node_attr(quant, "signed", 1)), False)
    low, high = k_low * step, k_high * step
    margin = 0.25 * (high - low)
    n_uniform = count - count // 2
    uniform = rng.uniform(low - margin, high + margin, (n_uniform, *shape))
    ties = (rng.integers(k_low, k_high, (count // 2, *shape)) + 0.5) * step
    return np.concatenate([uniform, ties]).astype(np.float32)
