"""onnxruntime target: integer QDQ, bit-exact with the golden executor, clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

import qdeploy
from qdeploy.artifact import Artifact
from qdeploy.errors import QDeployError, UnsupportedModelError
from tests.targets.helpers import assert_no_output, copy_graph, set_activation_bits, set_rounding


@pytest.mark.parametrize("which", ["mlp_w4a8", "cnn_w4a8"])
def test_w4a8_digits_bit_exact_on_real_and_random_inputs(which, request, data, tmp_path):
    _, graph = request.getfixturevalue(which)
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=data.x_test)
    report = json.loads((tmp_path / "ort" / "report.json").read_text())
    assert report["bit_exact"] is True
    assert report["outputs_compared"] == report["outputs_equal"] == len(data.x_test) + 1000
    assert report["verification_inputs"] == {"user": len(data.x_test), "random": 1000}
    assert report["max_abs_error"] == 0.0
    # ORT fused the QDQ groups into integer kernels (power-of-two scales, accumulators within 24 bits: exact); only
    # its re-rounding of float biases stays off
    assert report["integer_kernels"] >= 1
    assert "session.disable_quant_qdq" not in report["session_config"]
    assert report["session_config"]["optimization.disable_specified_optimizers"] == "WeightBiasQuantization"
    assert {"target", "model", "per_layer", "outputs_compared", "outputs_equal"} <= set(report)
    assert all(row["accumulator"] == "int32" for row in report["per_layer"])
    assert {(row["weight"], row["activation"]) for row in report["per_layer"]} == {("int4", "int8")}
    # the deployed model predicts what the golden executor computes
    assert np.array_equal(artifact.predict(data.x_test[:64]), qdeploy.run_golden(graph, data.x_test[:64]))


def test_float_scales_run_float_kernels_on_the_integers_and_stay_exact(float_cnn, data, tmp_path):
    """An integer kernel requantizes by a rounded float multiplier when scales are not powers of two, which
    differs from the graph's float32 arithmetic at rounding ties; such graphs keep ORT's float kernels."""
    qmodel = qdeploy.quantize(float_cnn, data.x_train[:256], weight_bits=4, act_bits=8, scale="float")
    graph = qdeploy.export(qmodel, data.x_train[:1])
    qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=data.x_test)
    report = json.loads((tmp_path / "ort" / "report.json").read_text())
    assert report["bit_exact"] and report["integer_kernels"] == 0
    assert report["session_config"]["session.disable_quant_qdq"] == "1"
    assert "ConvMulFusion" in report["session_config"]["optimization.disable_specified_optimizers"].split(";")
    # the folder's own runner (a fresh session from model.onnx) makes the same decision
    assert np.array_equal(Artifact(tmp_path / "ort").predict(data.x_test), qdeploy.run_golden(graph, data.x_test))


def test_verify_reruns_from_the_folder(mlp_w4a8, data, tmp_path):
    _, graph = mlp_w4a8
    qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", verify_samples=50)
    result = Artifact(tmp_path / "ort").verify(data.x_test[:300])
    assert result["bit_exact"] and result["outputs_compared"] == 300


def _lowered_ops(folder) -> set[str]:
    import onnx

    return {n.op_type for n in onnx.load(str(folder / "model.onnx")).graph.node}


@pytest.mark.parametrize("bits", [10, 16])
def test_wider_than_8_bit_activation_runs_the_reference_float_steps_exactly(bits, mlp_w4a8, tmp_path):
    """No 8-bit integer type holds it: the quantizer becomes qonnx's own float32 steps (Div, Clip, Round, Mul)."""
    graph = copy_graph(mlp_w4a8[1])
    set_activation_bits(graph, 1, bits)
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", verify_samples=300)
    assert artifact.bit_exact
    assert {"Div", "Clip", "Round", "Mul"} <= _lowered_ops(tmp_path / "ort")


@pytest.mark.parametrize("mode", ["FLOOR", "CEIL", "UP", "DOWN", "HALF_UP", "HALF_DOWN"])
def test_rounding_modes_quantizelinear_cannot_express_run_exactly(mode, mlp_w4a8, tmp_path):
    """QuantizeLinear only rounds half to even; other modes are qonnx's rounding function as element-wise ops.
    Half of the random inputs sit on ties, where the modes differ."""
    graph = copy_graph(mlp_w4a8[1])
    set_rounding(graph, 0, mode)
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", verify_samples=300)
    assert artifact.bit_exact
    rounding_op = {"FLOOR": "Floor", "CEIL": "Ceil", "UP": "Ceil", "DOWN": "Floor", "HALF_UP": "Floor"}.get(mode, "Ceil")
    assert rounding_op in _lowered_ops(tmp_path / "ort")


