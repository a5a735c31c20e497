"""Compile time per target, and ONNX Runtime latency of the quantized model vs the float model, in one run.

Side by side in the same process: the float model in ORT, onnxruntime's own ``quantize_static`` (QDQ, int8,
per-channel, MinMax) on the same float model, qdeploy's W4A8 integer QDQ model; and plain hls4ml (its QONNX
recipe with default config, as a user would run it) vs ``qdeploy compile --target hls4ml`` on the same graph.

    .venv/bin/python benchmarks/compile_speed.py          # writes benchmarks/results/compile_speed.{json,md}
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qdeploy  # noqa: E402
from benchmarks.anchors import ort_quantize_static, plain_hls4ml  # noqa: E402
from examples import digits  # noqa: E402
from qdeploy.targets.onnxruntime.target import make_session  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
REPEATS = 200


def latency_ms(session, x: np.ndarray, repeats: int) -> float:
    """Median wall time of one session.run on ``x`` (after warm-up)."""
    name = session.get_inputs()[0].name
    for _ in range(10):
        session.run(None, {name: x})
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def export_float(model: torch.nn.Module, path: Path) -> None:
    torch.onnx.export(
        model,
        torch.zeros(1, 1, 8, 8),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )


def session_accuracy(session, x: np.ndarray, y: np.ndarray) -> float:
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    return float((out.argmax(axis=1) == y).mean())


def main() -> None:
    torch.set_num_threads(1)
    data = digits.load_digits_data()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, factory in (("mlp", digits.mlp), ("cnn", digits.cnn)):
            model = factory()
            float_path = tmp / f"{name}_float.onnx"
            export_float(model, float_path)
            qmodel = qdeploy.quantize(model, data.x_train[:512], weight_bits=4, act_bits=8)
            graph = qdeploy.export(qmodel, data.x_train[:1])
            compile_s = {}
            artifacts = {}
            for target, options in (("onnxruntime", {}), ("hls4ml", {"board": "pynq-z2"})):
                start = time.perf_counter()
                artifacts[target] = qdeploy.compile(
                    graph, target=target, out=tmp / f"{name}_{target}", data=data.x_test, **options
                )
                compile_s[target] = time.perf_counter() - start
            ort_static = tmp / f"{name}_ort_static.onnx"
            ort_quantize_static(float_path, ort_static, data.x_train[:512])
            sessions = {
                "float (ORT)": make_session(float_path),
                "ORT quantize_static W8A8": make_session(ort_static),
                "qdeploy W4A8 QDQ": make_session(artifacts["onnxruntime"].path / "model.onnx"),
            }
            plain = plain_hls4ml(
                graph,
                np.concatenate(
                    [data.x_test, np.random.default_rng(0).uniform(-1.25, 1.25, (1000, 1, 8, 8)).astype(np.float32)]
                ),
                tmp / f"{name}_plain_hls4ml",
            )
            for label, session in sessions.items():
                row = {
                    "model": name,
                    "variant": label,
                    "accuracy": session_accuracy(session, data.x_test, data.y_test),
                    "latency_ms_batch1": latency_ms(session, data.x_test[:1], REPEATS),
                    "latency_ms_batch256": latency_ms(session, data.x_test[:256], REPEATS // 4),
                }
                if label.startswith("qdeploy"):
                    report = artifacts["onnxruntime"].report
                    row["bit_exact"] = f"{report['outputs_equal']}/{report['outputs_compared']}"
                    row["compile_s"] = compile_s["onnxruntime"]
                rows.append(row)
            hls_report = artifacts["hls4ml"].report
            rows.append(
                {
                    "model": name,
                    "variant": "qdeploy hls4ml (pynq-z2)",
                    "compile_s": compile_s["hls4ml"],
                    "bit_exact": f"{hls_report['outputs_equal']}/{hls_report['outputs_compared']}",
                }
            )
            rows.append(
                {
                    "model": name,
                    "variant": "plain hls4ml 1.3 (default config)",
                    "compile_s": plain.get("seconds"),
                    "bit_exact": plain["result"],
                    "argmax_agreement": plain.get("argmax"),
                }
            )
    for row in rows:  # latency ratio vs the float model of the same network
        base = next(r for r in rows if r["model"] == row["model"] and r["variant"] == "float (ORT)")
        if "latency_ms_batch1" in row:
            row["latency_ratio_batch1"] = row["latency_ms_batch1"] / base["latency_ms_batch1"]
            row["latency_ratio_batch256"] = row["latency_ms_batch256"] / base["latency_ms_batch256"]
    meta = {
        "machine": platform.platform(),
        "cpu_threads": 1,
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "hls4ml": __import__("hls4ml").__version__,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "compile_speed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (RESULTS / "compile_speed.md").write_text(to_markdown(rows, meta))
    print(to_markdown(rows, meta))


def to_markdown(rows: list[dict], meta: dict) -> str:
    columns = [
        "model",
        "variant",
        "accuracy",
        "bit_exact",
        "compile_s",
        "latency_ms_batch1",
        "latency_ratio_batch1",
        "latency_ms_batch256",
        "latency_ratio_batch256",
        "argmax_agreement",
    ]

    def cell(value):
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    lines = [
        "# compile time and ORT latency (digits, W4A8)",
        "",
        f"`{json.dumps(meta)}`",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
