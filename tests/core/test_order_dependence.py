"""Graphs whose quantizer levels depend on float32 summation order: found, refused by name before anything is written
for targets with exact integer sums, and told apart from target bugs in a NOT EXACT report."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

import qdeploy
from qdeploy import golden, order_dependence
from qdeploy.artifact import format_summary
from qdeploy.errors import UnsupportedModelError
from qdeploy.golden import run_golden
from qdeploy.ir import reference_of
from qdeploy.verify import verify_against_golden

QONNX = "qonnx.custom_op.general"
#: 127 * 10 + 0.1 - 127 * 10: summed left to right in float32 the 0.1 is rounded to 1270's ulp (0.0999756); the
#: exact sum is 0.1, and the activation quantizer's rounding boundary (scale 0.19998: a tie at 0.09999) lies between
BOUNDARY = np.array([[127.0, 1.0, -127.0]], dtype=np.float32)


def dense(
    weight_scale: float,
    act_scale: float,
    weights: tuple[float, ...] = (10.0, 0.1, 10.0),
    bits: int = 8,
    activation: str = "Quant",
):
    """x -> Quant (integers) -> MatMul with quantized weights -> unsigned activation Quant (or FINN's MultiThreshold
    with one threshold at its first rounding boundary): a 3-input dot product."""
    inits = {
        "one": np.float32(1.0),
        "zero": np.float32(0.0),
        "bits": np.float32(bits),
        "w": np.asarray(weights, dtype=np.float32).reshape(-1, 1),
        "s_w": np.float32(weight_scale),
        "s_a": np.float32(act_scale),
        "t": np.full((1, 1), np.float32(act_scale) / 2, dtype=np.float32),
    }
    quant = {"domain": QONNX, "narrow": 0, "rounding_mode": "ROUND"}
    nodes = [
        helper.make_node("Quant", ["x", "one", "zero", "bits"], ["xq"], name="Quant_x", signed=1, **quant),
        helper.make_node("Quant", ["w", "s_w", "zero", "bits"], ["wq"], name="Quant_w", signed=1, **quant),
        helper.make_node("MatMul", ["xq", "wq"], ["acc"], name="MatMul_0"),
        helper.make_node("Quant", ["acc", "s_a", "zero", "bits"], ["y"], name="Quant_act", signed=0, **quant)
        if activation == "Quant"
        else helper.make_node("MultiThreshold", ["acc", "t"], ["y"], name="Threshold_act", domain=QONNX, out_dtype="UINT8"),
    ]
    graph = helper.make_graph(
        nodes,
        "dense",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, len(weights)])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)]
    return reference_of(ModelWrapper(helper.make_model(graph, opset_imports=opsets)))


def order_free(model: ModelWrapper, x: np.ndarray) -> np.ndarray:
    """The dense graph with its dot product of the exact quantized values (integers times scales, in float64) rounded
    once to float32, the rest as qonnx computes it: what an exact integer accumulator stands for."""
    xq = np.clip(np.round(x), -128, 127).astype(np.float64)
    s_w = model.get_initializer("s_w")
    wq = np.clip(np.round(model.get_initializer("w") / s_w), -128, 127) * np.float64(s_w)
    acc = (xq @ wq).astype(np.float32)
    s_a = model.get_initializer("s_a")
    return (np.clip(np.round(acc / s_a), 0, 255) * s_a).astype(np.float32)


def test_static_analysis_finds_only_inexact_sums():
    """Power-of-two scales with a sum inside 2^24 steps: exact, nothing to run; float scales put the levels on a fine
    grid (inexact); power-of-two 16-bit operands summing past 2^24 steps are inexact too."""
    assert order_dependence.inexact_sums(dense(0.125, 0.25)) == []
    assert [n.name for n in order_dependence.inexact_sums(dense(0.1, 0.19998))] == ["MatMul_0"]
    wide = dense(1.0, 1.0, weights=(30000.0, 30000.0, 30000.0), bits=16)
    assert [n.name for n in order_dependence.inexact_sums(wide)] == ["MatMul_0"]


def conv(weight_scale: float):
    """x [1, 2, 8] -> Quant -> Conv1d (4 channels, k=3, quantized weights) -> Quant: a sum of 6 products per output."""
    rng = np.random.default_rng(0)
    inits = {
        "s_x": np.float32(0.0625),
        "zero": np.float32(0.0),
        "bits": np.float32(8.0),
        "w": rng.normal(0.0, 0.5, (4, 2, 3)).astype(np.float32),
        "s_w": np.float32(weight_scale),
        "s_a": np.float32(0.25),
    }
    quant = {"domain": QONNX, "narrow": 0, "rounding_mode": "ROUND"}
    nodes = [
        helper.make_node("Quant", ["x", "s_x", "zero", "bits"], ["xq"], name="Quant_x", signed=1, **quant),
        helper.make_node("Quant", ["w", "s_w", "zero", "bits"], ["wq"], name="Quant_w", signed=1, **quant),
        helper.make_node("Conv", ["xq", "wq"], ["acc"], name="Conv_0", kernel_shape=[3], pads=[1, 1]),
        helper.make_node("Quant", ["acc", "s_a", "zero", "bits"], ["y"], name="Quant_act", signed=1, **quant),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)]
    return reference_of(ModelWrapper(helper.make_model(graph, opset_imports=opsets)))


def test_power_of_two_conv_with_quantized_weights_is_exact():
    """The weights' quantizer is evaluated for the bound of the sum: a power-of-two Conv is exact, a float one not."""
    assert order_dependence.inexact_sums(conv(0.015625)) == []
    assert not order_dependence.needs_check(conv(0.015625))
    assert order_dependence.needs_check(conv(0.0123))


