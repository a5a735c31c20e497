"""Refusals name the node as the user's file names it, also from a target's emit (hls4ml's precision inference runs
on the prepared graph, after cleanup renumbered brevitas's ``/1/ConvTranspose`` as ``ConvTranspose_0``)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import qdeploy
from qdeploy.errors import QDeployError, UnsupportedModelError
from qdeploy.pipeline import RunContext

DOMAIN = "qonnx.custom_op.general"


def _brevitas_named_convtranspose():
    """/0/Quant -> /1/ConvTranspose (Quant weights) -> /2/Quant, named as brevitas names nodes (not identifiers)."""

    def quant(source, output, name, scale):
        return helper.make_node(
            "Quant",
            [source, f"{name}_s", "z", "b"],
            [output],
            name=name,
            domain=DOMAIN,
            signed=1,
            narrow=0,
            rounding_mode="ROUND",
        ), helper.make_tensor(f"{name}_s", TensorProto.FLOAT, [], [scale])

    q0, s0 = quant("x", "q", "/0/act_quant/Quant", 0.25)
    qw, sw = quant("w", "qw", "/1/weight_quant/Quant", 0.125)
    q2, s2 = quant("c", "y", "/2/act_quant/Quant", 0.5)
    conv = helper.make_node(
        "ConvTranspose", ["q", "qw"], ["c"], name="/1/ConvTranspose", kernel_shape=[2, 2], strides=[2, 2]
    )
    weights = np.random.default_rng(0).normal(0, 0.5, (1, 2, 2, 2)).astype(np.float32)
    graph = helper.make_graph(
        [q0, qw, conv, q2],
        "convtranspose",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 6, 6])],
        [
            s0,
            sw,
            s2,
            helper.make_tensor("z", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("b", TensorProto.FLOAT, [], [4.0]),
            helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel()),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)])


def test_a_timed_step_names_nodes_as_the_file_does():
    ctx = RunContext(file_names={"ConvTranspose_0": "/1/ConvTranspose", "Quant_0": "/0/act_quant/Quant"})

    def refuse():
        raise UnsupportedModelError("node ConvTranspose_0: op ConvTranspose is not supported; node Quant_0_scale too")

    with pytest.raises(QDeployError) as refusal:
        ctx.timed("emit", refuse)
    assert str(refusal.value) == (
        "[emit] node /1/ConvTranspose: op ConvTranspose is not supported; node /0/act_quant/Quant (scale qdeploy "
        "derived from it) too"
    )


def test_an_hls4ml_emit_refusal_names_the_file_node(tmp_path):
    pytest.importorskip("hls4ml")
    out = tmp_path / "hls"
    with pytest.raises(QDeployError) as refusal:
        qdeploy.compile(_brevitas_named_convtranspose(), target="hls4ml", out=out, verify_samples=8)
    message = str(refusal.value)
    assert "node /1/ConvTranspose" in message and "ConvTranspose_0" not in message, message
    assert not out.exists()


def test_a_float_scale_left_in_the_datapath_is_refused_as_one_with_the_fix():
    """A Mul by a float constant between quantizers (a per-channel float activation scale qdeploy could not fold)
    was refused as "op Mul is not supported", which says neither what it is nor what to do."""
    from qdeploy.ir import load_model
    from qdeploy.precision import infer_precisions

    def quant(source, output, name):
        return helper.make_node(
            "Quant", [source, "s", "z", "b"], [output], name=name, domain=DOMAIN, signed=1, narrow=0, rounding_mode="ROUND"
        )

    graph = helper.make_graph(
        [quant("x", "q", "quant_in"), helper.make_node("Mul", ["q", "k"], ["m"], name="rescale"), quant("m", "y", "out")],
        "float_scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.25]),
            helper.make_tensor("z", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("b", TensorProto.FLOAT, [], [4.0]),
            helper.make_tensor("k", TensorProto.FLOAT, [4], [0.3, 0.7, 1.1, 0.9]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)])
    with pytest.raises(UnsupportedModelError) as refusal:
        infer_precisions(load_model(model))
    message = str(refusal.value)
    assert message.startswith("node rescale: a float scale (Mul by 0.3 and 3 more per channel) stays in the datapath")
    assert "power-of-two scales" in message and "onnxruntime" in message


def test_a_derived_node_is_named_after_the_file_node_when_cleanup_kept_every_name():
    """The file's names are identifiers, so cleanup renamed nothing; a refusal naming ``MatMul_28_scale`` (the scale
    Mul a pass wrote for MatMul_28) still says which file node it came from, and a node called ``input`` does not
    turn the words ``input_quant`` into a derivation."""
    from qdeploy.ir import load_model
    from qdeploy.pipeline import run_steps

    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="input"),
            helper.make_node("MatMul", ["r", "w"], ["y"], name="MatMul_28"),
        ],
        "named",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [2, 2], [1.0, 0.0, 0.0, 1.0])],
    )
    model = load_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))

    def refuse(model, options):
        raise UnsupportedModelError("node MatMul_28_scale: op Mul on MatMul_28_out0 is not supported; see input_quant")

    with pytest.raises(QDeployError) as refusal:
        run_steps(model, None, [refuse], RunContext())
    assert str(refusal.value) == (
        "[refuse] node MatMul_28 (scale qdeploy derived from it): op Mul on MatMul_28_out0 is not supported; see input_quant"
    )
