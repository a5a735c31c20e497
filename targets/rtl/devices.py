"""Devices the RTL target synthesizes for: how yosys maps to them, how nextpnr places them, what they hold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Device:
    name: str
    family: str  # "ice40", "ecp5" or "generic"
    description: str
    luts: int | None  # logic cells (LUT4 on iCE40/ECP5); None: no capacity limit (comparison mapping)
    io_pins: int | None
    synth: str  # the yosys synthesis command (before -top)
    nextpnr: tuple[str, ...] = ()  # device and package arguments of nextpnr
    clock_mhz: float = 100.0  # default target clock
    board: str | None = None  # the board whose constraint file is written
    #: cell types by resource kind, as yosys names them for this family
    cells: tuple[tuple[str, tuple[str, ...]], ...] = ()


_ICE40_CELLS = (
    ("luts", ("SB_LUT4",)),
    ("carry", ("SB_CARRY",)),
    (
        "ffs",
        (
            "SB_DFF",
            "SB_DFFE",
            "SB_DFFSR",
            "SB_DFFR",
            "SB_DFFS",
            "SB_DFFESR",
            "SB_DFFER",
            "SB_DFFES",
            "SB_DFFSS",
            "SB_DFFESS",
            "SB_DFFN",
        ),
    ),
    ("dsps", ("SB_MAC16",)),
    ("brams", ("SB_RAM40_4K",)),
)
_ECP5_CELLS = (
    ("luts", ("LUT4",)),
    ("carry", ("CCU2C",)),  # two bits of adder each, in a slice's two LUT4s
    ("ffs", ("TRELLIS_FF",)),
    ("dsps", ("MULT18X18D", "ALU54B")),
    ("brams", ("DP16KD",)),
)
_XILINX_CELLS = (
    ("luts", ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6")),
    ("carry", ("CARRY4",)),
    ("ffs", ("FDRE", "FDSE", "FDCE", "FDPE")),
    ("dsps", ("DSP48E1",)),
    ("brams", ("RAMB18E1", "RAMB36E1")),
)

DEVICES = {
    device.name: device
    for device in (
        Device(
            "ice40-up5k",
            "ice40",
            "Lattice iCE40 UltraPlus 5K (iCEBreaker board, 12 MHz, UART)",
            5280,
            39,
            "synth_ice40",
            ("--up5k", "--package", "sg48"),
            12.0,
            "icebreaker",
            _ICE40_CELLS,
        ),
        Device(
            "ecp5-25k",
            "ecp5",
            "Lattice ECP5 LFE5U-25F (CABGA256)",
            24288,
            197,
            "synth_ecp5",
            ("--25k", "--package", "CABGA256"),
            50.0,
            None,
            _ECP5_CELLS,
        ),
        Device(
            "ecp5-85k",
            "ecp5",
            "Lattice ECP5 LFE5U-85F (CABGA381, e.g. ULX3S-85F)",
            83640,
            205,
            "synth_ecp5",
            ("--85k", "--package", "CABGA381"),
            50.0,
            None,
            _ECP5_CELLS,
        ),
        Device(
            "generic",
            "generic",
            "generic LUT6 + carry mapping (yosys synth_xilinx, 7-series cells): "
            "Xilinx-class numbers for comparison, no place and route",
            None,
            None,
            "synth_xilinx -family xc7",
            (),
            200.0,
            None,
            _XILINX_CELLS,
        ),
    )
}
DEFAULT_DEVICE = "ice40-up5k"

#: iCEBreaker: 12 MHz oscillator on pin 35, FTDI UART on pins 6 (to the FPGA) and 9 (from it)
ICEBREAKER_PCF = """# iCEBreaker (iCE40UP5K-SG48): 12 MHz clock and the FTDI serial bridge. Written by qdeploy.
set_io -nowarn clk 35
set_io -nowarn rx 6
set_io -nowarn tx 9
"""
