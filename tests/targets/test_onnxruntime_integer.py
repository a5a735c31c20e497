"""Integer layers of the onnxruntime target (``targets/onnxruntime/integer.py``): chosen where exact, bit-exact
against the golden executor, and not chosen where exactness cannot be shown."""

from __future__ import annotations

import json

import numpy as np
import pytest

import qdeploy

pytest.importorskip("onnxruntime")

QONNX = "qonnx.custom_op.general"


def _quant(source: str, output: str, scale: str, bits: str, name: str, signed: int = 1, narrow: int = 0):
    from onnx import helper

    return helper.make_node(
        "Quant", [source, scale, "zero", bits], [output], name=name, domain=QONNX, signed=signed, narrow=narrow
    )


def _model(nodes, constants: dict, in_shape, out_shape):
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper

    graph = helper.make_graph(
        nodes,
        "integer_layers",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)]
    return ModelWrapper(helper.make_model(graph, opset_imports=opsets))


def conv_net(act_scale: float = 0.25):
    """Quant(8 bit) -> Conv(2-bit weights) -> BatchNorm (some negative scales) -> Quant(2 bit) -> MaxPool -> Conv ->
    BatchNorm -> Quant(4 bit) -> Flatten -> MatMul(2-bit weights): a FINN CNV in small."""
    from onnx import helper

    rng = np.random.default_rng(0)

    def norm(channels: int, fan_in: int) -> dict:
        sign = np.where(rng.random(channels) < 0.25, -1.0, 1.0)
        return {
            "gamma": (sign * rng.uniform(0.5, 1.5, channels)).astype(np.float32),
            "beta": rng.normal(0, 0.3, channels).astype(np.float32),
            "mean": rng.normal(0, 0.3 * np.sqrt(fan_in), channels).astype(np.float32),
            "var": (fan_in * rng.uniform(0.2, 1.0, channels)).astype(np.float32),
        }

    n1, n2 = norm(8, 27), norm(8, 72)
    constants = {
        "zero": np.float32(0),
        "b8": np.float32(8),
        "b2": np.float32(2),
        "b4": np.float32(4),
        "s_in": np.float32(2.0**-4),
        "s_act": np.float32(act_scale),
        "one": np.float32(1.0),
        "w1": rng.integers(-1, 2, (8, 3, 3, 3)).astype(np.float32),
        "w2": rng.integers(-1, 2, (8, 8, 3, 3)).astype(np.float32),
        "w3": rng.integers(-1, 2, (8 * 2 * 2, 10)).astype(np.float32),
        **{f"{k}1": v for k, v in n1.items()},
        **{f"{k}2": v for k, v in n2.items()},
    }
    nodes = [
        _quant("x", "xq", "s_in", "b8", "Quant_in"),
        _quant("w1", "w1q", "one", "b2", "Quant_w1", narrow=1),
        _quant("w2", "w2q", "one", "b2", "Quant_w2", narrow=1),
        _quant("w3", "w3q", "one", "b2", "Quant_w3", narrow=1),
        helper.make_node("Conv", ["xq", "w1q"], ["c1"], name="Conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "gamma1", "beta1", "mean1", "var1"], ["n1"], name="BN_a"),
        _quant("n1", "a1", "s_act", "b2", "Quant_a", narrow=1),
        helper.make_node("MaxPool", ["a1"], ["p1"], name="Pool_a", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2q"], ["c2"], name="Conv_b", kernel_shape=[3, 3]),
        helper.make_node("BatchNormalization", ["c2", "gamma2", "beta2", "mean2", "var2"], ["n2"], name="BN_b"),
        _quant("n2", "a2", "s_act", "b4", "Quant_b"),
        helper.make_node("Flatten", ["a2"], ["f"], name="Flatten_0"),
        helper.make_node("MatMul", ["f", "w3q"], ["y"], name="MatMul_c"),
    ]
    return _model(nodes, constants, (1, 3, 8, 8), (1, 10))


def mlp(act_bits: int = 4, act_scale: float = 0.5):
    """Quant(8 bit) -> MatMul -> Relu -> Quant(4 bit unsigned) -> MatMul(+ bias via Add)."""
    from onnx import helper

    rng = np.random.default_rng(1)
    constants = {
        "zero": np.float32(0),
        "b8": np.float32(8),
        "b4": np.float32(4),
        "s_in": np.float32(2.0**-3),
        "s_w": np.float32(2.0**-2),
        "s_act": np.float32(act_scale),
        "b_act": np.float32(act_bits),
        "w1": rng.integers(-7, 8, (16, 32)).astype(np.float32) * 0.25,
        "w2": rng.integers(-7, 8, (32, 4)).astype(np.float32) * 0.25,
        "bias": (rng.integers(-20, 20, 4) * 2.0**-5).astype(np.float32),
    }
    nodes = [
        _quant("x", "xq", "s_in", "b8", "Quant_in"),
        _quant("w1", "w1q", "s_w", "b4", "Quant_w1"),
        _quant("w2", "w2q", "s_w", "b4", "Quant_w2"),
        helper.make_node("MatMul", ["xq", "w1q"], ["m1"], name="MatMul_a"),
        helper.make_node("Relu", ["m1"], ["r1"], name="Relu_a"),
        _quant("r1", "a1", "s_act", "b_act", "Quant_a", signed=0),
        helper.make_node("MatMul", ["a1", "w2q"], ["m2"], name="MatMul_b"),
        helper.make_node("Add", ["m2", "bias"], ["y"], name="Add_b"),
    ]
    return _model(nodes, constants, (1, 16), (1, 4))


def binary_net():
    """Quant(8 bit) -> Conv -> BatchNorm -> BipolarQuant -> MaxPool -> Conv(padded) -> BatchNorm -> BipolarQuant ->
    Conv -> BatchNorm -> BipolarQuant -> Flatten -> MatMul -> BatchNorm -> BipolarQuant -> MatMul: a FINN 1w1a CNV in
    small (binary weights and activations)."""
    from onnx import helper

    rng = np.random.default_rng(4)

    def norm(tag: str, channels: int, fan_in: int) -> tuple[dict, list[str]]:
        sign = np.where(rng.random(channels) < 0.25, -1.0, 1.0)
        values = {
            f"gamma{tag}": (sign * rng.uniform(0.5, 1.5, channels)).astype(np.float32),
            f"beta{tag}": rng.normal(0, 0.3, channels).astype(np.float32),
            f"mean{tag}": rng.normal(0, 0.5 * np.sqrt(fan_in), channels).astype(np.float32),
            f"var{tag}": (fan_in * rng.uniform(0.2, 1.0, channels)).astype(np.float32),
        }
        return values, list(values)

    constants = {"zero": np.float32(0), "b8": np.float32(8), "s_in": np.float32(2.0**-4), "one": np.float32(1.0)}
    nodes = [_quant("x", "xq", "s_in", "b8", "Quant_in")]
    shapes = {"w1": (8, 3, 3, 3), "w2": (8, 8, 3, 3), "w3": (8, 8, 3, 3), "w4": (8 * 2 * 2, 12), "w5": (12, 10)}
    for name, shape in shapes.items():
        constants[name] = np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)
        nodes.append(helper.make_node("BipolarQuant", [name, "one"], [f"{name}q"], name=f"Quant_{name}", domain=QONNX))
    layers = [  # (input, weights, attributes, batchnorm channels, fan-in)
        ("xq", "w1", {"kernel_shape": [3, 3]}, 8, 27),
        ("p1", "w2", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, 8, 72),
        ("a2", "w3", {"kernel_shape": [3, 3]}, 8, 72),
    ]
    for i, (source, weights, attrs, channels, fan_in) in enumerate(layers, start=1):
        values, names = norm(str(i), channels, fan_in)
        constants.update(values)
        nodes += [
            helper.make_node("Conv", [source, f"{weights}q"], [f"c{i}"], name=f"Conv_{i}", **attrs),
            helper.make_node("BatchNormalization", [f"c{i}", *names], [f"n{i}"], name=f"BN_{i}"),
            helper.make_node("BipolarQuant", [f"n{i}", "one"], [f"a{i}"], name=f"Act_{i}", domain=QONNX),
        ]
        if i == 1:
            nodes.append(helper.make_node("MaxPool", ["a1"], ["p1"], name="Pool_1", kernel_shape=[2, 2], strides=[2, 2]))
    values, names = norm("4", 12, 32)
    constants.update(values)
    nodes += [
        helper.make_node("Flatten", ["a3"], ["f"], name="Flatten_0"),
        helper.make_node("MatMul", ["f", "w4q"], ["m4"], name="MatMul_4"),
        helper.make_node("BatchNormalization", ["m4", *names], ["n4"], name="BN_4"),
        helper.make_node("BipolarQuant", ["n4", "one"], ["a4"], name="Act_4", domain=QONNX),
        helper.make_node("MatMul", ["a4", "w5q"], ["y"], name="MatMul_5"),
    ]
    return _model(nodes, constants, (1, 3, 10, 10), (1, 10))


def whole_window_net():
    """Quant(8 bit) -> Conv(5x5 -> 3x3) -> BatchNorm -> Quant(2 bit) -> Conv(3x3 kernel on the 3x3 image) -> BatchNorm
    -> Quant(2 bit) -> Flatten -> MatMul: CNV's last convolution, one output pixel per image."""
    from onnx import helper

    rng = np.random.default_rng(6)
    constants = {
        "zero": np.float32(0),
        "b8": np.float32(8),
        "b2": np.float32(2),
        "s_in": np.float32(2.0**-4),
        "s_act": np.float32(0.5),
        "one": np.float32(1.0),
        "w1": rng.integers(-1, 2, (6, 3, 3, 3)).astype(np.float32),
        "w2": rng.integers(-1, 2, (8, 6, 3, 3)).astype(np.float32),
        "w3": rng.integers(-1, 2, (8, 4)).astype(np.float32),
    }
    nodes = [_quant("x", "xq", "s_in", "b8", "Quant_in")]
    for name in ("w1", "w2", "w3"):
        nodes.append(_quant(name, f"{name}q", "one", "b2", f"Quant_{name}", narrow=1))
    for i, (source, channels, fan_in) in enumerate((("xq", 6, 27), ("a1", 8, 54)), start=1):
        sign = np.where(rng.random(channels) < 0.25, -1.0, 1.0)
        constants[f"g{i}"] = (sign * rng.uniform(0.5, 1.5, channels)).astype(np.float32)
        constants[f"be{i}"] = rng.normal(0, 0.3, channels).astype(np.float32)
        constants[f"mu{i}"] = rng.normal(0, 0.3 * np.sqrt(fan_in), channels).astype(np.float32)
        constants[f"v{i}"] = (fan_in * rng.uniform(0.2, 1.0, channels)).astype(np.float32)
        nodes += [
            helper.make_node("Conv", [source, f"w{i}q"], [f"c{i}"], name=f"Conv_{i}", kernel_shape=[3, 3]),
            helper.make_node("BatchNormalization", [f"c{i}", f"g{i}", f"be{i}", f"mu{i}", f"v{i}"], [f"n{i}"]),
            _quant(f"n{i}", f"a{i}", "s_act", "b2", f"Act_{i}", narrow=1),
        ]
    nodes += [
        helper.make_node("Flatten", ["a2"], ["f"], name="Flatten_0"),
        helper.make_node("MatMul", ["f", "w3q"], ["y"], name="MatMul_3"),
    ]
    return _model(nodes, constants, (1, 3, 5, 5), (1, 4))


def _compile(graph, folder, shape):
    x = np.random.default_rng(2).normal(0, 3, (300, *shape)).astype(np.float32)
    artifact = qdeploy.compile(graph, target="onnxruntime", out=folder, data=x, verify_samples=500)
    report = json.loads((folder / "report.json").read_text())
    import onnx

    from qdeploy.targets.onnxruntime.exactness import PLAN_KEY

    props = {p.key: p.value for p in onnx.load(str(folder / "model.onnx")).metadata_props}
    return artifact, report, props[PLAN_KEY]


def test_conv_net_runs_requantized_integer_convolutions_bit_exact(tmp_path):
    artifact, report, plan = _compile(conv_net(), tmp_path / "ort", (3, 8, 8))
    assert report["bit_exact"] is True and report["outputs_equal"] == report["outputs_compared"] == 800
    assert plan.startswith("integer layers (requantized 2 QLinearConv, 1 integer QGemm to float)"), plan
    kernels = report["ort_kernels"]
    assert sum(n for op, n in kernels.items() if op.endswith("QLinearConv")) == 2, kernels
    assert kernels.get("QGemm") == 1 and "MatMul" not in kernels and "Cast" not in kernels, kernels
    assert "Conv" not in kernels and "BatchNormalization" not in kernels, kernels  # folded into the requantization
    import onnx

    # the 2-bit quantizer's Clip runs after the MaxPool (a quarter of the values): QLinearConv -> MaxPool -> Clip
    nodes = onnx.load(str(tmp_path / "ort" / "model.onnx")).graph.node
    producer = {out: n.op_type for n in nodes for out in n.output}
    pools = [n for n in nodes if n.op_type == "MaxPool"]
    assert len(pools) == 1 and producer[pools[0].input[0]] == "QLinearConv", [n.op_type for n in nodes]
    reader = [n.op_type for n in nodes if pools[0].output[0] in n.input]
    assert reader == ["Clip"] and sum(n.op_type == "Clip" for n in nodes) == 2, [n.op_type for n in nodes]
    x = np.random.default_rng(3).normal(0, 3, (64, 3, 8, 8)).astype(np.float32)
    assert np.array_equal(artifact.predict(x), qdeploy.run_golden(conv_net(), x))


def test_mlp_runs_integer_matmuls_bit_exact(tmp_path):
    """The hidden layer (MatMul -> Relu -> Quant) runs as a requantized QGemm, the output layer (no quantizer after
    it) as a QGemm to float: no reshape, transpose, cast or float op between them, only the uint8 Clip to the 4-bit
    quantizer's 16 levels."""
    _, report, plan = _compile(mlp(), tmp_path / "ort", (16,))
    assert report["bit_exact"] is True and report["outputs_equal"] == report["outputs_compared"]
    assert plan.startswith("integer layers (requantized 1 QGemm, 1 integer QGemm to float)"), plan
    assert report["plan"] == plan  # report.json says it too
    kernels = report["ort_kernels"]
    assert kernels.get("QGemm") == 2 and "MatMul" not in kernels and "QLinearConv" not in kernels, kernels
    assert not {"Reshape", "Transpose", "Cast", "Relu"} & set(kernels) and kernels.get("Clip") == 1, kernels


def test_binary_activations_run_in_their_0_255_form_without_clips(tmp_path):
    """A two-level (bipolar) activation's requantization saturates at both ends, 0 and 255, so the layers reading it
    need no Clip: only the padded convolution (its padding must read as 0, not -1) and the float-output matrix
    product read the Clip's 0/2 form. Bit-exact either way."""
    import onnx

    artifact, report, plan = _compile(binary_net(), tmp_path / "ort", (3, 10, 10))
    assert report["bit_exact"] is True and report["outputs_equal"] == report["outputs_compared"]
    assert plan.startswith("integer layers (requantized 3 QLinearConv + 1 QGemm, 1 integer QGemm to float)"), plan
    nodes = onnx.load(str(tmp_path / "ort" / "model.onnx")).graph.node
    producer = {out: n for n in nodes for out in n.output}
    clipped = {}
    for node in nodes:
        if node.op_type in ("QLinearConv", "QGemm"):
            source = producer.get(node.input[0])
            while source is not None and source.op_type in ("MaxPool", "Reshape", "Flatten"):
                source = producer.get(source.input[0])
            clipped[node.name.split("_Q")[0]] = source is not None and source.op_type == "Clip"
    assert clipped == {"Conv_1": False, "Conv_2": True, "Conv_3": False, "MatMul_4": False, "MatMul_5": True}, clipped
    x = np.random.default_rng(5).normal(0, 3, (64, 3, 10, 10)).astype(np.float32)
    assert np.array_equal(artifact.predict(x), qdeploy.run_golden(binary_net(), x))


def test_a_convolution_with_one_output_pixel_runs_as_a_qgemm(tmp_path):
    """The kernel covers the whole image: one QGemm over the batch on the image flattened channels-last (ORT's own
    transpose back from its channels-last convolution cancels it), its (N, C) output read by the MatMul directly."""
    artifact, report, plan = _compile(whole_window_net(), tmp_path / "ort", (3, 5, 5))
    assert report["bit_exact"] is True and report["outputs_equal"] == report["outputs_compared"]
    assert plan.startswith("integer layers (requantized 1 QLinearConv + 1 QGemm, 1 integer QGemm to float)"), plan
    kernels = report["ort_kernels"]
    assert kernels.get("QGemm") == 2 and kernels.get("Transpose") == 1 and kernels.get("Reshape") == 1, kernels
    x = np.random.default_rng(7).normal(0, 3, (64, 3, 5, 5)).astype(np.float32)
    assert np.array_equal(artifact.predict(x), qdeploy.run_golden(whole_window_net(), x))


def test_three_input_channels_are_padded_to_four_for_the_fast_convolution(tmp_path):
    """A 3-channel (RGB) first layer with 16 filters: a fourth input channel with zero weights (MLAS's indirect
    convolution needs a multiple of 4), next to the spatial padding; bit-exact."""
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(8)
    constants = {
        "zero": np.float32(0),
        "b8": np.float32(8),
        "b2": np.float32(2),
        "s_in": np.float32(2.0**-4),
        "s_act": np.float32(0.5),
        "one": np.float32(1.0),
        "w1": rng.integers(-1, 2, (16, 3, 3, 3)).astype(np.float32),
        "w2": rng.integers(-1, 2, (16 * 4 * 4, 5)).astype(np.float32),
        "bias1": rng.normal(0, 1, 16).astype(np.float32),
    }
    nodes = [
        _quant("x", "xq", "s_in", "b8", "Quant_in"),
        _quant("w1", "w1q", "one", "b2", "Quant_w1", narrow=1),
        _quant("w2", "w2q", "one", "b2", "Quant_w2", narrow=1),
        helper.make_node("Conv", ["xq", "w1q"], ["c1"], name="Conv_1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c1", "bias_c"], ["n1"], name="Bias_1"),
        _quant("n1", "a1", "s_act", "b2", "Act_1", narrow=1),
        helper.make_node("Flatten", ["a1"], ["f"], name="Flatten_0"),
        helper.make_node("MatMul", ["f", "w2q"], ["y"], name="MatMul_2"),
    ]
    constants["bias_c"] = (np.round(constants.pop("bias1") * 16) / 16).reshape(1, 16, 1, 1).astype(np.float32)
    graph = _model(nodes, constants, (1, 3, 4, 4), (1, 5))
    artifact, report, plan = _compile(graph, tmp_path / "ort", (3, 4, 4))
    assert report["bit_exact"] is True and report["outputs_equal"] == report["outputs_compared"]
    assert plan.startswith("integer layers (requantized 1 QLinearConv"), plan
    model = onnx.load(str(tmp_path / "ort" / "model.onnx"))
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    (conv,) = [n for n in model.graph.node if n.op_type == "QLinearConv"]
    assert weights[conv.input[3]].shape == (16, 4, 3, 3) and not weights[conv.input[3]][:, 3].any()
    assert report["ort_kernels"].get("Pad") == 1, report["ort_kernels"]
    x = np.random.default_rng(9).normal(0, 3, (64, 3, 4, 4)).astype(np.float32)
    assert np.array_equal(artifact.predict(x), qdeploy.run_golden(graph, x))


