"""``qdeploy demo``: the embedded default run.

Trains the bundled digits MLP and CNN (scikit-learn's digits ship offline), quantizes them W4A8 with
power-of-two scales, compiles each to every available target and prints the verification results. The quantum
target takes hybrid models only, so the demo also trains the bundled 4-qubit Iris classifier
(examples/iris_quantum.py) and compiles it for a heavy-hex device, verified within the bound derived from its
float arithmetic.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from qdeploy.errors import MissingDependencyError, QDeployError

log = logging.getLogger(__name__)

DEMO_TARGETS = {"onnxruntime": {}, "hls4ml": {}}  # each target's default options (hls4ml: its default board)


def _examples_file(name: str = "digits.py") -> Path:
    """examples/<name> of the source tree qdeploy runs from (the README's commands run in the repository)."""
    path = Path(__file__).resolve().parent.parent / "examples" / name
    if not path.exists():
        raise QDeployError(f"the demo needs the repository's examples/{name} (looked in {path.parent}); run it from a clone")
    return path


def run_demo(
    out: Path,
    weight_bits: int = 4,
    act_bits: int = 8,
    models: tuple[str, ...] = ("mlp", "cnn"),
    hybrid: bool = True,
) -> dict[str, Any]:
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
    if hybrid:
        report["hybrid"] = _hybrid_demo(out)
    compiled = [t for m in report["models"].values() for t in m["targets"].values() if "bit_exact" in t]
    # with models asked for, at least one target must have compiled them (everything skipped is not a success)
    report["all_exact"] = (bool(compiled) or not models) and all(t["bit_exact"] for t in compiled)
    report["all_verified"] = report["all_exact"] and report.get("hybrid", {}).get("verified", True)
    (out / "demo_report.json").write_text(json.dumps(report, indent=2))
    print(
        f"\n{'all classical targets bit-exact' if report['all_exact'] else 'SOME TARGETS NOT EXACT'}"
        f"{'' if report['all_verified'] else '; QUANTUM TARGET NOT VERIFIED'}; report: {out / 'demo_report.json'}"
    )
    return report


def _hybrid_demo(out: Path) -> dict[str, Any]:
    """The Iris hybrid classifier (4 qubits) on the quantum target: a float simulation, so verified within the
    bound derived from the graph's float arithmetic rather than bit for bit."""
    import qdeploy
    from qdeploy.target import get_target

    try:
        get_target("quantum").check_available()
    except MissingDependencyError as exc:
        print(f"\n[iris hybrid] quantum skipped: {exc}")
        return {"skipped": str(exc)}
    iris = _load_module(_examples_file("iris_quantum.py"))
    data = iris.load_iris_data()
    start = time.perf_counter()
    net = iris.model()
    train_seconds = time.perf_counter() - start
    graph = qdeploy.export(net, data.x_train)
    start = time.perf_counter()
    artifact = qdeploy.compile(graph, target="quantum", out=out / "iris_quantum", data=data.x_test)
    seconds = time.perf_counter() - start
    r = artifact.report
    accuracy = float((artifact.predict(data.x_test).argmax(axis=1) == data.y_test).mean())
    print(
        f"\n[iris hybrid] 4-qubit classifier, test accuracy {100 * iris.accuracy(net, data.x_test, data.y_test):.1f} % "
        f"(torch) / {100 * accuracy:.1f} % (compiled, qiskit)"
    )
    print(
        f"  {'quantum':<12} max |error| {r['max_abs_error']:.1e} <= derived bound {r['bound']['max']:.1e}: "
        f"{'VERIFIED' if r['verified'] else 'NOT VERIFIED'} over {r['outputs_compared']} outputs "
        f"(float simulation; compile+verify {seconds:.1f} s) -> {artifact.path}"
    )
    return {
        "verified": bool(r["verified"]),
        "max_abs_error": r["max_abs_error"],
        "derived_bound": r["bound"]["max"],
        "outputs_compared": r["outputs_compared"],
        "compiled_accuracy": accuracy,
        "train_seconds": round(train_seconds, 2),
        "compile_seconds": round(seconds, 2),
    }


def _load_module(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("qdeploy_demo_digits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
