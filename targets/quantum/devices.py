"""The quantum target's devices: offline ``GenericBackendV2`` lattices (line, heavy-hex, all-to-all) and IBM device
snapshots from qiskit-ibm-runtime's fake provider. Names are parsed without qiskit, so options are checked before
anything is imported or written."""

from __future__ import annotations

import warnings

from qdeploy.errors import QDeployError

#: device kinds built offline with ``GenericBackendV2`` (``kind`` or ``kind:size``)
LATTICES = ("line", "heavy-hex", "all-to-all")
#: prefix of IBM device snapshots (``fake_brisbane``, ``fake_torino``, ...)
IBM_PREFIX = "fake_"
#: the device names as ``qdeploy list`` and the ``--device`` help show them
DEVICE_SYNTAX = "line[:N], heavy-hex[:D], all-to-all[:N], fake_<ibm name> (qdeploy[ibm])"


def parse_device(device: str) -> tuple[str, int | None]:
    """``(kind, size)`` of a device name: ``("line", 5)`` for ``line:5``, ``("heavy-hex", None)`` for ``heavy-hex``
    (sized to the widest circuit later); an IBM snapshot is ``(name, None)``. Unknown names are refused."""
    if not isinstance(device, str):
        raise QDeployError(f"quantum device {device!r} must be a name such as line:5 or heavy-hex")
    if device.startswith(IBM_PREFIX):
        return device, None
    kind, _, size = device.partition(":")
    if kind not in LATTICES:
        raise QDeployError(
            f"quantum device {device!r} is unknown; use line[:N], heavy-hex[:D], all-to-all[:N] or an IBM fake backend "
            "(fake_brisbane, ...)"
        )
    if not size:
        return kind, None
    try:
        size_value = int(size)
    except ValueError:
        raise QDeployError(f"quantum device {device!r}: size {size!r} is not an integer (e.g. line:5)") from None
    if kind == "heavy-hex" and (size_value < 3 or size_value % 2 == 0):
        raise QDeployError(f"quantum device {device!r}: heavy-hex distance must be odd and >= 3")
    if size_value < 1:
        raise QDeployError(f"quantum device {device!r}: give at least one qubit")
    return kind, size_value


def heavy_hex_size(distance: int) -> int:
    """Qubits of IBM's heavy-hex lattice of code distance ``distance``."""
    return (5 * distance * distance - 2 * distance - 1) // 2


def make_backend(device: str, width: int, seed: int):
    """An offline backend for ``device``; sizeless devices are made at least ``width`` qubits wide (the caller
    refuses circuits wider than an explicitly sized device, naming the layer)."""
    from qiskit.providers.fake_provider import GenericBackendV2
    from qiskit.transpiler import CouplingMap

    kind, size = parse_device(device)
    if device.startswith(IBM_PREFIX):
        return ibm_fake_backend(device)
    if kind == "line":
        qubits = size or max(width, 2)
        coupling = CouplingMap.from_line(qubits)
    elif kind == "heavy-hex":
        distance = size or 3
        while size is None and heavy_hex_size(distance) < width:
            distance += 2
        coupling = CouplingMap.from_heavy_hex(distance)
        qubits = coupling.size()
    else:  # all-to-all
        qubits = size or max(width, 2)
        coupling = None
    return GenericBackendV2(qubits, coupling_map=coupling, seed=seed)


def ibm_fake_backend(device: str):
    """qiskit-ibm-runtime's snapshot of an IBM device (coupling map, basis gates, calibration; no network)."""
    from qdeploy.deps import require

    require("qiskit_ibm_runtime", "ibm", f"the IBM fake backend {device!r}")
    from qiskit_ibm_runtime import fake_provider

    # FakeBrisbane (or FakeArmonkV2) is "fake_armonk": look the class up by name instead of building all ~70.
    stem = "Fake" + device.removeprefix(IBM_PREFIX).replace("_", " ").title().replace(" ", "")
    for cls in (getattr(fake_provider, stem + "V2", None), getattr(fake_provider, stem, None)):
        if cls is not None:
            backend = cls()
            if backend.name == device and hasattr(backend, "target"):
                return backend
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some snapshots warn that their error rates are not typical
        names = sorted(b.name for b in fake_provider.FakeProviderForBackendV2().backends())
    raise QDeployError(f"quantum device {device!r} is not an IBM fake backend; choose one of {', '.join(names)}")
