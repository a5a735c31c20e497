"""Run a quantum output folder: classical segments on onnxruntime, quantum nodes from their QASM 3 files on
qiskit's ``Statevector`` (exact) or by sampling ``shots`` (qiskit-aer when installed, else qiskit's
``StatevectorSampler``). Parameters are bound numerically per sample, as on hardware."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from qdeploy.artifact import file_in_folder
from qdeploy.deps import require
from qdeploy.errors import QDeployError
from qdeploy.runtime import ort_session

MANIFEST_FILE = "quantum_manifest.json"


def _compact(circuit):
    """Drop qubits no instruction touches: a 4-qubit layer on a 19-qubit device simulates as 4-6 qubits."""
    from qiskit import QuantumCircuit

    active = sorted({circuit.find_bit(q).index for inst in circuit.data for q in inst.qubits})
    position = {q: i for i, q in enumerate(active)}
    small = QuantumCircuit(max(len(active), 1), circuit.num_clbits)
    for inst in circuit.data:
        small.append(
            inst.operation,
            [position[circuit.find_bit(q).index] for q in inst.qubits],
            [circuit.find_bit(c).index for c in inst.clbits],
        )
    return small, position


def _segments(circuit) -> list[tuple[str, Any, list[int]]]:
    """Split a circuit into runs of input-free gates, each folded into one matrix by qiskit's ``Operator``, and the
    single gates whose angles depend on inputs. A batch then costs one matrix product per run plus one small gate
    per sample and input-dependent gate, instead of a full ``Statevector`` evolution per sample."""
    from qiskit import QuantumCircuit
    from qiskit.quantum_info import Operator

    segments: list[tuple[str, Any, list[int]]] = []
    run = QuantumCircuit(circuit.num_qubits)

    def flush() -> None:
        if run.data:
            segments.append(("fixed", Operator(run).data, []))
            run.data.clear()

    for inst in circuit.data:
        qubits = [circuit.find_bit(q).index for q in inst.qubits]
        if inst.operation.is_parameterized():
            flush()
            segments.append(("input", inst.operation, qubits))
        else:
            run.append(inst.operation, qubits)
    flush()
    return segments


def _evolve(segments, num_qubits: int, x: np.ndarray, names: list[str]) -> np.ndarray:
    """States (batch, 2**num_qubits) after ``segments`` for input rows ``x`` (qiskit's little-endian order)."""
    from qiskit.quantum_info import Operator, Statevector

    states = np.zeros((len(x), 2**num_qubits), dtype=complex)
    states[:, 0] = 1
    for kind, item, qubits in segments:
        if kind == "fixed":
            states = states @ item.T
            continue
        for b, row in enumerate(x):
            values = dict(zip(names, row, strict=True))
            gate = item.copy()
            gate.params = [
                float(p.bind({q: values[q.name] for q in p.parameters})) if hasattr(p, "parameters") else p
                for p in item.params
            ]
            states[b] = Statevector(states[b]).evolve(Operator(gate), qargs=qubits).data
    return states


def _parity_signs(size: int, clbits: list[int]) -> np.ndarray:
    mask = sum(1 << c for c in clbits)
    outcomes = np.arange(2**size)
    parity = np.array([bin(k & mask).count("1") % 2 for k in outcomes])
    return 1.0 - 2.0 * parity


class QuantumNode:
    """One quantum node of a manifest: its measured circuits and how outputs follow from the measured bits."""

    def __init__(self, folder: Path, entry: dict[str, Any]) -> None:
        require("qiskit_qasm3_import", "quantum", "reading OpenQASM 3")
        from qiskit import qasm3

        self.entry = entry
        self.inputs: list[str] = entry["inputs"]
        # (compacted measured circuit, compacted unitary part, compact qargs of clbits): sampling simulates only the
        # qubits the layer touches, not the device (127 qubits on an IBM Eagle would need 2**127 amplitudes)
        self.circuits = []
        for group in entry["groups"]:
            measured = qasm3.loads(file_in_folder(folder, group["file"], MANIFEST_FILE).read_text())
            unitary = measured.remove_final_measurements(inplace=False)
            small, position = _compact(unitary)
            qargs = [position[q] for q in group["physical_qubits"]]
            self.circuits.append((_compact(measured)[0], small, qargs))
        self.segments = [_segments(small) for _, small, _ in self.circuits]
        self.readout = entry["readout"]
        self.terms = [
            [
                (coeff, group, None if group is None else _parity_signs(len(entry["groups"][group]["wires"]), clbits))
                for coeff, group, clbits in output
            ]
            for output in entry.get("outputs", [])
        ]

    def _values(self, row: np.ndarray) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.inputs, row, strict=True)}

    def exact_probabilities(self, row: np.ndarray) -> list[np.ndarray]:
        return [p[0] for p in self.exact_probabilities_batch(row[None, :])]

    def exact_probabilities_batch(self, x: np.ndarray) -> list[np.ndarray]:
        """Per group, (batch, 2**measured) exact outcome probabilities (clbit j is bit j of the index)."""
        from qiskit.quantum_info import Statevector

        results = []
        for segments, (_, small, qargs) in zip(self.segments, self.circuits, strict=True):
            states = _evolve(segments, small.num_qubits, x, self.inputs)
            results.append(np.array([Statevector(state).probabilities(qargs) for state in states]))
        return results

    def sampled_probabilities(self, row: np.ndarray, shots: int, seed: int) -> list[np.ndarray]:
        from qdeploy.targets.quantum.lower import bind

        values = self._values(row)
        bound = [bind(measured, values) for measured, _, _ in self.circuits]
        try:
            from qiskit_aer import AerSimulator

            result = AerSimulator(method="statevector", seed_simulator=seed).run(bound, shots=shots).result()
            counts = [result.get_counts(i) for i in range(len(bound))]
        except ModuleNotFoundError:
            from qiskit.primitives import StatevectorSampler

            jobs = StatevectorSampler(seed=seed).run(bound, shots=shots).result()
            counts = [job.data.c.get_counts() for job in jobs]
        probabilities = []
        for (_, _, qargs), count in zip(self.circuits, counts, strict=True):
            p = np.zeros(2 ** len(qargs))
            for bits, n in count.items():
                p[int(bits.replace(" ", ""), 2)] += n / shots
            probabilities.append(p)
        return probabilities

    def outputs(self, probabilities: list[np.ndarray]) -> np.ndarray:
        if self.readout == "probs":
            return probabilities[0]
        return np.array(
            [sum(c if g is None else c * float(probabilities[g] @ s) for c, g, s in terms) for terms in self.terms]
        )

    def run(self, x: np.ndarray, shots: int | None = None, seed: int = 0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if shots is None:
            batch = self.exact_probabilities_batch(x)
            rows = [self.outputs([p[i] for p in batch]) for i in range(len(x))]
        else:
            rows = [self.outputs(self.sampled_probabilities(row, shots, seed + i)) for i, row in enumerate(x)]
        return np.array(rows).reshape(len(x), -1)


class HybridRunner:
    """Callable ``x -> y`` over the whole hybrid model in ``folder`` (``shots=None``: exact statevector)."""

    def __init__(self, folder: str | Path, shots: int | None = None, seed: int = 0) -> None:
        folder = Path(folder)
        path = folder / MANIFEST_FILE
        if not path.exists():
            raise QDeployError(f"{folder} has no {MANIFEST_FILE}; is it a quantum target output?")
        self.manifest = json.loads(path.read_text())
        self.shots, self.seed = shots, seed
        self.steps = []
        for step in self.manifest["plan"]:
            if step["kind"] == "onnx":
                session = ort_session(
                    file_in_folder(folder, step["file"], MANIFEST_FILE), what="the classical parts of a hybrid model"
                )
                self.steps.append((step, session))
            else:
                self.steps.append((step, QuantumNode(folder, self.manifest["nodes"][step["node"]])))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        tensors = {self.manifest["input"]: np.asarray(x, dtype=np.float32)}
        for step, runner in self.steps:
            if step["kind"] == "onnx":
                feeds = {name: tensors[name] for name in step["inputs"]}
                tensors[step["output"]] = runner.run(None, feeds)[0]
            else:
                y = runner.run(tensors[step["input"]], self.shots, self.seed)
                tensors[step["output"]] = y.astype(np.float32)
        return tensors[self.manifest["output"]]
