"""The hls4ml project folder: relocatable C simulation, portable configuration, READMEs, the firmware's input layout.

A compiled folder must keep working wherever it is moved or copied (issue 17): hls4ml bakes the absolute build path
into the C-simulation library (the weights directory it reads at run time) and into its configuration. qdeploy builds
the library so that it finds its weights beside itself when loaded (``templates/qdeploy_weights_dir.h``), writes the
configuration with paths relative to the project, and checks that no written file names the build folder.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import yaml

import qdeploy
from qdeploy.errors import QDeployError
from qdeploy.targets.hls4ml.boards import Board
from qdeploy.targets.hls4ml.implementation import LayerImplementation
from qdeploy.targets.hls4ml.options import Backend, Hls4mlOptions, Strategy

PROJECT = "qdeploy_fw"
FIRMWARE_DIR = "firmware"
IO_FILE = "qdeploy_io.json"  # how the firmware expects its inputs laid out
WEIGHTS_DIR_HEADER = "qdeploy_weights_dir.h"  # written into the project's firmware/ folder
TB_INPUTS, TB_OUTPUTS = "tb_data/tb_input_features.dat", "tb_data/tb_output_predictions.dat"  # what hls4ml writes


@dataclass(frozen=True)
class VendorBuild:
    """How a backend's project is built on the vendor tool: the tool, the scripts it runs (files hls4ml writes into
    the project) and the commands, as the generated README states them (``{project}``/``{part}`` filled in)."""

    tool: str
    scripts: tuple[str, ...]
    commands: tuple[str, ...]


VENDOR_BUILDS = {
    # hls4ml's VitisBackend.build runs ``vitis-run --tcl build_prj.tcl --mode hls`` with the steps in build_opt.tcl
    Backend.VITIS: VendorBuild(
        "AMD Vitis HLS",
        ("build_prj.tcl", "build_opt.tcl", "project.tcl", "vivado_synth.tcl"),
        ("vitis-run --mode hls --tcl build_prj.tcl   # the steps to run are set in build_opt.tcl",),
    ),
    Backend.VIVADO: VendorBuild(
        "AMD Vivado HLS",
        ("build_prj.tcl", "project.tcl", "vivado_synth.tcl"),
        ('vivado_hls -f build_prj.tcl "csim=1 synth=1 cosim=0 export=0"',),
    ),
    # hls4ml's QuartusBackend.build runs ``make <project>-fpga`` (i++ -march=<part>), then the testbench it built
    Backend.QUARTUS: VendorBuild(
        "the Intel HLS Compiler (i++) and Quartus Prime",
        ("Makefile",),
        (
            "make {project}-fpga   # HLS synthesis for {part} (i++ -march={part})",
            "./{project}-fpga   # the testbench against the component's simulation",
            "make {project}-fpga QUARTUS_COMPILE=--quartus-compile   # and the Quartus compile of the component",
        ),
    ),
    Backend.CATAPULT: VendorBuild(
        "Siemens Catapult HLS", ("build_prj.tcl",), ("catapult -product ultra -shell -f build_prj.tcl",)
    ),
}


def to_firmware_layout(x: np.ndarray, channels_last: bool) -> np.ndarray:
    """NCHW (the graph's layout) -> NHWC when the firmware streams channels-last inputs."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x


def library_name(stamp: str) -> str:
    """The C-simulation library hls4ml builds, relative to the project folder."""
    return f"{FIRMWARE_DIR}/{PROJECT}-{stamp}.so"


def make_relocatable(project_dir: Path, backend: Backend) -> None:
    """Edit the sources hls4ml wrote (before it builds them) so that the C-simulation library finds its weights
    beside itself when loaded, not at the absolute build path hls4ml bakes in: Vivado/Vitis pass that path to the
    compiler as ``WEIGHTS_DIR`` (``build_lib.sh``), Catapult writes it into the bridge. Quartus compiles its weights
    in. Without this a folder breaks once the compile renames its staging folder, and again when moved."""
    firmware = project_dir / "firmware"
    shutil.copyfile(str(files("qdeploy.targets.hls4ml") / "templates" / WEIGHTS_DIR_HEADER), firmware / WEIGHTS_DIR_HEADER)
    if backend in (Backend.VITIS, Backend.VIVADO):
        _substitute(
            project_dir / "build_lib.sh",
            r'WEIGHTS_DIR="\\"\$\{BASEDIR\}/firmware/weights\\""',
            "# qdeploy: the weights are read from weights/ beside the library, wherever the folder is now\n"
            'WEIGHTS_DIR="qdeploy_weights_dir()"\n'
            f'INCFLAGS+=" -include firmware/{WEIGHTS_DIR_HEADER}"',
        )
    elif backend is Backend.CATAPULT:
        _substitute(
            project_dir / f"{PROJECT}_bridge.cpp",
            r'static std::string s_weights_dir = "[^"\n]*";',
            f'#include "firmware/{WEIGHTS_DIR_HEADER}"\nstatic std::string s_weights_dir = qdeploy_weights_dir();',
        )
        # hls4ml writes the testbench data's source paths here; the testbench reads the copies in tb_data/
        _substitute(
            project_dir / "build_prj.tcl",
            r"flow package option set /SCVerify/INVOKE_ARGS \"[^\"\n]*\"",
            f'flow package option set /SCVerify/INVOKE_ARGS "$sfd/firmware/weights $sfd/{TB_INPUTS} $sfd/{TB_OUTPUTS}"',
        )


def missing_weight_files(project_dir: Path) -> list[str]:
    """The weight files the C simulation reads at run time (Vivado, Vitis, Catapult) that the folder lacks: hls4ml's
    loader ends the whole process (``exit(1)``) on a missing one, so they are checked before it is loaded."""
    source = project_dir / "firmware" / f"{PROJECT}.cpp"
    if not source.is_file():
        return []
    names = re.findall(r'load_\w*weights_from_txt<.*?>\(\s*\w+\s*,\s*"([^"/]+)"\s*\)', source.read_text())
    return [f"firmware/weights/{name}" for name in names if not (project_dir / "firmware" / "weights" / name).is_file()]


def _substitute(path: Path, pattern: str, replacement: str) -> None:
    """Replace the one match of ``pattern`` in a file hls4ml wrote; refuse when hls4ml no longer writes it so (a
    silently unchanged file would bake the build path in again)."""
    text = path.read_text()
    new, count = re.subn(pattern, lambda _: replacement, text)
    if count != 1:
        import hls4ml

        raise QDeployError(
            f"hls4ml {hls4ml.__version__} wrote {path.name} in a form qdeploy does not know ({count} matches of "
            f"{pattern!r}); install the hls4ml version qdeploy's 'hls4ml' extra pins"
        )
    path.write_text(new)


_STAGING_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}")  # qdeploy.staging's ``.NAME.xxxxxxxx`` (tempfile.mkdtemp)


