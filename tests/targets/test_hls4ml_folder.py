"""hls4ml output folders as users handle them: moved after compiling and used from a new process, read through their
README, built for a board of the backend's vendor (issues 17 and 18)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import qdeploy
from qdeploy.artifact import Artifact
from qdeploy.errors import QDeployError
from qdeploy.golden import run_golden
from qdeploy.ir import load_model
from qdeploy.targets.hls4ml.boards import BOARDS
from tests.targets.helpers import assert_no_output

pytest.importorskip("hls4ml")

QDEPLOY = Path(sys.executable).parent / "qdeploy"
#: (backend, board) compiled once each: Vitis and Catapult read their weights from text files at run time (found
#: beside the library, by two different edits of hls4ml's sources), Quartus compiles them in; None: the default
BUILDS = {"Vitis": None, "Catapult": None, "Quartus": "de10-nano"}
#: what a README may name as a file (a backticked path, or a script in its build commands)
FILE_SUFFIXES = (".cpp", ".h", ".tcl", ".sh", ".yml", ".dat", ".so", ".json", ".onnx", ".md", "Makefile")


@pytest.fixture(scope="module", params=list(BUILDS))
def compiled(request, mlp_w4a8, data, tmp_path_factory) -> tuple[str, Path]:
    backend = request.param
    out = tmp_path_factory.mktemp(f"hls4ml_{backend}") / "fpga"
    board = {"board": BUILDS[backend]} if BUILDS[backend] else {}
    artifact = qdeploy.compile(
        mlp_w4a8[1], target="hls4ml", backend=backend, out=out, data=data.x_test[:20], verify_samples=20, **board
    )
    assert artifact.bit_exact
    return backend, out


def _qdeploy(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command line in a new process: nothing of the compiling process (loaded libraries, hls4ml state) helps."""
    return subprocess.run([str(QDEPLOY), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_folder_moved_after_compiling_verifies_and_runs_in_a_new_process(compiled, data, tmp_path):
    backend, out = compiled
    built_in = out.parent.resolve()  # the staging folder the compile built in was a sibling of the output
    moved = tmp_path / "elsewhere" / "fw"
    moved.parent.mkdir()
    shutil.move(str(out), str(moved))
    assert not out.exists()
    try:
        # no file of the folder names where it was built (hls4ml bakes that into its library and configuration)
        for path in moved.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert str(built_in).encode() not in content and b"/.fpga." not in content, path

        verified = _qdeploy("verify", str(moved), cwd=tmp_path)
        assert verified.returncode == 0, verified.stderr
        assert "result: EXACT" in verified.stdout
        assert json.loads((moved / "verify.json").read_text())["bit_exact"] is True

        np.save(tmp_path / "x.npy", data.x_test[:16])
        ran = _qdeploy("run", str(moved), "--data", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
        golden = run_golden(load_model(moved / "golden.onnx", clean=False), data.x_test[:16])
        np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.asarray(golden).reshape(16, -1))
    finally:
        shutil.move(str(moved), str(out))  # the module's other tests use the folder where it was compiled


def _makefile_targets(makefile: Path) -> set[str]:
    targets = set()
    for line in makefile.read_text().splitlines():
        match = re.match(r"^([^\s:=#][^:=]*?)\s*:(?!=)", line)
        if match:
            targets.update(match.group(1).split())
    return targets


def test_readme_names_files_and_make_targets_that_exist(compiled):
    backend, out = compiled
    project = out / "firmware"
    readme = (project / "README.md").read_text()
    report = json.loads((out / "report.json").read_text())
    board = BOARDS[report["board"]]
    assert board.part in readme and board.description in readme and board.vendor in readme

    code = "\n".join(re.findall(r"```\n(.*?)```", readme, flags=re.S))
    named = {token for token in re.findall(r"`([^`\s]+)`", readme) if token.endswith(FILE_SUFFIXES) or "/" in token}
    named |= {token for token in re.findall(r"[\w./-]+", code) if token.endswith(FILE_SUFFIXES)}
    assert named, readme
    missing = sorted(name for name in named if not (project / name.rstrip("/")).exists())
    assert not missing, f"{backend} README names files that do not exist: {missing}"

    make_lines = [line.split("#")[0].split() for line in code.splitlines() if line.startswith("make ")]
    if backend == "Quartus":
        targets = _makefile_targets(project / "Makefile")
        asked = {word for words in make_lines for word in words[1:] if "=" not in word}
        assert asked and asked <= targets, (asked, targets)
        # the Intel project is for the Intel part of the board: the Makefile's i++ -march
        assert re.search(rf"^DEVICE\s*:=\s*{re.escape(board.part)}$", (project / "Makefile").read_text(), re.M)
        assert board.vendor == "Intel"
    else:
        assert not make_lines
        scripts = (project / "build_prj.tcl").read_text() + (project / "hls4ml_config.yml").read_text()
        assert board.part in scripts and board.vendor == "AMD"


def _without_library(out: Path, copy: Path) -> Path:
    shutil.copytree(out, copy)
    for library in (copy / "firmware" / "firmware").glob("*.so"):
        library.unlink()
    return copy


def test_verify_and_run_never_build_a_folder_without_its_library(compiled, data, tmp_path):
    """A folder is data: a missing library is refused and the folder's build_lib.sh is not run."""
    copy = _without_library(compiled[1], tmp_path / "copy")
    marker = tmp_path / "ran"
    (copy / "firmware" / "build_lib.sh").write_text(f"#!/bin/sh\ntouch {marker}\n")
    with pytest.raises(QDeployError, match=r"has no C-simulation library .*; recompile the folder"):
        Artifact(copy).verify()
    with pytest.raises(QDeployError, match=r"or, for a folder you trust, qdeploy run --rebuild"):
        Artifact(copy).predict(data.x_test[:4])
    assert not marker.exists()


@pytest.mark.parametrize("compiled", ["Vitis", "Catapult"], indirect=True)  # the backends reading weight files
def test_a_folder_missing_a_weight_file_is_refused_naming_it(compiled, tmp_path):
    """hls4ml's loader would end the process (exit(1)) on a missing weight file: refused before loading instead."""
    copy = tmp_path / "copy"
    shutil.copytree(compiled[1], copy)
    victim = sorted((copy / "firmware" / "firmware" / "weights").glob("*.txt"))[0]
    victim.unlink()
    with pytest.raises(QDeployError, match=rf"lacks 1 weight file\(s\) .*\(firmware/weights/{victim.name}\); copy"):
        Artifact(copy).verify()


@pytest.mark.parametrize("compiled", ["Catapult"], indirect=True)  # the quickest build; the same code for all
def test_run_rebuilds_the_library_when_asked(compiled, data, tmp_path):
    """``qdeploy run --rebuild``: the library built from the folder's (copied) sources is exact too."""
    copy = _without_library(compiled[1], tmp_path / "copy")
    y = Artifact(copy).predict(data.x_test[:16], run_options={"rebuild": True})
    golden = run_golden(load_model(copy / "golden.onnx", clean=False), data.x_test[:16])
    np.testing.assert_array_equal(y, np.asarray(golden).reshape(16, -1))
    assert list((copy / "firmware" / "firmware").glob("*.so"))


def test_default_board_follows_the_backend():
    from qdeploy.targets.hls4ml.options import Hls4mlOptions

    assert Hls4mlOptions().board_preset.name == "pynq-z2"
    assert Hls4mlOptions(backend="Quartus").board_preset.part == "AGFB014R24B2E2V"
    assert Hls4mlOptions(backend="Quartus", board="de10-nano").board_preset.vendor == "Intel"


@pytest.mark.parametrize(
    ("backend", "board", "message"),
    [
        ("Quartus", "pynq-z2", r"board 'pynq-z2' carries an AMD part .*choose an Intel board \(agilex7-fdk, de10-nano\)"),
        ("Vitis", "de10-nano", r"board .de10-nano. carries an Intel part.*backend for Intel parts \(--backend Quartus\)"),
        ("Catapult", "agilex7-fdk", r"the Catapult backend builds for AMD parts only"),
    ],
)
def test_a_board_of_another_vendor_is_refused_before_anything_is_written(backend, board, message, mlp_w4a8, tmp_path):
    with pytest.raises(QDeployError, match=message):
        qdeploy.compile(mlp_w4a8[1], target="hls4ml", backend=backend, board=board, out=tmp_path / "fpga")
    assert_no_output(tmp_path / "fpga")


def test_an_output_naming_its_build_folder_is_refused(tmp_path):
    from qdeploy.targets.hls4ml.project import check_relocatable

    staging = tmp_path / ".fpga.abcd1234"
    (staging / "firmware").mkdir(parents=True)
    (staging / "firmware" / "ok.txt").write_text("weights/w2.txt")
    check_relocatable(staging)
    (staging / "firmware" / "lib.so").write_bytes(b"\0" + str(staging).encode() + b"/firmware/weights\0")
    with pytest.raises(QDeployError, match=r"firmware/lib.so names the folder it was built in"):
        check_relocatable(staging)
