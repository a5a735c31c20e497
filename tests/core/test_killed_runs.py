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


def test_a_sigkill_leftover_is_removed_and_the_previous_output_stays_whole(model_file, tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "qdeploy.cli", "compile", str(model_file), "--samples", "50", "-o", str(out), "-q"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    process = start_compile(model_file, out)  # replaces the previous output ...
    wait_for_staging(process, out)
    process.kill()  # ... but is killed (no cleanup can run)
    process.wait(timeout=60)
    assert staging_folders(out), "SIGKILL leaves the staging folder behind"
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    with staged_folder(out, "report.json") as folder:  # the next run into the same parent cleans it up
        assert staging_folders(out) == [folder]
        (folder / "report.json").write_text("{}")
    assert staging_folders(out) == [] and (out / "report.json").read_text() == "{}"


def test_a_replacement_killed_between_its_two_renames_is_repaired(tmp_path):
    """The state a kill leaves between 'old output aside' and 'new output in': the next run restores the old one."""
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