def test_narrow_bit_widths_use_clip_and_stay_exact(float_mlp, data, tmp_path):
    """W3A4: QONNX ranges narrower than int8/uint8 need the Clip of QCDQ."""
    graph = qdeploy.export(qdeploy.quantize(float_mlp, data.x_train[:256], weight_bits=3, act_bits=4), data.x_train[:1])
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=data.x_test)
    assert artifact.bit_exact
    model_ops = {n.op_type for n in __import__("onnx").load(str(tmp_path / "ort" / "model.onnx")).graph.node}
    assert "Clip" in model_ops


def test_raw_dynamo_export_with_bias_less_gemm(biasless_dynamo_path, data, tmp_path):
    artifact = qdeploy.compile(biasless_dynamo_path, target="onnxruntime", out=tmp_path / "ort", data=data.x_test[:200])
    assert artifact.bit_exact and artifact.report["outputs_compared"] == 1200


def test_verify_exits_non_zero_when_the_artefact_no_longer_matches(mlp_w4a8, tmp_path, capsys):
    """Tamper with one weight of the deployed model: `qdeploy verify` must notice and exit 3."""
    import onnx
    from onnx import numpy_helper

    from qdeploy.cli import EXIT_NOT_EXACT, main

    _, graph = mlp_w4a8
    qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", verify_samples=200)
    assert main(["verify", str(tmp_path / "ort"), "-q"]) == 0
    path = tmp_path / "ort" / "model.onnx"
    model = onnx.load(str(path))
    # int8 weights: a DequantizeLinear's integers, or an integer layer's (``_w8``)
    weights = next(i for i in model.graph.initializer if i.name.endswith(("_int", "_w8")) and i.data_type == 3)
    values = numpy_helper.to_array(weights).copy()
    values.flat[0] = 7 if values.flat[0] != 7 else -7
    weights.CopyFrom(numpy_helper.from_array(values, weights.name))
    onnx.save(model, str(path))
    assert main(["verify", str(tmp_path / "ort"), "-q"]) == EXIT_NOT_EXACT
    assert "NOT EXACT" in capsys.readouterr().out


# --- quantizers from other tools, on small synthetic graphs (one runtime input, shapes fixed) ----------------------


