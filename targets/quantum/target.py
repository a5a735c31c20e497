"""The ``quantum`` target: hybrid QONNX graphs to transpiled OpenQASM 3 per quantum node, classical parts as ONNX,
a manifest, and a runner; verified on every compile.

Steps (each dumped to the output folder's ``ir/``): ``fold_constants`` (Quant nodes on angles included) and
``wrap_angles``; then ``emit`` binds the weights, transpiles each quantum node for the device (``devices.py``,
``lower.py``) and writes the folder that ``runner.py`` runs.

Verification here: (1) per node, the transpiled circuit equals the logical one as an operator (up to global
phase and layout) on devices of at most ``OPERATOR_CHECK_MAX_QUBITS`` qubits; (2) per node, sampled means at the
shot budget lie within 5 sigma of the exact values; (3) in ``qdeploy.compile``, the whole hybrid model run from
the folder against the golden executor within the bound ``qdeploy.bounds`` derives from the graph's float
arithmetic (float simulators round differently, so a derived bound instead of bit-exact). Angles quantized in the
graph (``qdeploy.quantum.quantize_angles``) are part of the specification; the error they cause against float
angles is measured and reported per node.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.custom_op.quantum import node_spec, quantum_nodes
from qdeploy.custom_op.quantum.spec import CircuitSpec, input_name, weight_name
from qdeploy.deps import require
from qdeploy.errors import QDeployError, UnsupportedModelError
from qdeploy.ir import node_attr
from qdeploy.pipeline import RunContext, Step
from qdeploy.progress import progress
from qdeploy.target import Target
from qdeploy.targets.quantum.devices import DEVICE_SYNTAX
from qdeploy.targets.quantum.options import QuantumOptions, QuantumRunOptions

log = logging.getLogger(__name__)


#: devices at most this wide get a full operator-equivalence check of every transpiled circuit
OPERATOR_CHECK_MAX_QUBITS = 10

#: device instructions that are not gates (IBM backends list control flow among their operations)
NOT_GATES = {"measure", "reset", "delay", "for_loop", "if_else", "switch_case", "while_loop", "box"}


def fold_constants(model: ModelWrapper, options: QuantumOptions) -> ModelWrapper:
    """Fold constant subgraphs, ``Quant`` nodes on trainable angles and weights included: they are exact to
    execute once, and the transpiler needs the angles as numbers."""
    from qonnx.transformation.fold_constants import FoldConstants

    return model.transform(FoldConstants(exclude_op_types=[]))


def wrap_angles(model: ModelWrapper, options: QuantumOptions) -> ModelWrapper:
    """Wrap each QuantumCircuit's trainable angles into one period around zero (mod 2 pi; 4 pi for controlled
    rotations): the same operator up to global phase, with the smallest numbers in QASM."""
    from qdeploy.passes.graph.wrap_angles import WrapAngles

    return model.transform(WrapAngles())


class QuantumTarget(Target):
    name = "quantum"
    extra = "quantum"
    Options = QuantumOptions
    RunOptions = QuantumRunOptions

    def check_available(self) -> None:
        require("qiskit", self.extra, "the quantum target")
        require("qiskit_qasm3_import", self.extra, "the quantum target")

    def describe(self) -> list[str]:
        return [
            f"devices: {DEVICE_SYNTAX}",
            "OpenQASM 3 per quantum node in the device's basis gates, classical parts as ONNX; verified within the "
            "bound derived from the graph's float arithmetic",
        ]

    def steps(self, options: QuantumOptions) -> list[Step]:
        return [fold_constants, wrap_angles]

    def emit(self, model: ModelWrapper, options: QuantumOptions, out_dir: Path, ctx: RunContext) -> dict[str, Any]:
        if ctx.source is None:
            raise QDeployError("the quantum target's emit needs the graph as the user gave it (RunContext.source)")
        return write_folder(model, ctx.source, options, Path(out_dir), ctx)

    def runner(self, out_dir: Path, run_options: QuantumRunOptions | None = None) -> Callable[[np.ndarray], np.ndarray]:
        from qdeploy.targets.quantum.runner import HybridRunner

        shots = run_options.shots if run_options is not None else None
        return HybridRunner(out_dir, shots=shots)


def _angle_quantization(
    source: ModelWrapper, node: onnx.NodeProto, spec: CircuitSpec, rng: np.random.Generator
) -> dict | None:
    """When a Quant node quantizes the node's angles in ``source`` (the graph as the user gave it; folding has
    replaced that Quant by its values): its bit width and the output error it causes against the float angles,
    measured with the op's torch simulator on 64 random input angles."""
    import torch
    from qonnx.core.onnx_exec import execute_node

    from qdeploy.custom_op.quantum.simulator import simulate

    producer = source.find_producer(node.input[1])
    if producer is None or producer.op_type != "Quant":
        return None
    float_weights = source.get_initializer(producer.input[0])
    bits = source.get_initializer(producer.input[3])
    if float_weights is None or bits is None:
        return None
    context = {name: source.get_initializer(name) for name in producer.input}
    execute_node(producer, context, source.graph, opset_version=_onnx_opset(source))
    quantized = np.asarray(context[producer.output[0]], dtype=np.float64)
    x = torch.from_numpy(rng.uniform(-np.pi, np.pi, (64, spec.num_inputs)))
    with torch.no_grad():
        exact = simulate(spec, x, torch.from_numpy(np.asarray(float_weights, dtype=np.float64).reshape(-1)))
        approx = simulate(spec, x, torch.from_numpy(quantized.reshape(-1)))
    return {"bits": int(np.asarray(bits).ravel()[0]), "max_abs_error_vs_float_angles": float((exact - approx).abs().max())}