def check_relocatable(out_dir: Path) -> None:
    """Refuse an output whose files name the folder they were built in: they would break (or read another folder's
    files) once the folder is renamed, moved or copied."""
    needles = {str(out_dir.resolve()).encode(), str(out_dir.absolute()).encode()}
    if _STAGING_NAME.fullmatch(out_dir.name):  # relative paths into the staging folder too
        needles.add(out_dir.name.encode())
    for path in sorted(out_dir.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                raise QDeployError(
                    f"{path.relative_to(out_dir)} names the folder it was built in, so the output would break when "
                    "moved; this is a qdeploy bug, please report it with the model"
                )


def write_portable_config(hls_model, project_dir: Path) -> None:
    """Rewrite hls4ml_config.yml without the pickled ONNX model hls4ml embeds (``!!python/object``), which
    hls4ml's own ``link_existing_project`` (a safe YAML load) cannot read back, and with its paths relative to the
    project folder (the staging folder it was written in is renamed when the compile ends)."""
    config = {k: v for k, v in hls_model.config.config.items() if k not in ("OnnxModel", "KerasModel", "PytorchModel")}
    config.update(OutputDir=".", InputData=TB_INPUTS, OutputPredictions=TB_OUTPUTS)
    (project_dir / "hls4ml_config.yml").write_text(yaml.safe_dump(_plain(config), sort_keys=False))


def _plain(value: Any) -> Any:
    """YAML-safe copy of hls4ml's config (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def implementation_summary(implementations: dict[str, LayerImplementation]) -> str:
    """``Latency: 3 layers, Resource: 2 layers (reuse factors 9-36)``: the per-layer choice in a phrase."""
    parts = []
    for strategy in Strategy:
        chosen = [layer for layer in implementations.values() if layer.strategy is strategy]
        if not chosen:
            continue
        reuse = sorted({layer.reuse_factor for layer in chosen})
        factors = f"reuse factor {reuse[0]}" if len(reuse) == 1 else f"reuse factors {reuse[0]}-{reuse[-1]}"
        parts.append(f"{strategy.value}: {len(chosen)} layer{'s' if len(chosen) > 1 else ''} ({factors})")
    return ", ".join(parts) + " (per layer in ../report.json)" if parts else "no multiplying layers"


def write_readmes(
    out_dir: Path,
    options: Hls4mlOptions,
    board: Board,
    model_name: str,
    implementations: dict[str, LayerImplementation],
    library: str,
) -> None:
    """The firmware project's README (from ``templates/README.md.tmpl``: the files and vendor commands of the
    backend's project) and a pointer to it in the output folder."""
    build = VENDOR_BUILDS[options.backend]
    template = Template((files("qdeploy.targets.hls4ml") / "templates" / "README.md.tmpl").read_text())
    scripts = ", ".join(f"`{script}`" for script in build.scripts)
    commands = "\n".join(command.format(project=PROJECT, part=board.part) for command in build.commands)
    (out_dir / FIRMWARE_DIR / "README.md").write_text(
        template.substitute(
            board=board.description,
            vendor=board.vendor,
            version=qdeploy.__version__,
            model=model_name,
            backend=options.backend.value,
            io_type=options.io_type.value,
            implementation=implementation_summary(implementations),
            part=board.part,
            clock_period_ns=options.clock,
            project=PROJECT,
            library=library,
            weights_dir_header=WEIGHTS_DIR_HEADER,
            tb_inputs=TB_INPUTS,
            tb_outputs=TB_OUTPUTS,
            tool=build.tool,
            scripts=scripts,
            build_commands=commands,
        )
    )
    (out_dir / "README.md").write_text(
        f"# qdeploy output ({board.name})\n\nThe firmware project is in `{FIRMWARE_DIR}/` (see its README); "
        "`report.json` holds the verification result and per-layer precisions.\n"
    )
