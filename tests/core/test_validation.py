"""Quantizers checked against the QONNX spec at load, naming the node as the user's file names it."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import qdeploy
from qdeploy.errors import ModelLoadError
from qdeploy.ir import load_model
from qdeploy.validation import validate_quantizers
from tests.targets.helpers import assert_no_output
from tests.targets.wild_corpus import fixture_files

DOMAIN = "qonnx.custom_op.general"
# a brevitas-style name: not a C identifier, so qonnx's cleanup would renumber it (Quant_0)
NODE = "/0/act_quant/export_handler/Quant"


def _model(node: onnx.NodeProto, constants: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)])


def _quant(scale=0.5, zeropt=0.0, bits=4.0, inputs=("x", "s", "z", "b"), name=NODE, **attrs) -> onnx.ModelProto:
    attrs = {"signed": 1, "narrow": 0, "rounding_mode": "ROUND", **attrs}
    attrs = {k: v for k, v in attrs.items() if v is not None}
    node = helper.make_node("Quant", list(inputs), ["y"], name=name, domain=DOMAIN, **attrs)
    constants = {"s": np.float32(scale), "z": np.float32(zeropt), "b": np.asarray(bits, dtype=np.float32)}
    return _model(node, {k: v for k, v in constants.items() if k in inputs})


def test_a_conformant_quant_passes():
    validate_quantizers(_quant())
    load_model(_quant())


@pytest.mark.parametrize(
    "model, message",
    [
        (_quant(scale=0.0), "scale must be > 0, got 0"),
        (_quant(scale=-0.25), "scale must be > 0, got -0.25"),
        (_quant(scale=np.nan), "scale is NaN or infinite"),
        (_quant(scale=np.inf), "scale is NaN or infinite"),
        (_quant(zeropt=np.nan), "zero point is NaN or infinite"),
        (_quant(bits=0.0), "bit width must be an integer >= 1, got 0"),
        (_quant(bits=2.5), "bit width must be an integer >= 1, got 2.5"),
        (_quant(bits=[4.0, 4.0]), "bit width must be one scalar"),
        (_quant(inputs=("x", "s", "z", "runtime_bits")), "bit width \\(runtime_bits\\) is computed at run time"),
        (_quant(inputs=("x", "s", "z")), "Quant takes 4 inputs"),
        (_quant(signed=None), "required attribute signed is missing"),
        (_quant(narrow=2), "attribute narrow must be 0 or 1, got 2"),
        (_quant(signed=1.0), "attribute signed must be an integer, it is a float"),
        (_quant(rounding_mode="NEAREST"), "unknown rounding_mode 'NEAREST'"),
        (_quant(rounding_mode=7), "attribute rounding_mode must be a string"),
    ],
)
def test_a_quant_breaking_the_spec_is_refused_naming_the_node_of_the_file(model, message):
    with pytest.raises(ModelLoadError, match=rf"^node {NODE}: {message}.*; "):
        load_model(model)


def test_rounding_mode_bytes_that_are_not_utf8_are_refused():
    model = _quant()
    next(a for a in model.graph.node[0].attribute if a.name == "rounding_mode").s = b"\xff\xfeROUND"
    with pytest.raises(ModelLoadError, match=rf"node {NODE}: attribute rounding_mode is not valid UTF-8"):
        load_model(model)


def test_lower_case_rounding_mode_is_accepted_as_qonnx_does():
    validate_quantizers(_quant(rounding_mode="round"))


def test_an_unnamed_node_is_named_by_position_and_output():
    with pytest.raises(ModelLoadError, match=r"node #0 \(Quant, unnamed, output y\): scale must be > 0"):
        load_model(_quant(scale=0.0, name=""))


def test_scale_from_a_constant_node_is_checked_too():
    model = _quant(inputs=("x", "c", "z", "b"))
    model.graph.node.insert(0, helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.float32(-1.0))))
    with pytest.raises(ModelLoadError, match=rf"node {NODE}: scale must be > 0, got -1"):
        validate_quantizers(model)


def test_bipolar_quant_scale_is_checked():
    node = helper.make_node("BipolarQuant", ["x", "s"], ["y"], name="bq", domain=DOMAIN)
    with pytest.raises(ModelLoadError, match=r"node bq: scale must be > 0"):
        validate_quantizers(_model(node, {"s": np.float32(0.0)}))


def test_trunc_cannot_widen():
    node = helper.make_node("Trunc", ["x", "s", "z", "bi", "bo"], ["y"], name="tr", domain=DOMAIN, rounding_mode="FLOOR")
    constants = {"s": np.float32(1), "z": np.float32(0), "bi": np.float32(4), "bo": np.float32(8)}
    with pytest.raises(ModelLoadError, match=r"node tr: output bit width 8 exceeds input bit width 4"):
        validate_quantizers(_model(node, constants))


def _float_quant(mantissa=3.0, max_val=448.0, **attrs):
    node = helper.make_node("FloatQuant", ["x", "s", "e", "m", "bias", "mx"], ["y"], name="fq", domain=DOMAIN, **attrs)
    constants = {"s": np.float32(1), "e": np.float32(4), "m": np.float32(mantissa), "bias": np.float32(7)}
    return _model(node, {**constants, "mx": np.float32(max_val)})


@pytest.mark.parametrize(
    "model, message",
    [
        (_float_quant(mantissa=-1.0), "mantissa bit width must be an integer >= 0"),
        (_float_quant(max_val=0.0), "max_val must be > 0"),
        (_float_quant(saturation=0, has_inf=0, has_nan=0), "saturation=0 needs has_inf=1 or has_nan=1"),
    ],
)
def test_float_quant_format_is_checked(model, message):
    with pytest.raises(ModelLoadError, match=rf"node fq: {message}"):
        validate_quantizers(model)


def test_float_quant_with_a_zero_mantissa_width_is_valid():
    validate_quantizers(_float_quant(mantissa=0.0, saturation=1))


def test_compile_refuses_before_writing_anything(tmp_path):
    with pytest.raises(ModelLoadError, match=rf"node {NODE}: scale must be > 0"):
        qdeploy.compile(_quant(scale=0.0), target="onnxruntime", out=tmp_path / "ort")
    assert_no_output(tmp_path / "ort")


@pytest.mark.parametrize("path", fixture_files(), ids=lambda p: p.name)
def test_every_public_fixture_is_valid(path):
    validate_quantizers(onnx.load(str(path)))
