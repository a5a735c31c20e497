"""A declared input precision: parsed from hls4ml's spellings, added to the reference graph as a QONNX Quant,
flagged in the report, and refused with the fix where it has no QONNX form."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

import qdeploy
from qdeploy.cli import main
from qdeploy.errors import QDeployError
from qdeploy.golden import run_golden
from qdeploy.input_quant import parse_input_quant, with_input_quant
from qdeploy.ir import reference_of


@pytest.mark.parametrize(
    ("text", "bits", "signed", "fraction", "rounding"),
    [
        ("fixed<16,6>", 16, True, 10, "FLOOR"),
        ("ufixed<8,0,RND_CONV>", 8, False, 8, "ROUND"),
        ("fixed<10, 3, RND, SAT>", 10, True, 7, "HALF_UP"),
        ("int8", 8, True, 0, "ROUND"),
        ("uint4", 4, False, 0, "ROUND"),
    ],
)
def test_spellings(text, bits, signed, fraction, rounding):
    quant = parse_input_quant(text)
    assert (quant.bits, quant.signed, quant.fraction, quant.rounding) == (bits, signed, fraction, rounding)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fixed<16,6,TRN,WRAP>", "overflow WRAP has no QONNX form"),
        ("float16", "is not a precision"),
        ("fixed<40,6>", "must be 1 to 32 bits"),
        ("fixed<8,2,RND_INF>", "rounding 'RND_INF' unknown"),
    ],
)
def test_what_has_no_qonnx_form_is_refused(text, message):
    with pytest.raises(QDeployError, match=message):
        parse_input_quant(text)


def float_input_model() -> ModelWrapper:
    """A float Gemm + Relu on the raw input, with no quantizer at all (as a Keras conversion)."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W", "B"], ["a"], name="dense"),
            helper.make_node("Relu", ["a"], ["y"], name="relu"),
        ],
        "float_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [
            numpy_helper.from_array(rng.normal(size=(6, 3)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "B"),
        ],
    )
    return ModelWrapper(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_the_reference_computes_on_the_quantized_input():
    model = reference_of(with_input_quant(float_input_model(), parse_input_quant("fixed<8,3>")))
    assert model.graph.node[0].op_type == "Quant" and model.graph.node[1].input[0] == model.graph.node[0].output[0]
    x = np.array([[0.1, -0.07, 3.99, 9.0, -20.0, 0.0312]], dtype=np.float32)
    # truncation to 1/32 steps and saturation to [-4, 4 - 1/32], then the float net
    quantized = np.clip(np.floor(x * 32), -128, 127) / 32
    expected = run_golden(reference_of(float_input_model()), quantized)
    assert np.array_equal(run_golden(model, x), expected)


def test_compile_with_a_declared_input_precision(tmp_path):
    model = float_input_model()
    path = tmp_path / "float.onnx"
    onnx.save(model.model, str(path))
    out = tmp_path / "ort"
    code = main(["compile", str(path), "--input-quant", "fixed<12,4>", "--samples", "200", "-o", str(out), "-q"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["input_quant"]["declared"] == "fixed<12,4>" and report["input_quant"]["added_to_reference"]
    assert report["verified"]
    golden = onnx.load(str(out / "golden.onnx"))
    assert golden.graph.node[0].op_type == "Quant" and golden.graph.node[0].name == "qdeploy_input_quant"
    # through the API, and refused before anything is written when it cannot be expressed
    artifact = qdeploy.compile(model, out=tmp_path / "api", input_quant="int8", verify_samples=50)
    assert artifact.report["input_quant"]["bits"] == 8
    with pytest.raises(QDeployError, match="overflow WRAP"):
        qdeploy.compile(model, out=tmp_path / "bad", input_quant="fixed<8,2,TRN,WRAP>")
    assert not (tmp_path / "bad").exists()
