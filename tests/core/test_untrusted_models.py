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
