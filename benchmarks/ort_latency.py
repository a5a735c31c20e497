"""ONNX Runtime latency of qdeploy's exact integer models against the float model of the same network and against
ONNX Runtime's own ``quantize_static`` (QDQ and QOperator), side by side in one process.

Networks: FINN's CNV (6 conv + 3 FC, 32x32x3, ``brevitas_examples.bnn_pynq``) with random weights at the widths
brevitas ships (1w1a, 1w2a, 2w2a) and built from its ``CNV`` class at 4 and 8 bits; the FC network 784-1024-1024-10
from the same package; the bundled digits MLP and CNN (``examples/digits.py``, W4A8 ``qdeploy.quantize``). BatchNorm
statistics are set from a forward pass on the calibration data and the affine parameters randomised (some negative),
so the folded thresholds are not the identity. Every qdeploy model is the output of ``qdeploy.compile`` and its
verification (bit-exact against the golden executor on ``--verify`` samples).

The float model is the same module with float layers (Conv/Linear with the same weights, Hardtanh for the activation
quantizers); ``quantize_static`` quantizes that float model (uint8 activations, int8 per-channel weights, MinMax).
Times: medians of single ``session.run`` calls, variants interleaved round by round; 1 and 2 intra-op threads;
batch 1 and 64.

    .venv/bin/python benchmarks/ort_latency.py            # writes benchmarks/results/ort_latency.{json,md}
    .venv/bin/python benchmarks/ort_latency.py --only cnv_2w2a --rounds 5   # a subset, printed only
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = ("float", "ORT QDQ", "ORT QOperator", "qdeploy")
BATCHES = (1, 64)
THREADS = (1, 2)


# -- networks -------------------------------------------------------------------------------------------------------
def _cnv(weight_bits: int, act_bits: int):
    from brevitas_examples.bnn_pynq.models.CNV import CNV

    return CNV(num_classes=10, weight_bit_width=weight_bits, act_bit_width=act_bits, in_bit_width=8, in_ch=3)


def _fc(weight_bits: int, act_bits: int):
    from brevitas_examples.bnn_pynq.models.FC import FC

    return FC(
        num_classes=10,
        weight_bit_width=weight_bits,
        act_bit_width=act_bits,
        in_bit_width=8,
        in_channels=1,
        out_features=[1024, 1024],
    )


#: name -> (builder, input shape without batch)
BREVITAS = {
    "cnv_1w1a": (lambda: _cnv(1, 1), (3, 32, 32)),
    "cnv_1w2a": (lambda: _cnv(1, 2), (3, 32, 32)),
    "cnv_2w2a": (lambda: _cnv(2, 2), (3, 32, 32)),
    "cnv_4w4a": (lambda: _cnv(4, 4), (3, 32, 32)),
    "cnv_8w8a": (lambda: _cnv(8, 8), (3, 32, 32)),
    "mlp_1w1a": (lambda: _fc(1, 1), (1, 28, 28)),
    "mlp_2w2a": (lambda: _fc(2, 2), (1, 28, 28)),
    "mlp_4w4a": (lambda: _fc(4, 4), (1, 28, 28)),
}


def randomise_batchnorm(model, calibration, seed: int) -> None:
    """BatchNorm statistics from one pass over ``calibration``, then random affine parameters (20 % of the scales
    negative), so each channel's folded thresholds differ."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: one batch gives its statistics
    model.train()
    with torch.no_grad():
        model(calibration)
    model.eval()
    with torch.no_grad():
        for norm in norms:
            size = norm.weight.shape
            sign = torch.where(torch.rand(size, generator=generator) < 0.2, -1.0, 1.0)
            norm.weight.copy_(sign * (0.5 + torch.rand(size, generator=generator)))
            norm.bias.copy_(0.3 * torch.randn(size, generator=generator))


