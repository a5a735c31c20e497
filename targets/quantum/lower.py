"""Lowering a hybrid QONNX graph: classical segments to ONNX, each ``QuantumCircuit`` node to transpiled,
measured OpenQASM 3 circuits for a device, with a manifest the runner follows.

Readout on hardware is by measurement, so each node's observables are grouped by measurement basis (qubit-wise
commuting Pauli terms share a group); each group is one circuit: the transpiled unitary, a basis change on the
measured physical qubits, and measurements into ``c``. Expectation values are parities of the measured bits.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.custom_op.quantum import is_quantum_node
from qdeploy.custom_op.quantum.spec import CircuitSpec, input_name
from qdeploy.errors import UnsupportedModelError

log = logging.getLogger(__name__)


@dataclass
class Group:
    """One measured circuit: which virtual wires are measured (clbit j <- wires[j]) and in which basis."""

    basis: dict[int, str]  # wire -> X/Y/Z
    wires: list[int] = field(default_factory=list)


def measurement_groups(spec: CircuitSpec) -> tuple[list[Group], list[list[tuple[float, int | None, list[int]]]]]:
    """Group the readout's Pauli terms by measurement basis (greedy, qubit-wise commuting).

    Returns the groups and, per output, its terms as ``(coefficient, group index or None, clbits)``: the term's
    value is the coefficient times the parity ``(-1)**sum(bits[clbits])`` (None: identity, a constant).
    """
    groups: list[Group] = []
    outputs = []
    if spec.readout.kind == "probs":
        wires = list(spec.readout.wires)
        return [Group({w: "Z" for w in wires}, wires)], []
    for observable in spec.readout.observables:
        terms = []
        for coeff, paulis in observable:
            letters = {w: p for w, p in enumerate(paulis) if p != "I"}
            if not letters:
                terms.append((coeff, None, []))
                continue
            fits = [i for i, g in enumerate(groups) if all(g.basis.get(w, p) == p for w, p in letters.items())]
            if not fits:
                groups.append(Group({}))
            index = fits[0] if fits else len(groups) - 1
            group = groups[index]
            for w, p in letters.items():
                if w not in group.basis:
                    group.basis[w] = p
                    group.wires.append(w)
            terms.append((coeff, index, [group.wires.index(w) for w in letters]))
        outputs.append(terms)
    return groups, outputs


def logical_circuit(qasm: str, where: str):
    """The node's OpenQASM 3 text as a qiskit circuit (symbols ``x_i``/``w_j`` become Parameters)."""
    from qdeploy.deps import require

    require("qiskit_qasm3_import", "quantum", "reading OpenQASM 3")
    from qiskit import qasm3

    try:
        return qasm3.loads(qasm)
    except Exception as exc:
        raise UnsupportedModelError(f"{where}: its OpenQASM 3 text does not parse ({type(exc).__name__}: {exc})") from exc


def bind(circuit, names_values: dict[str, float]):
    """Assign the Parameters named in ``names_values`` (others stay symbolic)."""
    table = {p.name: p for p in circuit.parameters}
    return circuit.assign_parameters({table[n]: v for n, v in names_values.items() if n in table})


def two_qubit_count(circuit) -> int:
    return sum(1 for instruction in circuit.data if instruction.operation.num_qubits == 2)


@dataclass
class TranspileResult:
    circuit: Any
    seed: int
    two_qubit: int
    depth: int
    swaps: int
    seconds: float
    tried: list[dict[str, Any]]
    layout: str = "default"  #: layout method of the kept candidate
    routing: str = "sabre"  #: routing method of the kept candidate


#: deterministic layouts tried besides the seeded default (VF2, then Sabre): a random Sabre start can miss the
#: chain of neighbouring qubits that "dense"/"trivial" take directly (e.g. 13 vs 14 CX for the Iris circuit on Brisbane)
EXTRA_LAYOUTS = ("dense", "trivial")

#: routing methods tried besides SABRE, each at every seed: no router wins everywhere, and O3's block resynthesis
#: after routing decides the count. Measured on the benchmark circuits: "basic" (shortest-path SWAPs) gave 29 CX for
#: the data re-uploading circuit on a line where every SABRE seed gave 36; "lookahead" gave 13 for a 2-layer
#: strongly entangling circuit on heavy-hex where SABRE gave 14.
EXTRA_ROUTINGS = ("basic", "lookahead")

#: "lookahead" is tried only on devices up to this many qubits: it took ~3 s per call on the 19-qubit heavy-hex and
#: ~20 s on the 127-qubit Brisbane, where it won no benchmark row
LOOKAHEAD_MAX_DEVICE_QUBITS = 32


def transpile_candidates(seeds: int, device_qubits: int) -> list[tuple[int, str | None, str | None]]:
    """(seed, layout method, routing method) tried by ``transpile_best``; None is the preset's default (SABRE)."""
    default = [(seed, None, None) for seed in range(seeds)]
    layouts = [(0, method, None) for method in EXTRA_LAYOUTS]
    routings = [
        (seed, None, method)
        for method in EXTRA_ROUTINGS
        if method != "lookahead" or device_qubits <= LOOKAHEAD_MAX_DEVICE_QUBITS
        for seed in range(seeds)
    ]
    return default + layouts + routings