def _wrap_numeric_angles(circuit) -> None:
    """Numeric rotation angles the transpiler left outside (-pi, pi] (e.g. ``rz(3*pi)``) wrapped in place: the same
    gate up to global phase, and the smallest numbers for the device."""
    from qiskit.circuit import ParameterExpression

    for instruction in circuit.data:
        op = instruction.operation
        if op.name in ("rz", "rx", "ry", "p") and not isinstance(op.params[0], ParameterExpression):
            angle = float(op.params[0])
            wrapped = angle - 2 * np.pi * np.round(angle / (2 * np.pi))
            if wrapped != angle:
                op.params = [wrapped]


def write_folder(
    graph: ModelWrapper, source: ModelWrapper, opts: QuantumOptions, out_dir: Path, ctx: RunContext
) -> dict[str, Any]:
    """Write the output folder from the prepared ``graph`` (angles folded and wrapped): per quantum node and
    measurement basis a transpiled, measured OpenQASM 3 circuit, the classical segments as ONNX, and the manifest
    the runner follows. Checks each node on the way (operator equivalence, shot noise); returns the report facts.
    ``source`` is the graph as the user gave it, where quantized angles are still ``Quant`` nodes."""
    from qiskit import qasm3

    from qdeploy.targets.quantum.devices import make_backend
    from qdeploy.targets.quantum.lower import (
        bind,
        check_operator,
        classical_plan,
        extract_segment,
        logical_circuit,
        measured_circuit,
        measurement_groups,
        node_weights,
        transpile_best,
    )
    from qdeploy.targets.quantum.runner import MANIFEST_FILE, QuantumNode

    nodes = quantum_nodes(graph)
    if not nodes:
        raise UnsupportedModelError(
            "the graph has no QuantumCircuit node; compile classical models with --target onnxruntime"
        )
    rng = np.random.default_rng(opts.seed)
    source_nodes = {n.name: n for n in quantum_nodes(source)}
    quantization = {name: _angle_quantization(source, node, node_spec(node), rng) for name, node in source_nodes.items()}
    specs = {n.name: node_spec(n) for n in nodes}
    width = max(spec.num_qubits for spec in specs.values())
    backend = make_backend(opts.device, width, opts.seed)
    device_qubits = backend.num_qubits
    plan = classical_plan(graph)
    manifest: dict[str, Any] = {
        "target": "quantum",
        "device": opts.device,
        "device_qubits": device_qubits,
        "coupling_map": [list(edge) for edge in backend.coupling_map.get_edges()] if backend.coupling_map else None,
        "basis_gates": sorted(set(backend.operation_names) - NOT_GATES),
        "shots": opts.shots,
        "epsilon": opts.epsilon,
        "input": graph.graph.input[0].name,
        "output": graph.graph.output[0].name,
        "plan": [],
        "nodes": {},
    }
    for k, step in enumerate(plan):
        if step["kind"] == "onnx":
            file = f"classical_{k}.onnx"
            onnx.save(extract_segment(graph, step["inputs"], step["output"]), str(out_dir / file))
            step = {**step, "file": file}
        manifest["plan"].append(step)

    per_layer = []
    for node in progress(nodes, desc="transpile quantum nodes"):
        spec = specs[node.name]
        where = f"quantum layer {spec.name!r} (node {node.name})"
        if spec.num_qubits > device_qubits:
            raise UnsupportedModelError(
                f"{where} needs {spec.num_qubits} qubits but device {opts.device!r} has {device_qubits}; "
                "choose a larger device"
            )
        weights = node_weights(graph, node, spec)
        bound_weights = {weight_name(j): float(w) for j, w in enumerate(weights)}
        logical = bind(logical_circuit(node_attr(node, "qasm"), where), bound_weights)
        best = ctx.timed(
            f"transpile_{node.name}",
            lambda logical=logical: transpile_best(logical, backend, opts.optimization_level, opts.seeds),
        )
        transpiled = best.circuit
        _wrap_numeric_angles(transpiled)
        layout = transpiled.layout.final_index_layout()
        equivalent = None
        if device_qubits <= OPERATOR_CHECK_MAX_QUBITS:
            equivalent = check_operator(logical, transpiled, spec, device_qubits, rng)
            if not equivalent:
                raise UnsupportedModelError(f"{where}: the transpiled circuit is not equivalent to the logical one (bug)")
        groups, outputs = measurement_groups(spec)
        entry = {
            "layer": spec.name,
            "qubits": spec.num_qubits,
            "inputs": [input_name(i) for i in range(spec.num_inputs)],
            "weights": bound_weights,
            "readout": spec.readout.kind,
            "observables": spec.readout.to_json(),
            "initial_layout": transpiled.layout.initial_index_layout(filter_ancillas=True),
            "final_layout": layout[: spec.num_qubits],
            "groups": [],
            "outputs": outputs,
        }
        for g, group in enumerate(groups):
            file = f"{node.name}.g{g}.qasm"
            (out_dir / file).write_text(qasm3.dumps(measured_circuit(transpiled, group, layout)))
            entry["groups"].append(
                {
                    "file": file,
                    "wires": group.wires,
                    "basis": "".join(group.basis[w] for w in group.wires),
                    "physical_qubits": [layout[w] for w in group.wires],
                }
            )
        manifest["nodes"][node.name] = entry
        quantum = QuantumNode(out_dir, entry)
        check_x = rng.uniform(-np.pi, np.pi, (opts.shot_check_inputs, spec.num_inputs))
        shot_check = ctx.timed(f"shot_check_{node.name}", lambda q=quantum, x=check_x, s=spec: _shot_check(q, x, s, opts))
        per_layer.append(
            {
                "node": node.name,
                "layer": spec.name,
                "qubits": spec.num_qubits,
                "inputs": spec.num_inputs,
                "weights": spec.num_weights,
                "two_qubit_gates": best.two_qubit,
                "depth": best.depth,
                "swaps": best.swaps,
                "seed": best.seed,
                "layout_method": best.layout,
                "seeds_tried": best.tried,
                "transpile_seconds": round(best.seconds, 4),
                "measurement_groups": len(groups),
                "operator_equivalent": equivalent,
                "shot_check": shot_check,
                "angle_quantization": quantization.get(node.name),
            }
        )
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2))
    return {
        "device": opts.device,
        "device_qubits": device_qubits,
        "shots": opts.shots,
        "epsilon": opts.epsilon,
        "per_layer": per_layer,
        "operator_equivalence": "checked" if device_qubits <= OPERATOR_CHECK_MAX_QUBITS else "skipped (device too wide)",
        "files": sorted(p.name for p in out_dir.iterdir() if p.suffix in (".qasm", ".onnx", ".json")),
    }


