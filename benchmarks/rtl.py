"""The open RTL flow side by side with alkaid (da4ml's successor): the same quantized networks, both synthesized by
the same yosys (``synth_xilinx -family xc7``: LUT6 + CARRY4, Xilinx-class numbers), both simulated against the
golden executor.

Models: a jet-tagging-shaped MLP (16-64-32-32-5, synthetic 5-class Gaussian data: the jet data set is not
reachable offline) quantized by qdeploy at 2, 4, 6 and 8 bits (power-of-two scales, weights and activations);
a binarized TFC-shaped MLP (digits 64-64-64-64-10: qdeploy.binarize, first/last layer 8-bit); a thresholded
FINN-style MLP (the jet MLP at 4 bits with float scales, lowered to MultiThreshold).

alkaid gets the same integer weights through its NumPy-like tracer (``FVArrayInput`` -> ``quantize`` ->
``@`` -> ``relu`` -> ``quantize``, round mode ``RND``: alkaid has no half-to-even rounding, QONNX ``ROUND`` is),
is traced to combinational logic and written as Verilog by ``RTLModel``; its exactness comes from its own C++
interpreter (bit-accurate with its RTL). qdeploy's exactness is its Verilator simulation (``qdeploy compile``).
Both are combinational (no pipeline registers) so LUTs compare like for like.

    .venv/bin/python benchmarks/rtl.py            # writes benchmarks/results/rtl.{json,md}
"""

from __future__ import annotations

import argparse
import json
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
from qdeploy.precision import infer_precisions  # noqa: E402
from qdeploy.targets.rtl.design import build_design  # noqa: E402
from qdeploy.targets.rtl.devices import DEVICES  # noqa: E402
from qdeploy.targets.rtl.host import prologue, split_float_epilogue  # noqa: E402
from qdeploy.targets.rtl.steps import STEPS  # noqa: E402
from qdeploy.targets.rtl.synthesis import synthesize  # noqa: E402
from qdeploy.verify import random_inputs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SAMPLES = 2000
REASON = "thresholds / bipolar layers: no equivalent in alkaid's tracer without a custom handler"


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


def models() -> list[tuple[str, object]]:
    x, y = jet_data()
    torch.manual_seed(0)
    float_jet = train(jet_mlp(), x, y)
    out = []
    for bits in (2, 4, 6, 8):
        q = qdeploy.quantize(float_jet, x[:512], weight_bits=bits, act_bits=bits)
        out.append((f"jet MLP 16-64-32-32-5 W{bits}A{bits}", qdeploy.export(q, x[:1])))
    q = qdeploy.quantize(float_jet, x[:512], weight_bits=4, act_bits=4, scale="float")
    out.append(("thresholded MLP 16-64-32-32-5 W4A4 (float scales)", qdeploy.export(q, x[:1])))
    from sklearn.datasets import load_digits

    digits = load_digits()
    dx = (digits.data / 16.0).astype(np.float32)
    torch.manual_seed(0)
    tfc = nn.Sequential(
        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
    )
    binary = qdeploy.binarize(tfc, dx, digits.target, method="ste", epochs=5)
    out.append(("binarized TFC-shaped MLP 64-64-64-64-10 (digits)", qdeploy.export(binary, dx[:1])))
    return out


def prepared(graph):
    model = load_model(graph)
    for step in STEPS:
        model = step(model, None)
    firmware, epilogue = split_float_epilogue(model)
    _, precisions = infer_precisions(firmware)
    return firmware, epilogue, precisions


def qdeploy_row(graph, work: Path) -> dict:
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
    report = art.report
    seconds = time.perf_counter() - start
    piped = qdeploy.compile(
        graph,
        target="rtl",
        out=work / "qdeploy_piped",
        device="generic",
        implement="synth",
        stages_per_layer=1,
        verify_samples=200,
    )
    return {
        "luts": report["synthesis"]["network"]["luts"],
        "carry4": report["synthesis"]["network"]["carry"],
        "ffs": report["synthesis"]["network"]["ffs"],
        "adders": report["adders"],
        "exact": f"{report['outputs_equal']}/{report['outputs_compared']}",
        "compile_s": round(seconds, 1),
        "pipelined": {
            "latency_cycles": piped.report["latency_cycles"],
            "luts": piped.report["synthesis"]["network"]["luts"],
            "ffs": piped.report["synthesis"]["network"]["ffs"],
        },
    }


