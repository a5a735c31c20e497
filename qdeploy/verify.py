"""Verification against the golden executor: exact comparison, and inputs that stress the quantizers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.bounds import derive_bound, tail_tensors
from qdeploy.errors import UnsupportedModelError
from qdeploy.golden import run_golden, run_golden_context
from qdeploy.ir import const_input, input_name, node_attr, output_name
from qdeploy.ops import LAYOUT_OPS, QUANT_OPS, SCALED_QUANT_OPS
from qdeploy.precision import quant_int_range

#: samples also run one at a time (batch 1, as a board sees them) through the target and the golden executor
BATCH_ONE_SAMPLES = 16
#: mismatching samples listed in the report, each with whether the golden executor was order-dependent there
MISMATCHES_LISTED = 20


def compare(y_target: np.ndarray, y_golden: np.ndarray, bound: np.ndarray | None = None) -> dict[str, Any]:
    """Bit-exact comparison per input sample (an output is equal when every element is); with a derived ``bound``
    (per element, ``qdeploy.bounds``), ``verified`` also holds when every difference is within it."""
    y_golden = np.asarray(y_golden, dtype=np.float64)
    rows = len(y_golden)
    y_target = np.asarray(y_target, dtype=np.float64)
    if y_target.size != y_golden.size or len(y_target) != rows:
        raise UnsupportedModelError(
            f"the target produced outputs of shape {y_target.shape} where the graph computes {y_golden.shape} "
            "(a bug in the target's lowering; please report it with the model)"
        )
    y_target = y_target.reshape(y_golden.shape)
    equal = (y_target == y_golden) | (np.isnan(y_target) & np.isnan(y_golden))
    equal_rows = np.all(equal.reshape(rows, -1), axis=1)
    diff = np.abs(y_target - y_golden)
    diff[equal] = 0.0
    max_error = float(np.nanmax(diff, initial=0.0)) if diff.size else 0.0
    within = bool(np.all(equal | (diff <= bound))) if bound is not None else bool(equal_rows.all())
    flat_t, flat_g = y_target.reshape(rows, -1), y_golden.reshape(rows, -1)
    return {
        "bit_exact": bool(equal_rows.all()),
        "outputs_compared": int(rows),
        "outputs_equal": int(equal_rows.sum()),
        "elements_compared": int(y_golden.size),
        "elements_equal": int(equal.sum()),
        "max_abs_error": max_error,
        "verified": bool(equal_rows.all()) or within,
        "argmax_agreement": float(np.mean(flat_t.argmax(axis=1) == flat_g.argmax(axis=1))) if flat_g.size else 1.0,
    }


#: bins of the error histograms kept in the report (a figure's worth, not the data)
HISTOGRAM_BINS = 20


def error_histogram(y_target: np.ndarray, y_golden: np.ndarray, bound: np.ndarray | None = None) -> dict[str, Any]:
    """A small summary of the per-element differences for the report's figure: how many elements are equal, a
    histogram of log10 |difference| over the others, and, with a derived ``bound``, of difference / bound over
    0..1 (within the bound) with a count of those above it. Call it with shapes ``compare`` accepted."""
    y_golden = np.asarray(y_golden, dtype=np.float64)
    y_target = np.asarray(y_target, dtype=np.float64).reshape(y_golden.shape)
    equal = (y_target == y_golden) | (np.isnan(y_target) & np.isnan(y_golden))
    diff = np.abs(y_target - y_golden)[~equal]
    summary: dict[str, Any] = {"elements": int(y_golden.size), "equal": int(equal.sum())}
    finite = diff[np.isfinite(diff)]
    if finite.size:
        low, high = np.log10(finite.min()), np.log10(finite.max())
        counts, edges = np.histogram(np.log10(finite), bins=HISTOGRAM_BINS, range=(low, max(high, low + 1e-6)))
        summary["log10_abs_error"] = {"edges": edges.round(4).tolist(), "counts": counts.tolist()}
    summary["not_finite"] = int(diff.size - finite.size)
    if bound is not None and diff.size:
        per_element = np.broadcast_to(np.asarray(bound, dtype=np.float64), y_golden.shape)[~equal]
        ratio = diff / np.maximum(per_element, np.finfo(np.float64).tiny)
        edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
        counts, _ = np.histogram(ratio[ratio <= 1.0], bins=edges)
        summary["error_over_bound"] = {
            "edges": edges.round(4).tolist(),
            "counts": counts.tolist(),
            "above_bound": int(np.sum(ratio > 1.0)),
        }
    return summary


def check_output_shape(model: ModelWrapper, y_golden: np.ndarray, samples: int) -> None:
    """The graph must compute the output shape it declares (batch first), else nothing about it can be verified."""
    name = output_name(model)
    declared = model.get_tensor_shape(name)
    computed = tuple(np.shape(y_golden))
    if not computed or computed[0] != samples:
        raise UnsupportedModelError(
            f"output {name}: the graph computes shape {computed} for {samples} samples; its first dimension must be "
            "the batch (export the model with a batch dimension)"
        )
    if declared and all(isinstance(d, int) and d > 0 for d in declared[1:]) and tuple(declared[1:]) != computed[1:]:
        raise UnsupportedModelError(
            f"output {name}: the graph declares shape {list(declared)} but computes {list(computed)}; fix the "
            "model's output shape (re-export it)"
        )


def verify_against_golden(reference: ModelWrapper, run: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> dict[str, Any]:
    """Run the target and the golden executor on ``x`` (batched, and the first samples one at a time) and compare:
    bit for bit, or within the bound derived from the graph's float tail (``qdeploy.bounds``)."""
    context = run_golden_context(reference, x, keep=tail_tensors(reference))
    y_golden = context[output_name(reference)]
    check_output_shape(reference, y_golden, len(x))
    bound = derive_bound(reference, context)
    y_target = run(x)
    result = compare(y_target, y_golden, bound.per_element)
    result["bound"] = bound.describe()
    result["error_histogram"] = error_histogram(y_target, y_golden, bound.per_element)
    # batch 1, as a board or a user with one sample runs it: the target, and the golden executor itself
    k = min(BATCH_ONE_SAMPLES, len(x))
    one_bound = None if bound.per_element is None else bound.per_element[:k]
    golden_one = np.concatenate([run_golden(reference, x[i : i + 1], chunk=1) for i in range(k)])
    target_one = np.concatenate([np.asarray(run(x[i : i + 1])).reshape(1, -1) for i in range(k)])
    at_one = compare(target_one, golden_one, one_bound)
    golden_consistent = compare(golden_one, y_golden[:k], one_bound)
    result["batch_one"] = {
        "outputs_compared": at_one["outputs_compared"],
        "outputs_equal": at_one["outputs_equal"],
        "max_abs_error": at_one["max_abs_error"],
        "verified": at_one["verified"],
        "golden_batch_invariant": golden_consistent["bit_exact"],
    }
    # each batch size against the user's graph at that batch size; whether the graph itself gives the same numbers at
    # both (float arithmetic may not) is reported, not required
    result["verified"] = result["verified"] and at_one["verified"]
    result["bit_exact"] = result["bit_exact"] and at_one["bit_exact"]
    if not result["verified"]:
        result["mismatches"] = diagnose_mismatches(
            reference,
            x,
            failing_rows(y_target, y_golden, bound.per_element),
            failing_rows(target_one, golden_one, one_bound),
        )
    return result