def _shot_check(quantum, x: np.ndarray, spec: CircuitSpec, opts: QuantumOptions) -> dict[str, Any]:
    """Sampled means at ``opts.shots`` against exact values: every output within 5 sigma (else the sampling path
    or the readout post-processing is wrong). Sigma per output from the exact values (Pauli terms: sqrt(1-<P>^2);
    probabilities: sqrt(p(1-p))), summed over terms as an upper bound."""
    exact = quantum.run(x)
    sampled = quantum.run(x, shots=opts.shots, seed=opts.seed)
    if spec.readout.kind == "probs":
        sigma = np.sqrt(exact * (1 - exact) / opts.shots)
    else:
        sigma = np.zeros_like(exact)
        for i, row in enumerate(x):
            probs = quantum.exact_probabilities(row)
            for o, terms in enumerate(quantum.terms):
                for c, g, signs in terms:
                    if g is not None:
                        mean = float(probs[g] @ signs)
                        sigma[i, o] += abs(c) * np.sqrt(max(0.0, 1 - mean * mean) / opts.shots)
    z = np.abs(sampled - exact) / np.maximum(sigma, 1e-12)
    z[np.abs(sampled - exact) <= 1e-12] = 0.0
    try:
        import qiskit_aer  # noqa: F401

        engine = "qiskit-aer"
    except ModuleNotFoundError:
        engine = "qiskit StatevectorSampler"
    result = {
        "shots": opts.shots,
        "inputs": int(len(x)),
        "engine": engine,
        "max_abs_error": float(np.abs(sampled - exact).max()),
        "max_sigma": float(z.max()),
        "within_5_sigma": bool(z.max() <= 5.0),
    }
    if not result["within_5_sigma"]:
        raise UnsupportedModelError(
            f"quantum layer {spec.name!r}: sampled means are {result['max_sigma']:.1f} sigma from exact values (bug)"
        )
    return result


def _onnx_opset(model: ModelWrapper) -> int:
    return next((o.version for o in model.model.opset_import if o.domain in ("", "ai.onnx")), 17)
