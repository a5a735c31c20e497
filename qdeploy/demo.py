"""``qdeploy demo``: the embedded default run.

Trains the bundled digits MLP and CNN (scikit-learn's digits ship offline), quantizes them W4A8 with power-of-two
scales through ``method="auto"`` (the PTQ pipeline that keeps accuracy: plain rounding costs the CNN 3.6 points),
compiles each to every available target and verifies it. The quantum target takes hybrid models only, so the demo
also trains the bundled 4-qubit Iris classifier (examples/iris_quantum.py) and compiles it for a heavy-hex device,
verified within the bound derived from its float arithmetic.

The whole output fits on one screen and ends with each target's verification; the details are in each output
folder's ``report.html``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from qdeploy.errors import MissingDependencyError, QDeployError

log = logging.getLogger(__name__)

DEMO_MODELS = ("mlp", "cnn")
#: the hybrid model's device: IBM's heavy-hex lattice (the smallest one its four qubits fit)
HYBRID_DEVICE = "heavy-hex"
#: each target's options for the demo. hls4ml: Resource strategy, reuse factor 4, so both networks fit the default
#: board (pynq-z2, 220 DSPs): the Latency strategy's fully unrolled MLP is estimated at three times its DSPs.
DEMO_TARGETS: dict[str, dict[str, Any]] = {"onnxruntime": {}, "hls4ml": {"strategy": "Resource", "reuse_factor": 4}}


def _examples_file(name: str = "digits.py") -> Path:
    """examples/<name> of the source tree qdeploy runs from (the README's commands run in the repository)."""
    path = Path(__file__).resolve().parent.parent / "examples" / name
    if not path.exists():
        raise QDeployError(f"the demo needs the repository's examples/{name} (looked in {path.parent}); run it from a clone")
    return path


def _fit_note(report: dict[str, Any]) -> str:
    """``fits pynq-z2 (DSP 76 %)``: the most used resource against the board's capacity, when the target estimates it."""
    fit = report.get("board_fit")
    if not isinstance(fit, dict) or not fit.get("utilization"):
        return ""
    kind, share = max(fit["utilization"].items(), key=lambda item: item[1])
    return f"{'fits' if fit.get('fits') else 'DOES NOT FIT'} {report.get('board')} ({kind} {100 * share:.0f} %)"


def _verification_line(report: dict[str, Any]) -> str:
    if report["bit_exact"]:
        return f"bit-exact: {report['outputs_equal']}/{report['outputs_compared']} outputs"
    if report.get("verified"):
        return (
            f"within the derived bound: max |error| {report['max_abs_error']:.1e} <= {report['bound']['max']:.1e} "
            f"over {report['outputs_compared']} outputs"
        )
    return f"NOT EXACT: {report['outputs_equal']}/{report['outputs_compared']} outputs equal"


def run_demo(
    out: Path,
    weight_bits: int = 4,
    act_bits: int = 8,
    models: tuple[str, ...] = DEMO_MODELS,
    hybrid: bool = True,
) -> dict[str, Any]:
    """Run the demo into ``out``; returns what it printed as data (also written to ``out/demo_report.json``)."""
    import qdeploy
    from qdeploy.frontend import load_factory
    from qdeploy.target import get_target

    unknown = [name for name in models if name not in DEMO_MODELS]
    if unknown:
        raise QDeployError(f"the demo has no model {unknown[0]!r}; choose from {', '.join(DEMO_MODELS)}")
    examples = _examples_file()
    digits = _load_module(examples)
    data = digits.load_digits_data()
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"weight_bits": weight_bits, "act_bits": act_bits, "method": "auto", "models": {}}
    print(
        f"qdeploy demo: digits ({len(data.x_train)} train / {len(data.x_test)} test images), W{weight_bits}A{act_bits}, "
        "power-of-two scales, PTQ method auto"
    )
    verifications: list[tuple[str, str, dict[str, Any] | str]] = []  # (model, target, report or why skipped)
    for name in models:
        start = time.perf_counter()
        model = load_factory(f"{examples}:{name}")
        train_seconds = time.perf_counter() - start
        qmodel = qdeploy.quantize(model, data.x_train[:512], weight_bits=weight_bits, act_bits=act_bits, method="auto")
        graph = qdeploy.export(qmodel, data.x_train[:1], out / f"{name}_w{weight_bits}a{act_bits}.onnx")
        float_acc = digits.accuracy(model, data.x_test, data.y_test)
        quant_acc = digits.accuracy(lambda x, g=graph: qdeploy.run_golden(g, x), data.x_test, data.y_test)
        entry: dict[str, Any] = {
            "float_accuracy": float_acc,
            "quantized_accuracy": quant_acc,
            "pipeline": getattr(qmodel, "qdeploy_pipeline", {}),
            "train_seconds": round(train_seconds, 2),
            "targets": {},
        }
        print(f"[{name}] test accuracy: float {100 * float_acc:.2f} % -> quantized (QONNX golden) {100 * quant_acc:.2f} %")
        for target, options in DEMO_TARGETS.items():
            try:
                get_target(target).check_available()
            except MissingDependencyError as exc:
                entry["targets"][target] = {"skipped": str(exc)}
                verifications.append((name, target, f"skipped: {exc}"))
                continue
            start = time.perf_counter()
            artifact = qdeploy.compile(graph, target=target, out=out / f"{name}_{target}", data=data.x_test, **options)
            seconds = time.perf_counter() - start
            r = artifact.report
            keys = ("bit_exact", "verified", "outputs_equal", "outputs_compared", "max_abs_error", "board_fit")
            entry["targets"][target] = {k: r[k] for k in keys if k in r}
            entry["targets"][target].update(
                compile_seconds=round(seconds, 2), report_html=str(artifact.path / "report.html")
            )
            print(f"  {target:<12} compiled and verified in {seconds:.1f} s -> {artifact.path}")
            verifications.append((name, target, r))
        report["models"][name] = entry
    if hybrid:
        report["hybrid"], hybrid_report = _hybrid_demo(out)
        verifications.append(("iris", "quantum", hybrid_report or f"skipped: {report['hybrid'].get('skipped')}"))
    compiled = [t for m in report["models"].values() for t in m["targets"].values() if "bit_exact" in t]
    # with models asked for, at least one target must have compiled them (everything skipped is not a success)
    report["all_exact"] = (bool(compiled) or not models) and all(t["bit_exact"] for t in compiled)
    report["all_verified"] = report["all_exact"] and report.get("hybrid", {}).get("verified", True)
    (out / "demo_report.json").write_text(json.dumps(report, indent=2, default=str))
    _print_verifications(verifications)
    print(
        f"{'all targets verified' if report['all_verified'] else 'SOME TARGETS NOT VERIFIED'}; figures and tables: "
        f"{out}/*/report.html; summary: {out / 'demo_report.json'}"
    )
    return report