def failing_rows(y_target: np.ndarray, y_golden: np.ndarray, bound: np.ndarray | None = None) -> np.ndarray:
    """Indices of the samples whose output is neither bit-exact nor (with a ``bound``) within it."""
    y_golden = np.asarray(y_golden, dtype=np.float64)
    y_target = np.asarray(y_target, dtype=np.float64).reshape(y_golden.shape)
    ok = (y_target == y_golden) | (np.isnan(y_target) & np.isnan(y_golden))
    if bound is not None:
        ok |= np.abs(y_target - y_golden) <= bound
    return np.flatnonzero(~ok.reshape(len(y_golden), -1).all(axis=1))


def diagnose_mismatches(
    reference: ModelWrapper, x: np.ndarray, batched: np.ndarray, one: np.ndarray
) -> list[dict[str, Any]]:
    """The first mismatching samples (batched, then one at a time), each with the quantizers where the golden
    executor's own level depended on float32 summation order (``qdeploy.order_dependence``; empty: the golden was
    order-independent there, so the mismatch is the target's). Tells a lowering bug from a graph no exact target
    reproduces; the golden is re-run at the batch sizes verification used, as its summation order depends on them."""
    from qdeploy.order_dependence import needs_check, order_dependent_quantizers

    listed = [("batched", int(i)) for i in batched[:MISMATCHES_LISTED]]
    listed += [("one", int(i)) for i in one[: MISMATCHES_LISTED - len(listed)]]
    if not listed:
        return []
    at: dict[tuple[str, int], list[str]] = {}
    if needs_check(reference):
        runs = {"batched": lambda: order_dependent_quantizers(reference, x)}
        runs["one"] = lambda: order_dependent_quantizers(reference, x[: min(BATCH_ONE_SAMPLES, len(x))], chunk=1)
        for run in {kind for kind, _ in listed}:
            for finding in runs[run]():
                for sample in finding.samples:
                    at.setdefault((run, sample), []).append(finding.label)
    return [{"sample": sample, "run": run, "golden_order_dependent_at": at.get((run, sample), [])} for run, sample in listed]


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
    if -(2**62) <= k_low and k_high <= 2**62:
        ties = (rng.integers(k_low, k_high, (count // 2, *shape)) + 0.5) * step
    else:  # a 64-bit quantizer's integers overflow numpy's int64 draws: float64 integers across the range instead
        ties = (np.floor(rng.uniform(k_low, k_high, (count // 2, *shape))) + 0.5) * step
    return np.concatenate([uniform, ties]).astype(np.float32)
