"""A model file is data: its node domains never choose what Python imports (qonnx imports a custom node's domain
as a module), neither at load nor during compile or inspect."""

from __future__ import annotations

import sys

import onnx
import pytest
from onnx import TensorProto, helper

import qdeploy
from qdeploy.cli import main
from qdeploy.errors import ModelLoadError


def model_with_domain(domain: str) -> onnx.ModelProto:
    node = helper.make_node("Payload", ["x"], ["y"], name="Payload_0", domain=domain)
    graph = helper.make_graph(
        [node],
        "crafted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])


def test_a_domain_naming_an_importable_module_imports_nothing(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "imported.txt"
    (tmp_path / "crafted_payload.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # as if the current folder were on the import path
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "crafted.onnx"
    onnx.save(model_with_domain("crafted_payload"), str(path))
    with pytest.raises(ModelLoadError, match="node Payload_0: domain 'crafted_payload' is not one qdeploy executes"):
        qdeploy.load(path)
    for command in (["compile", str(path), "-o", str(tmp_path / "out")], ["inspect", str(path)]):
        assert main(command) == 1
        assert "domain 'crafted_payload'" in capsys.readouterr().err
    assert not marker.exists() and "crafted_payload" not in sys.modules
    assert not (tmp_path / "out").exists()


def test_legacy_quantizer_domains_still_load(mlp_w4a8):
    proto = onnx.ModelProto.FromString(mlp_w4a8[1].model.SerializeToString())
    for node in proto.graph.node:
        if node.op_type == "Quant":
            node.domain = "onnx.brevitas"  # older brevitas exports
    assert qdeploy.load(proto).graph.node  # moved to qonnx's domain by the cleanup


#: a fresh interpreter (nothing imported yet by other tests) loads, compiles and inspects the crafted file, then
#: reports which of the named modules got imported
IMPORT_PROBE = """
import json, sys
from qdeploy.cli import main
path, out, modules = sys.argv[1], sys.argv[2], sys.argv[3:]
before = [m for m in modules if m in sys.modules]
codes = [main(["compile", path, "-o", out, "-q"]), main(["inspect", path])]
print(json.dumps({"before": before, "after": [m for m in modules if m in sys.modules], "codes": codes}))
"""


def model_with_nested_domain(domain: str) -> onnx.ModelProto:
    """The crafted node inside an If branch (a subgraph), where a top-level check would not look."""
    inner = helper.make_node("Payload", ["x"], ["z"], name="Payload_0", domain=domain)
    branch = helper.make_graph([inner], "branch", [], [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 4])])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["cond"], ["y"], name="If_0", then_branch=branch, else_branch=branch)
    graph = helper.make_graph(
        [node],
        "crafted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [cond],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])


@pytest.mark.parametrize("nested", [False, True])
def test_a_domain_naming_an_installed_module_imports_nothing(tmp_path, nested):
    """Installed modules (``this`` prints on import; ``http.server``, ``qonnx.util.exec_qonnx``) named as a node's
    domain, at the top level or in a subgraph: compile and inspect refuse (exit 1) and none of them is imported."""
    import json
    import subprocess

    modules = ["this", "http.server", "qonnx.util.exec_qonnx"]
    for domain in modules:
        path = tmp_path / f"{domain}.onnx"
        onnx.save((model_with_nested_domain if nested else model_with_domain)(domain), str(path))
        probe = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE, str(path), str(tmp_path / "out"), *modules],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert probe.returncode == 0, probe.stderr
        result = json.loads(probe.stdout.strip().splitlines()[-1])
        assert result["before"] == [] and result["after"] == [], (domain, result)
        assert result["codes"] == [1, 1], (domain, probe.stderr)
        assert probe.stderr.count(f"node Payload_0: domain {domain!r} is not one qdeploy executes") == 2, probe.stderr
        assert "Traceback" not in probe.stderr and "unexpected" not in probe.stderr
        assert not (tmp_path / "out").exists()


def test_a_folder_file_outside_the_folder_is_refused(tmp_path):
    """What a folder's manifest or config names (quantum manifest steps and groups, hls4ml's library) must stay inside
    the folder: an absolute path, ``..``, a link out and a non-string are refused; a file inside is fine.
    (End to end on a quantum folder: tests/targets/test_quantum.py::test_a_manifest_naming_a_file_outside_its_folder)"""
    from qdeploy.artifact import file_in_folder
    from qdeploy.errors import QDeployError

    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "part.onnx").write_bytes(b"inside")
    (tmp_path / "secret.onnx").write_bytes(b"outside")
    (folder / "link.onnx").symlink_to(tmp_path / "secret.onnx")
    assert file_in_folder(folder, "sub/part.onnx", "quantum_manifest.json").read_bytes() == b"inside"
    for name in ("../secret.onnx", str(tmp_path / "secret.onnx"), "sub/../../secret.onnx", "link.onnx", None, 3, ""):
        with pytest.raises(QDeployError, match=r"quantum_manifest.json names .*; .*recompile the folder"):
            file_in_folder(folder, name, "quantum_manifest.json")
