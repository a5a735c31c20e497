"""The hls4ml project folder: its portable configuration, READMEs, and the firmware's input layout."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import yaml

import qdeploy
from qdeploy.targets.hls4ml.boards import Board
from qdeploy.targets.hls4ml.implementation import LayerImplementation
from qdeploy.targets.hls4ml.options import Backend, Hls4mlOptions, Strategy

PROJECT = "qdeploy_fw"
FIRMWARE_DIR = "firmware"
IO_FILE = "qdeploy_io.json"  # how the firmware expects its inputs laid out
BUILD_COMMANDS = {
    Backend.VITIS: "vitis-run --mode hls --tcl build_prj.tcl",
    Backend.VIVADO: "vivado_hls -f build_prj.tcl",
    Backend.QUARTUS: "make myproject-fpga   # Intel HLS (i++); see the Makefile",
    Backend.CATAPULT: "catapult -shell -file build_prj.tcl",
}


def to_firmware_layout(x: np.ndarray, channels_last: bool) -> np.ndarray:
    """NCHW (the graph's layout) -> NHWC when the firmware streams channels-last inputs."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x


def write_portable_config(hls_model, project_dir: Path) -> None:
    """Rewrite hls4ml_config.yml without the pickled ONNX model hls4ml embeds (``!!python/object``), which
    hls4ml's own ``link_existing_project`` (a safe YAML load) cannot read back."""
    config = {k: v for k, v in hls_model.config.config.items() if k not in ("OnnxModel", "KerasModel", "PytorchModel")}
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
) -> None:
    """The firmware project's README (from ``templates/README.md.tmpl``) and a pointer to it in the output folder."""
    template = Template((files("qdeploy.targets.hls4ml") / "templates" / "README.md.tmpl").read_text())
    (out_dir / FIRMWARE_DIR / "README.md").write_text(
        template.substitute(
            board=board.description,
            version=qdeploy.__version__,
            model=model_name,
            backend=options.backend.value,
            io_type=options.io_type.value,
            implementation=implementation_summary(implementations),
            part=board.part,
            clock_period_ns=options.clock,
            project=PROJECT,
            build_command=BUILD_COMMANDS[options.backend],
        )
    )
    (out_dir / "README.md").write_text(
        f"# qdeploy output ({board.name})\n\nThe firmware project is in `{FIRMWARE_DIR}/` (see its README); "
        "`report.json` holds the verification result and per-layer precisions.\n"
    )
