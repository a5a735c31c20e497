"""A classifier's closing Softmax/LogSoftmax runs on the host (``split_float_epilogue``): the fixed-point targets
output the exact logits, and the golden executor applies the row-wise float function to them."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import qdeploy
from qdeploy.ir import load_model, split_float_epilogue

DOMAIN = "qonnx.custom_op.general"


def _classifier(head: str | None):
    """x -> 4-bit Quant (scale 1/8) -> MatMul (weights on a 1/16 grid) -> ``head`` (Softmax/LogSoftmax or none)."""
    rng = np.random.default_rng(0)
    weights = (rng.integers(-8, 8, (16, 10)) / 16).astype(np.float32)
    nodes = [
        helper.make_node(
            "Quant", ["x", "s", "z", "b"], ["q"], name="in_quant", domain=DOMAIN, signed=1, narrow=0, rounding_mode="ROUND"
        ),
        helper.make_node("MatMul", ["q", "W"], ["logits" if head else "y"], name="fc"),
    ]
    if head:
        nodes.append(helper.make_node(head, ["logits"], ["y"], name="head", axis=-1))
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.125]),
            helper.make_tensor("z", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("b", TensorProto.FLOAT, [], [4.0]),
            helper.make_tensor("W", TensorProto.FLOAT, [16, 10], weights.ravel().tolist()),
        ],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)]
    return load_model(helper.make_model(graph, opset_imports=opsets))


@pytest.mark.parametrize("head", ["Softmax", "LogSoftmax"])
def test_a_closing_softmax_of_a_fixed_point_graph_goes_to_the_host(head):
    model = _classifier(head)
    firmware, epilogue = split_float_epilogue(model)
    assert [node.op_type for node in epilogue.graph.node] == [head]
    assert [node.op_type for node in firmware.graph.node] == ["Quant", "MatMul"]
    x = np.random.default_rng(1).normal(0, 1, (50, 16)).astype(np.float32)
    logits = qdeploy.run_golden(firmware, x)
    np.testing.assert_array_equal(qdeploy.run_golden(epilogue, logits), qdeploy.run_golden(model, x))


def test_a_fixed_point_graph_without_such_a_head_keeps_everything():
    model = _classifier(None)
    firmware, epilogue = split_float_epilogue(model)
    assert epilogue is None and firmware is model


@pytest.mark.parametrize("target", ["hls4ml", "rtl"])
def test_fixed_point_targets_compile_a_softmax_classifier_bit_exact(tmp_path, target):
    """Refused before ("op Softmax is not supported"): the firmware now outputs the logits and the report lists the
    host epilogue."""
    pytest.importorskip(target if target == "hls4ml" else "qonnx")
    options = {"implement": "none"} if target == "rtl" else {}
    artifact = qdeploy.compile(_classifier("Softmax"), target=target, out=tmp_path / target, verify_samples=300, **options)
    assert artifact.bit_exact and artifact.report["host_epilogue"] == ["Softmax"]
    assert (tmp_path / target / "epilogue.onnx").exists()
