"""Plugin registry: targets and graph passes are entry points, so third-party packages add their own.

Loading errors are raised as one line naming the plugin (a broken plugin must fail loudly, not vanish from a list);
the CLI leaves a broken plugin's flags out so commands that do not select it still work.
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
    try:
        return known[name].load()
    except Exception as error:
        # One line naming the plugin and its entry point; the cause stays chained for -v / the API.
        raise QDeployError(
            f"{kind} {name!r} (entry point {known[name].value}) failed to import: {type(error).__name__}: {error}; "
            f"fix or reinstall the package that provides it"
        ) from error


def get_pass(name: str) -> type:
    """The graph pass class registered as ``name`` (a qonnx Transformation subclass)."""
    from qonnx.transformation.base import Transformation

    cls = load_registered(PASSES_GROUP, name, "pass")
    if not (isinstance(cls, type) and issubclass(cls, Transformation)):
        raise QDeployError(f"pass entry point {name!r} is not a qonnx Transformation")
    return cls