def _graph(nodes, initializers, shape=(1, 16), out_shape=None, opset=13):
    """A QONNX graph ``x -> nodes -> y`` with the given initializers (name -> array)."""
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper

    graph = helper.make_graph(
        nodes,
        "synthetic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape or shape))],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid("qonnx.custom_op.general", 1)]
    return ModelWrapper(helper.make_model(graph, opset_imports=opsets))


def _quant(source, output, name="Quant_0", signed=1, narrow=0, rounding="ROUND"):
    from onnx import helper

    return helper.make_node(
        "Quant",
        [source, "s", "z", "b"],
        [output],
        name=name,
        domain="qonnx.custom_op.general",
        signed=signed,
        narrow=narrow,
        rounding_mode=rounding,
    )


def _inputs(scale: float, count: int = 400, shape=(16,)) -> np.ndarray:
    """Inputs on every rounding tie of ``scale`` and between them, plus values far outside the range."""
    rng = np.random.default_rng(1)
    ties = (rng.integers(-300, 300, (count // 2, *shape)) + 0.5) * scale
    spread = rng.uniform(-400 * scale, 400 * scale, (count - count // 2, *shape))
    return np.concatenate([ties, spread]).astype(np.float32)


def test_signed_one_bit_quant_runs_as_qonnx_executes_it(tmp_path):
    """qonnx executes a signed 1-bit Quant (QKeras quantized_bits(1)) as bipolar: x/s >= 0 -> +s else -s."""
    graph = _graph([_quant("x", "y", narrow=1)], {"s": np.float32(0.5), "z": np.float32(0), "b": np.float32(1)})
    x = _inputs(0.5)
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=x, verify_samples=0)
    assert artifact.bit_exact
    assert set(np.unique(artifact.predict(x))) == {-0.5, 0.5}


@pytest.mark.parametrize(("layout", "shape"), [("", (1, 3, 2, 2)), ("NHWC", (1, 2, 2, 3)), ("NC", (1, 3))])
def test_multithreshold_runs_as_qonnx_executes_it(layout, shape, tmp_path):
    """FINN's streamlined activations: count of thresholds reached per channel (the channel axis where data_layout
    puts it), then out_scale * count + out_bias; inputs exactly on every threshold and between them."""
    from onnx import helper

    rng = np.random.default_rng(2)
    thresholds = np.sort(rng.normal(0, 1, (3, 4)), axis=1).astype(np.float32)
    attrs = {"out_dtype": "INT3", "out_scale": 0.5, "out_bias": -1.0, **({"data_layout": layout} if layout else {})}
    node = helper.make_node("MultiThreshold", ["x", "t"], ["y"], name="mt", domain="qonnx.custom_op.general", **attrs)
    graph = _graph([node], {"t": thresholds}, shape=shape)
    channel_axis = (layout or "NCHW").index("C")
    on_thresholds = np.moveaxis(np.broadcast_to(thresholds.T[:, :, None, None], (4, 3, 2, 2)), 1, channel_axis)
    on_thresholds = on_thresholds.reshape(4, *shape[1:]) if len(shape) == 4 else thresholds.T
    x = np.concatenate([on_thresholds, np.nextafter(on_thresholds, -np.inf), rng.normal(0, 1.5, (200, *shape[1:]))])
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=x.astype(np.float32))
    assert artifact.bit_exact
    import onnx

    lowered = onnx.load(str(tmp_path / "ort" / "model.onnx"))
    assert "MultiThreshold" not in {n.op_type for n in lowered.graph.node}


def test_a_resize_whose_sizes_spell_out_batch_one_runs_on_any_batch(tmp_path):
    """torch exports a fixed-size ``interpolate`` with constant sizes [1, C, H, W]: the folder takes any batch (its
    Resize reads the batch from its input) and is exact batched and one sample at a time."""
    from onnx import helper

    resize = helper.make_node("Resize", ["q", "", "", "sizes"], ["y"], name="up", mode="nearest")
    graph = _graph(
        [_quant("x", "q"), resize],
        {"s": np.float32(0.25), "z": np.float32(0), "b": np.float32(4), "sizes": np.array([1, 2, 6, 6], np.int64)},
        shape=(1, 2, 3, 3),
        out_shape=(1, 2, 6, 6),
    )
    x = _inputs(0.25, count=64, shape=(2, 3, 3))
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=x, verify_samples=100)
    assert artifact.bit_exact and artifact.report["outputs_compared"] == len(x) + 100
    assert artifact.predict(x).reshape(len(x), 2, 6, 6).shape == (64, 2, 6, 6)


@pytest.mark.parametrize(
    "scale, zero_point, bits, signed",
    [
        (np.float32(0.0371), np.float32(3), 8, 0),  # asymmetric (brevitas ShiftedUint8): the zero point rounds in float
        (np.float64(0.0371), np.float64(0), 4, 1),  # float64 scale (QKeras conversions): the reference computes in double
        (np.int64(1), np.int64(0), 6, 1),  # integer scale: also double in numpy
        (np.float32([0.5, 0.25] * 8), np.float32(0), 4, 1),  # per-channel activation scale
        (np.float32(0.0371), np.float32(0), 24, 1),  # wider than any integer QDQ type
    ],
)
def test_activation_quantizers_without_an_integer_qdq_form_are_exact(scale, zero_point, bits, signed, tmp_path):
    graph = _graph([_quant("x", "y", signed=signed)], {"s": scale, "z": zero_point, "b": np.float32(bits)})
    x = _inputs(float(np.min(scale)))
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=x, verify_samples=100)
    assert artifact.bit_exact and artifact.report["outputs_compared"] == len(x) + 100


@pytest.mark.parametrize("bad_scale", [0.0, -0.5, np.inf, np.nan])
def test_invalid_scale_is_refused_before_writing(bad_scale, tmp_path):
    graph = _graph([_quant("x", "y")], {"s": np.float32(bad_scale), "z": np.float32(0), "b": np.float32(4)})
    with pytest.raises(QDeployError, match=r"Quant_0.*scale"):
        qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort")
    assert_no_output(tmp_path / "ort")


def test_fp8_float_quant_matches_qonnx_at_ties_and_saturation(tmp_path):
    """FloatQuant E4M3 (bias 7, max 448) with a float scale: binades counted exactly, round half to even, clip."""
    from onnx import helper

    node = helper.make_node(
        "FloatQuant",
        ["x", "s", "e", "m", "bias", "max"],
        ["y"],
        name="FloatQuant_0",
        domain="qonnx.custom_op.general",
        has_inf=0,
        has_nan=1,
        has_subnormal=1,
        rounding_mode="ROUND",
        saturation=1,
    )
    constants = {"s": np.float32(0.0123), "e": np.float32(4), "m": np.float32(3), "bias": np.float32(7)}
    graph = _graph([node], {**constants, "max": np.float32(448)})
    # every E4M3 value and the midpoints between neighbours (ties), scaled, plus values past the largest one
    grid = np.unique(np.concatenate([np.ldexp(np.arange(8, 16), e - 3) for e in range(-6, 9)] + [np.arange(8) / 512]))
    values = np.concatenate([grid, (grid[1:] + grid[:-1]) / 2, [500.0, 1e4, 2.0**-12]])
    x = (np.concatenate([values, -values]) * np.float32(0.0123)).astype(np.float32)
    x = np.resize(x, (len(x) // 16 + 1) * 16).reshape(-1, 16)
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=x, verify_samples=100)
    assert artifact.bit_exact


def test_channels_last_conv_becomes_the_standard_conv_between_transposes(tmp_path):
    """hls4ml's example models use qonnx's channels-last Conv; qonnx runs it as Conv on a channels-first copy."""
    from onnx import helper

    conv = helper.make_node(
        "Conv",
        ["x", "w"],
        ["c"],
        name="Conv_0",
        domain="qonnx.custom_op.channels_last",
        kernel_shape=[3, 3],
        pads=[0, 0, 0, 0],
        strides=[1, 1],
        dilations=[1, 1],
        group=1,
    )
    weights = np.random.default_rng(0).integers(-3, 4, (4, 3, 3, 2)).astype(np.float32) * 0.25  # M, kh, kw, C
    constants = {"s": np.float32(0.125), "z": np.float32(0), "b": np.float32(6), "w": weights}
    # on the graph input: qonnx infers a channels-last op's shape only from a known input shape
    graph = _graph([conv, _quant("c", "y")], constants, shape=(1, 6, 6, 2), out_shape=(1, 4, 4, 4))
    graph.model.opset_import.append(__import__("onnx").helper.make_opsetid("qonnx.custom_op.channels_last", 1))
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", verify_samples=200)
    assert artifact.bit_exact
    assert "Transpose" in _lowered_ops(tmp_path / "ort")


def _trunc_graph(version: int, rounding: str, zero: float = 0.0, per_channel: bool = False):
    """x -> Quant(8 bit, 2^-4) -> AveragePool-like sum (Mul by 4) -> Trunc v1 (5 inputs, the domain at opset 1) or v2
    (6 inputs, opset 2: clamped to the output width) with ``rounding`` and zero point ``zero``."""
    from onnx import helper

    scale = np.float32(2.0**-4)
    constants = {
        "s": scale,
        "z": np.float32(0),
        "b": np.float32(8),
        "four": np.float32(4),
        "ts": np.full((1, 4), 2.0**-4, np.float32) if per_channel else scale,
        "tz": np.float32(zero),
        "ib": np.float32(10),
        "ob": np.float32(6),
        "os": np.float32(1.0),  # truncation scale 2^4: quarter steps, ties included
    }
    inputs = ["m", "ts", "tz", "ib", "os", "ob"] if version >= 2 else ["m", "ts", "tz", "ib", "ob"]
    attrs = {"signed": 1, "narrow": 0} if version >= 2 else {}
    trunc = helper.make_node(
        "Trunc", inputs, ["y"], name="my_trunc", domain="qonnx.custom_op.general", rounding_mode=rounding, **attrs
    )
    nodes = [_quant("x", "q"), helper.make_node("Mul", ["q", "four"], ["m"], name="Mul_0"), trunc]
    graph = _graph(nodes, constants, shape=(1, 4))
    graph.model.opset_import[1].version = version
    return graph


@pytest.mark.parametrize(
    ("version", "rounding", "zero", "per_channel"),
    [
        (1, "FLOOR", 0.0, False),
        (1, "ROUND", 3.0, False),
        (2, "FLOOR", 0.0, False),
        (2, "round", 0.0, True),
        (2, "CEIL", 5.0, False),
    ],
)
def test_trunc_is_lowered_as_qonnx_computes_it(tmp_path, version, rounding, zero, per_channel):
    """brevitas's TruncAvgPool2d / FINN's AveragePool -> Mul -> Trunc: qonnx's trunc_v1 or trunc_v2 (by the
    domain's opset) as float32 ONNX ops, bit-exact on every tie of the truncation and far outside the range."""
    graph = _trunc_graph(version, rounding, zero, per_channel)
    x = _inputs(2.0**-6, shape=(4,))
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=x, verify_samples=400)
    assert artifact.bit_exact
    assert np.array_equal(artifact.predict(x), qdeploy.run_golden(graph, x))
    ops = _lowered_ops(tmp_path / "ort")
    assert "Round" in ops and ("Clip" in ops) == (version >= 2), ops


def test_trunc_with_a_runtime_scale_is_refused_naming_the_node(tmp_path):
    graph = _trunc_graph(1, "FLOOR")
    graph.graph.node[-1].input[1] = "m"  # the scale computed at run time
    with pytest.raises(UnsupportedModelError, match=r"node my_trunc: Trunc scale"):
        qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort")
    assert_no_output(tmp_path / "ort")


def test_float_bias_is_not_re_rounded_by_ort(tmp_path):
    """ORT's WeightBiasQuantization would store a float Gemm bias as int32 on input scale x weight scale (2^-6 here):
    a bias on a finer power-of-two grid (2^-10) is exact in the graph and would be re-rounded."""
    from onnx import helper

    rng = np.random.default_rng(0)
    weights = (rng.integers(-7, 8, (8, 16)) * 0.0625).astype(np.float32)
    constants = {
        "s": np.float32(0.25),
        "z": np.float32(0),
        "b": np.float32(8),
        "w": weights,
        "bias": (rng.integers(-500, 500, 8) * 2.0**-10).astype(np.float32),
        "s2": np.float32(0.5),
    }
    nodes = [
        _quant("x", "q"),
        helper.make_node("Gemm", ["q", "w", "bias"], ["g"], name="Gemm_0", transB=1),
        helper.make_node(
            "Quant", ["g", "s2", "z", "b"], ["y"], name="Quant_1", domain="qonnx.custom_op.general", signed=1, narrow=0
        ),
    ]
    graph = _graph(nodes, constants, out_shape=(1, 8))
    from qdeploy.runtime import session_threads, set_session_threads

    before = session_threads()
    set_session_threads(1)  # as `qdeploy compile --threads 1`: the report says at which count it was verified
    try:
        artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", verify_samples=1000)
    finally:
        set_session_threads(before)
    assert artifact.bit_exact and artifact.report["intra_op_num_threads"] == 1
    config = artifact.report["session_config"]
    assert "session.disable_quant_qdq" not in config  # exact arithmetic: integer kernels stay allowed
    assert config["optimization.disable_specified_optimizers"] == "WeightBiasQuantization"


def test_a_fusion_ort_still_applies_in_reference_mode_is_refused_naming_the_users_node():
    """The node-by-node check is what proves the reference-kernel plan: run it against the graph ORT builds when
    ConvMulFusion is left on, and it must refuse, naming the source node of what was fused."""
    from onnx import TensorProto, helper, numpy_helper

    from qdeploy.targets.onnxruntime.exactness import BASE_CONFIG, check_reference_kernels, optimized_graph

    weights = np.random.default_rng(0).normal(size=(4, 2, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
            helper.make_node("Mul", ["c", "m"], ["y"], name="user_mul"),
        ],
        "fusable",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 4, 4])],
        [
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.float32([0.3, 0.7, 1.1, 1.3]).reshape(1, 4, 1, 1), "m"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    fused = optimized_graph(proto, BASE_CONFIG)  # ORT's defaults: Mul folded into the Conv weights
    origin = {"conv": "Conv_in_user_file", "user_mul": "Mul_in_user_file"}
    with pytest.raises(UnsupportedModelError, match=r"node (Conv|Mul)_in_user_file: onnxruntime rewrites its (Conv|Mul)"):
        check_reference_kernels(proto, fused, origin)
