"""Every registered target and pass loads and is of the right kind; unknown names list the known ones."""

from __future__ import annotations

import pytest
from qonnx.transformation.base import Transformation

from qdeploy.cli import main
from qdeploy.errors import QDeployError
from qdeploy.registry import PASSES_GROUP, TARGETS_GROUP, get_pass, registered
from qdeploy.target import Target, get_target


def test_builtin_targets_and_passes_are_registered_and_load():
    assert {"onnxruntime", "hls4ml"} <= set(registered(TARGETS_GROUP))
    for name in registered(TARGETS_GROUP):
        assert isinstance(get_target(name), Target) and get_target(name).name == name
    assert "fill_gemm_bias" in registered(PASSES_GROUP)
    for name in registered(PASSES_GROUP):
        assert issubclass(get_pass(name), Transformation)


def test_unknown_names_list_the_known_ones():
    with pytest.raises(QDeployError, match=r"unknown pass .fold_everything.; available: .*fill_gemm_bias"):
        get_pass("fold_everything")


def test_list_command_shows_targets_passes_and_boards(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime" in out and "fill_gemm_bias" in out and "xczu7ev-ffvc1156-2-e" in out
