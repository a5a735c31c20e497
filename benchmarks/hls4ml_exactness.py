"""Plain hls4ml (default config, as a user runs it) vs ``qdeploy compile --target hls4ml``, in one run.

Models: the digits MLP and CNN quantized by brevitas through ``qdeploy.quantize`` at W=A in {2, 4, 6, 8} bits,
per-tensor and per-channel weights, power-of-two and float scales; 1-bit (binarised with ``qdeploy.binarize``,
sign-STE, BipolarQuant weights and activations); plus every QONNX model-zoo fixture. Fixtures whose layers are
too large for the Latency strategy are compiled by qdeploy with ``--strategy Resource --reuse-factor 16``, as
its refusal says; plain hls4ml runs its defaults.
For each: bit-exact fraction and argmax agreement against the golden executor (449 test images + 1000 random
inputs), and convert+compile time. qdeploy either compiles bit-exactly or refuses with its one-line reason.

    .venv/bin/python benchmarks/hls4ml_exactness.py       # writes benchmarks/results/hls4ml_exactness.{json,md}
"""

from __future__ import annotations

import itertools
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qdeploy  # noqa: E402
from benchmarks.anchors import plain_hls4ml  # noqa: E402
from examples import digits  # noqa: E402
from qdeploy.errors import QDeployError  # noqa: E402
from qdeploy.verify import random_inputs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FIXTURES = ROOT.parent / "shared" / "fixtures" / "qonnx"
BITS = (2, 4, 6, 8)


def qdeploy_hls4ml(graph, x_real: np.ndarray | None, folder: Path, **options) -> dict:
    start = time.perf_counter()
    try:
        artifact = qdeploy.compile(graph, target="hls4ml", out=folder, data=x_real, **options)
    except QDeployError as exc:
        return {"result": f"refused: {str(exc)[:110]}", "seconds": time.perf_counter() - start}
    report = artifact.report
    return {
        "result": f"{report['outputs_equal']}/{report['outputs_compared']}",
        "argmax": report["argmax_agreement"],
        "seconds": time.perf_counter() - start,
        "exact_fraction": report["outputs_equal"] / report["outputs_compared"],
    }


def digits_row(label: str, graph, data, folder: Path) -> dict:
    """One digits model: golden accuracy, then plain hls4ml and qdeploy on the test set + 1,000 random inputs."""
    x = np.concatenate([data.x_test, random_inputs(graph, (1, 8, 8), 1000, seed=0)])
    row = {
        "model": label,
        "accuracy": digits.accuracy(lambda v: qdeploy.run_golden(graph, v), data.x_test, data.y_test),
        "plain": plain_hls4ml(graph, x, folder / "plain"),
        "qdeploy": qdeploy_hls4ml(graph, data.x_test, folder / "qdeploy"),
    }
    print(label, row["plain"]["result"], "|", row["qdeploy"]["result"], flush=True)
    return row


def main() -> None:
    warnings.filterwarnings("ignore")
    data = digits.load_digits_data()
    floats = {"mlp": digits.mlp(), "cnn": digits.cnn()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for index, (name, bits, per_channel, scale) in enumerate(
            itertools.product(floats, BITS, (False, True), ("po2", "float"))
        ):
            qmodel = qdeploy.quantize(
                floats[name], data.x_train[:512], weight_bits=bits, act_bits=bits, per_channel=per_channel, scale=scale
            )
            label = f"{name} W{bits}A{bits} {'per-channel' if per_channel else 'per-tensor'} {scale}"
            rows.append(digits_row(label, qdeploy.export(qmodel, data.x_train[:1]), data, tmp / f"m{index}"))
        builders = {"mlp": digits.build_mlp, "cnn": digits.build_cnn}
        for name, build in builders.items():  # 1 bit: binarised weights and activations (first/last layer 8-bit)
            net = qdeploy.binarize(build(), data.x_train, data.y_train, method="ste", epochs=10, seed=0)
            label = f"{name} W1A1 binarised (sign-STE), first/last 8-bit"
            rows.append(digits_row(label, qdeploy.export(net, data.x_train[:1]), data, tmp / f"bin_{name}"))
        for path in sorted(FIXTURES.glob("*.onnx")):
            graph = qdeploy.load(path)
            shape = tuple(graph.get_tensor_shape(graph.graph.input[0].name)[1:])
            x = random_inputs(graph, shape, 1000, seed=0)
            rows.append(
                {
                    "model": f"zoo {path.name}",
                    "accuracy": None,
                    "plain": plain_hls4ml(graph, x, tmp / f"plain_{path.stem}"),
                    "qdeploy": qdeploy_hls4ml(graph, None, tmp / f"qd_{path.stem}", strategy="Resource", reuse_factor=16),
                }
            )
            print(path.name, rows[-1]["plain"]["result"], "|", rows[-1]["qdeploy"]["result"], flush=True)
    summary = {
        tool: {
            "bit_exact_models": sum(1 for r in rows if r[tool].get("exact_fraction") == 1.0),
            "models": len(rows),
        }
        for tool in ("plain", "qdeploy")
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "hls4ml_exactness.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    (RESULTS / "hls4ml_exactness.md").write_text(to_markdown(rows, summary))
    print(to_markdown(rows, summary))


def to_markdown(rows: list[dict], summary: dict) -> str:
    def time_cell(entry: dict) -> str:
        return f"{entry['seconds']:.1f}"

    def argmax_cell(entry: dict) -> str:
        return f"{100 * entry['argmax']:.1f} %" if "argmax" in entry else ""

    lines = [
        "# plain hls4ml 1.3 (default config) vs qdeploy --target hls4ml",
        "",
        f"Bit-exact models: plain hls4ml {summary['plain']['bit_exact_models']}/{summary['plain']['models']}, "
        f"qdeploy {summary['qdeploy']['bit_exact_models']}/{summary['qdeploy']['models']} "
        "(any other is refused by name, never compiled inexactly). Power-of-two models lower to plain fixed-point "
        "types; float scales, BatchNorm, bipolar layers and float input pre-scaling lower to MultiThreshold layers "
        "(+ a float epilogue on the host where the graph ends in float ops).",
        "",
        "| model | golden acc | plain hls4ml bit-exact | argmax | s | qdeploy bit-exact | argmax | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        accuracy = f"{100 * row['accuracy']:.1f} %" if row["accuracy"] is not None else ""
        plain, ours = row["plain"], row["qdeploy"]
        lines.append(
            f"| {row['model']} | {accuracy} | {plain['result']} | {argmax_cell(plain)} | {time_cell(plain)} "
            f"| {ours['result']} | {argmax_cell(ours)} | {time_cell(ours)} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
