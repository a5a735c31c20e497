"""Board presets: the FPGA part, vendor, default clock and resource capacity of each named board, and which boards
each hls4ml backend can build for.

AMD capacities are the parts' datasheet totals (DS190 Zynq-7000, DS180 7 Series, DS891 Zynq UltraScale+ MPSoC,
DS923 Virtex UltraScale+; the Alveo U250 carries an XCU250, the same die size as a VU13P). Block RAM is counted in
18 Kib halves, as ``resources.py`` estimates it.

Intel capacities come from Intel's product tables (Agilex 7 F-Series AGF 014; Cyclone V SE A6), expressed in the
units ``resources.py`` estimates, which are AMD's: an ALM counts as one LUT (it holds one 6-input function, or two
smaller ones) and its four registers as four FFs; a variable-precision DSP block as two DSPs (two 18x19
multipliers; a DSP48 holds one); an M20K block as one 18 Kib block RAM, and two M10K blocks as one. Each rounding
is towards a smaller capacity, so an estimate that fits an Intel board is not an optimistic one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qdeploy.errors import QDeployError

AMD, INTEL = "AMD", "Intel"


@dataclass(frozen=True)
class Board:
    name: str
    part: str
    clock_period_ns: float
    description: str
    #: what the part holds: LUT, FF, DSP and BRAM_18K (the keys of ``resources.estimate_layer``)
    capacity: dict[str, int] = field(default_factory=dict)
    vendor: str = AMD


def _capacity(lut: int, ff: int, dsp: int, bram_36k: int) -> dict[str, int]:
    return {"LUT": lut, "FF": ff, "DSP": dsp, "BRAM_18K": 2 * bram_36k}


def _intel_capacity(alms: int, registers: int, dsp_blocks: int, m20k: int = 0, m10k: int = 0) -> dict[str, int]:
    """An Intel part's datasheet counts in the estimate's units (see the module docstring)."""
    return {"LUT": alms, "FF": registers, "DSP": 2 * dsp_blocks, "BRAM_18K": m20k + m10k // 2}


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
        # the production kits DK-DEV-AGF014EA/EB carry this part (Agilex 7 F-Series Development Kit User Guide)
        Board(
            "agilex7-fdk",
            "AGFB014R24B2E2V",
            5.0,
            "Intel Agilex 7 FPGA F-Series Development Kit (AGF 014)",
            _intel_capacity(alms=487_200, registers=1_948_800, dsp_blocks=4_510, m20k=7_110),
            vendor=INTEL,
        ),
        Board(
            "de10-nano",
            "5CSEBA6U23I7",
            10.0,
            "Terasic DE10-Nano (Cyclone V SE A6 SoC)",
            _intel_capacity(alms=41_509, registers=166_036, dsp_blocks=112, m10k=557),
            vendor=INTEL,
        ),
    )
}

#: the FPGA vendor whose parts each hls4ml backend builds for: hls4ml's Catapult flow maps AMD parts only
#: (``setup_xilinx_part`` in its build_prj.tcl); Quartus is the Intel HLS Compiler
BACKEND_VENDOR = {"Vitis": AMD, "Vivado": AMD, "Catapult": AMD, "Quartus": INTEL}
#: the board a backend compiles for when none is named
DEFAULT_BOARD = {AMD: "pynq-z2", INTEL: "agilex7-fdk"}


def boards_of(vendor: str) -> list[str]:
    return [name for name, board in BOARDS.items() if board.vendor == vendor]


def get_board(name: str | None, backend: str = "Vitis") -> Board:
    """The named board (default: the backend's vendor's default board), refused by name when unknown or when the
    backend cannot build for its vendor's parts."""
    vendor = BACKEND_VENDOR[str(backend)]
    name = name or DEFAULT_BOARD[vendor]
    if name not in BOARDS:
        raise QDeployError(f"unknown board {name!r}; choose one of: {', '.join(BOARDS)}")
    board = BOARDS[name]
    if board.vendor != vendor:
        backends = [b for b, v in BACKEND_VENDOR.items() if v == board.vendor]
        backends_text = backends[0] if len(backends) == 1 else f"{', '.join(backends[:-1])} or {backends[-1]}"
        raise QDeployError(
            f"board {name!r} carries an {board.vendor} part ({board.part}), and the {backend} backend builds for "
            f"{vendor} parts only; choose an {vendor} board ({', '.join(boards_of(vendor))}) or the backend for "
            f"{board.vendor} parts (--backend {backends_text})"
        )
    return board