def test_sum_on_the_raw_float_input_is_left_to_the_target():
    """A layer on the float model input is no integer accumulator for any target: they refuse it themselves, naming
    the fix (declare the input precision); the check does not pre-empt that with another message."""
    model = dense(0.1, 0.19998)
    model.graph.node[2].input[0] = "x"
    model.graph.node.remove(model.graph.node[0])
    assert order_dependence.inexact_sums(model) == [] and not order_dependence.needs_check(model)


def test_power_of_two_graph_runs_nothing(monkeypatch):
    """The static pre-check alone clears a power-of-two graph: the golden executor is never run for it."""

    def fail(*args, **kwargs):
        raise AssertionError("the order-dependence check executed a power-of-two graph")

    monkeypatch.setattr(golden, "golden_graph_contexts", fail)
    x = np.concatenate([BOUNDARY, np.random.default_rng(0).integers(-128, 128, (20, 3)).astype(np.float32)])
    assert order_dependence.order_dependent_quantizers(dense(0.125, 0.25), x) == []


def test_sum_on_a_rounding_boundary_is_found():
    """The premise, computed independently: qonnx's float32 sum puts BOUNDARY's level below the exact sum's. The check
    names the quantizer and the sample; a float-scale graph off the boundary has no finding."""
    model = dense(0.1, 0.19998)
    assert run_golden(model, BOUNDARY, chunk=1)[0, 0] == 0.0, "premise: ONNX Runtime's 3-term MatMul sums left to right"
    assert order_free(model, BOUNDARY)[0, 0] > 0.0
    (finding,) = order_dependence.order_dependent_quantizers(model, BOUNDARY, chunk=1)
    assert (finding.label, finding.op_type, finding.samples) == ("Quant_act", "Quant", [0])
    off = np.array([[127.0, 1.0, -126.0], [3.0, 5.0, 7.0], [-128.0, 127.0, 0.0]], dtype=np.float32)
    assert order_dependence.order_dependent_quantizers(model, off) == []
    assert order_dependence.order_dependent_quantizers(model, off, chunk=1) == []