def _print_verifications(verifications: list[tuple[str, str, dict[str, Any] | str]]) -> None:
    """The demo's last block: each target against the golden executor, one line each."""
    print("\nverification against the QONNX golden executor (test inputs + 1000 random, half on rounding ties):")
    for model, target, result in verifications:
        if isinstance(result, str):
            print(f"  {model:<5}{target:<12} {result}")
            continue
        note = _fit_note(result)
        print(f"  {model:<5}{target:<12} {_verification_line(result)}{'   ' + note if note else ''}")


def _hybrid_demo(out: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The Iris hybrid classifier (4 qubits) on the quantum target: a float simulation, so verified within the
    bound derived from the graph's float arithmetic rather than bit for bit. Returns the demo's summary and the
    compile's report (None when the target is not installed)."""
    import qdeploy
    from qdeploy.target import get_target

    try:
        get_target("quantum").check_available()
    except MissingDependencyError as exc:
        return {"skipped": str(exc)}, None
    iris = _load_module(_examples_file("iris_quantum.py"))
    data = iris.load_iris_data()
    start = time.perf_counter()
    net = iris.model()
    train_seconds = time.perf_counter() - start
    graph = qdeploy.export(net, data.x_train)
    start = time.perf_counter()
    artifact = qdeploy.compile(
        graph, target="quantum", out=out / "iris_quantum", data=data.x_test, quantum={"device": HYBRID_DEVICE}
    )
    seconds = time.perf_counter() - start
    r = artifact.report
    accuracy = float((artifact.predict(data.x_test).argmax(axis=1) == data.y_test).mean())
    print(
        f"[iris hybrid] 4-qubit classifier, test accuracy {100 * iris.accuracy(net, data.x_test, data.y_test):.1f} % "
        f"(torch) / {100 * accuracy:.1f} % (compiled, qiskit)"
    )
    print(
        f"  {'quantum':<12} compiled for {r.get('device', 'the device')} and verified in {seconds:.1f} s -> {artifact.path}"
    )
    return {
        "verified": bool(r["verified"]),
        "max_abs_error": r["max_abs_error"],
        "derived_bound": r["bound"]["max"],
        "outputs_compared": r["outputs_compared"],
        "compiled_accuracy": accuracy,
        "train_seconds": round(train_seconds, 2),
        "compile_seconds": round(seconds, 2),
        "report_html": str(artifact.path / "report.html"),
    }, r


def _load_module(path: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"qdeploy_demo_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
