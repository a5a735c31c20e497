"""The quantum target: hybrid graphs compile to transpiled QASM 3 + ONNX + manifest, run, and verify."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import onnx
import pytest
import torch
from qonnx.core.modelwrapper import ModelWrapper
from torch import nn

import qdeploy
from qdeploy.cli import main
from qdeploy.custom_op.quantum import quantum_nodes
from qdeploy.errors import MissingDependencyError, QDeployError
from qdeploy.quantum import CircuitBuilder, QuantumLayer, export_hybrid, quantize_angles
from tests.targets.helpers import assert_no_output, copy_graph

qiskit = pytest.importorskip("qiskit")
pytest.importorskip("qiskit_qasm3_import")

SAMPLES = 16  # random verification inputs per compile: the runner is compared with the golden executor on each


def hybrid_model(readout: str = "expval") -> nn.Module:
    torch.manual_seed(0)
    builder = CircuitBuilder(3, name="q")
    builder.angle_embedding(range(3)).strongly_entangling_layers(1)
    if readout == "expval":
        spec = builder.expval(["ZII", [(0.5, "XXI"), (-0.25, "IYZ"), (0.1, "III")]])
    else:
        spec = builder.probs([0, 2])
    return nn.Sequential(nn.Linear(5, 3), nn.Tanh(), QuantumLayer(spec, seed=3), nn.Linear(spec.num_outputs, 2))


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(24, 5)).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return hybrid_model()


@pytest.fixture(scope="module")
def graph(model, x):
    return export_hybrid(model, x)


@pytest.fixture(scope="module")
def line_artifact(graph, x, tmp_path_factory):
    out = tmp_path_factory.mktemp("quantum") / "line"
    return qdeploy.compile(graph, target="quantum", out=out, data=x, verify_samples=SAMPLES, quantum={"device": "line"})


def torch_out(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def physical_two_qubit_pairs(circuit) -> set[tuple[int, int]]:
    return {tuple(circuit.find_bit(q).index for q in inst.qubits) for inst in circuit.data if inst.operation.num_qubits == 2}


def test_compile_verifies_against_golden_and_runner_matches_torch(line_artifact, model, x):
    report = line_artifact.report
    # a float simulation: verified within the bound derived from the graph's float arithmetic, not bit for bit
    assert report["target"] == "quantum" and report["bound"]["kind"] == "derived"
    assert "QuantumCircuit" in report["bound"]["float_tail_ops"] and 0 < report["bound"]["max"] < 1e-4
    assert report["verified"] and report["max_abs_error"] <= report["bound"]["max"]
    assert report["batch_one"]["verified"]
    assert report["outputs_compared"] == len(x) + SAMPLES
    layer = report["per_layer"][0]
    assert layer["operator_equivalent"] is True  # transpiled == logical up to global phase and layout
    assert layer["shot_check"]["within_5_sigma"] and layer["shot_check"]["shots"] == math.ceil(1 / 0.01**2)
    assert layer["two_qubit_gates"] == min(t["two_qubit"] for t in layer["seeds_tried"])  # best of the seeds
    assert layer["measurement_groups"] == 2  # Z..., XX. and .YZ terms need two bases: {Z,X,Y on wires}, ...
    # torch is one more implementation of the same float graph: within the same derived bound
    assert np.max(np.abs(line_artifact.predict(x) - torch_out(model, x))) <= report["bound"]["max"]


def test_output_folder_is_hardware_ready_qasm_onnx_and_manifest(line_artifact):
    from qiskit import qasm3

    folder = line_artifact.path
    manifest = json.loads((folder / "quantum_manifest.json").read_text())
    assert manifest["shots"] == 10000 and manifest["device_qubits"] == 3
    edges = {tuple(e) for e in manifest["coupling_map"]}
    kinds = [step["kind"] for step in manifest["plan"]]
    assert kinds == ["onnx", "quantum", "onnx"]
    for step in manifest["plan"]:
        if step["kind"] == "onnx":
            onnx.checker.check_model(onnx.load(str(folder / step["file"])))
    node = next(iter(manifest["nodes"].values()))
    assert node["inputs"] == ["x_0", "x_1", "x_2"] and len(node["weights"]) == 9
    for group in node["groups"]:
        circuit = qasm3.loads((folder / group["file"]).read_text())
        assert {p.name for p in circuit.parameters} <= set(node["inputs"])  # weights bound, inputs symbolic
        assert set(circuit.count_ops()) <= set(manifest["basis_gates"]) | {"measure", "barrier"}
        assert physical_two_qubit_pairs(circuit) <= edges  # every CX on a coupled pair
        assert circuit.count_ops()["measure"] == len(group["wires"])


def test_heavy_hex_device_probs_readout(x, tmp_path):
    model = hybrid_model("probs")
    graph = export_hybrid(model, x)
    out = tmp_path / "hh"
    # the selected target's options as flat keywords (as a config table elsewhere)
    artifact = qdeploy.compile(graph, target="quantum", out=out, data=x, verify_samples=SAMPLES, device="heavy-hex", seeds=3)
    report = artifact.report
    assert report["verified"] and report["device_qubits"] == 19
    assert json.loads((out / "qdeploy_config.json").read_text())["targets"]["quantum"]["seeds"] == 3
    assert report["operator_equivalence"].startswith("skipped")  # 2**19-dimensional operators are not built
    assert np.max(np.abs(artifact.predict(x) - torch_out(model, x))) <= 1e-6


def test_compile_dumps_each_step_to_ir(line_artifact):
    ir = line_artifact.path / "ir"
    assert sorted(p.name for p in ir.iterdir()) == ["00_fold_constants.onnx", "01_wrap_angles.onnx"]
    assert set(line_artifact.report["time_per_step"]) >= {"fold_constants", "wrap_angles", "emit", "verify"}
    wrapped = ModelWrapper(str(ir / "01_wrap_angles.onnx"))
    (node,) = quantum_nodes(wrapped)
    angles = wrapped.get_initializer(node.input[1])
    assert np.all(np.abs(angles) <= np.pi)  # strongly entangling layers: rotations, period 2 pi
    manifest = json.loads((line_artifact.path / "quantum_manifest.json").read_text())
    np.testing.assert_allclose(list(manifest["nodes"][node.name]["weights"].values()), angles, atol=1e-6)


def test_quantized_angles_are_exact_against_their_graph_and_error_is_measured(graph, x, tmp_path):
    quantized = quantize_angles(graph, bits=4)
    artifact = qdeploy.compile(quantized, target="quantum", out=tmp_path / "q4", data=x, verify_samples=SAMPLES)
    assert artifact.report["verified"]
    # the Quant on the angles is in the specification and folded into numbers by the first step
    golden = ModelWrapper(str(artifact.path / "golden.onnx"))
    folded = ModelWrapper(str(artifact.path / "ir" / "00_fold_constants.onnx"))
    assert [n.op_type for n in golden.graph.node].count("Quant") == 1
    assert "Quant" not in [n.op_type for n in folded.graph.node]
    measured = artifact.report["per_layer"][0]["angle_quantization"]
    assert measured["bits"] == 4 and measured["max_abs_error_vs_float_angles"] > 0
    # |d<P>/d theta| <= 1 for rotations (parameter-shift rule): the error is at most the sum of angle errors.
    # Output 1 is 0.5 XX - 0.25 YZ + 0.1: its coefficients scale that bound by at most 0.75 < 1.
    bound = 9 * (2 * np.pi / 2**4) / 2
    assert measured["max_abs_error_vs_float_angles"] <= bound


def test_cli_compile_and_run(graph, model, x, tmp_path, capsys):
    model_path, data_path, out = tmp_path / "hybrid.onnx", tmp_path / "x.npz", tmp_path / "out"
    graph.save(str(model_path))
    np.savez(data_path, x=x)
    code = main(["compile", str(model_path), "--target", "quantum", "--device", "line:4", "--samples", "8", "-o", str(out)])
    assert code == 0
    assert "result: VERIFIED WITHIN DERIVED BOUND" in capsys.readouterr().out
    assert main(["run", str(out), "--data", str(data_path), "-o", str(tmp_path / "y.npy")]) == 0
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - torch_out(model, x))) <= 1e-6
    assert main(["run", str(out), "--data", str(data_path), "--shots", "4000", "-o", str(tmp_path / "ys.npy")]) == 0
    sampled = np.load(tmp_path / "ys.npy")
    assert 0 < np.max(np.abs(sampled - torch_out(model, x))) < 0.25  # shot noise: not exact, but close


def test_circuit_wider_than_the_device(graph, tmp_path, capsys):
    out = tmp_path / "small"
    with pytest.raises(QDeployError, match="needs 3 qubits but device 'line:2' has 2; choose a larger device"):
        qdeploy.compile(graph, target="quantum", out=out, quantum={"device": "line:2"})
    assert_no_output(out)
    path = tmp_path / "g.onnx"
    graph.save(str(path))
    assert main(["compile", str(path), "--target", "quantum", "--device", "line:2", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qdeploy: error:") and "choose a larger device" in err and err.count("\n") == 1


def test_unknown_quantum_option(graph, tmp_path):
    with pytest.raises(QDeployError, match="unknown key"):
        qdeploy.compile(graph, target="quantum", out=tmp_path / "o", quantum={"shotz": 5})


def _edit_spec(graph, edit):
    edited = copy_graph(graph)
    node = next(n for n in edited.graph.node if n.op_type == "QuantumCircuit")
    attribute = next(a for a in node.attribute if a.name == "spec")
    spec = json.loads(attribute.s)
    edit(spec)
    attribute.s = json.dumps(spec).encode()
    return edited


def test_gate_outside_the_set_in_the_graph(graph, tmp_path):
    edited = _edit_spec(graph, lambda s: s["gates"].append({"name": "ccx", "wires": [0, 1, 2]}))
    with pytest.raises(QDeployError, match=r"quantum layer 'q'.*'ccx' is not in the gate set"):
        qdeploy.compile(edited, target="quantum", out=tmp_path / "o")


def test_non_finite_trained_angles(graph, tmp_path):
    edited = copy_graph(graph)
    node = next(n for n in edited.graph.node if n.op_type == "QuantumCircuit")
    weights = edited.get_initializer(node.input[1]).copy()
    weights[2] = np.inf
    edited.set_initializer(node.input[1], weights)
    with pytest.raises(QDeployError, match="quantum layer 'q'.*non-finite trainable angles"):
        qdeploy.compile(edited, target="quantum", out=tmp_path / "o", verify_samples=2)
    weights[2] = np.nan  # NaN is never a trained value: refused at load, naming the initializer
    edited.set_initializer(node.input[1], weights)
    with pytest.raises(QDeployError, match=rf"initializer {node.input[1]} .*holds NaN"):
        qdeploy.compile(edited, target="quantum", out=tmp_path / "o", verify_samples=2)


def test_missing_extra_names_the_pip_install(monkeypatch):
    from qdeploy.target import get_target

    monkeypatch.setitem(sys.modules, "qiskit_qasm3_import", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'qdeploy\[quantum\]'"):
        get_target("quantum").check_available()


@pytest.mark.parametrize("sampler", ["aer", "qiskit"])
def test_ibm_fake_backend_device(graph, model, x, tmp_path, monkeypatch, sampler):
    """The shot-noise check samples only the qubits the layer touches: without qiskit-aer, qiskit's own sampler
    would otherwise need 2**127 amplitudes for the 127-qubit device."""
    pytest.importorskip("qiskit_ibm_runtime")
    if sampler == "aer":
        pytest.importorskip("qiskit_aer")
    else:
        # as without qiskit-aer installed: its import fails and qiskit's own optional-dependency flag is off
        from qiskit.utils import optionals

        monkeypatch.setitem(sys.modules, "qiskit_aer", None)
        monkeypatch.setattr(optionals, "HAS_AER", False)
    from qiskit import qasm3

    out = tmp_path / "brisbane"
    artifact = qdeploy.compile(
        graph, target="quantum", out=out, data=x, verify_samples=8, quantum={"device": "fake_brisbane", "seeds": 2}
    )
    report = artifact.report
    assert report["verified"] and report["device_qubits"] == 127
    assert np.max(np.abs(artifact.predict(x) - torch_out(model, x))) <= 1e-6
    manifest = json.loads((out / "quantum_manifest.json").read_text())
    assert "ecr" in manifest["basis_gates"] and "if_else" not in manifest["basis_gates"]  # Eagle's native gates
    edges = {tuple(e) for e in manifest["coupling_map"]}
    for group in next(iter(manifest["nodes"].values()))["groups"]:
        circuit = qasm3.loads((out / group["file"]).read_text())
        assert set(circuit.count_ops()) <= set(manifest["basis_gates"]) | {"measure", "barrier"}
        assert physical_two_qubit_pairs(circuit) <= edges


def test_ibm_fake_backend_errors(graph, tmp_path, monkeypatch):
    pytest.importorskip("qiskit_ibm_runtime")
    with pytest.raises(QDeployError, match="needs 3 qubits but device 'fake_armonk' has 1"):
        qdeploy.compile(graph, target="quantum", out=tmp_path / "a", quantum={"device": "fake_armonk"})
    with pytest.raises(QDeployError, match="'fake_nowhere' is not an IBM fake backend; choose one of .*fake_brisbane"):
        qdeploy.compile(graph, target="quantum", out=tmp_path / "b", quantum={"device": "fake_nowhere"})
    monkeypatch.setitem(sys.modules, "qiskit_ibm_runtime", None)
    with pytest.raises(MissingDependencyError, match=r"fake_brisbane.*pip install 'qdeploy\[ibm\]'"):
        qdeploy.compile(graph, target="quantum", out=tmp_path / "c", quantum={"device": "fake_brisbane"})
    for name in "abc":
        assert_no_output(tmp_path / name)


def test_classical_graph_is_refused(tmp_path):
    graph = export_hybrid(nn.Sequential(nn.Linear(3, 2)), np.zeros((2, 3), np.float32))
    with pytest.raises(QDeployError, match="no QuantumCircuit node"):
        qdeploy.compile(graph, target="quantum", out=tmp_path / "o")


# -- the bundled examples --------------------------------------------------------------------------------------


def test_iris_example_compiles_runs_and_verifies(tmp_path):
    from examples import iris_quantum

    data = iris_quantum.load_iris_data()
    net = iris_quantum.train(iris_quantum.build(), data, epochs=25, lr=0.1)
    assert iris_quantum.accuracy(net, data.x_test, data.y_test) >= 0.7  # learned, well above 1/3 chance
    graph = export_hybrid(net, data.x_train)
    out = tmp_path / "iris"
    artifact = qdeploy.compile(
        graph, target="quantum", out=out, data=data.x_test, verify_samples=8, quantum={"device": "heavy-hex", "seeds": 4}
    )
    assert artifact.report["verified"]
    np.savez(tmp_path / "x.npz", x=data.x_test)
    assert main(["run", str(out), "--data", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npy")]) == 0
    y = np.load(tmp_path / "y.npy")
    assert np.max(np.abs(y - torch_out(net, data.x_test))) <= 1e-6
    assert (y.argmax(axis=1) == torch_out(net, data.x_test).argmax(axis=1)).all()


def test_creep_example_step_compiles_and_verifies(tmp_path):
    from examples import creep
    from examples.digits import DigitsData

    full = creep.flat_digits()
    data = DigitsData(full.x_train[:256], full.y_train[:256], full.x_test[:64], full.y_test[:64])
    results = creep.creep(data, epochs=2, finetune_epochs=1, steps=2)
    assert [step for step, _, _ in results] == [0, 1, 2]
    net = results[-1][2]
    assert sum(isinstance(m, QuantumLayer) for m in net.modules()) == 2  # two hidden layers replaced
    graph = export_hybrid(net, data.x_train)
    out = tmp_path / "creep"
    artifact = qdeploy.compile(graph, target="quantum", out=out, data=data.x_test, verify_samples=4)
    assert artifact.report["verified"] and len(artifact.report["per_layer"]) == 2
    np.savez(tmp_path / "x.npz", x=data.x_test)
    assert main(["run", str(out), "--data", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npy")]) == 0
    assert np.max(np.abs(np.load(tmp_path / "y.npy") - torch_out(net, data.x_test))) <= 1e-6


def test_quantized_activation_in_the_classical_part_is_refused(graph, tmp_path):
    from onnx import helper

    edited = copy_graph(graph)
    tanh = next(n for n in edited.graph.node if n.op_type == "Tanh")
    consumer = edited.find_consumer(tanh.output[0])
    for name, value in (("act_scale", 0.125), ("act_zeropt", 0.0), ("act_bits", 4.0)):
        edited.set_initializer(name, np.array(value, dtype=np.float32))
    quant = helper.make_node(
        "Quant",
        [tanh.output[0], "act_scale", "act_zeropt", "act_bits"],
        ["act_q"],
        name="ActQuant",
        domain="qonnx.custom_op.general",
        signed=1,
        narrow=0,
        rounding_mode="ROUND",
    )
    edited.graph.node.insert(list(edited.graph.node).index(consumer), quant)
    consumer.input[0] = "act_q"
    with pytest.raises(QDeployError, match="node ActQuant .*quantized activations are not supported"):
        qdeploy.compile(edited, target="quantum", out=tmp_path / "o", verify_samples=2)


def test_sampling_without_qiskit_aer_uses_qiskit_statevector_sampler(line_artifact, model, x, monkeypatch):
    monkeypatch.setitem(sys.modules, "qiskit_aer", None)  # as on a machine without the optional simulator
    sampled = line_artifact.predict(x[:4], run_options={"shots": 4000})
    assert 0 < np.max(np.abs(sampled - torch_out(model, x[:4]))) < 0.25


def test_predict_with_shots_samples_within_shot_noise(line_artifact, model, x):
    from qdeploy.targets.quantum.runner import HybridRunner

    shots = 2000
    exact = line_artifact.predict(x)
    sampled = line_artifact.predict(x, run_options={"shots": shots})
    assert np.max(np.abs(exact - torch_out(model, x))) <= 1e-6
    assert np.all(sampled != exact)  # every output sampled, none exact
    # Upper bound of each quantum output's standard deviation: its terms' |coefficients| / sqrt(shots) (a Pauli
    # term's sampled mean has variance (1 - <P>^2) / shots <= 1 / shots); the last Linear layer mixes them.
    quantum_sigma = np.array([1.0, 0.5 + 0.25]) / np.sqrt(shots)
    sigma = np.abs(model[-1].weight.detach().numpy().astype(np.float64)) @ quantum_sigma
    assert np.all(np.abs(sampled - exact) <= 5 * sigma)
    # the same numbers as the folder's runner built directly (the path `qdeploy run --shots` takes)
    np.testing.assert_array_equal(sampled, HybridRunner(line_artifact.path, shots=shots)(x))


@pytest.mark.parametrize("shots", [0, -5, 2.5, True, "100"])
def test_invalid_shots_are_refused(line_artifact, x, shots):
    with pytest.raises(QDeployError, match=r"shots=.* must be a positive integer"):
        line_artifact.predict(x[:2], run_options={"shots": shots})


def test_unknown_run_option_is_refused(line_artifact, x):
    with pytest.raises(QDeployError, match=r"unknown key\(s\) \['shotz'\]"):
        line_artifact.predict(x[:2], run_options={"shotz": 10})


def test_options_declare_their_flags():
    from qdeploy.options import flags_of
    from qdeploy.target import get_target

    target = get_target("quantum")
    assert {f.flag: f.field for f in flags_of(target.Options)} == {"--device": "device", "--epsilon": "epsilon"}
    assert {f.flag for f in flags_of(target.RunOptions)} == {"--shots"}  # --seed stays the core's flag
    assert any(line.startswith("devices: line[:N], heavy-hex[:D]") for line in target.describe())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device": "ring"}, "quantum device 'ring' is unknown"),
        ({"device": "heavy-hex:4"}, "heavy-hex distance must be odd"),
        ({"device": "line:x"}, "size 'x' is not an integer"),
        ({"epsilon": 1.5}, r"epsilon=1.5 must be in \(0, 1\)"),
        ({"seeds": 0}, "seeds=0; choose an integer >= 1"),
        ({"optimization_level": 4}, "optimization_level=4; choose an integer from 0 to 3"),
    ],
)
def test_invalid_options_are_refused_before_anything_is_written(graph, tmp_path, options, message):
    out = tmp_path / "o"
    with pytest.raises(QDeployError, match=message):
        qdeploy.compile(graph, target="quantum", out=out, quantum=options)
    assert_no_output(out)


@pytest.mark.parametrize("where", ["plan", "group"])
def test_a_manifest_naming_a_file_outside_its_folder_is_refused(line_artifact, x, tmp_path, where):
    """A folder is data: its manifest may only name files inside it."""
    import json
    import shutil

    from qdeploy.artifact import Artifact
    from qdeploy.errors import QDeployError

    folder = tmp_path / "copy"
    shutil.copytree(line_artifact.path, folder)
    (tmp_path / "elsewhere.onnx").write_bytes(b"not yours")
    manifest_path = folder / "quantum_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if where == "plan":
        next(step for step in manifest["plan"] if step["kind"] == "onnx")["file"] = "../elsewhere.onnx"
    else:
        next(iter(manifest["nodes"].values()))["groups"][0]["file"] = str(tmp_path / "elsewhere.onnx")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(QDeployError, match="quantum_manifest.json names .*elsewhere.onnx"):
        Artifact(folder).predict(x[:2])


def test_transpile_best_tries_each_routing_method_and_keeps_the_fewest_two_qubit_gates():
    from qdeploy.quantum import to_qasm3
    from qdeploy.targets.quantum.devices import make_backend
    from qdeploy.targets.quantum.lower import EXTRA_LAYOUTS, bind, logical_circuit, transpile_best

    spec = CircuitBuilder(4, name="reupload").data_reuploading(range(4), layers=2).expval_z()
    weights = {f"w_{j}": 0.1 * (j + 1) for j in range(spec.num_weights)}
    logical = bind(logical_circuit(to_qasm3(spec), "reupload"), weights)
    best = transpile_best(logical, make_backend("line", 4, 0), 3, 2)
    assert {t["routing"] for t in best.tried} == {"sabre", "basic", "lookahead"}
    assert {t["layout"] for t in best.tried} == {"default", *EXTRA_LAYOUTS}
    assert len(best.tried) == 3 * 2 + len(EXTRA_LAYOUTS)
    kept = min(best.tried, key=lambda t: (t["two_qubit"], t["depth"]))
    assert (best.two_qubit, best.depth, best.routing) == (kept["two_qubit"], kept["depth"], kept["routing"])
