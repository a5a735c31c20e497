"""Plugin registry: targets and graph passes are entry points, so third-party packages add their own.

Loading errors are raised as one line naming the plugin (a broken plugin must fail loudly, not vanish from a list);
the CLI leaves a broken plugin's flags out so commands that do not select it still work.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

from qdeploy.errors import QDeployError

log = logging.getLogger(__name__)

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


_UNLOADABLE_WARNED: set[tuple[str, str]] = set()


def loadable(group: str, kind: str) -> dict[str, object]:
    """Every entry point of ``group`` that imports, by name. A plugin that fails to import must not take down
    commands that do not use it (``qdeploy quantize``, a sweep over other targets, with a broken third-party target
    installed): it is left out with one warning per process, and selecting it (``load_registered``) raises its
    import error in full."""
    loaded: dict[str, object] = {}
    for name in sorted(registered(group)):
        try:
            loaded[name] = load_registered(group, name, kind)
        except QDeployError as error:
            if (group, name) not in _UNLOADABLE_WARNED:
                _UNLOADABLE_WARNED.add((group, name))
                log.warning("%s (left out until it imports)", error)
    return loaded


def get_pass(name: str) -> type:
    """The graph pass class registered as ``name`` (a qonnx Transformation subclass)."""
    from qonnx.transformation.base import Transformation

    cls = load_registered(PASSES_GROUP, name, "pass")
    if not (isinstance(cls, type) and issubclass(cls, Transformation)):
        raise QDeployError(f"pass entry point {name!r} is not a qonnx Transformation")
    return cls