def alkaid_row(graph, work: Path) -> dict:
    """The same integer network through alkaid's tracer (po2 Quant graphs only)."""
    from alkaid.codegen import RTLModel
    from alkaid.trace import FVArrayInput, trace
    from alkaid.trace.ops import quantize, relu

    firmware, epilogue, precisions = prepared(graph)
    design = build_design(firmware, precisions)
    if epilogue is not None or any(
        layer.activation is not None and not hasattr(layer.activation, "rounding") for layer in design.layers
    ):
        return {"skipped": REASON}
    start = time.perf_counter()
    spec_in = precisions[design.prologue_nodes[-1]].quant
    x = FVArrayInput(len(design.input))
    signed = int(spec_in.signed)
    value = quantize(x, signed, spec_in.bits - signed + spec_in.scale_exp, -spec_in.scale_exp, "WRAP", "TRN")
    nodes = {n.name: n for n in firmware.graph.node}
    for layer in design.layers:
        matmul = nodes[layer.nodes[0]]
        weights = firmware.get_initializer(matmul.input[1]).astype(np.float64)
        value = value @ weights
        add = next((nodes[n] for n in layer.nodes if nodes[n].op_type == "Add"), None)
        if add is not None:
            value = value + firmware.get_initializer(add.input[1]).astype(np.float64).ravel()
        if "Relu" in [nodes[n].op_type for n in layer.nodes]:
            value = relu(value)
        spec = precisions[layer.nodes[-1]].quant
        if spec is not None:
            s = int(spec.signed)
            value = quantize(value, s, spec.bits - s + spec.scale_exp, -spec.scale_exp, "SAT", "RND")
    comb = trace(x, value)
    seconds = time.perf_counter() - start
    rtl = RTLModel(comb, work / "alkaid", "alkaid_model", latency_cutoff=-1, print_latency=False)
    rtl.write()
    sources = sorted((work / "alkaid" / "src").glob("*.v")) + sorted((work / "alkaid" / "src" / "static").glob("*.v"))
    impl = work / "alkaid_impl"
    impl.mkdir()
    for s in sources:
        (impl / s.name).write_text(s.read_text())
    resources = synthesize([impl / s.name for s in sources], "alkaid_model", DEVICES["generic"], impl)
    # exactness: alkaid's interpreter on the same integer input values the graph's input quantizer gives
    x_test = random_inputs(graph, sample_shape(graph), SAMPLES, 0)
    levels = run_golden(prologue(firmware, design.prologue_nodes, design.input_tensor), x_test).reshape(len(x_test), -1)
    y = comb.predict(levels.astype(np.float64))
    golden = run_golden(graph, x_test).reshape(len(x_test), -1)
    equal = int(np.all(np.asarray(y, dtype=np.float32).reshape(golden.shape) == golden, axis=1).sum())
    return {
        "luts": resources["total"]["luts"],
        "carry4": resources["total"]["carry"],
        "ffs": resources["total"]["ffs"],
        "alkaid_cost": round(float(comb.cost), 1),
        "exact": f"{equal}/{len(x_test)}",
        "trace_s": round(seconds, 1),
    }


def render(rows: list[dict]) -> str:
    lines = [
        "# RTL: qdeploy vs alkaid (same networks, same yosys)",
        "",
        "yosys 0.70 (yowasp) `synth_xilinx -family xc7` on both designs: yosys-mapped LUT6/CARRY4/FF counts (not "
        "Vivado's; compare only within this table). Combinational designs (no pipeline registers). Exactness: "
        f"outputs equal to the golden executor (QONNX reference) on {SAMPLES} inputs, half on rounding ties of the "
        "input quantizer; qdeploy by Verilator simulation of its Verilog, alkaid by its bit-accurate interpreter.",
        "",
        "| model | qdeploy LUTs | alkaid LUTs | qdeploy / alkaid | qdeploy CARRY4 | alkaid CARRY4 | qdeploy exact | "
        "alkaid exact | qdeploy pipelined (1 stage/layer): cycles, LUTs, FFs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        q, a = row["qdeploy"], row["alkaid"]
        if "skipped" in a:
            ratio = alut = acarry = aexact = "—"
        else:
            ratio = f"{q['luts'] / a['luts']:.2f}"
            alut, acarry, aexact = a["luts"], a["carry4"], a["exact"]
        p = q["pipelined"]
        lines.append(
            f"| {row['model']} | {q['luts']} | {alut} | {ratio} | {q['carry4']} | {acarry} | {q['exact']} | "
            f"{aexact} | {p['latency_cycles']}, {p['luts']}, {p['ffs']} |"
        )
    skipped = [row["model"] for row in rows if "skipped" in row["alkaid"]]
    if skipped:
        lines += [
            "",
            f"alkaid not run on: {', '.join(skipped)} ({REASON}).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run models whose name contains this text")
    args = parser.parse_args()
    rows = []
    for name, graph in models():
        if args.only and args.only not in name:
            continue
        with tempfile.TemporaryDirectory(prefix="qdeploy_rtl_bench_") as tmp:
            work = Path(tmp)
            print(f"{name}: qdeploy", flush=True)
            q = qdeploy_row(graph, work)
            print(f"{name}: alkaid", flush=True)
            a = alkaid_row(graph, work)
            rows.append({"model": name, "qdeploy": q, "alkaid": a})
            print(json.dumps(rows[-1]), flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "rtl.json").write_text(json.dumps(rows, indent=2))
        (RESULTS / "rtl.md").write_text(render(rows))


if __name__ == "__main__":
    main()
