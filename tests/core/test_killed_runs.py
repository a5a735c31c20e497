"""Killed runs: SIGTERM cleans up like Ctrl-C, a SIGKILL leftover is removed by the next run, and an output being
replaced is always whole (the old one or the new one)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qdeploy.staging import PREVIOUS, STAGING_MARKER, staged_folder


def staging_folders(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.*"))


def start_compile(model: Path, out: Path) -> subprocess.Popen:
    """A compile that runs long enough to be killed: many verification samples."""
    return subprocess.Popen(
        [sys.executable, "-m", "qdeploy.cli", "compile", str(model), "--samples", "400000", "-o", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_staging(process: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 120
    while not staging_folders(out):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the compile never started staging"
        time.sleep(0.05)
    time.sleep(0.3)


@pytest.fixture
def model_file(tmp_path, mlp_w4a8) -> Path:
    path = tmp_path / "model.onnx"
    mlp_w4a8[1].save(str(path))
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_remove_the_staging_folder(model_file, tmp_path, signum):
    out = tmp_path / "out"
    process = start_compile(model_file, out)
    wait_for_staging(process, out)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum
    assert f"stopped by {signal.Signals(signum).name}" in err and "Traceback" not in err
    assert not out.exists() and staging_folders(out) == []


def run_compile(model: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qdeploy.cli", "compile", str(model), "--samples", "20", "-o", str(out), "-q"],
        capture_output=True,
        text=True,
    )


def files_of(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_sigkill_leftover_is_removed_by_the_next_compile(model_file, tmp_path):
    """SIGKILL (no handler can run) while a compile replaces a previous output: the previous output is untouched,
    the staging folder stays behind, and the next compile into the same folder removes it."""
    out = tmp_path / "out"
    done = run_compile(model_file, out)
    assert done.returncode == 0, done.stderr
    before = files_of(out)
    process = start_compile(model_file, out)  # replaces the previous output ...
    wait_for_staging(process, out)
    process.kill()  # ... but is killed
    process.wait(timeout=60)
    leftovers = staging_folders(out)
    assert leftovers and all((folder / STAGING_MARKER).exists() for folder in leftovers)
    assert files_of(out) == before
    again = run_compile(model_file, out)  # the next run, in a new process
    assert again.returncode == 0, again.stderr
    assert staging_folders(out) == [], "the next run left the killed run's staging folder"
    assert (out / "report.json").exists() and (out / "model.onnx").exists()


#: a run that is SIGKILLed exactly between the two renames of a replacement: the previous output moved aside, the
#: new one not yet in place (os.replace is wrapped so the process kills itself right after the first rename)
KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from qdeploy import staging

out = Path(sys.argv[1])
rename = os.replace

def replace_then_die(src, dst):
    rename(src, dst)
    if Path(src) == out:  # the previous output just went aside
        os.kill(os.getpid(), signal.SIGKILL)

staging.os.replace = replace_then_die
with staging.staged_folder(out, "report.json") as folder:
    (folder / "report.json").write_text('{"new": true}')
"""


def test_a_replacement_killed_between_its_two_renames_leaves_the_previous_output_whole(tmp_path):
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "report.json").write_text('{"old": true}')
    (out / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    before = files_of(out)
    killed = subprocess.run([sys.executable, "-c", KILLED_BETWEEN_RENAMES, str(out)], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not out.exists()  # the window: the old output is aside ...
    aside = [folder for folder in staging_folders(out) if (folder / "out").is_dir()]
    assert len(aside) == 1 and files_of(aside[0] / "out") == before  # ... and whole
    with pytest.raises(RuntimeError):
        with staged_folder(out, "report.json"):  # the next run (failing itself) puts it back first
            assert files_of(out) == before
            raise RuntimeError("this run fails too")
    assert files_of(out) == before and staging_folders(out) == []


def test_leftovers_are_judged_by_their_marker(tmp_path):
    """Beside the output: a dead run's previous output aside (restored), a dead run's half-written staging (removed),
    a folder without qdeploy's marker and one marked by another machine (both left alone)."""
    out = tmp_path / "out"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    aside = tmp_path / ".out.killed"
    (aside / "out").mkdir(parents=True)
    (aside / "out" / "report.json").write_text('{"old": true}')
    host = socket.gethostname()
    (aside / STAGING_MARKER).write_text(f"{dead_pid} {PREVIOUS} {host}")
    stale_new = tmp_path / ".out.half"
    stale_new.mkdir()
    (stale_new / STAGING_MARKER).write_text(f"{dead_pid} new {host}")
    foreign = tmp_path / ".out.someone-elses"
    foreign.mkdir()  # no marker: not qdeploy's, never touched
    other_machine = tmp_path / ".out.other-machine"
    other_machine.mkdir()  # another machine's run on a shared folder: its process id means nothing here
    (other_machine / STAGING_MARKER).write_text(f"{dead_pid} new some-other-host")
    with pytest.raises(RuntimeError):
        with staged_folder(out, "report.json"):
            # the previous output is back before anything else happens
            assert (out / "report.json").read_text() == '{"old": true}'
            raise RuntimeError("this run fails too")
    assert (out / "report.json").read_text() == '{"old": true}'
    assert not aside.exists() and not stale_new.exists() and foreign.exists() and other_machine.exists()
    assert os.listdir(out) == ["report.json"]
