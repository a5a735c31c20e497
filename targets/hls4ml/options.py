"""Settings of the hls4ml target: the ``[hls4ml]`` table of a compile config, its ``qdeploy compile`` flags, and the
pass-through of hls4ml's own configuration vocabulary."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from qdeploy.errors import QDeployError
from qdeploy.options import Options, option
from qdeploy.targets.hls4ml.boards import BACKEND_VENDOR, BOARDS, DEFAULT_BOARD, Board, get_board


class Backend(enum.StrEnum):
    """hls4ml backends whose C simulation qdeploy runs (the vendor tool is needed only to build)."""

    VITIS = "Vitis"
    VIVADO = "Vivado"
    QUARTUS = "Quartus"
    CATAPULT = "Catapult"


class IOType(enum.StrEnum):
    AUTO = "auto"  # io_stream for convolutional graphs (hls4ml's advice for CNNs), else io_parallel
    PARALLEL = "io_parallel"
    STREAM = "io_stream"


class Strategy(enum.StrEnum):
    AUTO = "auto"  # per layer: Latency where it unrolls, else Resource (implementation.py)
    LATENCY = "Latency"
    RESOURCE = "Resource"


#: top-level sections of an hls4ml configuration (``HLSConfig``), passed through in hls4ml's own vocabulary
HLS4ML_SECTIONS = ("Model", "LayerType", "LayerName", "Flows", "Optimizers", "SkipOptimizers")


@dataclasses.dataclass(frozen=True)
class Hls4mlOptions(Options):
    board: str | None = option(
        None,
        f"FPGA board preset ({', '.join(BOARDS)}); default: "
        + ", ".join(
            f"{DEFAULT_BOARD[vendor]} ({', '.join(b for b, v in BACKEND_VENDOR.items() if v == vendor)})"
            for vendor in dict.fromkeys(BACKEND_VENDOR.values())
        ),
    )
    backend: Backend = option(Backend.VITIS, "hls4ml backend whose C simulation verifies the firmware")
    io_type: IOType = option(IOType.AUTO, "hls4ml I/O type (auto: io_stream for graphs with convolutions)")
    strategy: Strategy = option(
        Strategy.AUTO, "hls4ml strategy of every layer (auto: per layer, Latency where it unrolls, else Resource)"
    )
    reuse_factor: int | None = option(
        None,
        "hls4ml reuse factor (multiplications per multiplier) of every layer; unset: the smallest valid one per layer",
    )
    strict_fit: bool = option(False, "refuse a design whose estimated resources exceed the board's")
    clock_period_ns: float | None = option(None, "clock period in ns (overrides the board's)", flag="--clock-period")
    #: hls4ml's own configuration (``Model``/``LayerType``/``LayerName`` ...), merged over the derived one; in a
    #: config file these sections sit directly in the ``[hls4ml]`` table
    hls_config: Mapping[str, Any] = option(default_factory=dict, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        # an unknown board, or one of a vendor the backend does not build for, is refused here
        get_board(self.board, self.backend.value)
        if self.reuse_factor is not None and (not isinstance(self.reuse_factor, int) or self.reuse_factor < 1):
            raise QDeployError(f"reuse_factor={self.reuse_factor!r} must be an integer >= 1")
        if self.clock_period_ns is not None and not self.clock_period_ns > 0:
            raise QDeployError(f"clock_period_ns={self.clock_period_ns!r} must be > 0")

    @property
    def board_preset(self) -> Board:
        """The board: the named one, else the default of the backend's vendor (an Intel board for Quartus)."""
        return get_board(self.board, self.backend.value)

    @property
    def clock(self) -> float:
        """The clock period in ns: the option, else the board's."""
        return self.clock_period_ns or self.board_preset.clock_period_ns


def split_hls4ml_sections(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    """An ``[hls4ml]`` table with hls4ml's own sections (``Model``, ``LayerName``, ...) moved under ``hls_config``,
    so users paste what they have next to qdeploy's snake_case keys."""
    table = dict(mapping or {})
    sections = {key: table.pop(key) for key in list(table) if key in HLS4ML_SECTIONS}
    if sections:
        table["hls_config"] = {**dict(table.get("hls_config") or {}), **sections}
    return table


@dataclasses.dataclass(frozen=True)
class Hls4mlRunOptions(Options):
    """How a compiled hls4ml folder is run (``Artifact.predict(x, run_options=...)``, ``qdeploy run``)."""

    rebuild: bool = option(
        False,
        "rebuild the C simulation from the folder's sources first, running its build_lib.sh (a folder copied to "
        "another machine; only for a folder you trust)",
    )
