"""Seeded protobuf mutants of the zoo fixtures and of the digits MLP through ``compile --target onnxruntime`` and
``inspect`` (issue 17): every case ends bit-exact, within its derived bound, or refused with one line and nothing
written; never "unexpected", NOT EXACT, a traceback or a hang. ``benchmarks/fuzz.py`` runs the same cases by the
thousand."""

from __future__ import annotations

import pytest

from benchmarks import fuzz

#: cases in CI: about 1 s each (a compile with 50 samples and an inspect), ~60 s on a shared 2-core machine
CASES = 45
#: per command; a compile of these small models takes about 1 s, so this only trips on a hang
TIME_LIMIT = 60.0


@pytest.fixture(scope="module")
def sources(mlp_w4a8) -> dict[str, bytes]:
    _, graph = mlp_w4a8
    found = fuzz.zoo_fixtures()
    assert found, f"no zoo fixtures in {fuzz.FIXTURES}"
    return {**found, "digits_mlp_w4a8": graph.model.SerializeToString()}


def test_mutants_are_mutated(sources):
    """The mutator changes the model (so the cases below test something) and is reproducible from its seed."""
    for source in sources.values():
        for seed in range(20):
            kind, _, data = fuzz.mutant(source, seed)
            assert fuzz.mutant(source, seed)[2] == data
            assert kind in fuzz.KINDS
        assert sum(fuzz.mutant(source, seed)[2] != source for seed in range(20)) >= 18


def test_classify_flags_contract_breaks(tmp_path):
    """The oracle itself: each way a case can break the contract is a finding, a clean refusal is not."""
    out = tmp_path / "out"
    refusal = "qdeploy: error: node Quant_0: scale must be > 0, got 0; export a positive scale\n"
    assert fuzz.classify("compile", 1, "", refusal, out)[0] == "refused"
    assert fuzz.classify("compile", 1, "", "qdeploy: error: unexpected KeyError: 99 (rerun ...)\n", out)[0] == "internal"
    assert fuzz.classify("compile", 3, "result: NOT EXACT\n", "", out)[0] == "not_exact"
    assert fuzz.classify("compile", None, "", "", out)[0] == "hang"
    assert fuzz.classify("compile", 1, "", "Traceback (most recent call last):\n" + refusal, out)[0] == "traceback"
    assert fuzz.classify("compile", 1, "", refusal + refusal, out)[0] == "not_one_error_line"
    assert fuzz.classify("compile", 0, "bit-exact: 10/10 outputs\nresult: EXACT\n", "", out)[0] == "exact"
    out.mkdir()
    assert fuzz.classify("compile", 1, "", refusal, out)[0] == "output_left"


@pytest.mark.parametrize("index", range(CASES))
def test_mutant_keeps_the_contract(sources, index, tmp_path):
    source, seed = fuzz.case_seeds(sources, CASES, seed=17)[index]
    kind, mutation, data = fuzz.mutant(sources[source], seed)
    path = tmp_path / f"{source}.onnx"
    path.write_bytes(data)
    for record in fuzz.run_case(path, tmp_path, TIME_LIMIT):
        assert record["outcome"] in fuzz.CLEAN_OUTCOMES, (
            f"{source} seed {seed} ({kind}: {mutation}), {record['command']}: {record['outcome']}\n{record['stderr']}"
        )


# -- the root causes of earlier findings, as general cases ------------------------------------------------------------


