"""Models nobody on the team wrote, on onnxruntime: every file of the public fixture folders (``../shared/fixtures``:
QKeras conversions, qonnx's test data, brevitas's ESPCN, FP8 FloatQuant, the QONNX model zoo) and raw brevitas
exports across its quantizer families. Each must end exact, within a derived bound, or refused before anything is
written; never NOT EXACT, never an internal error."""

from __future__ import annotations

import pytest

from tests.targets.wild_corpus import (
    FIXTURES_MISSING,
    all_cases,
    compile_outcome,
    export_case,
    fixture_files,
    verify_samples_for,
)

#: expected outcome per fixture file where it is not "exact" (none today: every file compiles bit-exactly). A file
#: whose graph computes in float past its last quantizer would be "bounded"; one with no exact lowering "refused".
EXPECTED: dict[str, str] = {}

FILES = fixture_files()


@pytest.mark.skipif(not FILES, reason=FIXTURES_MISSING)
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_public_qonnx_file_is_exact_bounded_or_refused_on_onnxruntime(path, tmp_path):
    out = tmp_path / "ort"
    row = compile_outcome(path, out, verify_samples_for(path, 200))
    assert row["outcome"] == EXPECTED.get(path.name, "exact"), row
    if row["outcome"] == "refused":
        assert row["reason"].startswith(("node ", "[")) and "node " in row["reason"], row


#: a handful of raw brevitas exports across its families (fixed-point and float scales, per-tensor and per-channel,
#: zero-point activations and weights, float and integer biases, with and without an output quantizer, 2-8 bits,
#: MLP and CNN) and one FINN network; the benchmark (benchmarks/wild.py) runs all of them
GENERATED = [
    "brevitas_mlp_fixed_tensor_int32bias_4b",
    "brevitas_cnn_fixed_uint_int16bias_8b_outq",
    "brevitas_mlp_float_channel_floatbias_8b",
    "brevitas_cnn_float_tensor_floatbias_4b_outq",
    "brevitas_mlp_fixed_uint_floatbias_2b_outq",
    "brevitas_cnn_shifted_uint_int32bias_2b",
    "brevitas_mlp_shifted_weight_floatbias_8b",
    "finn_tfc_1w1a",
    # variants and graphs other tools write (the classes the hardware targets got wrong; onnxruntime stays exact)
    "variant_mlp_floor_fixed_4b",
    "variant_cnn_bn_after_float_4b",
    "variant_conv1d_bn_before_float_4b",
    "crafted_mlp_fixed_half_down",
    "crafted_cnn_float_1b_output",
    # layer kinds and other writers' layouts: a residual fork through a shared quantizer, QKeras's channels-last
    # layout (the reflect pad and MobileNet's float tail after a view: tests/core/test_batch_axis.py, by hand)
    "layer_residual_shared_fixed_4b",
    "writer_qkeras_cnn_4b_alpha",
]

#: generated models whose refusal the contract demands, with the start of the one line naming the file's node
REFUSED = {
    # brevitas's HadamardClassifier divides by the norm of the whole batch tensor
    "layer_hadamard_float_4b": "node /3/quant/Reshape (Reshape) reshapes to [-1], folding the batch axis",
}


@pytest.fixture(scope="module")
def cases():
    pytest.importorskip("brevitas")
    return {case.name: case for case in all_cases()}


@pytest.mark.parametrize("name", GENERATED)
def test_raw_brevitas_export_is_exact_on_onnxruntime(name, cases, tmp_path):
    path = export_case(cases[name], tmp_path)
    row = compile_outcome(path, tmp_path / "ort", 500)
    assert row["outcome"] == "exact", row
    if name.startswith("brevitas_") and "fixed" in name and "floatbias" not in name:
        # power-of-two scales and integer biases: every float op exact, so ORT keeps its integer kernels
        assert row["plan"] == "integer kernels" and row["integer_kernels"] >= 1, row


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_generated_model_is_refused_by_name_before_writing(name, cases, tmp_path):
    path = export_case(cases[name], tmp_path)
    row = compile_outcome(path, tmp_path / "ort", 50)
    assert row["outcome"] == "refused" and row["reason"].startswith(REFUSED[name]), row
