"""Quantum target: transpiled circuit quality vs plain qiskit, angle bits vs output error, torch simulator speed.

In one run:
- each example circuit (the trained Iris classifier's, the three quantum layers of the trained "creep" digits
  network, plus a data re-uploading and an 8-qubit QCNN circuit) on an offline heavy-hex (19 qubits) and line
  device (and IBM's 127-qubit Eagle snapshot ``fake_brisbane`` when qiskit-ibm-runtime is installed): two-qubit
  gates, depth, SWAPs, transpile time of qdeploy (best of 8 seeds x 3 routing methods and the dense/trivial layouts) vs plain
  ``qiskit.transpile(optimization_level=3)`` with its default (unset, hence random) seed, as a user would call it,
  called ``PLAIN_CALLS`` times, so "never worse" is checked against every call and "better" against their mean;
- angle bit width vs output error of the Iris model (graph with ``quantize_angles`` vs float angles, both run by
  the golden executor) and its test accuracy;
- forward+backward time of ``QuantumLayer`` (batch 128, 4-12 qubits) vs PennyLane ``default.qubit`` (backprop) and
  ``lightning.qubit`` (adjoint) when installed, with the max output difference as a cross-check.

    .venv/bin/python benchmarks/quantum.py          # writes benchmarks/results/quantum.{json,md}
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import qiskit  # noqa: E402

from examples import creep, iris_quantum  # noqa: E402
from qdeploy.golden import run_golden  # noqa: E402
from qdeploy.quantum import CircuitBuilder, QuantumLayer, export_hybrid, quantize_angles, to_qasm3  # noqa: E402
from qdeploy.targets.quantum.devices import make_backend  # noqa: E402
from qdeploy.targets.quantum.lower import (  # noqa: E402
    EXTRA_LAYOUTS,
    EXTRA_ROUTINGS,
    LOOKAHEAD_MAX_DEVICE_QUBITS,
    bind,
    logical_circuit,
    transpile_best,
    transpile_candidates,
    two_qubit_count,
)

RESULTS = ROOT / "benchmarks" / "results"
SEEDS = 8
PLAIN_CALLS = 8  #: default-seed plain qiskit calls per row (its layout and routing are random)


def devices() -> list[str]:
    try:
        import qiskit_ibm_runtime  # noqa: F401
    except ModuleNotFoundError:
        return ["heavy-hex", "line"]
    return ["heavy-hex", "line", "fake_brisbane"]


def example_circuits() -> tuple[list[tuple[str, object, np.ndarray]], dict]:
    """(name, spec, weights) of the example circuits, and facts about the trained examples."""
    circuits = []
    data = iris_quantum.load_iris_data()
    iris_net = iris_quantum.model()
    facts = {"iris_test_accuracy": iris_quantum.accuracy(iris_net, data.x_test, data.y_test)}
    circuits.append(("iris (4q, 2 SEL layers)", iris_net[0].spec, iris_net[0].weight.detach().numpy()))
    steps = creep.creep()
    facts["creep_accuracy_per_step"] = {str(step): acc for step, acc, _ in steps}
    final = steps[-1][2]
    for index in (2, 3, 4):
        layer = final[index]
        circuits.append((f"creep hidden{index - 1} (4q)", layer.spec, layer.weight.detach().numpy()))
    rng = np.random.default_rng(0)
    reup = CircuitBuilder(4, name="reupload").data_reuploading(range(4), layers=3).expval_z()
    circuits.append(("data re-uploading (4q, 3 layers)", reup, rng.uniform(-np.pi, np.pi, reup.num_weights)))
    qcnn = CircuitBuilder(8, name="qcnn").angle_embedding(range(8)).qcnn_conv().qcnn_pool([0, 2, 4, 6], [1, 3, 5, 7])
    qcnn = qcnn.qcnn_conv([1, 3, 5, 7]).expval_z([1, 3, 5, 7])
    circuits.append(("QCNN (8q, conv-pool-conv)", qcnn, rng.uniform(-np.pi, np.pi, qcnn.num_weights)))
    return circuits, {"iris_net": iris_net, "iris_data": data, **facts}


def plain_call(circuit, backend) -> dict:
    base = circuit.count_ops().get("swap", 0)
    peak = [0]

    def count_swaps(dag=None, **_) -> None:
        peak[0] = max(peak[0], dag.count_ops().get("swap", 0))

    start = time.perf_counter()
    result = qiskit.transpile(circuit, backend=backend, optimization_level=3, callback=count_swaps)
    seconds = time.perf_counter() - start
    return {"two_qubit": two_qubit_count(result), "depth": result.depth(), "swaps": peak[0] - base, "seconds": seconds}


def plain_qiskit(circuit, backend) -> dict:
    """``PLAIN_CALLS`` default-seed calls: the mean of each figure, and the range of two-qubit counts."""
    calls = [plain_call(circuit, backend) for _ in range(PLAIN_CALLS)]
    summary = {key: statistics.mean(c[key] for c in calls) for key in ("two_qubit", "depth", "swaps", "seconds")}
    counts = [c["two_qubit"] for c in calls]
    return {**summary, "two_qubit_min": min(counts), "two_qubit_max": max(counts), "calls": calls}


def transpile_rows(circuits) -> list[dict]:
    rows = []
    for name, spec, weights in circuits:
        logical = bind(logical_circuit(to_qasm3(spec), name), {f"w_{j}": float(w) for j, w in enumerate(weights)})
        for device in devices():
            backend = make_backend(device, spec.num_qubits, 0)
            best = transpile_best(logical, backend, 3, SEEDS)
            plain = plain_qiskit(logical, backend)
            rows.append(
                {
                    "circuit": name,
                    "device": f"{device} ({backend.num_qubits}q)",
                    "logical_two_qubit": two_qubit_count(logical),
                    "qdeploy": {
                        "two_qubit": best.two_qubit,
                        "depth": best.depth,
                        "swaps": best.swaps,
                        "seconds": best.seconds,
                        "seed": best.seed,
                        "layout": best.layout,
                        "routing": best.routing,
                        "candidates": len(best.tried),
                    },
                    "plain_qiskit": plain,
                }
            )
            print(f"{name:<34} {device:<13} qdeploy {best.two_qubit:>4} 2q  plain {plain['two_qubit']:>6.1f} 2q", flush=True)
    return rows


def angle_bits_rows(net, data) -> list[dict]:
    graph = export_hybrid(net, data.x_train)
    reference = run_golden(graph, data.x_test)
    rows = []
    for bits in (2, 3, 4, 5, 6, 8, 10, 12):
        y = run_golden(quantize_angles(graph, bits), data.x_test)
        rows.append(
            {
                "bits": bits,
                "max_abs_logit_error": float(np.max(np.abs(y - reference))),
                "mean_abs_logit_error": float(np.mean(np.abs(y - reference))),
                "test_accuracy": float((y.argmax(axis=1) == data.y_test).mean()),
            }
        )
    rows.append(
        {
            "bits": "float",
            "max_abs_logit_error": 0.0,
            "mean_abs_logit_error": 0.0,
            "test_accuracy": float((reference.argmax(axis=1) == data.y_test).mean()),
        }
    )
    return rows


def _time(*works, repeats: int = 9) -> list[float]:
    """Median seconds of each callable, timed in alternation (one call of each per round) so that load from other
    jobs on the machine falls on all of them alike."""
    for work in works:
        work()  # warm-up
    times: list[list[float]] = [[] for _ in works]
    for _ in range(repeats):
        for work, bucket in zip(works, times, strict=True):
            start = time.perf_counter()
            work()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(bucket) for bucket in times]


def pennylane_layer(qubits: int, layers: int, device_name: str = "default.qubit", diff_method: str = "backprop"):
    try:
        import pennylane as qml
    except ModuleNotFoundError:
        return None, None
    try:
        device = qml.device(device_name, wires=qubits)
    except qml.exceptions.DeviceError:  # lightning.qubit comes in its own package
        return None, None

    @qml.qnode(device, interface="torch", diff_method=diff_method)
    def circuit(inputs, weights):
        qml.AngleEmbedding(inputs, wires=range(qubits), rotation="Y")
        qml.StronglyEntanglingLayers(weights, wires=range(qubits))
        return [qml.expval(qml.PauliZ(w)) for w in range(qubits)]

    return circuit, qml.__version__


#: the anchors: PennyLane's torch-backprop device (the default), and lightning.qubit's C++ adjoint method
PENNYLANE_DEVICES = {"default.qubit": "backprop", "lightning.qubit": "adjoint"}
SIMULATOR_QUBITS = (4, 6, 8, 10, 12)


def simulator_rows(batch: int = 128, layers: int = 2) -> list[dict]:
    rows = []
    for qubits in SIMULATOR_QUBITS:
        spec = CircuitBuilder(qubits).angle_embedding(range(qubits)).strongly_entangling_layers(layers).expval_z()
        layer = QuantumLayer(spec, seed=0)
        x = torch.rand(batch, qubits) * np.pi

        def ours(layer=layer, x=x) -> None:
            layer.zero_grad()
            layer(x).sum().backward()

        row = {"qubits": qubits, "batch": batch}
        works, names = [ours], ["qdeploy"]
        weights = layer.weight.detach().double().reshape(layers, qubits, 3).clone().requires_grad_(True)
        xd = x.double()
        for device_name, diff_method in PENNYLANE_DEVICES.items():
            circuit, version = pennylane_layer(qubits, layers, device_name, diff_method)
            if circuit is None:
                continue

            def theirs(circuit=circuit, weights=weights, xd=xd) -> None:
                weights.grad = None
                torch.stack(circuit(xd, weights), dim=1).sum().backward()

            works.append(theirs)
            names.append(device_name)
            row["pennylane_version"] = version
            with torch.no_grad():
                row[f"max_abs_diff_vs_{device_name}"] = float(
                    (torch.stack(circuit(xd, weights), dim=1) - layer(xd)).abs().max()
                )
        # fewer rounds for the slow 12-qubit case; each round still times every simulator back to back
        for name, seconds in zip(names, _time(*works, repeats=9 if qubits < 12 else 5), strict=True):
            row[f"{name}_fwd_bwd_ms"] = 1e3 * seconds
        for name in names[1:]:
            row[f"speedup_vs_{name}"] = row[f"{name}_fwd_bwd_ms"] / row["qdeploy_fwd_bwd_ms"]
        rows.append(row)
        print(f"simulator {qubits} qubits: {row}", flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = [
        "# Quantum target",
        "",
        f"Device models: offline `GenericBackendV2` (qiskit {result['qiskit']}), basis cx/rz/sx/x; heavy-hex = "
        "`CouplingMap.from_heavy_hex(3)` (19 qubits), line = `CouplingMap.from_line(width)`"
        + (
            f"; fake_brisbane = qiskit-ibm-runtime {result['qiskit_ibm_runtime']}'s snapshot of IBM Brisbane (127-qubit "
            "Eagle heavy-hex, basis ecr/rz/sx/x)"
            if result.get("qiskit_ibm_runtime")
            else ""
        )
        + f". qdeploy: best of `generate_preset_pass_manager(optimization_level=3)` at {SEEDS} seeds with each of the "
        f"routing methods sabre, {', '.join(EXTRA_ROUTINGS)} (lookahead on devices of at most "
        f"{LOOKAHEAD_MAX_DEVICE_QUBITS} qubits), and its {' and '.join(EXTRA_LAYOUTS)} layouts (seed 0): "
        f"{len(transpile_candidates(SEEDS, 4))} candidates on small devices; plain: "
        f"`qiskit.transpile(..., optimization_level=3)` with the default (unset, hence random) seed, called {PLAIN_CALLS} "
        "times per row: plain columns are means over those calls, with the range of their two-qubit counts. Trained "
        "weights bound, inputs symbolic. Times measured on 2 cores shared with other jobs (indicative only).",
        "",
        "| circuit | device | logical 2q | qdeploy 2q | plain 2q mean (min-max) | qdeploy depth | plain depth "
        "| qdeploy SWAPs | plain SWAPs | qdeploy time (s, all candidates) | plain time (s, per call) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["transpile"]:
        q, p = r["qdeploy"], r["plain_qiskit"]
        lines.append(
            f"| {r['circuit']} | {r['device']} | {r['logical_two_qubit']} | {q['two_qubit']} | {p['two_qubit']:.1f} "
            f"({p['two_qubit_min']}-{p['two_qubit_max']}) | {q['depth']} | {p['depth']:.1f} | {q['swaps']} | "
            f"{p['swaps']:.1f} | {q['seconds']:.2f} | {p['seconds']:.2f} |"
        )
    s = result["transpile_summary"]
    lines += [
        "",
        f"Two-qubit gates, qdeploy vs plain: never worse than any plain call in {s['not_worse']}/{s['rows']} rows "
        f"({s['not_worse_calls']}/{s['calls']} calls), better than the plain mean in {s['better']} rows; total "
        f"{s['qdeploy_total']} vs {s['plain_total']:.1f} on average ({s['reduction_percent']:.1f} % fewer). Depth, "
        f"summed over the rows: {s['qdeploy_depth_total']} vs {s['plain_depth_total']:.1f}. Compile time: all "
        f"qdeploy candidates {s['qdeploy_seconds_total']:.1f} s vs {s['plain_seconds_total']:.2f} s for one plain call "
        "per row.",
        "",
        f"## Angle bits vs output error (Iris classifier, {result['iris_test_samples']} test flowers)",
        "",
        "| angle bits | max abs logit error | mean abs logit error | test accuracy |",
        "|---|---|---|---|",
    ]
    for r in result["angle_bits"]:
        lines.append(
            f"| {r['bits']} | {r['max_abs_logit_error']:.2e} | {r['mean_abs_logit_error']:.2e} | {r['test_accuracy']:.3f} |"
        )
    lines += [
        "",
        "## Creep (digits; hidden 4->4 layers replaced one by one by 4-qubit layers, fine-tuned after each)",
        "",
        "| quantum layers | test accuracy |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.3f} |" for k, v in result["creep_accuracy_per_step"].items()]
    lines += [
        "",
        "## Torch simulator: forward + backward, batch 128, angle embedding + 2 strongly entangling layers, float64",
        "",
        "Median of 9 rounds (5 at 12 qubits), each round timing one call of each simulator back to back. Speed-up = "
        "the other's time / qdeploy's (> 1: qdeploy faster). PennyLane `default.qubit` differentiates by backprop "
        "through torch; `lightning.qubit` (C++) by the adjoint method, one circuit execution per sample. qdeploy: "
        "backprop through torch as well, with one-qubit gates fused per wire, the gates before the first two-qubit "
        "gate built as a product state, each CNOT ring composed into one basis permutation, and shared (weight) "
        "gates applied with a hand-written backward (`qdeploy/custom_op/quantum/simulator.py`).",
        "",
        "| qubits | qdeploy QuantumLayer (ms) | default.qubit (ms) | speed-up vs default.qubit | lightning.qubit (ms) "
        "| speed-up vs lightning.qubit | max abs output difference (default.qubit / lightning.qubit) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["simulator"]:
        cells = [f"{r['qdeploy_fwd_bwd_ms']:.1f}"]
        for name in PENNYLANE_DEVICES:
            if f"{name}_fwd_bwd_ms" in r:
                cells += [f"{r[f'{name}_fwd_bwd_ms']:.1f}", f"{r[f'speedup_vs_{name}']:.2f}x"]
            else:
                cells += ["not installed", "-"]
        diffs = [f"{r[f'max_abs_diff_vs_{name}']:.1e}" for name in PENNYLANE_DEVICES if f"max_abs_diff_vs_{name}" in r]
        cells.append(" / ".join(diffs) if diffs else "-")
        lines.append(f"| {r['qubits']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Machine: {result['machine']}; torch threads: 1; 2 cores shared with other jobs while measured (load average "
        f"{_load(result, 'before')} before the simulator rows, {_load(result, 'after')} after), so times are indicative; "
        "the speed-ups, both simulators measured back to back in the same process, are the figures.",
        "",
    ]
    return "\n".join(lines)


def _load(result: dict, when: str) -> str:
    """The 1/5/15-minute load averages recorded around the simulator rows."""
    load = result.get(f"simulator_load_average_{when}")
    return "/".join(f"{v:.1f}" for v in load) if load else "not recorded"


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ModuleNotFoundError:
        return None


def main() -> None:
    torch.set_num_threads(1)
    circuits, facts = example_circuits()
    rows = transpile_rows(circuits)
    ours = [r["qdeploy"]["two_qubit"] for r in rows]
    plain = [r["plain_qiskit"]["two_qubit"] for r in rows]
    calls = [(r["qdeploy"]["two_qubit"], c["two_qubit"]) for r in rows for c in r["plain_qiskit"]["calls"]]
    summary = {
        "rows": len(rows),
        "not_worse": sum(r["qdeploy"]["two_qubit"] <= r["plain_qiskit"]["two_qubit_min"] for r in rows),
        "better": sum(a < b for a, b in zip(ours, plain, strict=True)),
        "calls": len(calls),
        "not_worse_calls": sum(a <= b for a, b in calls),
        "qdeploy_total": sum(ours),
        "plain_total": sum(plain),
        "reduction_percent": 100 * (1 - sum(ours) / sum(plain)),
        "qdeploy_depth_total": sum(r["qdeploy"]["depth"] for r in rows),
        "plain_depth_total": sum(r["plain_qiskit"]["depth"] for r in rows),
        "qdeploy_seconds_total": sum(r["qdeploy"]["seconds"] for r in rows),
        "plain_seconds_total": sum(r["plain_qiskit"]["seconds"] for r in rows),
    }
    data = facts["iris_data"]
    result = {
        "qiskit": qiskit.__version__,
        "qiskit_ibm_runtime": _version("qiskit_ibm_runtime"),
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "iris_test_accuracy": facts["iris_test_accuracy"],
        "iris_test_samples": int(len(data.x_test)),
        "creep_accuracy_per_step": facts["creep_accuracy_per_step"],
        "transpile": rows,
        "transpile_summary": summary,
        "angle_bits": angle_bits_rows(facts["iris_net"], data),
        "simulator_load_average_before": os.getloadavg(),
        "simulator": simulator_rows(),
        "simulator_load_average_after": os.getloadavg(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quantum.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "quantum.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