def _weight_quant_graph(zero_point: float):
    """x -> Quant (8 bit, scale 1/2) -> MatMul with a weight Quant (4 bit, float scale, the given zero point) -> y."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper

    rng = np.random.default_rng(3)
    initializers = {
        "w": rng.normal(0, 1, (16, 8)).astype(np.float32),
        "s_x": np.float32(0.5), "z_x": np.float32(0), "b_x": np.float32(8),
        "s_w": np.float32(0.3711), "z_w": np.float32(zero_point), "b_w": np.float32(4),
    }  # fmt: skip

    def quant(source, output, suffix, signed):
        inputs = [source, f"s_{suffix}", f"z_{suffix}", f"b_{suffix}"]
        return helper.make_node("Quant", inputs, [output], name=f"Quant_{suffix}", domain="qonnx.custom_op.general",
                                signed=signed, narrow=0, rounding_mode="ROUND")  # fmt: skip

    nodes = [quant("x", "xq", "x", 1), quant("w", "wq", "w", 1), helper.make_node("MatMul", ["xq", "wq"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "weight_zero_point",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    return ModelWrapper(helper.make_model(graph, opset_imports=opsets))


@pytest.mark.parametrize("zero_point", [-0.5, 0.25, 2.0, 300.0])
def test_a_weight_quantizer_with_any_zero_point_compiles_exactly(zero_point, tmp_path):
    """qonnx allows any float zero point; DequantizeLinear only an integer one in its integer type. A fractional
    zero point (-0.5, from a mutated seed) was cast to 0 in the integer form: NOT EXACT by half a scale."""
    import qdeploy

    artifact = qdeploy.compile(_weight_quant_graph(zero_point), target="onnxruntime", out=tmp_path / "o",
                               verify_samples=100)  # fmt: skip
    assert artifact.bit_exact, artifact.report["max_abs_error"]


def test_the_golden_executor_opens_its_sessions_at_qdeploys_thread_count():
    """ORT's float GEMM rounds differently at 1 and 2 threads: qonnx's per-node sessions must run at the thread count
    the target's session runs at (``--threads``), and qonnx's module is left as it was afterwards."""
    import onnxruntime
    import qonnx.core.onnx_exec as onnx_exec
    from onnx import TensorProto, helper

    from qdeploy import golden, runtime

    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    previous = runtime.session_threads()
    try:
        for threads in (1, 3):
            runtime.set_session_threads(threads)
            with golden._qonnx_sessions_at_session_threads():
                session = onnx_exec.rt.InferenceSession(model)
                assert session.get_session_options().intra_op_num_threads == threads
    finally:
        runtime.set_session_threads(previous)
    assert onnx_exec.rt is onnxruntime


def test_a_float_gemm_on_unquantized_data_verifies_at_one_thread(tmp_path):
    """A float MatMul of unquantized inputs feeding a fine quantizer (a step below the sum's last bit, so a last-bit
    difference changes the integer): the target at one thread (what the CLI picks under OMP_NUM_THREADS=1) against
    the golden executor. At 50 samples ORT's GEMM splits the work differently at 1 and 2 threads (not at 200)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper

    import qdeploy
    from qdeploy import runtime

    rng = np.random.default_rng(5)
    initializers = {"w": rng.normal(0, 1, (600, 64)).astype(np.float32), "d": np.float32(3.0),
                    "s": np.float32(1e-5), "z": np.float32(0), "b": np.float32(24)}  # fmt: skip
    nodes = [
        helper.make_node("Div", ["x", "d"], ["big"]),
        helper.make_node("MatMul", ["big", "w"], ["acc"]),
        helper.make_node(
            "Quant",
            ["acc", "s", "z", "b"],
            ["y"],
            name="Quant_0",
            domain="qonnx.custom_op.general",
            signed=1,
            narrow=0,
            rounding_mode="ROUND",
        ),  # fmt: skip
    ]
    graph = helper.make_graph(
        nodes,
        "float_gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 600])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    previous = runtime.session_threads()
    runtime.set_session_threads(1)
    try:
        artifact = qdeploy.compile(ModelWrapper(helper.make_model(graph, opset_imports=opsets)), target="onnxruntime",
                                   out=tmp_path / "o", verify_samples=50)  # fmt: skip
    finally:
        runtime.set_session_threads(previous)
    assert artifact.bit_exact, artifact.report["max_abs_error"]


def test_a_graph_computing_nan_from_finite_inputs_is_refused_naming_the_node(tmp_path):
    """A BatchNormalization with a negative variance (a mutated running_var) computes NaN; qonnx's quantizer keeps
    it, ONNX's Clip turns it into a bound, a BipolarQuant after maps it to -1: NOT EXACT. The golden executor refuses
    the graph, naming the node, and nothing is written."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper

    import qdeploy
    from qdeploy.errors import QDeployError
    from tests.targets.helpers import assert_no_output

    initializers = {"gamma": np.ones(4, np.float32), "beta": np.zeros(4, np.float32),
                    "mean": np.zeros(4, np.float32), "var": np.array([1, 2, -1, 4], np.float32),
                    "s": np.float32(0.25), "z": np.float32(0), "b": np.float32(4)}  # fmt: skip
    nodes = [
        helper.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["h"], name="BN_0"),
        helper.make_node(
            "Quant",
            ["h", "s", "z", "b"],
            ["q"],
            name="Quant_0",
            domain="qonnx.custom_op.general",
            signed=1,
            narrow=0,
            rounding_mode="ROUND",
        ),  # fmt: skip
        helper.make_node("BipolarQuant", ["q", "s"], ["y"], name="Bipolar_0", domain="qonnx.custom_op.general"),
    ]
    graph = helper.make_graph(
        nodes,
        "nan",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    with pytest.raises(QDeployError, match=r"node BN_0 \(BatchNormalization\) computes NaN on verification sample 0"):
        qdeploy.compile(ModelWrapper(helper.make_model(graph, opset_imports=opsets)), target="onnxruntime",
                        out=tmp_path / "o", verify_samples=20)  # fmt: skip
    assert_no_output(tmp_path / "o")


@pytest.mark.parametrize("signed", [0, 1])
def test_verification_inputs_for_a_64_bit_input_quantizer(signed):
    """A 64-bit input quantizer's integer range overflows numpy's int64 draws (fuzz seed 4891: "unexpected
    ValueError: high is out of bounds for int64"): the rounding ties are drawn in float64 instead."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper

    from qdeploy.verify import random_inputs

    initializers = {"s": np.float32(0.5), "z": np.float32(0), "b": np.float32(64)}
    node = helper.make_node("Quant", ["x", "s", "z", "b"], ["y"], name="Quant_0", domain="qonnx.custom_op.general",
                            signed=signed, narrow=0, rounding_mode="ROUND")  # fmt: skip
    graph = helper.make_graph(
        [node],
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("qonnx.custom_op.general", 1)]
    x = random_inputs(ModelWrapper(helper.make_model(graph, opset_imports=opsets)), (16,), 20, seed=0)
    assert x.shape == (20, 16) and np.all(np.isfinite(x))
