"""The declarative circuit spec of a quantum layer: gates, angle sources, readout. JSON-serialisable; the
``spec`` attribute of a ``QuantumCircuit`` node, so this is the op's definition (the simulator executes it).

Conventions (those of qiskit, so specs, QASM and the runner agree without index juggling):

- wires are ``0 .. num_qubits-1``; a Pauli string is read left to right as wire 0, 1, 2, ... (``"ZI"`` is Z on
  wire 0);
- ``probs`` readout index ``k = sum_j b(wires[j]) * 2**j`` (the first listed wire is the least significant bit);
- each angle is an ``input`` (times an optional ``scale``), a trainable ``weight`` or a ``const``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from qdeploy.errors import QDeployError

#: gate name -> (number of wires, takes an angle, angle period up to global phase)
GATES: dict[str, tuple[int, bool, float]] = {
    "h": (1, False, 0.0),
    "x": (1, False, 0.0),
    "y": (1, False, 0.0),
    "z": (1, False, 0.0),
    "s": (1, False, 0.0),
    "sdg": (1, False, 0.0),
    "t": (1, False, 0.0),
    "tdg": (1, False, 0.0),
    "sx": (1, False, 0.0),
    "rx": (1, True, 2 * math.pi),
    "ry": (1, True, 2 * math.pi),
    "rz": (1, True, 2 * math.pi),
    "p": (1, True, 2 * math.pi),
    "cx": (2, False, 0.0),
    "cy": (2, False, 0.0),
    "cz": (2, False, 0.0),
    "swap": (2, False, 0.0),
    # A controlled rotation by theta + 2 pi is controlled(-R(theta)): the sign is a *relative* phase, so the
    # period is 4 pi.
    "crx": (2, True, 4 * math.pi),
    "cry": (2, True, 4 * math.pi),
    "crz": (2, True, 4 * math.pi),
    "cp": (2, True, 2 * math.pi),
    "rzz": (2, True, 2 * math.pi),
}

ANGLE_KINDS = ("input", "weight", "const")


class CircuitSpecError(QDeployError):
    """A circuit spec that cannot be built or lowered; the message names the layer and the fix."""


@dataclass(frozen=True)
class Angle:
    kind: str  # "input" | "weight" | "const"
    index: int = 0  # input or weight index
    value: float = 0.0  # const value
    scale: float = 1.0  # input angles: angle = scale * x[index]

    def to_json(self) -> dict[str, Any]:
        if self.kind == "const":
            return {"const": self.value}
        data: dict[str, Any] = {self.kind: self.index}
        if self.kind == "input" and self.scale != 1.0:
            data["scale"] = self.scale
        return data

    @staticmethod
    def from_json(data: Any, where: str) -> Angle:
        if isinstance(data, Angle):
            return data
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return Angle("const", value=float(data))
        if not isinstance(data, dict):
            raise CircuitSpecError(f"{where}: angle {data!r} must be a number or {{'input'|'weight'|'const': ...}}")
        kinds = [k for k in ANGLE_KINDS if k in data]
        if len(kinds) != 1:
            raise CircuitSpecError(f"{where}: angle {data!r} needs exactly one of {ANGLE_KINDS}")
        kind = kinds[0]
        if kind == "const":
            return Angle("const", value=real_number(data["const"], where))
        return Angle(kind, index=int(data[kind]), scale=real_number(data.get("scale", 1.0), where))


@dataclass(frozen=True)
class Gate:
    name: str
    wires: tuple[int, ...]
    angle: Angle | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "wires": list(self.wires)}
        if self.angle is not None:
            data["angle"] = self.angle.to_json()
        return data


@dataclass(frozen=True)
class Readout:
    """``expval``: one output per observable, each a list of ``(coefficient, pauli_string)`` terms.
    ``probs``: ``2**len(wires)`` outputs, the computational-basis probabilities of ``wires``."""

    kind: str
    observables: tuple[tuple[tuple[float, str], ...], ...] = ()
    wires: tuple[int, ...] = ()

    @property
    def num_outputs(self) -> int:
        return len(self.observables) if self.kind == "expval" else 2 ** len(self.wires)

    def to_json(self) -> dict[str, Any]:
        if self.kind == "probs":
            return {"kind": "probs", "wires": list(self.wires)}
        return {"kind": "expval", "observables": [[[c, p] for c, p in obs] for obs in self.observables]}


def real_number(value: Any, where: str) -> float:
    """``value`` as a finite real float, or CircuitSpecError naming ``where`` (complex values with a zero imaginary
    part pass: importers see them from qiskit)."""
    if isinstance(value, complex):
        if value.imag != 0:
            raise CircuitSpecError(f"{where}: complex value {value!r}; angles and coefficients must be real")
        value = value.real
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise CircuitSpecError(f"{where}: {value!r} is not a real number") from None
    if not math.isfinite(result):
        raise CircuitSpecError(f"{where}: non-finite value {value!r}; give a finite number")
    return result


def parse_observable(obs: Any, num_qubits: int, where: str) -> tuple[tuple[float, str], ...]:
    """An observable as ``((coefficient, pauli_string), ...)`` from a Pauli string or a list of such terms.
    Complex coefficients are refused: a Pauli sum is Hermitian exactly when its coefficients are real."""
    terms = [(1.0, obs)] if isinstance(obs, str) else list(obs)
    result = []
    for term in terms:
        if not (isinstance(term, (list, tuple)) and len(term) == 2 and isinstance(term[1], str)):
            raise CircuitSpecError(f"{where}: observable term {term!r} must be (coefficient, 'PAULIS')")
        coeff, paulis = term
        if isinstance(coeff, complex) and coeff.imag != 0:
            raise CircuitSpecError(
                f"{where}: observable {obs!r} is not Hermitian (complex coefficient {coeff!r}); use real coefficients"
            )
        paulis = paulis.upper()
        if len(paulis) != num_qubits or set(paulis) - set("IXYZ"):
            raise CircuitSpecError(
                f"{where}: observable term {paulis!r} must be {num_qubits} letters from I, X, Y, Z (one per wire)"
            )
        result.append((real_number(coeff, where), paulis))
    if not result:
        raise CircuitSpecError(f"{where}: empty observable")
    return tuple(result)


@dataclass(frozen=True)
class CircuitSpec:
    """A parameterised circuit: ``num_inputs`` data angles, ``num_weights`` trainable angles, gates, readout."""

    num_qubits: int
    gates: tuple[Gate, ...]
    readout: Readout
    num_inputs: int
    num_weights: int
    name: str = "quantum"
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def num_outputs(self) -> int:
        return self.readout.num_outputs

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "num_qubits": self.num_qubits,
            "num_inputs": self.num_inputs,
            "num_weights": self.num_weights,
            "gates": [g.to_json() for g in self.gates],
            "readout": self.readout.to_json(),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    @staticmethod
    def from_json(data: dict[str, Any] | str) -> CircuitSpec:
        """Build and validate a spec from its JSON form (a dict or a JSON string)."""
        if isinstance(data, str):
            data = json.loads(data)
        name = str(data.get("name", "quantum"))
        where = f"quantum layer {name!r}"
        unknown = set(data) - {"name", "num_qubits", "num_inputs", "num_weights", "gates", "readout"}
        if unknown:
            raise CircuitSpecError(f"{where}: unknown spec key(s) {sorted(unknown)}")
        num_qubits = int(data["num_qubits"])
        gates = []
        for i, g in enumerate(data.get("gates", [])):
            if isinstance(g, Gate):
                gates.append(g)
                continue
            gate_where = f"{where} gate {i}"
            gname = str(g.get("name", "")).lower()
            angle = g.get("angle")
            gates.append(
                Gate(
                    gname,
                    tuple(int(w) for w in g.get("wires", [])),
                    None if angle is None else Angle.from_json(angle, gate_where),
                )
            )
        readout_data = data.get("readout", {})
        if isinstance(readout_data, Readout):
            readout = readout_data
        elif readout_data.get("kind") == "probs":
            readout = Readout("probs", wires=tuple(int(w) for w in readout_data.get("wires", range(num_qubits))))
        elif readout_data.get("kind") == "expval":
            observables = tuple(
                parse_observable(o, num_qubits, f"{where} observable {k}")
                for k, o in enumerate(readout_data.get("observables", []))
            )
            readout = Readout("expval", observables=observables)
        else:
            raise CircuitSpecError(f"{where}: readout must be {{'kind': 'expval'|'probs', ...}}, got {readout_data!r}")
        max_in = max((g.angle.index + 1 for g in gates if g.angle and g.angle.kind == "input"), default=0)
        max_w = max((g.angle.index + 1 for g in gates if g.angle and g.angle.kind == "weight"), default=0)
        spec = CircuitSpec(
            num_qubits=num_qubits,
            gates=tuple(gates),
            readout=readout,
            num_inputs=int(data.get("num_inputs", max_in)),
            num_weights=int(data.get("num_weights", max_w)),
            name=name,
        )
        spec.validate()
        return spec

    def validate(self) -> None:
        """Raise CircuitSpecError naming the layer and gate for anything a simulator or device could not run."""
        where = f"quantum layer {self.name!r}"
        if self.num_qubits < 1:
            raise CircuitSpecError(f"{where}: num_qubits={self.num_qubits}; give at least one qubit")
        for i, gate in enumerate(self.gates):
            gw = f"{where} gate {i} ({gate.name})"
            if gate.name not in GATES:
                raise CircuitSpecError(f"{gw}: gate {gate.name!r} is not in the gate set; use one of {sorted(GATES)}")
            arity, takes_angle, _ = GATES[gate.name]
            if len(gate.wires) != arity or len(set(gate.wires)) != arity:
                raise CircuitSpecError(f"{gw}: needs {arity} distinct wire(s), got {list(gate.wires)}")
            if any(not 0 <= w < self.num_qubits for w in gate.wires):
                raise CircuitSpecError(f"{gw}: wires {list(gate.wires)} outside 0..{self.num_qubits - 1}")
            if takes_angle != (gate.angle is not None):
                raise CircuitSpecError(f"{gw}: {'needs' if takes_angle else 'takes no'} angle")
            if gate.angle is not None:
                a = gate.angle
                if a.kind not in ANGLE_KINDS:
                    raise CircuitSpecError(f"{gw}: angle kind {a.kind!r}; use one of {ANGLE_KINDS}")
                limit = {"input": self.num_inputs, "weight": self.num_weights}.get(a.kind)
                if limit is not None and not 0 <= a.index < limit:
                    raise CircuitSpecError(f"{gw}: {a.kind} index {a.index} outside 0..{limit - 1}")
                real_number(a.value, gw)
                real_number(a.scale, gw)
        if self.readout.kind == "probs":
            if not self.readout.wires or any(not 0 <= w < self.num_qubits for w in self.readout.wires):
                raise CircuitSpecError(f"{where}: probs readout wires {list(self.readout.wires)} invalid")
        elif self.readout.kind == "expval":
            if not self.readout.observables:
                raise CircuitSpecError(f"{where}: expval readout needs at least one observable")
        else:
            raise CircuitSpecError(f"{where}: readout kind {self.readout.kind!r}; use 'expval' or 'probs'")

    def rename(self, name: str) -> CircuitSpec:
        return CircuitSpec(self.num_qubits, self.gates, self.readout, self.num_inputs, self.num_weights, name)


def weight_periods(spec: CircuitSpec) -> list[float]:
    """Per weight, the angle period up to global phase: 2 pi, or 4 pi when it drives a controlled rotation
    (there ``theta + 2 pi`` flips a *relative* phase). Unused weights get 2 pi."""
    periods = [2 * math.pi] * spec.num_weights
    for gate in spec.gates:
        if gate.angle is not None and gate.angle.kind == "weight":
            periods[gate.angle.index] = max(periods[gate.angle.index], GATES[gate.name][2])
    return periods


def input_name(index: int) -> str:
    """QASM 3 name of data input ``index``. Plain ASCII identifiers: qiskit renames ``ParameterVector`` entries
    (``x[0]``) on QASM 3 export, so we name each parameter ourselves and carry explicit name lists."""
    return f"x_{index}"


def weight_name(index: int) -> str:
    return f"w_{index}"


def _angle_expr(angle: Angle) -> str:
    if angle.kind == "const":
        return repr(float(angle.value))
    name = input_name(angle.index) if angle.kind == "input" else weight_name(angle.index)
    return name if angle.scale == 1.0 else f"{float(angle.scale)!r}*{name}"


def to_qasm3(spec: CircuitSpec) -> str:
    """OpenQASM 3 text of the circuit's unitary part, inputs and weights as ``input float[64]`` symbols."""
    lines = ["OPENQASM 3.0;", 'include "stdgates.inc";']
    if any(g.name == "rzz" for g in spec.gates):
        # rzz is not in stdgates.inc; define it (exp(-i theta/2 Z Z)).
        lines.append("gate rzz(theta) a, b { cx a, b; rz(theta) b; cx a, b; }")
    lines += [f"input float[64] {input_name(i)};" for i in range(spec.num_inputs)]
    lines += [f"input float[64] {weight_name(i)};" for i in range(spec.num_weights)]
    lines.append(f"qubit[{spec.num_qubits}] q;")
    for gate in spec.gates:
        operands = ", ".join(f"q[{w}]" for w in gate.wires)
        params = f"({_angle_expr(gate.angle)})" if gate.angle is not None else ""
        lines.append(f"{gate.name}{params} {operands};")
    return "\n".join(lines) + "\n"
