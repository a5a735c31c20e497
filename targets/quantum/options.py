"""Settings of the quantum target (``CompileConfig.quantum``; unknown keys are refused) and the offline devices."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

from qdeploy.errors import QDeployError

#: devices at most this wide get a full operator-equivalence check of every transpiled circuit
OPERATOR_CHECK_MAX_QUBITS = 10


@dataclasses.dataclass(frozen=True)
class QuantumOptions:
    #: ``line`` / ``line:N`` (a chain), ``heavy-hex`` / ``heavy-hex:D`` (IBM's lattice, odd code distance D); without
    #: a size the smallest device fitting the widest circuit is used. ``all-to-all`` has no coupling constraint.
    #: ``fake_<name>`` (e.g. ``fake_brisbane``, ``fake_torino``): an IBM device's snapshot from qiskit-ibm-runtime's
    #: fake provider (offline; ``pip install 'qdeploy[ibm]'``).
    device: str = "line"
    #: transpiler seeds tried per circuit (plus the dense and trivial layouts); the fewest two-qubit gates, then the
    #: smallest depth, wins
    seeds: int = 8
    optimization_level: int = 3
    epsilon: float = 0.01  #: target precision of each expectation value: shots = ceil(1 / epsilon**2)
    shot_check_inputs: int = 4  #: random inputs on which sampled means are checked against exact values
    seed: int = 0  #: device (GenericBackendV2) and sampling seed

    def __post_init__(self) -> None:
        if self.seeds < 1:
            raise QDeployError(f"quantum option seeds={self.seeds} must be >= 1")
        if self.optimization_level not in (0, 1, 2, 3):
            raise QDeployError(f"quantum option optimization_level={self.optimization_level}; choose 0, 1, 2 or 3")
        if not 0 < self.epsilon < 1:
            raise QDeployError(f"quantum option epsilon={self.epsilon} must be in (0, 1)")

    @property
    def shots(self) -> int:
        return math.ceil(1 / self.epsilon**2)


def options_from(mapping: Any) -> QuantumOptions:
    from qdeploy.config import from_mapping

    return from_mapping(QuantumOptions, dict(mapping or {}), "quantum options")


def heavy_hex_size(distance: int) -> int:
    return (5 * distance * distance - 2 * distance - 1) // 2


def make_backend(device: str, width: int, seed: int):
    """An offline ``GenericBackendV2`` for ``device``; sizeless devices are made at least ``width`` qubits wide (the
    caller refuses circuits wider than an explicitly sized device, naming the layer)."""
    from qiskit.providers.fake_provider import GenericBackendV2
    from qiskit.transpiler import CouplingMap

    if device.startswith("fake_"):
        return ibm_fake_backend(device)
    kind, _, size = device.partition(":")
    try:
        size_value = int(size) if size else None
    except ValueError:
        raise QDeployError(f"quantum device {device!r}: size {size!r} is not an integer (e.g. line:5)") from None
    if kind == "line":
        qubits = size_value or max(width, 2)
        coupling = CouplingMap.from_line(qubits)
    elif kind == "heavy-hex":
        distance = size_value or 3
        if distance < 3 or distance % 2 == 0:
            raise QDeployError(f"quantum device {device!r}: heavy-hex distance must be odd and >= 3")
        while size_value is None and heavy_hex_size(distance) < width:
            distance += 2
        coupling = CouplingMap.from_heavy_hex(distance)
        qubits = coupling.size()
    elif kind == "all-to-all":
        qubits = size_value or max(width, 2)
        coupling = None
    else:
        raise QDeployError(
            f"quantum device {device!r} is unknown; use line[:N], heavy-hex[:D], all-to-all[:N] or an IBM fake backend "
            "(fake_brisbane, ...)"
        )
    return GenericBackendV2(qubits, coupling_map=coupling, seed=seed)


def ibm_fake_backend(device: str):
    """qiskit-ibm-runtime's snapshot of an IBM device (coupling map, basis gates, calibration; no network)."""
    from qdeploy.deps import require

    require("qiskit_ibm_runtime", "ibm", f"the IBM fake backend {device!r}")
    from qiskit_ibm_runtime import fake_provider

    # FakeBrisbane (or FakeArmonkV2) is "fake_armonk": look the class up by name instead of building all ~70.
    stem = "Fake" + device.removeprefix("fake_").replace("_", " ").title().replace(" ", "")
    for cls in (getattr(fake_provider, stem + "V2", None), getattr(fake_provider, stem, None)):
        if cls is not None:
            backend = cls()
            if backend.name == device and hasattr(backend, "target"):
                return backend
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some snapshots warn that their error rates are not typical
        names = sorted(b.name for b in fake_provider.FakeProviderForBackendV2().backends())
    raise QDeployError(f"quantum device {device!r} is not an IBM fake backend; choose one of {', '.join(names)}")