def test_a_level_difference_a_later_quantizer_absorbs_is_not_found():
    """The same boundary followed by a coarser quantizer (step 1.0): both levels, 0 and 0.19998, round to 0, so the
    graph's output does not depend on the order there (a MaxPool absorbs differences alike) and nothing is refused."""
    model = dense(0.1, 0.19998)
    coarse = helper.make_node(
        "Quant",
        ["y", "one", "zero", "bits"],
        ["y_coarse"],
        name="Quant_coarse",
        domain=QONNX,
        signed=0,
        narrow=0,
        rounding_mode="ROUND",
    )
    model.graph.node.append(coarse)
    model.graph.output[0].name = "y_coarse"
    model = reference_of(ModelWrapper(model.model))
    assert run_golden(model, BOUNDARY, chunk=1)[0, 0] == 0.0
    assert order_dependence.order_dependent_quantizers(model, BOUNDARY, chunk=1) == []


def test_multithreshold_on_an_inexact_sum_is_found():
    """FINN's MultiThreshold compares the float32 sum as a quantizer rounds it: the same boundary, the same finding."""
    model = dense(0.1, 0.19998, activation="MultiThreshold")
    assert run_golden(model, BOUNDARY, chunk=1)[0, 0] == 0.0, "premise: ONNX Runtime's 3-term MatMul sums left to right"
    (finding,) = order_dependence.order_dependent_quantizers(model, BOUNDARY, chunk=1)
    assert (finding.label, finding.op_type, finding.samples) == ("Threshold_act", "MultiThreshold", [0])


def test_power_of_two_sum_past_float32_steps_is_found_with_its_reason():
    """16-bit power-of-two operands: 32767 * 30000 needs 30 bits, float32 keeps 24, so the sum drops the 1 that the
    exact accumulator keeps; the refusal names that reason and its fix (fewer bits), not the scales."""
    model = dense(1.0, 1.0, weights=(30000.0, 1.0, 30000.0), bits=16)
    x = np.array([[32767.0, 1.0, -32767.0]], dtype=np.float32)
    assert run_golden(model, x, chunk=1)[0, 0] == 0.0, "premise: ONNX Runtime's 3-term MatMul sums left to right"
    (finding,) = order_dependence.order_dependent_quantizers(model, x, chunk=1)
    assert finding.reason.startswith("more terms than float32 adds exactly")
    message = order_dependence.refusal([finding], 1)
    assert "power-of-two scales" not in message and "use fewer bits" in message


def test_exact_sum_target_refuses_by_name_before_writing(tmp_path):
    """rtl computes exact integer sums: the graph is refused in one line naming the user's quantizer, nothing written."""
    path = tmp_path / "dense.onnx"
    dense(0.1, 0.19998).save(str(path))
    with pytest.raises(UnsupportedModelError) as refused:
        qdeploy.compile(path, target="rtl", out=tmp_path / "out", data=BOUNDARY, verify_samples=8)
    message = str(refused.value)
    assert message.startswith("node Quant_act (Quant): its input is a float32 sum with non-power-of-two scales")
    assert "power-of-two scales" in message and "--target onnxruntime" in message and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_not_exact_report_tells_the_golden_order_from_a_target_bug():
    """A target that sums exactly mismatches only where the golden is order-dependent (listed with the quantizer);
    a target wrong elsewhere gets its mismatch listed as its own bug."""
    model = dense(0.1, 0.19998)
    x = np.concatenate([BOUNDARY, np.array([[3.0, 5.0, 7.0]], dtype=np.float32)])
    exact = verify_against_golden(model, lambda batch: order_free(model, batch), x)
    assert not exact["bit_exact"]
    assert {"sample": 0, "run": "one", "golden_order_dependent_at": ["Quant_act"]} in exact["mismatches"]
    assert all(m["sample"] == 0 for m in exact["mismatches"])

    def wrong(batch: np.ndarray) -> np.ndarray:
        y = run_golden(model, batch, chunk=1) if len(batch) == 1 else run_golden(model, batch)
        return y + np.float32(1.0) * (batch[:, :1] == 3.0)

    broken = verify_against_golden(model, wrong, x)
    assert {"sample": 1, "run": "batched", "golden_order_dependent_at": []} in broken["mismatches"]
    summary = format_summary({"target": "t", "max_abs_error": 1.0, "argmax_agreement": 1.0, **broken})
    assert "the target's lowering is wrong" in summary
