"""Precision rules: exact types for grids/constants, and grids that hold every value the graph produces."""

from __future__ import annotations

import numpy as np
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx

import qdeploy
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
    # io_parallel keeps the graph input channels-first, as x is
    prepared = run_steps(_with_batch(graph, len(x)), Hls4mlOptions(io_type="io_parallel"), STEPS, RunContext())
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


def _quant_graph(ops: list, shape: list[int], bits: int = 4, scale: float = 0.25) -> ModelWrapper:
    """A signed ``bits`` input quantizer (step ``scale``) on ``x``, then ``ops`` (nodes reading ``q`` / each other)."""
    from onnx import TensorProto, helper

    constants = [
        helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("bits", TensorProto.FLOAT, [], [float(bits)]),
    ]
    quant = helper.make_node(
        "Quant",
        ["x", "scale", "zero", "bits"],
        ["q"],
        name="Quant_0",
        domain="qonnx.custom_op.general",
        signed=1,
        narrow=0,
        rounding_mode="ROUND",
    )
    graph = helper.make_graph(
        [quant, *ops],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(ops[-1].output[0], TensorProto.FLOAT, None)],
        constants,
    )
    from qonnx.transformation.infer_shapes import InferShapes

    return ModelWrapper(helper.make_model(graph)).transform(InferShapes())


def test_add_of_two_runtime_tensors_and_concat_hold_every_sum():
    from onnx import helper

    graph = _quant_graph(
        [
            helper.make_node("Add", ["q", "q"], ["sum"], name="Add_0"),
            helper.make_node("Concat", ["q", "sum"], ["both"], name="Concat_0", axis=1),
        ],
        [1, 4],
    )
    _, layers = infer_precisions(graph)
    added, joined = layers["Add_0"].output, layers["Concat_0"].output
    assert (int(added.kmin), int(added.kmax), added.lsb) == (-16, 14, -2)  # [-8, 7] + [-8, 7], step 1/4
    assert (int(joined.kmin), int(joined.kmax), joined.lsb) == (-16, 14, -2)
    assert layers["Add_0"].types()["result"] == FixedType(True, 5, 3)


@pytest.mark.parametrize(("window", "exact"), [(4, True), (3, False)])
def test_average_pool_is_exact_only_when_it_divides_by_a_power_of_two(window, exact):
    from onnx import helper

    pool = helper.make_node("AveragePool", ["q"], ["mean"], name="AveragePool_0", kernel_shape=[window, window])
    graph = _quant_graph([pool], [1, 1, 12, 12])
    if not exact:
        with pytest.raises(UnsupportedModelError, match=r"node AveragePool_0: AveragePool divides by 9, not a power"):
            infer_precisions(graph)
        return
    _, layers = infer_precisions(graph)
    mean, total = layers["AveragePool_0"].output, layers["AveragePool_0"].accumulator
    # a mean of values in [-8, 7] * 2^-2 stays in that range, on a grid 16 times finer; the sum is 16 times larger
    assert (int(mean.kmin), int(mean.kmax), mean.lsb) == (-128, 112, -6)
    assert (int(total.kmin), int(total.kmax), total.lsb) == (-2048, 1792, -6)
    x = np.random.default_rng(0).uniform(-3, 3, (64, 1, 12, 12)).astype(np.float32)
    k = np.asarray(qdeploy.run_golden(graph, x), dtype=np.float64) * 2.0**-mean.lsb
    assert np.array_equal(k, np.round(k)) and k.min() >= -128 and k.max() <= 112


@pytest.mark.parametrize("narrow", [0, 1])
def test_signed_one_bit_quant_range_is_bipolar_as_qonnx_executes_it(narrow):
    from qonnx.custom_op.general.quant import quant

    from qdeploy.precision import quant_int_range

    x = np.linspace(-2, 2, 41)
    levels = np.unique(quant(x, np.float64(1.0), np.float64(0.0), np.float64(1.0), 1, narrow, "ROUND"))
    assert levels.tolist() == [-1.0, 1.0]
    low, high = quant_int_range(1, signed=True, narrow=bool(narrow))
    assert (low, high) == (-1, 1)


def test_an_input_declared_as_integers_is_already_on_a_grid():
    """A file that annotates its input as UINT8 (qonnx's eltwise test case) needs no input quantizer."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType

    weights = helper.make_tensor("w", TensorProto.FLOAT, [2, 3], [1.0, -2.0, 0.5, 0.25, 3.0, -1.0])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="MatMul_0")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [weights],
    )
    model = ModelWrapper(helper.make_model(graph))
    model.set_tensor_datatype("x", DataType["UINT8"])
    input_type, layers = infer_precisions(model)
    assert input_type == FixedType(False, 8, 8)
    accumulator = layers["MatMul_0"].output
    assert accumulator.lsb == -2 and int(np.min(accumulator.kmin)) == -8 * 255 and int(np.max(accumulator.kmax)) == 12 * 255