def test_an_8_bit_quantizer_whose_top_levels_no_input_reaches_needs_no_clip(tmp_path):
    """With an activation scale of 4 the hidden layer's 8-bit quantizer reaches at most level ~110: the
    requantization never passes it (checked at the largest accumulator), so no Clip after the QGemm."""
    _, report, plan = _compile(mlp(act_bits=8, act_scale=4.0), tmp_path / "ort", (16,))
    assert report["bit_exact"] is True and report["outputs_equal"] == report["outputs_compared"]
    assert plan.startswith("integer layers (requantized 1 QGemm, 1 integer QGemm to float)"), plan
    assert "Clip" not in report["ort_kernels"], report["ort_kernels"]


def test_an_unsigned_binary_activation_feeds_a_padded_convolution_in_its_0_255_form(tmp_path):
    """Levels {0, 1}: the padding reads as 0 (the zero point), which is level 0 in the 0/255 form too, so even the
    padded convolution needs no Clip before it."""
    from onnx import helper

    rng = np.random.default_rng(10)
    constants = {
        "zero": np.float32(0),
        "b8": np.float32(8),
        "b1": np.float32(1),
        "b2": np.float32(2),
        "s_in": np.float32(2.0**-4),
        "one": np.float32(1.0),
        "w1": rng.integers(-1, 2, (16, 4, 3, 3)).astype(np.float32),
        "w2": rng.integers(-1, 2, (16, 16, 3, 3)).astype(np.float32),
        "t1": rng.integers(-6, 6, (1, 16, 1, 1)).astype(np.float32),
        "t2": rng.integers(-6, 6, (1, 16, 1, 1)).astype(np.float32),
    }
    nodes = [
        _quant("x", "xq", "s_in", "b8", "Quant_in"),
        _quant("w1", "w1q", "one", "b2", "Quant_w1", narrow=1),
        _quant("w2", "w2q", "one", "b2", "Quant_w2", narrow=1),
        helper.make_node("Conv", ["xq", "w1q"], ["c1"], name="Conv_1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Sub", ["c1", "t1"], ["n1"], name="Shift_1"),
        _quant("n1", "a1", "one", "b1", "Act_1", signed=0),  # levels 0 and 1
        helper.make_node("Conv", ["a1", "w2q"], ["c2"], name="Conv_2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Sub", ["c2", "t2"], ["n2"], name="Shift_2"),
        _quant("n2", "a2", "one", "b2", "Act_2", signed=0),
        helper.make_node("Flatten", ["a2"], ["f"], name="Flatten_0"),
        helper.make_node("MatMul", ["f", "w3q"], ["y"], name="MatMul_3"),
    ]
    constants["w3"] = rng.integers(-1, 2, (16 * 25, 3)).astype(np.float32)
    nodes.insert(3, _quant("w3", "w3q", "one", "b2", "Quant_w3", narrow=1))
    graph = _model(nodes, constants, (1, 4, 5, 5), (1, 3))
    artifact, report, plan = _compile(graph, tmp_path / "ort", (4, 5, 5))
    assert report["bit_exact"] is True and report["outputs_equal"] == report["outputs_compared"]
    assert plan.startswith("integer layers (requantized 2 QLinearConv, 1 integer QGemm to float)"), plan
    import onnx

    nodes = onnx.load(str(tmp_path / "ort" / "model.onnx")).graph.node
    producer = {out: n.op_type for n in nodes for out in n.output}
    convs = [n for n in nodes if n.op_type == "QLinearConv"]
    assert [producer.get(n.input[0]) for n in convs] == ["QuantizeLinear", "QLinearConv"], [n.op_type for n in nodes]
    x = np.random.default_rng(11).normal(0, 3, (64, 4, 5, 5)).astype(np.float32)
    assert np.array_equal(artifact.predict(x), qdeploy.run_golden(graph, x))


