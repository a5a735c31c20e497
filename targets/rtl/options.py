"""Settings of the RTL target: the ``[rtl]`` table of a compile config and its ``qdeploy compile`` flags."""

from __future__ import annotations

import dataclasses
import enum
import numbers

from qdeploy.errors import QDeployError
from qdeploy.options import Options, option
from qdeploy.targets.rtl.devices import DEFAULT_DEVICE, DEVICES


class Implement(enum.StrEnum):
    """How far the flow goes after bit-exact simulation."""

    PNR = "pnr"  # synthesis, place and route, bitstream (generic: synthesis only)
    SYNTH = "synth"  # synthesis: resources per layer, no timing
    NONE = "none"  # Verilog and simulation only


def _integer(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise QDeployError(f"rtl option {name}={value!r} must be an integer >= {low}")


@dataclasses.dataclass(frozen=True)
class RtlOptions(Options):
    device: str = option(DEFAULT_DEVICE, f"FPGA to synthesize for ({', '.join(DEVICES)})", flag="--device")
    stages_per_layer: int = option(
        1,
        "pipeline registers per layer: 0 = combinational network, 1 = a register behind each layer, n > 1 also "
        "cuts each adder graph into n stages of equal adder depth (latency = stages x layers cycles)",
    )
    implement: Implement = option(Implement.PNR, "after simulation: pnr (bitstream), synth (resources), none")
    clock_mhz: float | None = option(None, "target clock for place and route in MHz (default: the device's)")
    share_subexpressions: bool = option(
        True, "share common sub-expressions between a layer's outputs (off: plain canonical signed digits)", cli=False
    )
    baud: int = option(115200, "UART baud rate of the board top level", cli=False)
    seed: int = option(1, "nextpnr placement seed", cli=False)
    max_simulated_adders: int = option(
        200_000,
        "refuse networks with more adders than this before building anything (simulation and synthesis time grow with it)",
        cli=False,
    )

    max_weight_digits: int = option(
        100_000,
        "refuse networks whose weights have more non-zero signed digits than this (the adders before sharing), "
        "checked before the adder graphs are built (their sub-expression search takes minutes per 100,000 digits)",
        cli=False,
    )

    max_matrix_entries: int = option(
        20_000_000,
        "refuse a layer whose weight matrix (a convolution's Toeplitz matrix: inputs x outputs, mostly zeros) has "
        "more entries than this, before it is built (memory: 8 bytes each)",
        cli=False,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.device not in DEVICES:
            raise QDeployError(f"unknown rtl device {self.device!r}; choose one of: {', '.join(DEVICES)}")
        _integer("stages_per_layer", self.stages_per_layer, 0)
        _integer("baud", self.baud, 300)
        _integer("seed", self.seed, 0)
        _integer("max_simulated_adders", self.max_simulated_adders, 1)
        _integer("max_weight_digits", self.max_weight_digits, 1)
        _integer("max_matrix_entries", self.max_matrix_entries, 1)
        if self.clock_mhz is not None and not (isinstance(self.clock_mhz, numbers.Real) and self.clock_mhz > 0):
            raise QDeployError(f"rtl option clock_mhz={self.clock_mhz!r} must be > 0")

    @property
    def clock(self) -> float:
        return float(self.clock_mhz or DEVICES[self.device].clock_mhz)
