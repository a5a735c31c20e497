"""First-order FPGA resource estimate per hls4ml layer, from the exact types qdeploy chose (no vendor tool needed).

This is an analytic model, not a synthesis report: it counts the operators the generated C++ instantiates and
prices them with the usual rules of thumb for 6-input-LUT FPGAs (Xilinx 7-series / UltraScale+). Expect the
vendor's numbers to differ by tens of percent; the estimate is for comparing configurations (bit widths,
reuse factor, thresholds vs fixed point) and for spotting a layer that cannot fit, before an hours-long synthesis.

Rules:
- a multiplier goes to a DSP when both operands have >= 4 bits and together > 10 bits (what Vivado HLS does
  by default); otherwise it is ``ceil(w * a / 2)`` LUTs. Zero and power-of-two weights cost no multiplier;
- an adder costs one LUT per accumulator bit; one register per output bit of a layer (its pipeline stage): with
  io_stream, of one pixel (``n_out`` is then the channels);
- with reuse factor R, ``ceil(n / R)`` of n operators are instantiated (hls4ml's ReuseFactor);
- a threshold comparison costs ``ceil(width / 2)`` LUTs (carry-chain comparator);
- the Resource strategy keeps weights in BRAM (18 Kib blocks); Latency keeps them in logic.
"""

from __future__ import annotations

from math import ceil
from typing import Any

BRAM_BITS = 18 * 1024


def _dsp_multiplier(weight_bits: int, input_bits: int) -> bool:
    return weight_bits >= 4 and input_bits >= 4 and weight_bits + input_bits > 10


def estimate_layer(
    op: str,
    *,
    strategy: str,
    reuse: int,
    io_type: str,
    input_bits: int,
    result_bits: int,
    n_out: int,
    weight_bits: int = 0,
    accumulator_bits: int = 0,
    weights: int = 0,
    nonzero_weights: int = 0,
    multiplications: int = 0,
    comparisons: int = 0,
    channels_per_cycle: int | None = None,
) -> dict[str, int]:
    """Estimated LUT / FF / DSP / BRAM_18K of one layer (see the module docstring for the rules)."""
    lut = ff = dsp = bram = 0
    if op in ("Dense", "Conv1D", "Conv2D"):
        parallel = ceil(multiplications / reuse)
        if _dsp_multiplier(weight_bits, input_bits):
            dsp += parallel
        else:
            lut += parallel * ceil(weight_bits * input_bits / 2)
        lut += ceil(nonzero_weights / reuse) * accumulator_bits
        ff += n_out * accumulator_bits
        if strategy == "Resource" and weights:
            bram += ceil(weights * weight_bits / BRAM_BITS)
    elif op == "MultiThreshold":
        # io_stream handles one pixel (its channels) per cycle; io_parallel compares every element at once
        active = comparisons if io_type == "io_parallel" or channels_per_cycle is None else channels_per_cycle
        lut += active * ceil(input_bits / 2)
        ff += n_out * result_bits
    elif op.startswith("Pooling") or op.startswith("MaxPool"):
        lut += n_out * ceil(input_bits / 2)
        ff += n_out * result_bits
    return {"LUT": int(lut), "FF": int(ff), "DSP": int(dsp), "BRAM_18K": int(bram)}


def total(rows: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("LUT", "FF", "DSP", "BRAM_18K")
    return {key: sum(row.get("estimated_resources", {}).get(key, 0) for row in rows) for key in keys}


def board_fit(rows: list[dict[str, Any]], capacity: dict[str, int], most_costly: int = 3) -> dict[str, Any]:
    """The estimate against a board's capacity: per resource the estimated total, the capacity and the share used;
    ``over``: the resources past capacity, each with the layers that cost most of it (largest first)."""
    estimated = total(rows)
    fit: dict[str, Any] = {
        "capacity": dict(capacity),
        "estimated": estimated,
        "utilization": {key: round(estimated[key] / capacity[key], 4) for key in capacity if capacity[key]},
        "over": {},
    }
    for key, available in capacity.items():
        if estimated.get(key, 0) > available:
            costly = sorted(rows, key=lambda row: row.get("estimated_resources", {}).get(key, 0), reverse=True)
            fit["over"][key] = [
                {"layer": row["name"], key: row["estimated_resources"][key]}
                for row in costly[:most_costly]
                if row.get("estimated_resources", {}).get(key, 0) > 0
            ]
    fit["fits"] = not fit["over"]
    return fit


def describe_overfit(fit: dict[str, Any], board: str) -> str:
    """One line: which resources exceed the board and the layers that cost most of each."""
    parts = []
    for key, layers in fit["over"].items():
        costly = ", ".join(f"{entry['layer']} ({entry[key]:,})" for entry in layers)
        parts.append(f"{key} {fit['estimated'][key]:,} of {fit['capacity'][key]:,} (most: {costly})")
    return f"estimated resources exceed {board}: " + "; ".join(parts)
