"""What the onnxruntime target does for speed without changing a number (``targets/onnxruntime/exactness.py``): float
dot products read their constant operands at run time, as the golden executor feeds them, while ORT still prepacks
the integer kernels' weights; such plans run without spinning worker threads."""

from __future__ import annotations

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


def mixed_mlp(inner: int = 256):
    """Quant(8 bit, 2^-4) -> MatMul(4-bit weights, 2^-2) -> Quant(4 bit, scale 1/7) -> MatMul(4-bit weights, 1/7):
    the first product is exact (an integer layer), the second sums multiples of 1/7 (kept in float, on the
    reference's kernel)."""
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    rng = np.random.default_rng(5)
    constants = {
        "zero": np.float32(0),
        "b8": np.float32(8),
        "b4": np.float32(4),
        "s_in": np.float32(2.0**-4),
        "s_w": np.float32(2.0**-2),
        "s_act": np.float32(1 / 7),
        "w1": rng.integers(-7, 8, (16, inner)).astype(np.float32) * 0.25,
        "w2": (rng.integers(-7, 8, (inner, 8)) / 7).astype(np.float32),
    }
    nodes = [
        _quant("x", "xq", "s_in", "b8", "Quant_in"),
        _quant("w1", "w1q", "s_w", "b4", "Quant_w1"),
        _quant("w2", "w2q", "s_act", "b4", "Quant_w2", narrow=1),
        helper.make_node("MatMul", ["xq", "w1q"], ["m1"], name="MatMul_a"),
        _quant("m1", "a1", "s_act", "b4", "Quant_a", narrow=1),
        helper.make_node("MatMul", ["a1", "w2q"], ["y"], name="MatMul_b"),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in constants.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid(QONNX, 1)]
    return ModelWrapper(helper.make_model(graph, opset_imports=opsets)).transform(InferShapes())


