"""Classes of failure found by compiling models nobody here wrote (``tests/targets/wild_corpus.py``) through the
hardware targets, each kept fixed on a small instance: a lower-case rounding mode (brevitas writes what the user
configured), quantizers with an integer zero point (brevitas's ShiftedUint8), CEIL rounding of the float input
(refused by name, not with an internal constant's name), FINN-style MultiThreshold graphs written by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import qdeploy
from qdeploy.errors import QDeployError
from qdeploy.ir import load_model, node_attr, sample_shape
from qdeploy.passes.graph.lower_to_thresholds import LowerToThresholds
from qdeploy.verify import random_inputs
from tests.targets.wild_corpus import crafted_cases, export_case, variant_cases


@pytest.fixture(scope="module")
def cases():
    pytest.importorskip("brevitas")
    return {case.name: case for case in variant_cases() + crafted_cases()}


def _lowered_equals_golden(path, count: int = 500) -> object:
    model = load_model(path)
    lowered = model.transform(LowerToThresholds())
    x = random_inputs(model, sample_shape(model), count, 0)
    assert np.array_equal(qdeploy.run_golden(lowered, x), qdeploy.run_golden(model, x))
    return lowered


def test_lower_case_rounding_mode_is_read_as_qonnx_reads_it(cases, tmp_path):
    """brevitas exports ``float_to_int_impl_type="floor"`` as ``rounding_mode="floor"``; qonnx upper-cases it, and
    hls4ml's converter refused it: the cleaned graph every target sees carries ``FLOOR``."""
    path = export_case(cases["variant_mlp_floor_fixed_4b"], tmp_path)
    modes = {str(node_attr(n, "rounding_mode", "")) for n in load_model(path).graph.node if n.op_type == "Quant"}
    assert modes == {"FLOOR", "ROUND"}, modes


@pytest.mark.parametrize("name", ["brevitas_shifted_uint", "brevitas_shifted_weight"])
def test_zero_point_quantizers_lower_to_shifted_integer_levels(name, tmp_path):
    """ShiftedUint8 activations ((q - z) * s) become a MultiThreshold with levels shifted by -z; ShiftedUint8 weights
    are integers q - z: every layer multiplies integers, outputs bit-exact with the golden executor."""
    pytest.importorskip("brevitas")
    from tests.targets.wild_corpus import FAMILIES, brevitas_mlp

    family = {"brevitas_shifted_uint": "shifted_uint", "brevitas_shifted_weight": "shifted_weight"}[name]
    weight, act = FAMILIES[family]
    from tests.targets.wild_corpus import BrevitasCase

    case = BrevitasCase(name, lambda: brevitas_mlp(weight, act, None, 4, True), (16,))
    lowered = _lowered_equals_golden(export_case(case, tmp_path))
    ops = [n.op_type for n in lowered.graph.node]
    assert "Quant" not in ops and ops.count("MatMul") == 2, ops
    for node in lowered.graph.node:
        if node.op_type == "MatMul":
            weights = lowered.get_initializer(node.input[1])
            assert np.array_equal(weights, np.round(weights)), node.name


@pytest.mark.parametrize("name", ["finnstyle_mlp_levels", "finnstyle_mlp_bipolar", "finnstyle_cnn_levels"])
def test_finn_style_multithreshold_graphs_lower_unchanged(name, cases, tmp_path):
    """A hand-written FINN-style graph (MultiThreshold on the float input and on integer accumulators) passes
    through the lowering with identical golden outputs."""
    _lowered_equals_golden(export_case(cases[name], tmp_path))


def test_ceil_rounding_of_the_float_input_is_refused_naming_the_users_quantizer(cases, tmp_path):
    """CEIL on the float input changes level between 0 and the smallest float32 above it: no fixed-point input type
    resolves that, so the refusal names the user's Quant (not the lowering's threshold constant) and says to
    declare the input's precision; with it declared the compile is exact."""
    path = export_case(cases["variant_mlp_ceil_float_4b"], tmp_path)
    out = tmp_path / "rtl"
    with pytest.raises(QDeployError) as refusal:
        qdeploy.compile(path, target="rtl", out=out, verify_samples=20, implement="none")
    message = str(refusal.value)
    first_quant = next(node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Quant")
    assert f"node {first_quant}:" in message and "--input-quant" in message and "_param" not in message, message
    assert not out.exists()


def test_signed_one_bit_output_quant_is_bipolar_on_rtl(cases, tmp_path):
    """qonnx executes a signed 1-bit Quant as bipolar (x >= 0 -> +1, else -1, never 0): a fixed-point requantizer
    clamping to [-1, 1] gave 0 near zero (rtl: NOT EXACT on 72 of 150 outputs); it is a threshold at 0 instead."""
    from qdeploy.precision import scale_has_no_fixed_point_form

    path = export_case(cases["crafted_mlp_fixed_1b_output"], tmp_path)
    model = load_model(path)
    output_quant = model.find_producer(model.graph.output[0].name)
    assert output_quant.op_type == "Quant" and scale_has_no_fixed_point_form(model, output_quant)
    artifact = qdeploy.compile(path, target="rtl", out=tmp_path / "rtl", verify_samples=100, implement="none")
    assert artifact.report["bit_exact"], artifact.report["outputs_equal"]


def test_finn_style_float_input_multithreshold_is_exact_on_hls4ml(cases, tmp_path):
    """A file whose graph input keeps its own name ("x", not qonnx's "global_in") still gets the input type derived
    from its thresholds (it got hls4ml's default fixed<16,6>, which truncated inputs across a threshold: NOT EXACT
    on 3 of 150 samples)."""
    path = export_case(cases["finnstyle_mlp_levels"], tmp_path)
    artifact = qdeploy.compile(path, target="hls4ml", out=tmp_path / "fw", verify_samples=100)
    assert artifact.report["bit_exact"], artifact.report.get("mismatches")
    input_layer = next(row for row in artifact.report["per_layer"] if row["op"] == "Input")
    declared = artifact.report["input_precision"].rstrip(">")  # e.g. fixed<30,3,TRN,SAT
    assert input_layer["activation"].startswith(declared) and "<16,6," not in declared, input_layer


@pytest.mark.parametrize("name", ["variant_mlp_tanh_float_4b", "variant_cnn_sigmoid_fixed_4b"])
def test_tanh_and_sigmoid_before_a_quantizer_become_thresholds(name, cases, tmp_path):
    """brevitas's QuantTanh / QuantSigmoid export Tanh / Sigmoid -> Quant: a non-decreasing function before a
    quantizer is still a step function of the integer accumulator, so it lowers to thresholds found by the golden
    executor (the rtl target refused it naming an internal Mul, hls4ml would approximate it); and a graph with one has
    no fixed-point form, so the hardware targets lower it."""
    from qdeploy.precision import scale_has_no_fixed_point_form

    path = export_case(cases[name], tmp_path)
    model = load_model(path)
    assert any(scale_has_no_fixed_point_form(model, node) for node in model.graph.node)
    lowered = _lowered_equals_golden(path)
    ops = [n.op_type for n in lowered.graph.node]
    assert "Tanh" not in ops and "Sigmoid" not in ops and ops.count("MultiThreshold") >= 2, ops
