"""A batched statevector simulator in torch, differentiable end to end.

Hand-written because training needs the circuit as differentiable torch ops batched over inputs (backprop
through every angle); qiskit's simulators are neither, and PennyLane is an optional importer here, not a core
dependency. Correctness is checked against qiskit's ``Statevector`` in tests/quantum.

State layout: ``(batch, 2, ..., 2)`` with qubit ``q`` on axis ``num_qubits - q`` (so the flattened state has
qiskit's little-endian index ``sum_q b_q 2**q``). Gate matrices use the textbook order (first wire most
significant); ``_apply`` moves the gate's wires into that order.
"""

from __future__ import annotations

import math

import torch

from qdeploy.quantum.spec import CircuitSpec, Gate

_SQRT1_2 = 1 / math.sqrt(2)


def _fixed(name: str, dtype: torch.dtype) -> torch.Tensor:
    i = 1j
    matrices = {
        "h": [[_SQRT1_2, _SQRT1_2], [_SQRT1_2, -_SQRT1_2]],
        "x": [[0, 1], [1, 0]],
        "y": [[0, -i], [i, 0]],
        "z": [[1, 0], [0, -1]],
        "s": [[1, 0], [0, i]],
        "sdg": [[1, 0], [0, -i]],
        "t": [[1, 0], [0, complex(math.cos(math.pi / 4), math.sin(math.pi / 4))]],
        "tdg": [[1, 0], [0, complex(math.cos(math.pi / 4), -math.sin(math.pi / 4))]],
        "sx": [[(1 + i) / 2, (1 - i) / 2], [(1 - i) / 2, (1 + i) / 2]],
        "swap": [[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]],
    }
    if name in ("cx", "cy", "cz"):
        u = torch.eye(4, dtype=dtype)
        u[2:, 2:] = torch.tensor(matrices[name[1]], dtype=dtype)
        return u
    return torch.tensor(matrices[name], dtype=dtype)


def _rotation(name: str, theta: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, 2, 2) matrices of rx/ry/rz/p for angles ``theta`` (batch,)."""
    half = theta.to(dtype) / 2
    c, s = torch.cos(half), torch.sin(half)
    zero = torch.zeros_like(c)
    one = torch.ones_like(c)
    if name == "rx":
        rows = [[c, -1j * s], [-1j * s, c]]
    elif name == "ry":
        rows = [[c, -s], [s, c]]
    elif name == "rz":
        rows = [[torch.exp(-1j * half), zero], [zero, torch.exp(1j * half)]]
    elif name == "p":
        rows = [[one, zero], [zero, torch.exp(2j * half)]]
    else:
        raise ValueError(name)
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def _controlled(u: torch.Tensor) -> torch.Tensor:
    """(batch, 4, 4) controlled version of (batch, 2, 2) ``u`` (control = first wire)."""
    out = torch.zeros(u.shape[0], 4, 4, dtype=u.dtype)
    out[:, 0, 0] = 1
    out[:, 1, 1] = 1
    out[:, 2:, 2:] = u
    return out


def _apply(state: torch.Tensor, matrix: torch.Tensor, wires: tuple[int, ...], num_qubits: int) -> torch.Tensor:
    """Apply ``matrix`` ((d, d) or (batch, d, d)) to ``wires`` of ``state`` (batch, 2, ..., 2)."""
    k = len(wires)
    axes = [num_qubits - w for w in wires]
    moved = torch.movedim(state, axes, list(range(num_qubits + 1 - k, num_qubits + 1)))
    shape = moved.shape
    flat = moved.reshape(shape[0], -1, 2**k)
    if matrix.dim() == 2:
        matrix = matrix.expand(shape[0], -1, -1)
    # bmm with a contiguous right operand: torch's broadcasting matmul with a transposed complex matrix takes a
    # path ~50x slower on CPU.
    flat = torch.bmm(flat, matrix.transpose(1, 2).contiguous())
    return torch.movedim(flat.reshape(shape), list(range(num_qubits + 1 - k, num_qubits + 1)), axes)


def _angles(gate: Gate, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    a = gate.angle
    if a.kind == "input":
        return inputs[:, a.index] * a.scale
    if a.kind == "weight":
        return weights[a.index].expand(inputs.shape[0])
    return torch.full((inputs.shape[0],), a.value, dtype=inputs.dtype)


def gate_matrix(gate: Gate, theta: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """The gate's matrix: (d, d) for fixed gates, (batch, d, d) for parameterised ones."""
    name = gate.name
    if theta is None:
        return _fixed(name, dtype)
    if name in ("rx", "ry", "rz", "p"):
        return _rotation(name, theta, dtype)
    if name in ("crx", "cry", "crz", "cp"):
        return _controlled(_rotation(name[1:] if name != "cp" else "p", theta, dtype))
    if name == "rzz":
        half = theta.to(dtype) / 2
        minus, plus = torch.exp(-1j * half), torch.exp(1j * half)
        return torch.diag_embed(torch.stack([minus, plus, plus, minus], dim=-1))
    raise ValueError(f"no matrix for gate {name}")


def simulate_state(spec: CircuitSpec, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Final states (batch, 2, ..., 2) for real ``inputs`` (batch, num_inputs) and ``weights`` (num_weights,)."""
    real = inputs.dtype
    dtype = torch.complex128 if real == torch.float64 else torch.complex64
    n = spec.num_qubits
    batch = inputs.shape[0]
    state = torch.zeros((batch, 2**n), dtype=dtype)
    state[:, 0] = 1
    state = state.reshape(batch, *([2] * n))
    weights = weights.to(real)
    for gate in spec.gates:
        theta = _angles(gate, inputs, weights) if gate.angle is not None else None
        state = _apply(state, gate_matrix(gate, theta, dtype), gate.wires, n)
    return state


def _pauli_expval(state: torch.Tensor, paulis: str, num_qubits: int) -> torch.Tensor:
    other = state
    for wire, letter in enumerate(paulis):
        if letter != "I":
            other = _apply(other, _fixed(letter.lower(), state.dtype), (wire,), num_qubits)
    return (state.conj() * other).reshape(state.shape[0], -1).sum(dim=1).real


def readout(spec: CircuitSpec, state: torch.Tensor) -> torch.Tensor:
    """The spec's readout of final ``state``: (batch, num_outputs) real."""
    n = spec.num_qubits
    if spec.readout.kind == "expval":
        columns = []
        for observable in spec.readout.observables:
            value = sum(coeff * _pauli_expval(state, paulis, n) for coeff, paulis in observable)
            columns.append(value)
        return torch.stack(columns, dim=1)
    probs = (state.conj() * state).real
    wires = spec.readout.wires
    keep = [n - w for w in wires]  # axis of each wire
    drop = [a for a in range(1, n + 1) if a not in keep]
    marginal = probs.sum(dim=drop) if drop else probs
    # remaining axes are in increasing axis order; put wires[-1] first (most significant) ... wires[0] last.
    remaining = sorted(keep)
    order = [remaining.index(keep[j]) + 1 for j in reversed(range(len(wires)))]
    marginal = marginal.permute(0, *order)
    return marginal.reshape(state.shape[0], -1)


def simulate(spec: CircuitSpec, inputs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Readout values (batch, num_outputs) in the dtype of ``inputs`` (use float64 for exact comparisons)."""
    return readout(spec, simulate_state(spec, inputs, weights)).to(inputs.dtype)