def float_twin(model):
    """The same network in float layers: QuantConv2d/QuantLinear -> Conv2d/Linear (same weights), QuantIdentity ->
    Hardtanh (the quantizers' [-1, 1] range), the rest (BatchNorm, MaxPool, TensorNorm, the forward) unchanged."""
    import torch
    from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear

    twin = copy.deepcopy(model)

    def swap(module):
        if isinstance(module, QuantConv2d):
            layer = torch.nn.Conv2d(
                module.in_channels,
                module.out_channels,
                module.kernel_size,
                module.stride,
                module.padding,
                bias=module.bias is not None,
            )
        elif isinstance(module, QuantLinear):
            layer = torch.nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        elif isinstance(module, QuantIdentity):
            return torch.nn.Hardtanh()
        else:
            return module
        with torch.no_grad():
            layer.weight.copy_(module.weight)
            if module.bias is not None:
                layer.bias.copy_(module.bias)
        return layer

    for lists in (m for m in twin.modules() if isinstance(m, torch.nn.ModuleList)):
        for index, module in enumerate(lists):
            lists[index] = swap(module)
    return twin.eval()


def export_float(model, shape: tuple[int, ...], path: Path) -> None:
    import torch

    torch.onnx.export(
        model,
        torch.zeros(1, *shape),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )


def brevitas_network(name: str, folder: Path, seed: int = 0) -> dict:
    """QONNX export of the brevitas network (calibrated, random BatchNorm) and its float twin's ONNX."""
    import torch
    from brevitas.export import export_qonnx

    build, shape = BREVITAS[name]
    torch.manual_seed(seed)
    model = build()
    calibration = torch.rand((64, *shape), generator=torch.Generator().manual_seed(seed))
    randomise_batchnorm(model, calibration, seed)
    qonnx_path, float_path = folder / f"{name}.onnx", folder / f"{name}_float.onnx"
    with torch.no_grad():
        export_qonnx(model, calibration[:1], export_path=str(qonnx_path), dynamo=False)
    export_float(float_twin(model), shape, float_path)
    return {"graph": qonnx_path, "float": float_path, "calibration": calibration.numpy(), "shape": shape}


def digits_network(name: str, folder: Path) -> dict:
    """The bundled digits model (trained, seeded), W4A8 by ``qdeploy.quantize``, and its float ONNX."""
    import qdeploy
    from examples import digits

    data = digits.load_digits_data()
    model = getattr(digits, name.removeprefix("digits_"))()
    float_path = folder / f"{name}_float.onnx"
    export_float(model, (1, 8, 8), float_path)
    qmodel = qdeploy.quantize(model, data.x_train[:512], weight_bits=4, act_bits=8)
    graph = qdeploy.export(qmodel, data.x_train[:1])
    return {"graph": graph, "float": float_path, "calibration": data.x_train[:64], "shape": (1, 8, 8)}


NETWORKS = [*BREVITAS, "digits_mlp", "digits_cnn"]


