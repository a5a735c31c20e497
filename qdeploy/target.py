"""The target contract and registry. Targets live in ``qdeploy.targets.*`` (or third-party packages) and are
found through the ``qdeploy.targets`` entry-point group, so the core never imports one at module import time.

A target turns a cleaned QONNX graph into an artefact folder and can run that artefact on inputs; the core
checks the artefact against the golden executor on every compile (see ``qdeploy.compiler``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.config import CompileConfig
from qdeploy.errors import QDeployError
from qdeploy.pipeline import RunContext
from qdeploy.registry import TARGETS_GROUP, load_registered, registered


class Target(abc.ABC):
    """A deployment backend. Subclasses set ``name`` and ``extra`` (the pip extra of its dependencies)."""

    name: str = ""
    extra: str = ""
    #: max abs error allowed against the golden executor; 0.0 means bit-exact. Float simulators (the quantum
    #: target's) round differently from the golden executor, so such a target states its bound here instead.
    tolerance: float = 0.0

    @abc.abstractmethod
    def check_available(self) -> None:
        """Raise MissingDependencyError (naming the pip extra / tool) when the target cannot run here."""

    @abc.abstractmethod
    def lower(self, model: ModelWrapper, cfg: CompileConfig, out_dir: Path, ctx: RunContext) -> dict[str, Any]:
        """Write the artefact into ``out_dir``; return target facts for the report (per_layer, board, ...)."""

    @abc.abstractmethod
    def runner(self, out_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
        """A callable that runs the artefact in ``out_dir`` on a batch of inputs (batch first)."""


def available_targets() -> dict[str, Any]:
    """Registered target entry points by name (qdeploy's own and third-party ones)."""
    return registered(TARGETS_GROUP)


def get_target(name: str) -> Target:
    """Instantiate the target registered as ``name``. Import errors of a plugin propagate, never swallowed."""
    target_class = load_registered(TARGETS_GROUP, name, "target")
    target = target_class()
    if not isinstance(target, Target):
        raise QDeployError(f"entry point {name!r} does not provide a qdeploy Target")
    return target
