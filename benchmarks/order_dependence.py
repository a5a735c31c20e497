"""Which benchmark networks have a result that depends on float32 summation order (``qdeploy.order_dependence``).

A layer with non-power-of-two scales sums rounded float32 products; where that sum lands next to an activation
quantizer's rounding boundary, the order of summation decides the level. On such a graph only the float kernels the
golden executor itself runs reproduce it: no integer implementation (qdeploy's integer layers, ORT's
``quantize_static``, hls4ml, RTL) can be bit-exact with it, which is why the onnxruntime plans of these networks keep
those layers on float kernels and the hardware targets refuse them by name.

For each network of ``benchmarks/ort_latency.py`` (random weights, randomised BatchNorm, exported by brevitas): the
sums the static analysis cannot show exact, and per quantizer the number of verification inputs (``--samples``,
``qdeploy.verify.random_inputs``) on which the golden executor's level differs from the order-free sum's.

    .venv/bin/python benchmarks/order_dependence.py     # writes benchmarks/results/order_dependence.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

RESULTS = ROOT / "benchmarks" / "results"


def measure(name: str, folder: Path, samples: int) -> dict:
    import ort_latency

    from qdeploy.ir import load_model
    from qdeploy.order_dependence import inexact_sums, order_dependent_quantizers
    from qdeploy.verify import random_inputs

    network = ort_latency.brevitas_network(name, folder)
    model = load_model(network["graph"])
    x = random_inputs(model, network["shape"], samples, 0)
    started = time.perf_counter()
    findings = order_dependent_quantizers(model, x)
    return {
        "network": name,
        "samples": samples,
        "inexact_sums": len(inexact_sums(model)),
        "order_dependent": {finding.label: len(set(finding.samples)) for finding in findings},
        "inputs_affected": len({sample for finding in findings for sample in finding.samples}),
        "seconds": round(time.perf_counter() - started, 1),
    }


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Networks whose own result depends on float32 summation order",
        "",
        f"`{json.dumps(meta)}`",
        "",
        "Order-dependent: the golden executor's level at that quantizer differs from the level with each inexact sum "
        "computed order-free (exactly, rounded once), on that many of the verification inputs — two valid float32 "
        "evaluations of the same graph disagree, so no integer implementation is bit-exact with it. Networks "
        "without order-dependent quantizers have integer plans (benchmarks/results/ort_latency.md).",
        "",
        "| network | inexact sums | order-dependent quantizers (inputs) | inputs affected | check s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        found = ", ".join(f"{label} ({count})" for label, count in row["order_dependent"].items()) or "none"
        lines.append(
            f"| {row['network']} | {row['inexact_sums']} | {found} | {row['inputs_affected']}/{row['samples']} "
            f"| {row['seconds']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    import ort_latency

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--only", nargs="*", help="networks to check (printed only, results not written)")
    args = parser.parse_args()
    names = args.only or list(ort_latency.BREVITAS)
    meta = {"samples": args.samples, "load_start": " ".join(f"{v:.2f}" for v in os.getloadavg())}
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(name, Path(tmp), args.samples) for name in names]
    markdown = to_markdown(rows, meta)
    if not args.only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "order_dependence.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        (RESULTS / "order_dependence.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