def _inputs(count: int) -> np.ndarray:
    """Random inputs, half of them on the input quantizer's rounding ties (odd multiples of 2^-5)."""
    rng = np.random.default_rng(3)
    random = rng.normal(0, 2, (count // 2, 16)).astype(np.float32)
    ties = ((2 * rng.integers(-100, 100, (count - count // 2, 16)) + 1) * 2.0**-5).astype(np.float32)
    return np.concatenate([random, ties])


def test_a_float_dot_product_reads_its_weights_at_run_time_and_the_integer_layer_is_prepacked(tmp_path):
    """The plan keeps MatMul_b in float: its weights become an overridable initializer (a graph input with a
    default, which ORT never prepacks), the session prepacks (no ``session.disable_prepacking``), and the model
    equals the golden executor sample by sample at batch 1 (where a prepacked weight would take the packed GEMM
    instead of the reference's GEMV) and on the whole batch, on random and tie inputs."""
    import onnx

    graph = mixed_mlp()
    x = _inputs(40)
    artifact = qdeploy.compile(graph, target="onnxruntime", out=tmp_path / "ort", data=x, verify_samples=200)
    report = artifact.report
    assert report["bit_exact"] is True
    assert "session.disable_prepacking" not in report["session_config"], report["session_config"]
    assert report["session_config"].get("session.intra_op.allow_spinning") == "0"  # a plan with float dot products
    model = onnx.load(str(tmp_path / "ort" / "model.onnx"))
    initializers = {init.name for init in model.graph.initializer}
    declared = {value.name for value in model.graph.input}
    matmul = next(n for n in model.graph.node if n.name == "MatMul_b")
    assert matmul.op_type == "MatMul"
    assert matmul.input[1] in initializers and matmul.input[1] in declared  # overridable: read at run time
    assert report["ort_kernels"].get("QGemm") == 1, report["ort_kernels"]  # MatMul_a: an integer layer
    golden = qdeploy.run_golden(graph, x)
    assert np.array_equal(artifact.predict(x), golden)
    for i in range(len(x)):
        assert np.array_equal(artifact.predict(x[i : i + 1]), qdeploy.run_golden(graph, x[i : i + 1])), i


def test_runtime_weights_match_an_operand_fed_at_run_time_with_prepacking_on():
    """``runtime_weights`` on a MatMul whose weights are a DequantizeLinear of integers and a Conv with a float
    initializer: the rewritten model (prepacking on) equals a session that feeds the weights at run time (the
    reference's kernel path) at batch 1 and 5, while the unchanged model with prepacking differs (the test is
    sensitive to the kernel path)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from qdeploy.runtime import ort_session
    from qdeploy.targets.onnxruntime.exactness import runtime_weights

    rng = np.random.default_rng(9)
    ints = rng.integers(-7, 8, (300, 64)).astype(np.int8)
    scale = np.float32(1 / 7)
    kernel = (rng.integers(-7, 8, (4, 3, 3, 3)) / 7).astype(np.float32)
    nodes = [  # unnamed, as exporters leave nodes: the rewrite must not key on names
        helper.make_node("DequantizeLinear", ["w_int", "w_scale"], ["w"]),
        helper.make_node("MatMul", ["x", "w"], ["y"]),
        helper.make_node("Conv", ["image", "kernel"], ["z"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["kernel_t"], ["kernel_back"], perm=[1, 0, 2, 3]),
        helper.make_node("Conv", ["image", "kernel_back"], ["u"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "dots",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 300]),
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 6, 6]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 64]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4, 6, 6]),
            helper.make_tensor_value_info("u", TensorProto.FLOAT, ["batch", 4, 6, 6]),
        ],
        [
            numpy_helper.from_array(ints, "w_int"),
            numpy_helper.from_array(scale, "w_scale"),
            numpy_helper.from_array(kernel, "kernel"),
            numpy_helper.from_array(np.ascontiguousarray(kernel.transpose(1, 0, 2, 3)), "kernel_t"),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    rewritten, names = runtime_weights(proto)
    assert set(names) == {"w_runtime", "kernel", "kernel_back_runtime"}
    assert {n.op_type for n in rewritten.graph.node} == {"MatMul", "Conv"}  # the folded chains are gone
    assert {v.name for v in rewritten.graph.input} == {"x", "image", *names}

    reference_graph = helper.make_graph(  # every operand a runtime input, as qonnx runs each node
        [nodes[1], nodes[2], helper.make_node("Conv", ["image", "kernel_back"], ["u"], pads=[1, 1, 1, 1])],
        "reference",
        [
            *graph.input,
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [300, 64]),
            helper.make_tensor_value_info("kernel", TensorProto.FLOAT, [4, 3, 3, 3]),
            helper.make_tensor_value_info("kernel_back", TensorProto.FLOAT, [4, 3, 3, 3]),
        ],
        list(graph.output),
    )
    opsets = [helper.make_opsetid("", 13)]
    reference = ort_session(helper.make_model(reference_graph, opset_imports=opsets).SerializeToString())
    fast = ort_session(rewritten.SerializeToString(), {})
    constant = ort_session(proto.SerializeToString(), {})
    weights = ints.astype(np.float32) * scale
    sensitive = False
    for batch in (1, 5):
        feed = {
            "x": (rng.integers(-7, 8, (batch, 300)) / 7).astype(np.float32),
            "image": (rng.integers(-7, 8, (batch, 3, 6, 6)) / 7).astype(np.float32),
        }
        expected = reference.run(None, {**feed, "w": weights, "kernel": kernel, "kernel_back": kernel})
        for got, want in zip(fast.run(None, feed), expected, strict=True):
            assert np.array_equal(got, want)
        sensitive |= not all(np.array_equal(a, b) for a, b in zip(constant.run(None, feed), expected, strict=True))
    assert sensitive, "a prepacked constant weight no longer changes ORT's numbers: the test needs other shapes"
    onnx.checker.check_model(rewritten)


def test_a_model_with_a_subgraph_keeps_prepacking_off():
    """``runtime_weights`` reaches the main graph only: a node holding a subgraph (If) keeps the whole session
    unprepacked, as before; without one, prepacking stays on and only the workers' spinning is turned off."""
    from onnx import TensorProto, helper

    from qdeploy.targets.onnxruntime.exactness import _float_dot_entries

    def branch(name: str):
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [1])
        return helper.make_graph([helper.make_node("Identity", ["x"], [f"{name}_out"])], name, [], [out])

    condition = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    node = helper.make_node("If", ["c"], ["y"], then_branch=branch("then"), else_branch=branch("else"))
    with_if = helper.make_model(helper.make_graph([node], "g", [condition, x], [y]))
    plain = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
    assert _float_dot_entries(with_if, ["w"])["session.disable_prepacking"] == "1"
    assert _float_dot_entries(plain, ["w"]) == {"session.intra_op.allow_spinning": "0"}
    assert _float_dot_entries(plain, []) == {}
