"""Board presets: the FPGA part, default clock and resource capacity of each named board.

Capacities are the parts' datasheet totals (AMD DS190 Zynq-7000, DS180 7 Series, DS891 Zynq UltraScale+ MPSoC,
DS923 Virtex UltraScale+; the Alveo U250 carries an XCU250, the same die size as a VU13P). Block RAM is counted in
18 Kib halves, as ``resources.py`` estimates it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qdeploy.errors import QDeployError


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    clock_period_ns: float
    description: str
    #: what the part holds: LUT, FF, DSP and BRAM_18K (the keys of ``resources.estimate_layer``)
    capacity: dict[str, int] = field(default_factory=dict)


def _capacity(lut: int, ff: int, dsp: int, bram_36k: int) -> dict[str, int]:
    return {"LUT": lut, "FF": ff, "DSP": dsp, "BRAM_18K": 2 * bram_36k}


BOARDS = {
    board.name: board
    for board in (
        Board("pynq-z2", "xc7z020clg400-1", 10.0, "TUL PYNQ-Z2 (Zynq-7020)", _capacity(53_200, 106_400, 220, 140)),
        Board(
            "zcu104",
            "xczu7ev-ffvc1156-2-e",
            5.0,
            "AMD Zynq UltraScale+ MPSoC ZCU104",
            _capacity(230_400, 460_800, 1_728, 312),
        ),
        Board(
            "arty-a7-100t", "xc7a100tcsg324-1", 10.0, "Digilent Arty A7-100T (Artix-7)", _capacity(63_400, 126_800, 240, 135)
        ),
        Board(
            "alveo-u250",
            "xcu250-figd2104-2L-e",
            3.33,
            "AMD Alveo U250 data-center card",
            _capacity(1_728_000, 3_456_000, 12_288, 2_688),
        ),
        Board(
            "vu13p",
            "xcvu13p-flga2577-2-e",
            5.0,
            "Virtex UltraScale+ VU13P, as in LHC trigger boards",
            _capacity(1_728_000, 3_456_000, 12_288, 2_688),
        ),
    )
}

DEFAULT_BOARD = "pynq-z2"


def get_board(name: str | None) -> Board:
    name = name or DEFAULT_BOARD
    if name not in BOARDS:
        raise QDeployError(f"unknown board {name!r}; choose one of: {', '.join(BOARDS)}")
    return BOARDS[name]