def test_wide_weights_read_a_binary_activation_in_its_clipped_form(tmp_path):
    """8-bit weights (|w| up to 100) times 255 could saturate AVX2's int16 pair sums: the layer after a bipolar
    activation reads its 0/2 (clipped) form instead of the 0/255 one, still on the integer kernel, bit-exact."""
    import onnx
    from onnx import helper

    rng = np.random.default_rng(12)
    constants = {
        "zero": np.float32(0),
        "b8": np.float32(8),
        "b2": np.float32(2),
        "s_in": np.float32(2.0**-4),
        "one": np.float32(1.0),
        "s_w": np.float32(2.0**-6),
        "w1": rng.integers(-1, 2, (16, 4, 3, 3)).astype(np.float32),
        "w2": (rng.integers(-100, 101, (16, 16, 3, 3)) * 2.0**-6).astype(np.float32),
        "t1": rng.integers(-4, 4, (1, 16, 1, 1)).astype(np.float32),
        "t2": rng.normal(0, 8, (1, 16, 1, 1)).round().astype(np.float32),
        "w3": rng.integers(-1, 2, (16, 3)).astype(np.float32),
    }
    nodes = [
        _quant("x", "xq", "s_in", "b8", "Quant_in"),
        _quant("w1", "w1q", "one", "b2", "Quant_w1", narrow=1),
        _quant("w2", "w2q", "s_w", "b8", "Quant_w2", narrow=1),
        _quant("w3", "w3q", "one", "b2", "Quant_w3", narrow=1),
        helper.make_node("Conv", ["xq", "w1q"], ["c1"], name="Conv_1", kernel_shape=[3, 3]),
        helper.make_node("Sub", ["c1", "t1"], ["n1"], name="Shift_1"),
        helper.make_node("BipolarQuant", ["n1", "one"], ["a1"], name="Act_1", domain=QONNX),
        helper.make_node("Conv", ["a1", "w2q"], ["c2"], name="Conv_2", kernel_shape=[3, 3]),
        helper.make_node("Sub", ["c2", "t2"], ["n2"], name="Shift_2"),
        _quant("n2", "a2", "one", "b2", "Act_2", narrow=1),
        helper.make_node("Flatten", ["a2"], ["f"], name="Flatten_0"),
        helper.make_node("MatMul", ["f", "w3q"], ["y"], name="MatMul_3"),
    ]
    graph = _model(nodes, constants, (1, 4, 5, 5), (1, 3))
    artifact, report, plan = _compile(graph, tmp_path / "ort", (4, 5, 5))
    assert report["bit_exact"] is True and report["outputs_equal"] == report["outputs_compared"]
    assert plan.startswith("integer layers (requantized 1 QLinearConv + 1 QGemm, 1 integer QGemm to float)"), plan
    nodes = onnx.load(str(tmp_path / "ort" / "model.onnx")).graph.node
    producer = {out: n for n in nodes for out in n.output}
    (gemm,) = [n for n in nodes if n.name.startswith("Conv_2") and n.op_type == "QGemm"]
    source = producer[gemm.input[0]]
    while source.op_type in ("Reshape", "Transpose"):
        source = producer[source.input[0]]
    assert source.op_type == "Clip", [n.op_type for n in nodes]
    x = np.random.default_rng(13).normal(0, 3, (64, 4, 5, 5)).astype(np.float32)
    assert np.array_equal(artifact.predict(x), qdeploy.run_golden(graph, x))


