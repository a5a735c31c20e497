"""Circuit templates, assembled with a ``CircuitBuilder`` that hands out input and weight indices.

    b = CircuitBuilder(4, name="iris")
    b.angle_embedding(range(4))
    b.strongly_entangling_layers(layers=2)
    spec = b.expval(["ZIII", "IZII", "IIZI"])

The templates follow the usual definitions (PennyLane's ``AngleEmbedding``, ``BasicEntanglerLayers``,
``StronglyEntanglingLayers``; Perez-Salinas et al.'s data re-uploading; Cong et al.'s QCNN blocks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from qdeploy.custom_op.quantum.spec import Angle, CircuitSpec, CircuitSpecError, Gate, Readout, parse_observable


class CircuitBuilder:
    """Collects gates; ``weight()`` allocates the next trainable angle, inputs are referenced by index."""

    def __init__(self, num_qubits: int, name: str = "quantum") -> None:
        self.num_qubits = int(num_qubits)
        self.name = name
        self.gates: list[Gate] = []
        self.num_weights = 0
        self.num_inputs = 0

    # -- primitives ---------------------------------------------------------------------------------------
    def weight(self) -> Angle:
        self.num_weights += 1
        return Angle("weight", index=self.num_weights - 1)

    def input(self, index: int, scale: float = 1.0) -> Angle:
        self.num_inputs = max(self.num_inputs, int(index) + 1)
        return Angle("input", index=int(index), scale=float(scale))

    def gate(self, name: str, *wires: int, angle: Angle | float | None = None) -> CircuitBuilder:
        if isinstance(angle, (int, float)):
            angle = Angle("const", value=float(angle))
        self.gates.append(Gate(name, tuple(int(w) for w in wires), angle))
        return self

    def _wires(self, wires: Iterable[int] | None) -> list[int]:
        return list(range(self.num_qubits)) if wires is None else [int(w) for w in wires]

    # -- templates ----------------------------------------------------------------------------------------
    def angle_embedding(
        self, inputs: Iterable[int], rotation: str = "Y", wires: Iterable[int] | None = None, scale: float = 1.0
    ) -> CircuitBuilder:
        """One rotation per wire by one input feature each: input ``inputs[i]`` on ``wires[i]``."""
        inputs, wires = list(inputs), self._wires(wires)
        if len(inputs) > len(wires):
            raise CircuitSpecError(f"quantum layer {self.name!r}: {len(inputs)} features for {len(wires)} wires")
        for feature, wire in zip(inputs, wires, strict=False):
            self.gate(f"r{rotation.lower()}", wire, angle=self.input(feature, scale))
        return self

    def hadamard_transform(self, wires: Iterable[int] | None = None) -> CircuitBuilder:
        """H on every wire: the Walsh-Hadamard transform of the amplitudes (a quantum 'convolution' layer)."""
        for wire in self._wires(wires):
            self.gate("h", wire)
        return self

    def _ring(self, wires: list[int]) -> None:
        if len(wires) == 2:
            self.gate("cx", wires[0], wires[1])
        elif len(wires) > 2:
            for i, wire in enumerate(wires):
                self.gate("cx", wire, wires[(i + 1) % len(wires)])

    def basic_entangler_layers(self, layers: int, rotation: str = "X", wires: Iterable[int] | None = None) -> CircuitBuilder:
        """Per layer: one trainable rotation per wire, then a ring of CNOTs."""
        wires = self._wires(wires)
        for _ in range(layers):
            for wire in wires:
                self.gate(f"r{rotation.lower()}", wire, angle=self.weight())
            self._ring(wires)
        return self

    def rot(self, wire: int) -> CircuitBuilder:
        """General single-qubit rotation RZ(omega) RY(theta) RZ(phi) with three trainable angles."""
        return (
            self.gate("rz", wire, angle=self.weight())
            .gate("ry", wire, angle=self.weight())
            .gate("rz", wire, angle=self.weight())
        )

    def strongly_entangling_layers(self, layers: int, wires: Iterable[int] | None = None) -> CircuitBuilder:
        """Per layer ``l``: a general rotation per wire, then CNOTs ``i -> i + r`` with range ``r = l mod (n-1) + 1``."""
        wires = self._wires(wires)
        n = len(wires)
        for layer in range(layers):
            for wire in wires:
                self.rot(wire)
            if n > 1:
                r = layer % (n - 1) + 1
                for i in range(n):
                    self.gate("cx", wires[i], wires[(i + r) % n])
        return self

    def data_reuploading(
        self, inputs: Sequence[int], layers: int, wires: Iterable[int] | None = None, scale: float = 1.0
    ) -> CircuitBuilder:
        """Per layer: embed the features again (RY, feature ``i`` on wire ``i mod n``), a general trainable rotation
        per wire, then a CNOT ring (Perez-Salinas et al., 'Data re-uploading for a universal quantum classifier')."""
        wires = self._wires(wires)
        for _ in range(layers):
            for i, feature in enumerate(inputs):
                self.gate("ry", wires[i % len(wires)], angle=self.input(feature, scale))
            for wire in wires:
                self.rot(wire)
            self._ring(wires)
        return self

    def qcnn_conv(self, wires: Iterable[int] | None = None) -> CircuitBuilder:
        """QCNN convolution: a trainable two-qubit block (RY RY, CX, RY RY, CX) on neighbouring pairs (even, then odd)."""
        wires = self._wires(wires)
        pairs = [(wires[i], wires[i + 1]) for i in range(0, len(wires) - 1, 2)]
        pairs += [(wires[i], wires[i + 1]) for i in range(1, len(wires) - 1, 2)]
        for a, b in pairs:
            self.gate("ry", a, angle=self.weight()).gate("ry", b, angle=self.weight()).gate("cx", a, b)
            self.gate("ry", a, angle=self.weight()).gate("ry", b, angle=self.weight()).gate("cx", b, a)
        return self

    def qcnn_pool(self, sources: Iterable[int], sinks: Iterable[int]) -> CircuitBuilder:
        """QCNN pooling: each source qubit steers its sink with controlled rotations (CRZ, X, CRX); the sources are
        then ignored by the readout, halving the width."""
        for source, sink in zip(sources, sinks, strict=True):
            self.gate("crz", source, sink, angle=self.weight()).gate("x", source).gate(
                "crx", source, sink, angle=self.weight()
            )
        return self

    # -- readout ------------------------------------------------------------------------------------------
    def _build(self, readout: Readout) -> CircuitSpec:
        spec = CircuitSpec(self.num_qubits, tuple(self.gates), readout, self.num_inputs, self.num_weights, self.name)
        spec.validate()
        return spec

    def expval(self, observables: Sequence) -> CircuitSpec:
        """Finish with Pauli expectation values (strings like ``"ZIII"`` or lists of ``(coeff, "ZZII")`` terms)."""
        where = f"quantum layer {self.name!r}"
        obs = tuple(parse_observable(o, self.num_qubits, f"{where} observable {k}") for k, o in enumerate(observables))
        return self._build(Readout("expval", observables=obs))

    def expval_z(self, wires: Iterable[int] | None = None) -> CircuitSpec:
        """Finish with <Z> on each of ``wires``."""
        return self.expval([pauli_on("Z", w, self.num_qubits) for w in self._wires(wires)])

    def probs(self, wires: Iterable[int] | None = None) -> CircuitSpec:
        return self._build(Readout("probs", wires=tuple(self._wires(wires))))


def pauli_on(letter: str, wire: int, num_qubits: int) -> str:
    """The Pauli string with ``letter`` on ``wire`` and identities elsewhere."""
    return "".join(letter if w == wire else "I" for w in range(num_qubits))
