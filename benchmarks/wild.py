"""Models from the wild x targets: does every compile end exact, within a derived bound, or refused before writing?

The corpus: every file of ``../shared/fixtures/wild`` (QKeras conversions at 1-8 bits, qonnx's test data, brevitas's
ESPCN, FP8 FloatQuant) and ``../shared/fixtures/qonnx`` (the QONNX model zoo), plus raw brevitas exports of every
quantizer family (``tests/targets/wild_corpus.py``: fixed-point and float scales, per-tensor and per-channel,
zero-point activations and weights, float/int16/int32 biases, with and without an output quantizer, 2/4/8 bits, MLP
and CNN; MSE/HQO/decoupled/A2Q/FP8 families as ``family_*``), FINN's BNN-PYNQ networks with random weights, layer
kinds beyond MLP/CNN (``layer_*``), brevitas_examples' MobileNet-v1 and ProxylessNAS (``zoo_*``) and graphs laid out
as QKeras, FINN and tf2onnx write them (``writer_*``).
Each compile is classified exact / bounded (bound) / refused (reason) / NOT EXACT / internal error / past the time
limit, with its wall time.

Targets: onnxruntime on the whole corpus; hls4ml (a plain ``qdeploy compile --target hls4ml``; a graph whose
refusal says to declare the input's precision is compiled again with ``--input-quant 'fixed<16,6>'`` as the refusal
says) and rtl (``--implement none``: Verilog and its bit-exact simulation; MLPs only, it refuses convolutions by name)
on the public files and on ``--generated N`` generated models sampled across every family, variant and FINN network
(``--generated all``: every one; hours, each hls4ml compile builds a C simulation). Every hls4ml/rtl compile runs in a
child process stopped after ``--limit`` seconds (10 minutes: the issue's bound), recorded as "past limit".

    .venv/bin/python benchmarks/wild.py                  # writes benchmarks/results/wild.{json,md}
    .venv/bin/python benchmarks/wild.py --only qkeras     # a subset, printed only
    .venv/bin/python benchmarks/wild.py --generated 40 --merge   # a sample on hls4ml/rtl; other rows kept
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.targets.wild_corpus import (  # noqa: E402
    FIXTURES,
    all_cases,
    compile_outcome,
    export_case,
    fixture_files,
    verify_samples_for,
)

RESULTS = ROOT / "benchmarks" / "results"
OUTCOMES = ("exact", "bounded", "refused", "NOT EXACT", "internal error", "past limit")
#: targets whose compiles build native code (minutes each): run in a child process under the time limit, and by
#: default on the public files only
SLOW_TARGETS = ("hls4ml", "rtl")
#: options of a slow target in this benchmark: rtl stops after simulation (synthesis is benchmarks/rtl.py's)
TARGET_OPTIONS = {"rtl": {"implement": "none"}}
#: the same corpus before issue 13 (commit a8a2455, onnxruntime, 1000 samples; large images 20): for the record
BEFORE = {
    "wild + zoo": {"exact": 30, "bounded": 0, "refused": 1, "NOT EXACT": 5, "internal error": 0},
    "brevitas + FINN": {"exact": 154, "bounded": 0, "refused": 12, "NOT EXACT": 95, "internal error": 0},
}


def source_of(name: str) -> str:
    """The generated model's group: FINN's networks, hand-written FINN-style graphs, brevitas exports."""
    return "finn" if name.startswith(("finn_", "finnstyle_")) else "brevitas"


def corpus(folder: Path, only: list[str]) -> list[tuple[str, str, Callable[[], Path]]]:
    """(source, file name, path maker) of every model: the fixture files as they are, the generated ones exported
    into ``folder`` when first needed (exporting all of them takes minutes)."""
    models = [(path.parent.name, path.name, lambda path=path: path) for path in fixture_files()]
    for case in all_cases():
        models.append((source_of(case.name), f"{case.name}.onnx", lambda case=case: export_case(case, folder)))
    return [model for model in models if not only or any(word in model[1] for word in only)]


def generated_sample(names: list[str], count: str) -> set[str]:
    """``count`` generated model names (``all``: every one), taken in turn from each group (brevitas's families,
    the variants, the crafted graphs, FINN-style graphs, FINN's networks: the name's first word), drawn within each
    group by a fixed seed, so a small sample still covers every kind and every run draws the same."""
    if count == "all":
        return set(names)
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name.split("_")[0], []).append(name)
    wanted = min(int(count), len(names))
    taken: dict[str, int] = dict.fromkeys(groups, 0)
    while sum(taken.values()) < wanted:
        for group, members in groups.items():
            if sum(taken.values()) < wanted and taken[group] < len(members):
                taken[group] += 1
    import numpy as np

    rng = np.random.default_rng(0)  # the same sample on every run
    return {
        members[int(i)] for group, members in groups.items() for i in rng.choice(len(members), taken[group], replace=False)
    }


#: the input precision the benchmark declares, as a user would after the refusal of a float-input graph
DECLARED_INPUT = "fixed<16,6>"


def _outcome_in_child(queue, path: Path, out: Path, samples: int, target: str) -> None:
    os.setpgrp()  # its own process group: past the limit, the g++ it started stops with it
    options = TARGET_OPTIONS.get(target, {})
    row = compile_outcome(path, out, samples, target, **options)
    reason = row.get("reason", "")
    if row["outcome"] == "refused" and ("--input-quant" in reason or "on the float model input" in reason):
        # what the refusal tells the user to do: declare the input's precision (the reference gains that Quant)
        row = {**compile_outcome(path, out, samples, target, DECLARED_INPUT, **options), "plain_compile": row["reason"]}
    queue.put(row)


def outcome_within(limit: float, path: Path, out: Path, samples: int, target: str) -> dict:
    """``compile_outcome`` in a forked child stopped after ``limit`` seconds ("past limit"); a graph whose refusal
    says to declare the input's precision is compiled again with ``--input-quant DECLARED_INPUT``."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    start = time.perf_counter()
    child = context.Process(target=_outcome_in_child, args=(queue, path, out, samples, target))
    child.start()
    deadline = start + limit
    while child.is_alive() and queue.empty() and time.perf_counter() < deadline:
        time.sleep(0.5)
    if not queue.empty():
        row = queue.get()
        child.join()
        return row
    if child.is_alive():
        os.killpg(child.pid, signal.SIGKILL)
        child.join()
        reason = f"stopped after {limit:.0f} s"
        return {
            "model": path.name,
            "target": target,
            "outcome": "past limit",
            "reason": reason,
            "seconds": round(time.perf_counter() - start, 2),
        }
    return {
        "model": path.name,
        "target": target,
        "outcome": "internal error",
        "reason": f"child exited with code {child.exitcode}",
        "seconds": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", nargs="+", default=["onnxruntime", "hls4ml", "rtl"])
    parser.add_argument("--samples", type=int, default=1000, help="verification samples (fewer for large inputs)")
    parser.add_argument(
        "--only", nargs="*", default=[], help="model name substrings (a subset; results written only with --merge)"
    )
    parser.add_argument(
        "--generated", default="0", help="generated models the slow targets (hls4ml, rtl) also compile: N or all"
    )
    parser.add_argument("--slow-samples", type=int, default=300, help="verification samples on hls4ml/rtl")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per compile of a slow target")
    parser.add_argument(
        "--merge", action="store_true", help="keep the rows of benchmarks/results/wild.json this run does not redo"
    )
    parser.add_argument("--skip-done", action="store_true", help="with --merge: skip (model, target) rows kept")
    parser.add_argument(
        "--slow-public",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="hls4ml/rtl also compile the public files (--no-slow-public: the generated sample only)",
    )
    args = parser.parse_args()
    previous = json.loads((RESULTS / "wild.json").read_text())["rows"] if args.merge else []
    done = {(row["model"], row["target"]) for row in previous} if args.skip_done else set()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        models = corpus(folder, args.only)
        sample = generated_sample([name for source, name, _ in models if source not in ("wild", "qonnx")], args.generated)
        for source, name, make in models:
            path = None
            for target in args.targets:
                if (name, target) in done:
                    continue
                slow_public = source in ("wild", "qonnx") and args.slow_public
                if target in SLOW_TARGETS and not (slow_public or name in sample):
                    continue
                path = path or make()
                out = folder / f"{path.stem}_{target}"
                if target not in SLOW_TARGETS:
                    row = compile_outcome(path, out, verify_samples_for(path, args.samples), target)
                else:
                    samples = verify_samples_for(path, args.samples if source in ("wild", "qonnx") else args.slow_samples)
                    row = outcome_within(args.limit, path, out, samples, target)
                rows.append({"source": source, **row})
                print(f"{row['model']:55s} {target:12s} {row['outcome']:15s} {row['seconds']:6.1f}s", flush=True)
                if args.merge:
                    write_results(rows, previous, args, quiet=True)
    write_results(rows, previous, args)


def write_results(rows: list[dict], previous: list[dict], args: argparse.Namespace, quiet: bool = False) -> None:
    """Merge this run's rows over the results file's (``previous`` without --merge) and write wild.{json,md} (after
    every row: a run stopped early keeps what it measured); a subset run without --merge only prints."""
    import fcntl

    redone = {(row["model"], row["target"]) for row in rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(Path(tempfile.gettempdir()) / "qdeploy-wild-results.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # runs on other targets may merge into the same file at the same time
        if args.merge and (RESULTS / "wild.json").exists():
            previous = json.loads((RESULTS / "wild.json").read_text())["rows"]
        merged = [row for row in previous if (row["model"], row["target"]) not in redone] + rows
        _write(merged, args, quiet)


def _write(merged: list[dict], args: argparse.Namespace, quiet: bool) -> None:
    from importlib.metadata import version

    meta = {
        "machine": platform.platform(),
        "fixtures": str(FIXTURES),
        **{package: version(package) for package in ("onnxruntime", "qonnx", "brevitas", "torch", "hls4ml")},
        "samples": args.samples,
        "slow_target_samples_generated": args.slow_samples,
        "slow_target_limit_seconds": args.limit,
        "load_average_at_end": [round(value, 1) for value in os.getloadavg()],
    }
    markdown = to_markdown(merged, meta)
    if not quiet:
        print(markdown)
    if not args.only or args.merge:  # a subset is written only merged into the previous results
        (RESULTS / "wild.json").write_text(json.dumps({"meta": meta, "before": BEFORE, "rows": merged}, indent=2))
        (RESULTS / "wild.md").write_text(markdown)


def summary(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Outcome counts per (group, target); groups: the public files, the generated exports."""
    groups: dict[str, Counter] = {}
    for row in rows:
        group = "wild + zoo" if row["source"] in ("wild", "qonnx") else "generated (brevitas + FINN)"
        groups.setdefault(f"{group} | {row['target']}", Counter())[row["outcome"]] += 1
    return {key: {outcome: counts.get(outcome, 0) for outcome in OUTCOMES} for key, counts in groups.items()}


def to_markdown(rows: list[dict], meta: dict) -> str:
    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.3g}"
        return str(value).replace("|", "\\|")

    lines = [
        "# models from the wild x targets",
        "",
        f"`{json.dumps(meta)}`",
        "",
        "Outcomes (exact: bit-exact with the user's file on every verification input, batched and one at a time; "
        "bounded: within the bound derived from the graph's float tail; refused: before anything was written; past limit: "
        "stopped after the time limit). hls4ml and rtl: a plain compile (no flags; rtl with `--implement none`: "
        "Verilog and its simulation) of the public files and of a sample of the generated models, each in a child "
        f"process; a graph whose refusal says to declare the input's precision is compiled again with "
        f"`--input-quant '{DECLARED_INPUT}'` as that refusal says (column input_quant: the reference then has that "
        "input quantizer); the hls4ml plan column is the I/O type and each layer's implementation (L = Latency, "
        "R = Resource with the reuse factor). Generated models: brevitas exports of every quantizer family, "
        "brevitas's other families (`family_*`: MSE and HQO scales, decoupled and NormL2 weights, accumulator-aware "
        "A2Q, per-channel zero-point weights, internal-scaling biases, ternary activations, FP8 e5m2), "
        "variants (bit widths, narrow ranges, FLOOR/CEIL, BatchNorm placements, bias quantizers, Conv1d, binary and "
        "ternary), crafted graphs (every QONNX rounding mode, 1-bit signed Quant, FINN-style MultiThreshold graphs), "
        "FINN's BNN-PYNQ networks (also with randomized BatchNorm statistics), layer kinds (`layer_*`: ConvTranspose "
        "1d/2d, TruncAvgPool2d, nearest/bilinear upsampling, depthwise-separable and grouped convs, stride/dilation/"
        "reflect/replicate/circular padding, per-channel activation scales, min/max-init and HardTanh quantizers, "
        "quantizer chains, layer-level input/output quantizers, Linear+BatchNorm, Softmax/LogSoftmax heads, ReLU6/"
        "LeakyReLU, global average pool, W8A16, FP8, RadioML-style Conv1d, Hadamard classifier, residual adds, "
        "QuantEltwiseAdd and concatenations of differently scaled branches), brevitas_examples' MobileNet-v1 and "
        "ProxylessNAS at small widths (`zoo_*`) and other writers' layouts (`writer_*`: QKeras through qonnx's "
        "converter, FINN's QONNX with BipolarQuant and Trunc, tf2onnx-style Constant nodes and names, a symbolic "
        "batch) (`tests/targets/wild_corpus.py`).",
        "",
        "| corpus | target | " + " | ".join(OUTCOMES) + " | exact or bounded |",
        "|---|---|" + "---|" * (len(OUTCOMES) + 1),
    ]
    for key, counts in summary(rows).items():
        group, target = key.split(" | ")
        total = sum(counts.values())
        share = (counts["exact"] + counts["bounded"]) / total if total else 0.0
        lines.append(f"| {group} | {target} | " + " | ".join(str(counts[o]) for o in OUTCOMES) + f" | {share:.0%} |")
    lines += ["", "Before issue 13 (onnxruntime):", ""]
    before_outcomes = OUTCOMES[:-1]
    for group, counts in BEFORE.items():
        lines.append(f"- {group}: " + ", ".join(f"{counts[o]} {o}" for o in before_outcomes))
    columns = ["source", "model", "target", "outcome", "input_quant", "bound", "max_abs_error", "outputs", "plan"]
    columns += ["seconds", "reason"]
    lines += ["", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