def test_non_power_of_two_activation_scale_keeps_the_convolution_in_float(tmp_path):
    """With an activation scale of 1/3 the next Conv's float32 sums are not exact: no integer layer for it (the
    plan says why), and the model is still bit-exact."""
    _, report, plan = _compile(conv_net(act_scale=1 / 3), tmp_path / "ort", (3, 8, 8))
    assert report["bit_exact"] is True
    assert "Conv_b: its float32 sum is not shown exact" in plan, plan
    assert "requantized 1 QLinearConv" in plan, plan  # the first one still qualifies: its input scale is 2^-4
    assert report["ort_kernels"].get("Conv") == 1, report["ort_kernels"]


def test_two_level_fit_saturates_at_both_ends():
    """``_fit_spread`` on thresholds 5 (increasing), a constant-high and a constant-low channel, a kernel summing 255
    times the accumulator: exactly 0 below each threshold and 255 from it on; None for three levels."""
    from qdeploy.targets.onnxruntime.integer import _fit_spread, _requantize

    low, high = np.array([-20, -20, -20]), np.array([20, 20, 20])
    levels = [(-1, [5, 5]), (1, [-20, -20]), (-1, [None, None])]
    bias, multiplier = _fit_spread(levels, low, high, -1, 1, np.array([False] * 3), unit=255)
    acc = np.arange(-20, 21)
    got = _requantize(255 * acc[None, :], bias[:, None], multiplier[:, None])
    assert np.array_equal(got, np.stack([np.where(acc >= 5, 255, 0), np.full(41, 255), np.zeros(41)]))
    assert _fit_spread([(0, [3, 7])], low[:1], high[:1], 0, 2, np.array([False])) is None


