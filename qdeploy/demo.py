"""``qdeploy demo``: the embedded default run.

Trains the bundled digits MLP and CNN (scikit-learn's digits ship offline), quantizes them W4A8 with
power-of-two scales, compiles each to every available target and prints the verification results.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from qdeploy.errors import MissingDependencyError, QDeployError

log = logging.getLogger(__name__)

DEMO_TARGETS = {"onnxruntime": {}, "hls4ml": {"board": "pynq-z2"}}


def _examples_file() -> Path:
    """examples/digits.py of the source tree qdeploy runs from (the README's commands run in the repository)."""
    path = Path(__file__).resolve().parent.parent / "examples" / "digits.py"
    if not path.exists():
        raise QDeployError(
            f"the demo needs the repository's examples/digits.py (looked in {path.parent}); run it from a clone"
        )
    return path


def run_demo(out: Path, weight_bits: int = 4, act_bits: int = 8, models: tuple[str, ...] = ("mlp", "cnn")) -> dict[str, Any]:
    import qdeploy
    from qdeploy.frontend import load_factory
    from qdeploy.target import get_target

    examples = _examples_file()
    digits = _load_module(examples)
    data = digits.load_digits_data()
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"weight_bits": weight_bits, "act_bits": act_bits, "models": {}}
    print(
        f"qdeploy demo: digits ({len(data.x_train)} train / {len(data.x_test)} test images), "
        f"W{weight_bits}A{act_bits}, power-of-two scales"
    )
    for name in models:
        start = time.perf_counter()
        model = load_factory(f"{examples}:{name}")
        train_seconds = time.perf_counter() - start
        qmodel = qdeploy.quantize(model, data.x_train[:512], weight_bits=weight_bits, act_bits=act_bits)
        graph = qdeploy.export(qmodel, data.x_train[:1], out / f"{name}_w{weight_bits}a{act_bits}.onnx")
        float_acc = digits.accuracy(model, data.x_test, data.y_test)
        quant_acc = digits.accuracy(lambda x, g=graph: qdeploy.run_golden(g, x), data.x_test, data.y_test)
        entry: dict[str, Any] = {
            "float_accuracy": float_acc,
            "quantized_accuracy": quant_acc,
            "train_seconds": round(train_seconds, 2),
            "targets": {},
        }
        print(f"\n[{name}] accuracy float {100 * float_acc:.2f} %  ->  quantized (QONNX golden) {100 * quant_acc:.2f} %")
        for target, options in DEMO_TARGETS.items():
            try:
                get_target(target).check_available()
            except MissingDependencyError as exc:
                print(f"  {target:<12} skipped: {exc}")
                entry["targets"][target] = {"skipped": str(exc)}
                continue
            start = time.perf_counter()
            artifact = qdeploy.compile(graph, target=target, out=out / f"{name}_{target}", data=data.x_test, **options)
            seconds = time.perf_counter() - start
            r = artifact.report
            print(
                f"  {target:<12} bit-exact: {r['outputs_equal']}/{r['outputs_compared']} outputs  "
                f"({'EXACT' if r['bit_exact'] else 'NOT EXACT'}, compile+verify {seconds:.1f} s) -> {artifact.path}"
            )
            entry["targets"][target] = {k: r[k] for k in ("bit_exact", "outputs_equal", "outputs_compared", "max_abs_error")}
            entry["targets"][target]["compile_seconds"] = round(seconds, 2)
        report["models"][name] = entry
    compiled = [t for m in report["models"].values() for t in m["targets"].values() if "bit_exact" in t]
    report["all_exact"] = bool(compiled) and all(t["bit_exact"] for t in compiled)
    (out / "demo_report.json").write_text(json.dumps(report, indent=2))
    print(
        f"\n{'all targets bit-exact' if report['all_exact'] else 'SOME TARGETS NOT EXACT'}; "
        f"report: {out / 'demo_report.json'}"
    )
    return report


def _load_module(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("qdeploy_demo_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
