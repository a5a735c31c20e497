"""Plugin registry: targets and graph passes are entry points, so third-party packages add their own.

Loading errors propagate (a broken plugin must fail loudly, not vanish from a list).
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from qdeploy.errors import QDeployError

TARGETS_GROUP = "qdeploy.targets"
PASSES_GROUP = "qdeploy.passes"


def registered(group: str) -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=group)}


def load_registered(group: str, name: str, kind: str) -> object:
    """Load entry point ``name`` of ``group``; an unknown name lists the known ones."""
    known = registered(group)
    if name not in known:
        names = ", ".join(sorted(known)) or "none (is qdeploy installed with pip?)"
        raise QDeployError(f"unknown {kind} {name!r}; available: {names}")
    return known[name].load()


def get_pass(name: str) -> type:
    """The graph pass class registered as ``name`` (a qonnx Transformation subclass)."""
    from qonnx.transformation.base import Transformation

    cls = load_registered(PASSES_GROUP, name, "pass")
    if not (isinstance(cls, type) and issubclass(cls, Transformation)):
        raise QDeployError(f"pass entry point {name!r} is not a qonnx Transformation")
    return cls
