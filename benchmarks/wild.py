"""Models from the wild x targets: does every compile end exact, within a derived bound, or refused before writing?

The corpus: every file of ``../shared/fixtures/wild`` (QKeras conversions at 1-8 bits, qonnx's test data, brevitas's
ESPCN, FP8 FloatQuant) and ``../shared/fixtures/qonnx`` (the QONNX model zoo), plus raw brevitas exports of every
quantizer family (``tests/targets/wild_corpus.py``: fixed-point and float scales, per-tensor and per-channel,
zero-point activations and weights, float/int16/int32 biases, with and without an output quantizer, 2/4/8 bits, MLP
and CNN) and FINN's BNN-PYNQ networks with random weights. Each compile is classified exact / bounded (bound) /
refused (reason) / NOT EXACT / internal error / past the time limit, with its wall time.

Targets: onnxruntime on the whole corpus; hls4ml (a plain ``qdeploy compile --target hls4ml``; a float-input graph,
which that refuses by name, again with ``--input-quant 'fixed<16,6>'`` as the refusal says) on the public files
(``--hls4ml-corpus all`` adds the generated exports: hours, each one builds a C simulation). Every hls4ml compile
runs in a child process stopped after ``--limit`` seconds (10 minutes: the issue's bound), recorded as "past limit".

    .venv/bin/python benchmarks/wild.py                  # writes benchmarks/results/wild.{json,md}
    .venv/bin/python benchmarks/wild.py --only qkeras     # a subset, printed only
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.targets.wild_corpus import (  # noqa: E402
    FIXTURES,
    brevitas_cases,
    compile_outcome,
    export_case,
    finn_cases,
    fixture_files,
    verify_samples_for,
)

RESULTS = ROOT / "benchmarks" / "results"
OUTCOMES = ("exact", "bounded", "refused", "NOT EXACT", "internal error", "past limit")
#: targets whose compiles build native code (minutes each): run in a child process under the time limit, and by
#: default on the public files only
SLOW_TARGETS = ("hls4ml",)
#: the same corpus before issue 13 (commit a8a2455, onnxruntime, 1000 samples; large images 20): for the record
BEFORE = {
    "wild + zoo": {"exact": 30, "bounded": 0, "refused": 1, "NOT EXACT": 5, "internal error": 0},
    "brevitas + FINN": {"exact": 154, "bounded": 0, "refused": 12, "NOT EXACT": 95, "internal error": 0},
}


def corpus(folder: Path, only: list[str]) -> list[tuple[str, Path]]:
    """(source, path) of every model: the fixture files as they are, the generated ones exported into ``folder``."""
    models = [(path.parent.name, path) for path in fixture_files()]
    for case in brevitas_cases() + finn_cases():
        if not only or any(word in case.name for word in only):
            models.append(("finn" if case.name.startswith("finn") else "brevitas", export_case(case, folder)))
    return [(source, path) for source, path in models if not only or any(word in path.name for word in only)]


#: the input precision the benchmark declares, as a user would after the refusal of a float-input graph
DECLARED_INPUT = "fixed<16,6>"


def _outcome_in_child(queue, path: Path, out: Path, samples: int, target: str) -> None:
    os.setpgrp()  # its own process group: past the limit, the g++ it started stops with it
    row = compile_outcome(path, out, samples, target)
    if row["outcome"] == "refused" and "[check_input_is_quantized]" in row.get("reason", ""):
        # what the refusal tells the user to do: declare the input's precision (the reference gains that Quant)
        row = {**compile_outcome(path, out, samples, target, DECLARED_INPUT), "plain_compile": row["reason"]}
    queue.put(row)


def outcome_within(limit: float, path: Path, out: Path, samples: int, target: str) -> dict:
    """``compile_outcome`` in a forked child stopped after ``limit`` seconds ("past limit"); a float-input graph
    refused by the plain compile is compiled again with ``--input-quant DECLARED_INPUT``."""
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
    parser.add_argument("--targets", nargs="+", default=["onnxruntime", "hls4ml"])
    parser.add_argument("--samples", type=int, default=1000, help="verification samples (fewer for large inputs)")
    parser.add_argument("--only", nargs="*", default=[], help="model name substrings (a subset; results not written)")
    parser.add_argument("--hls4ml-corpus", choices=("public", "all"), default="public")
    parser.add_argument("--limit", type=float, default=600.0, help="seconds per compile of a slow target")
    args = parser.parse_args()
    from importlib.metadata import version

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for source, path in corpus(folder, args.only):
            samples = verify_samples_for(path, args.samples)
            for target in args.targets:
                out = folder / f"{path.stem}_{target}"
                if target not in SLOW_TARGETS:
                    row = compile_outcome(path, out, samples, target)
                elif args.hls4ml_corpus == "all" or source in ("wild", "qonnx"):
                    row = outcome_within(args.limit, path, out, samples, target)
                else:
                    continue
                rows.append({"source": source, **row})
                print(f"{row['model']:55s} {target:12s} {row['outcome']:15s} {row['seconds']:6.1f}s", flush=True)
    meta = {
        "machine": platform.platform(),
        "fixtures": str(FIXTURES),
        **{package: version(package) for package in ("onnxruntime", "qonnx", "brevitas", "torch", "hls4ml")},
        "samples": args.samples,
        "slow_target_limit_seconds": args.limit,
        "load_average_at_end": [round(value, 1) for value in os.getloadavg()],
    }
    markdown = to_markdown(rows, meta)
    print(markdown)
    if not args.only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "wild.json").write_text(json.dumps({"meta": meta, "before": BEFORE, "rows": rows}, indent=2))
        (RESULTS / "wild.md").write_text(markdown)


def summary(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Outcome counts per (group, target); groups: the public files, the generated exports."""
    groups: dict[str, Counter] = {}
    for row in rows:
        group = "wild + zoo" if row["source"] in ("wild", "qonnx") else "brevitas + FINN"
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
        "stopped after the time limit). hls4ml: a plain compile (no flags) of the public files, each in a child "
        f"process; a float-input graph, which the plain compile refuses by name, is compiled again with "
        f"`--input-quant '{DECLARED_INPUT}'` as that refusal says (column input_quant: the reference then has that "
        "input quantizer); its plan column is the I/O type and each layer's implementation (L = Latency, R = Resource "
        "with the reuse factor).",
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