def test_a_step_function_no_requantization_reproduces_is_not_fitted():
    """Thresholds 0, 1, 9 (uneven beyond what rounding explains): no bias/multiplier pair matches on both sides
    of every threshold, so the layer stays in float."""
    from qdeploy.targets.onnxruntime.integer import _fit_requantization

    levels = [(0, [0, 1, 9])]
    assert _fit_requantization(levels, np.array([-50]), np.array([50]), 0, 3, np.array([False]), 1) is None
    even = [(0, [0, 4, 8])]
    bias, multiplier, _ = _fit_requantization(even, np.array([-50]), np.array([50]), 0, 3, np.array([False]), 1)
    acc = np.arange(-50, 51)
    expected = (acc >= 0).astype(int) + (acc >= 4) + (acc >= 8)
    got = np.clip(np.rint(np.clip((acc + bias[0]).astype(np.float32) * multiplier[0], 0, 255)), 0, 3)
    assert np.array_equal(got, expected)


def test_requantization_model_matches_onnxruntimes_qlinearconv_at_ties():
    """The fit's model of MLAS's requantization (int32 sum to float32, times the multiplier, clamp, round half to
    even) against ORT's own QLinearConv on every accumulator of a 1x1 convolution, multipliers with exact ties."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from qdeploy.targets.onnxruntime.integer import _requantize

    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    weights = np.array([1, -1, 3, -7], dtype=np.int8).reshape(4, 1, 1, 1)
    multipliers = np.array([0.5, 0.25, 1 / 3, 0.0625], dtype=np.float32)
    bias = np.array([3, 200, -5, 1000], dtype=np.int32)
    inits = {
        "one": np.float32(1),
        "xzp": np.uint8(100),
        "w": weights,
        "m": multipliers,
        "wzp": np.zeros(4, np.int8),
        "yzp": np.uint8(0),
        "b": bias,
    }
    node = helper.make_node("QLinearConv", ["x", "one", "xzp", "w", "m", "wzp", "one", "yzp", "b"], ["y"])
    graph = helper.make_graph(
        [node],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    got = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    acc = (x.astype(np.int64).reshape(1, -1) - 100) * weights.reshape(4, 1).astype(np.int64)
    expected = _requantize(acc, bias.reshape(4, 1).astype(np.int64), multipliers.reshape(4, 1))
    assert np.array_equal(got.reshape(4, -1), expected)


def test_requantization_model_matches_onnxruntimes_qgemm_at_ties():
    """The same model of the requantization against ORT's QGemm (the requantized matrix products): int32 bias added
    to the accumulator, per-column multipliers with exact ties, a batch of rows; and QGemm's float output is
    float32(acc) * scale."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from qdeploy.targets.onnxruntime.integer import MS_DOMAIN, _requantize

    x = np.arange(256, dtype=np.uint8).reshape(64, 4)
    weights = np.array([[1, -1, 3, -7], [2, 0, -1, 5], [-3, 1, 1, 1], [0, 2, -2, 4]], dtype=np.int8)  # (K, N)
    multipliers = np.array([0.5, 0.25, 1 / 3, 0.0625], dtype=np.float32)
    bias = np.array([3, 200, -5, 1000], dtype=np.int32)
    inits = {
        "one": np.float32(1),
        "xzp": np.uint8(100),
        "w": weights,
        "m": multipliers,
        "wzp": np.zeros(4, np.int8),
        "yzp": np.uint8(0),
        "b": bias,
        "s": np.float32([2.0**-3, 2.0**-5, 1.0, 2.0**4]),
    }
    nodes = [
        helper.make_node("QGemm", ["x", "one", "xzp", "w", "m", "wzp", "b", "one", "yzp"], ["y"], domain=MS_DOMAIN),
        helper.make_node("QGemm", ["x", "one", "xzp", "w", "s", "wzp"], ["f"], domain=MS_DOMAIN),
    ]
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [64, 4])],
        [helper.make_tensor_value_info(n, t, None) for n, t in (("y", TensorProto.UINT8), ("f", TensorProto.FLOAT))],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(MS_DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got, as_float = session.run(None, {"x": x})
    acc = (x.astype(np.int64) - 100) @ weights.astype(np.int64)
    assert np.array_equal(got, _requantize(acc, bias.astype(np.int64), multipliers))
    assert np.array_equal(as_float, acc.astype(np.float32) * inits["s"])