def transpile_best(circuit, backend, level: int, seeds: int) -> TranspileResult:
    """Transpile every ``transpile_candidates(seeds, backend.num_qubits)`` candidate; keep the fewest two-qubit gates
    (then the smallest depth, then the earliest candidate)."""
    from qiskit.transpiler import generate_preset_pass_manager

    base_swaps = circuit.count_ops().get("swap", 0)
    best: TranspileResult | None = None
    tried = []
    start = time.perf_counter()
    for seed, layout_method, routing_method in transpile_candidates(seeds, backend.num_qubits):
        manager = generate_preset_pass_manager(
            optimization_level=level,
            backend=backend,
            seed_transpiler=seed,
            layout_method=layout_method,
            routing_method=routing_method,
        )
        peak = [0]

        def count_swaps(dag=None, peak=peak, **_: Any) -> None:
            # Routing inserts SWAPs; basis translation later turns them into CX triples. The peak count over the
            # passes is what routing added.
            peak[0] = max(peak[0], dag.count_ops().get("swap", 0))

        result = manager.run(circuit, callback=count_swaps)
        candidate = TranspileResult(
            result,
            seed,
            two_qubit_count(result),
            result.depth(),
            max(0, peak[0] - base_swaps),
            0.0,
            tried,
            layout_method or "default",
            routing_method or "sabre",
        )
        tried.append(
            {
                "seed": seed,
                "layout": candidate.layout,
                "routing": candidate.routing,
                "two_qubit": candidate.two_qubit,
                "depth": candidate.depth,
                "swaps": candidate.swaps,
            }
        )
        if best is None or (candidate.two_qubit, candidate.depth) < (best.two_qubit, best.depth):
            best = candidate
    best.seconds = time.perf_counter() - start
    return best


def measured_circuit(transpiled, group: Group, layout: list[int]):
    """Append the basis change and measurements of ``group`` on the physical qubits holding its wires.

    The basis change is written in the device basis (rz, sx) so the file stays hardware-ready:
    H = rz(pi/2) sx rz(pi/2) and Sdg then H = sx rz(pi/2), both up to global phase."""
    from qiskit import ClassicalRegister

    circuit = transpiled.copy()
    register = ClassicalRegister(len(group.wires), "c")
    circuit.add_register(register)
    half_pi = np.pi / 2
    for clbit, wire in enumerate(group.wires):
        qubit = layout[wire]
        basis = group.basis[wire]
        if basis == "X":
            circuit.rz(half_pi, qubit)
            circuit.sx(qubit)
            circuit.rz(half_pi, qubit)
        elif basis == "Y":
            circuit.sx(qubit)
            circuit.rz(half_pi, qubit)
        circuit.measure(qubit, register[clbit])
    return circuit


def check_operator(logical, transpiled, spec: CircuitSpec, device_qubits: int, rng: np.random.Generator) -> bool:
    """Transpiled == logical (up to global phase, undoing the initial and final layout) at two random inputs.

    Tolerance 1e-6, the target's: the transpiler snaps angles within ~1e-7 of special values (float32 angles a hair
    from pi), which a 1e-8 comparison would flag."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Operator

    for _ in range(2):
        values = {input_name(i): float(v) for i, v in enumerate(rng.uniform(-np.pi, np.pi, spec.num_inputs))}
        full = QuantumCircuit(device_qubits)
        full.compose(bind(logical, values), qubits=range(spec.num_qubits), inplace=True)
        if not Operator.from_circuit(bind(transpiled, values)).equiv(Operator(full), atol=1e-6):
            return False
    return True


def node_weights(model: ModelWrapper, node: onnx.NodeProto, spec: CircuitSpec) -> np.ndarray:
    weights = model.get_initializer(node.input[1])
    where = f"quantum layer {spec.name!r} (node {node.name})"
    if weights is None:
        raise UnsupportedModelError(f"{where}: its angles are not constant after folding; export trained weights")
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if np.iscomplexobj(weights) or not np.all(np.isfinite(weights)):
        raise UnsupportedModelError(f"{where}: non-finite trainable angles; retrain or reset the layer's weights")
    if weights.size != spec.num_weights:
        raise UnsupportedModelError(f"{where}: {weights.size} weights but the spec has {spec.num_weights}")
    return weights


def classical_plan(model: ModelWrapper) -> list[dict[str, Any]]:
    """The execution order: classical segments (ONNX sub-models) and quantum nodes, by tensor names."""
    available = {model.graph.input[0].name}
    initializers = {init.name for init in model.graph.initializer}
    producers = {out: node for node in model.graph.node for out in node.output}
    steps: list[dict[str, Any]] = []

    def segment(target: str) -> None:
        if target in available:
            return
        needed, stack, seen = [], [target], set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor in initializers or tensor == "":
                continue
            seen.add(tensor)
            if tensor in available:
                needed.append(tensor)
                continue
            node = producers.get(tensor)
            if node is None:
                raise UnsupportedModelError(f"tensor {tensor} has no producer; the graph is malformed")
            if is_quantum_node(node):
                raise UnsupportedModelError(
                    f"node {node.name}: a classical part uses a quantum output out of order; export a sequential model"
                )
            if node.domain not in ("", "ai.onnx"):
                raise UnsupportedModelError(
                    f"node {node.name} ({node.op_type}, domain {node.domain}) cannot run on onnxruntime in the classical "
                    "part; quantized activations are not supported by the quantum target, keep classical layers float"
                )
            stack.extend(node.input)
        steps.append({"kind": "onnx", "inputs": sorted(needed), "output": target})
        available.add(target)

    for node in model.graph.node:
        if is_quantum_node(node):
            segment(node.input[0])
            steps.append({"kind": "quantum", "node": node.name, "input": node.input[0], "output": node.output[0]})
            available.add(node.output[0])
    segment(model.graph.output[0].name)
    return steps


def extract_segment(model: ModelWrapper, inputs: list[str], output: str) -> onnx.ModelProto:
    from onnx.utils import Extractor

    segment = Extractor(model.model).extract_model(inputs, [output])
    # The golden graph has batch 1; the runner feeds whole batches, so the batch dimension becomes symbolic.
    del segment.graph.value_info[:]
    for value in (*segment.graph.input, *segment.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    return segment
