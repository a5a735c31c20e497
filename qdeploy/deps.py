"""Optional dependencies: imported where needed, with one clear message naming the pip extra when missing."""

from __future__ import annotations

import importlib
import shutil
from types import ModuleType

from qdeploy.errors import MissingDependencyError


def require(module: str, extra: str, what: str | None = None) -> ModuleType:
    """Import ``module`` or raise a MissingDependencyError naming ``pip install 'qdeploy[extra]'``."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only a missing top-level package is "not installed"; a broken install must surface as itself.
        if exc.name is None or not module.startswith(exc.name.split(".")[0]):
            raise
        purpose = f" for {what}" if what else ""
        raise MissingDependencyError(f"{module} is not installed{purpose}; run: pip install 'qdeploy[{extra}]'") from exc


def require_executable(name: str, what: str, hint: str) -> str:
    """Return the path of executable ``name`` or raise naming how to install it."""
    path = shutil.which(name)
    if path is None:
        raise MissingDependencyError(f"{name} not found on PATH, needed for {what}; {hint}")
    return path
