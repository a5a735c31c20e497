"""Precision rules: exact types for grids/constants, and grids that hold every value the graph produces."""

from __future__ import annotations

import numpy as np
import pytest
from qonnx.core.onnx_exec import execute_onnx

from qdeploy.errors import UnsupportedModelError
from qdeploy.golden import _with_batch
from qdeploy.pipeline import RunContext, run_steps
from qdeploy.precision import FixedType, Grid, Overflow, QuantSpec, grid_of_constant, infer_precisions, input_type_for
from qdeploy.targets.hls4ml.options import Hls4mlOptions
from qdeploy.targets.hls4ml.steps import STEPS
from qdeploy.targets.hls4ml.types import hls_type


def test_fixed_type_of_grids_is_narrowest_exact():
    # signed 8-bit values with step 2^-7 -> ap_fixed<8,1>
    assert Grid.scalar(-128, 127, -7).fixed_type() == FixedType(True, 8, 1)
    # 128 needs one more bit than 127
    assert Grid.scalar(-128, 128, -7).fixed_type() == FixedType(True, 9, 2)
    # unsigned
    assert Grid.scalar(0, 255, -5).fixed_type() == FixedType(False, 8, 3)
    # coarse grid (lsb > 0) is represented on lsb 0: 3 * 2^2 = 12 needs 4 unsigned bits
    assert Grid.scalar(0, 3, 2).fixed_type() == FixedType(False, 4, 4)


def test_grid_of_constant_is_exact_and_minimal():
    values = np.array([0.75, -0.125, 2.0], dtype=np.float32)
    grid = grid_of_constant(values, "w")
    assert grid.lsb == -3
    assert (int(grid.kmin), int(grid.kmax)) == (-1, 16)
    fixed = grid.fixed_type()
    # every value is representable: value * 2^fraction is an integer within the type's range
    ints = values * 2.0**fixed.fraction
    assert np.all(ints == np.round(ints))
    assert ints.min() >= -(2 ** (fixed.width - 1)) and ints.max() <= 2 ** (fixed.width - 1) - 1


def test_grid_of_constant_refuses_non_fixed_point():
    with pytest.raises(UnsupportedModelError, match="w_bad"):
        grid_of_constant(np.array([np.nan]), "w_bad")


def test_quant_spec_types_follow_qonnx_ranges():
    spec = QuantSpec(bits=4, signed=True, narrow=True, rounding="ROUND", scale_exp=-2)
    assert spec.int_range == (-7, 7)
    assert spec.fixed_type() == FixedType(True, 4, 2, "ROUND", Overflow.SATURATE_SYMMETRIC)
    unsigned = QuantSpec(bits=8, signed=False, narrow=False, rounding="FLOOR", scale_exp=-5)
    assert unsigned.fixed_type() == FixedType(False, 8, 3, "FLOOR", Overflow.SATURATE)


def test_hls4ml_spells_the_neutral_types():
    assert hls_type(FixedType(True, 4, 2, "ROUND", Overflow.SATURATE_SYMMETRIC)) == "fixed<4,2,RND_CONV,SAT_SYM>"
    assert hls_type(FixedType(False, 8, 3, "FLOOR", Overflow.SATURATE)) == "ufixed<8,3,TRN,SAT>"
    assert hls_type(Grid.scalar(-128, 127, -7).fixed_type()) == "fixed<8,1>"
    with pytest.raises(UnsupportedModelError, match="rounding mode HALF_UP has no hls4ml"):
        hls_type(FixedType(True, 4, 2, "HALF_UP"))


def test_input_type_holds_float32_inputs_the_quantizer_distinguishes():
    spec = QuantSpec(bits=8, signed=True, narrow=False, rounding="ROUND", scale_exp=-7)
    fixed = input_type_for(spec)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.5, 1.5, 20000).astype(np.float32)
    step = 2.0**-fixed.fraction
    truncated = np.floor(x.astype(np.float64) / step) * step  # ap_fixed TRN conversion
    big = np.abs(x) >= 2.0 ** (spec.scale_exp - 1)
    assert np.array_equal(truncated[big], x[big].astype(np.float64))  # exact above half a quantizer step
    # the integer part covers the clip range with room to saturate
    assert 2.0 ** (fixed.integer - 1) > 128 * 2.0**spec.scale_exp


@pytest.mark.parametrize("which", ["mlp_w4a8", "cnn_w4a8"])
def test_inferred_grids_hold_every_intermediate_value(which, request, data):
    """Run the prepared graph on real and random data: each tensor lies on its grid and within its bounds."""
    _, graph = request.getfixturevalue(which)
    x = np.concatenate([data.x_test[:200], np.random.default_rng(1).uniform(-2, 2, (200, 1, 8, 8)).astype(np.float32)])
    # batch first: qonnx cannot re-infer shapes of channels-last convs after ChangeBatchSize
    prepared = run_steps(_with_batch(graph, len(x)), Hls4mlOptions(), STEPS, RunContext())
    _, layers = infer_precisions(prepared)
    context = execute_onnx(prepared, {prepared.graph.input[0].name: x}, return_full_exec_context=True)
    checked = 0
    for node in prepared.graph.node:
        if node.name not in layers:
            continue
        grid = layers[node.name].output
        values = np.asarray(context[node.output[0]], dtype=np.float64)
        k = values * 2.0**-grid.lsb
        assert np.array_equal(k, np.round(k)), f"{node.name} off its grid"
        kmin = np.broadcast_to(grid.kmin, values.shape[-1:]) if grid.kmin.ndim else grid.kmin
        kmax = np.broadcast_to(grid.kmax, values.shape[-1:]) if grid.kmax.ndim else grid.kmax
        assert np.all(k >= kmin) and np.all(k <= kmax), f"{node.name} outside its bounds"
        checked += 1
    assert checked >= 8


def test_bounds_come_from_actual_weights_not_worst_case(mlp_w4a8):
    _, graph = mlp_w4a8
    prepared = run_steps(graph, Hls4mlOptions(), STEPS, RunContext())
    _, layers = infer_precisions(prepared)
    first = next(layer for layer in layers.values() if layer.op == "MatMul")
    worst_case_bits = 8 + first.weight.fixed_type().width + int(np.ceil(np.log2(64)))
    assert first.accumulator.fixed_type().width < worst_case_bits


def test_quant_with_a_runtime_scale_is_refused_by_name(mlp_w4a8):
    from qdeploy.precision import quant_spec
    from tests.targets.helpers import activation_quants, copy_graph

    graph = copy_graph(mlp_w4a8[1])
    node = activation_quants(graph)[1]
    node.input[1] = "computed_scale"  # no initializer: a runtime tensor
    with pytest.raises(
        UnsupportedModelError, match=rf"node {node.name} \(Quant\): scale, zero point and bit width must be constants"
    ):
        quant_spec(graph, node)