# -- the anchors ----------------------------------------------------------------------------------------------------
def quantize_static(float_path: Path, out: Path, calibration: np.ndarray, operator_format: bool) -> None:
    """ONNX Runtime's ``quantize_static`` as its documentation runs it: uint8 activations, int8 per-channel
    weights, MinMax calibration; QDQ or QOperator format."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.batches, None)

    ort_quantize_static(
        str(float_path),
        str(out),
        Reader(),
        quant_format=QuantFormat.QOperator if operator_format else QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def sessions(paths: dict[str, Path], threads: int) -> dict:
    import onnx

    from qdeploy.runtime import ort_session, set_session_threads
    from qdeploy.targets.onnxruntime.target import make_session, session_config

    # the anchors run with the thread-pool entries of qdeploy's recorded config (worker spinning), numbers aside
    recorded = session_config(onnx.load(str(paths["qdeploy"]), load_external_data=False))
    threading = {key: value for key, value in recorded.items() if key.startswith("session.intra_op.")}
    set_session_threads(threads)
    try:
        opened = {label: ort_session(path, threading) for label, path in paths.items() if label != "qdeploy"}
        opened["qdeploy"] = make_session(paths["qdeploy"])
    finally:
        set_session_threads(None)
    return opened


def interleaved_ms(opened: dict, x: np.ndarray, rounds: int, calls: int) -> dict[str, float]:
    """Median ms of one run per variant; each round runs every variant ``calls`` times, in turn."""
    feeds = {label: {s.get_inputs()[0].name: x} for label, s in opened.items()}
    times: dict[str, list[float]] = {label: [] for label in opened}
    for label, session in opened.items():  # warm-up
        for _ in range(5):
            session.run(None, feeds[label])
    for _ in range(rounds):
        for label, session in opened.items():
            for _ in range(calls):
                start = time.perf_counter()
                session.run(None, feeds[label])
                times[label].append(time.perf_counter() - start)
    return {label: 1000 * statistics.median(values) for label, values in times.items()}


def run_network(name: str, folder: Path, rounds: int, verify: int) -> list[dict]:
    import onnx

    import qdeploy
    from qdeploy.targets.onnxruntime.exactness import PLAN_KEY, optimized_graph

    net = digits_network(name, folder) if name.startswith("digits_") else brevitas_network(name, folder)
    start = time.perf_counter()
    artifact = qdeploy.compile(net["graph"], target="onnxruntime", out=folder / f"{name}_qdeploy", verify_samples=verify)
    compile_s = time.perf_counter() - start
    report = artifact.report
    model_path = artifact.path / "model.onnx"
    plan = next((p.value for p in onnx.load(str(model_path)).metadata_props if p.key == PLAN_KEY), "")
    paths = {"float": net["float"], "qdeploy": model_path}
    for label, operator_format in (("ORT QDQ", False), ("ORT QOperator", True)):
        paths[label] = folder / f"{name}_{label.split()[1].lower()}.onnx"
        quantize_static(net["float"], paths[label], net["calibration"], operator_format)
    kernels = {"qdeploy": sum(report["ort_kernels"].values())}
    for label in ("ORT QDQ", "ORT QOperator"):  # the nodes ORT runs for each, after its graph optimizations
        kernels[label] = len(optimized_graph(onnx.load(str(paths[label])), {}).graph.node)
    rows = []
    rng = np.random.default_rng(0)
    for threads in THREADS:
        opened = sessions(paths, threads)
        for batch in BATCHES:
            x = rng.random((batch, *net["shape"]), dtype=np.float32)
            calls = 20 if batch == 1 else 3
            ms = interleaved_ms(opened, x, rounds, calls)
            row = {"network": name, "threads": threads, "batch": batch, **{f"{k} ms": v for k, v in ms.items()}}
            row["speedup vs float"] = ms["float"] / ms["qdeploy"]
            row["speedup vs best quantize_static"] = min(ms["ORT QDQ"], ms["ORT QOperator"]) / ms["qdeploy"]
            rows.append(row)
    for row in rows:
        row["exact"] = f"{report['outputs_equal']}/{report['outputs_compared']}" if report["bit_exact"] else "NOT EXACT"
        row["plan"] = plan
        row["compile_s"] = round(compile_s, 1)
        row["ort_kernels"] = kernels
    return rows


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# ONNX Runtime latency: qdeploy's exact integer models vs float and `quantize_static`",
        "",
        f"Machine: {meta['machine']}, {meta['cpu']}; onnxruntime {meta['onnxruntime']}; load average at start "
        f"{meta['load_start']}, at end {meta['load_end']}. Median ms of one `session.run` (variants interleaved, "
        f"{meta['rounds']} rounds); speedup = other / qdeploy (> 1: qdeploy faster). Every qdeploy model is the "
        "verified output of `qdeploy compile` (exact = outputs equal to the golden executor's).",
        "",
        "`quantize_static` quantizes the float model with its own calibration: its outputs are not the QONNX graph's "
        "numbers. Where qdeploy's plan makes the layers integer, both run MLAS's u8 x s8 kernels (QLinearConv "
        "channels-last, QGemm); qdeploy's fold BatchNorm and the activation quantizer into each kernel's "
        "requantization, run the matrix products and a convolution with one output pixel (CNV's last) as one QGemm "
        "over the batch, keep two-level (1-bit) activations in a 0/255 form that the requantization saturates to at "
        "both ends (no Clip), clip multi-level activations to their level count in uint8 (after the MaxPool when "
        "one follows), and pad the 3-channel first layer to 4 input channels (zero weights) so that MLAS takes its "
        "indirect convolution kernel, not im2col + GEMM. Where the graph's scales are not powers of two (brevitas's "
        "4- and 8-bit `CommonQuant`: 1/7, 1/127; the FC network's 8-bit input quantizer) the float32 sums depend on "
        "their order, so those layers run ORT's float kernels as the golden executor runs them: the NCHW im2col "
        "convolution and the unpacked GEMM, the weights read at run time (overridable initializers, which ORT does "
        "not prepack; the same model's integer kernels are prepacked), BatchNorm as its own node. The float model "
        "gets ORT's faster float paths (NCHWc convolutions, prepacked weights, BatchNorm folded into the "
        "convolution), each of which changes outputs (on cnv_4w4a: 18, 200 and 27 of 200 samples), so exactness rules"
        " them out and such plans stay slower than float: the quantizers' element-wise nodes take 2-9 % of their time"
        " (timed with them removed), the rest is those kernels. Plans with float dot products run without spinning "
        "intra-op workers, and every variant of their rows gets the same setting. The machine is shared: at 2 threads"
        " MLAS splits a kernel in two static halves, which wait for a preempted thread (compare the 1-thread rows).",
        "",
        "| network | threads | batch | float | ORT QDQ | ORT QOperator | qdeploy | vs float | vs best quantize_static "
        "| exact |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['network']} | {r['threads']} | {r['batch']} | {r['float ms']:.3f} | {r['ORT QDQ ms']:.3f} | "
            f"{r['ORT QOperator ms']:.3f} | {r['qdeploy ms']:.3f} | {r['speedup vs float']:.2f}x | "
            f"{r['speedup vs best quantize_static']:.2f}x | {r['exact']} |"
        )
    lines += ["", "## Plans (why each dot product runs where it runs)", ""]
    for network in dict.fromkeys(r["network"] for r in rows):
        row = next(r for r in rows if r["network"] == network)
        counts = row.get("ort_kernels")
        nodes = f"; ORT nodes run: {', '.join(f'{k} {v}' for k, v in counts.items())}" if counts else ""
        lines.append(f"- **{network}** (compile {row['compile_s']} s{nodes}): {row['plan']}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="networks to run (printed only, results not written)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--verify", type=int, default=1000, help="verification samples of each qdeploy compile")
    parser.add_argument("--markdown", action="store_true", help="only rewrite the Markdown from the saved JSON")
    args = parser.parse_args()
    if args.markdown:
        saved = json.loads((RESULTS / "ort_latency.json").read_text())
        (RESULTS / "ort_latency.md").write_text(to_markdown(saved["rows"], saved["meta"]))
        return
    import onnxruntime

    names = args.only or NETWORKS
    meta = {
        "machine": platform.platform(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.processor(),
        ),
        "onnxruntime": onnxruntime.__version__,
        "rounds": args.rounds,
        "load_start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            folder = Path(tmp) / name
            folder.mkdir()
            rows += run_network(name, folder, args.rounds, args.verify)
            print(to_markdown([r for r in rows if r["network"] == name], {**meta, "load_end": "-"}), flush=True)
    meta["load_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    markdown = to_markdown(rows, meta)
    if not args.only:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "ort_latency.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        (RESULTS / "ort_latency.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
