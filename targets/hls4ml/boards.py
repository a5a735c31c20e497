"""Board presets: the FPGA part and default clock for each named board."""

from __future__ import annotations

from dataclasses import dataclass

from qdeploy.errors import QDeployError


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    clock_period_ns: float
    description: str


BOARDS = {
    board.name: board
    for board in (
        Board("pynq-z2", "xc7z020clg400-1", 10.0, "TUL PYNQ-Z2 (Zynq-7020)"),
        Board("zcu104", "xczu7ev-ffvc1156-2-e", 5.0, "AMD Zynq UltraScale+ MPSoC ZCU104"),
        Board("arty-a7-100t", "xc7a100tcsg324-1", 10.0, "Digilent Arty A7-100T (Artix-7)"),
        Board("alveo-u250", "xcu250-figd2104-2L-e", 3.33, "AMD Alveo U250 data-center card"),
        Board("vu13p", "xcvu13p-flga2577-2-e", 5.0, "Virtex UltraScale+ VU13P, as in LHC trigger boards"),
    )
}

DEFAULT_BOARD = "pynq-z2"


def get_board(name: str | None) -> Board:
    name = name or DEFAULT_BOARD
    if name not in BOARDS:
        raise QDeployError(f"unknown board {name!r}; choose one of: {', '.join(BOARDS)}")
    return BOARDS[name]
