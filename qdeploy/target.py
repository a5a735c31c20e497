"""The target contract and registry. Targets live in ``qdeploy.targets.*`` (or third-party packages) and are
found through the ``qdeploy.targets`` entry-point group, so the core never imports one at module import time and
never knows one by name.

A target declares:
- ``Options``: a frozen dataclass (``qdeploy.options``) of its settings. Unknown keys are refused; fields declared
  with ``option(..., cli=True)`` become ``qdeploy compile`` flags, and a config file's ``[<target name>]`` table
  fills it.
- ``RunOptions`` (optional): settings of running a compiled folder (``qdeploy run`` flags), e.g. shots.
- ``steps(options)``: named preparation steps ``step(model, options) -> model``; the compiler runs them under the
  run context's instruments (timing, ``ir/`` dumps, errors naming the step).
- ``emit(model, options, out_dir, ctx)``: write the artefact from the prepared model; returns facts for the report.
- ``runner(out_dir, run_options)``: a callable running the artefact; the compiler checks it against the golden
  executor on every compile (see ``qdeploy.compiler``).
- ``exact_sums`` (class attribute, default False): the artefact computes every dot product as an exact integer
  accumulator (fixed point), never the graph's float32 sums. The compiler then refuses, before anything is written,
  a graph whose quantizer levels depend on the float32 summation order (``qdeploy.order_dependence``): no exact
  accumulator reproduces them. Targets running the graph's own float kernels keep the default.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import QDeployError
from qdeploy.options import Options, from_mapping
from qdeploy.pipeline import RunContext, Step
from qdeploy.registry import TARGETS_GROUP, load_registered, registered


@dataclasses.dataclass(frozen=True)
class NoOptions(Options):
    """A target or run without settings."""


class Target(abc.ABC):
    """A deployment backend. Subclasses set ``name``, ``extra`` (the pip extra of its dependencies) and ``Options``."""

    name: ClassVar[str] = ""
    extra: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    RunOptions: ClassVar[type] = NoOptions
    #: every sum is an exact integer accumulator (see the module docstring): order-dependent graphs are refused
    exact_sums: ClassVar[bool] = False

    def options(self, mapping: Mapping[str, Any] | None = None) -> Any:
        """This target's validated options from a mapping (a config table, keyword arguments)."""
        return from_mapping(self.Options, mapping, f"[{self.name}] options")

    def run_options(self, mapping: Mapping[str, Any] | None = None) -> Any:
        return from_mapping(self.RunOptions, mapping, f"[{self.name}] run options")

    def describe(self) -> list[str]:
        """Lines ``qdeploy list`` prints under the target's name (presets, devices, ...)."""
        return []

    @abc.abstractmethod
    def check_available(self) -> None:
        """Raise MissingDependencyError (naming the pip extra / tool) when the target cannot run here."""

    @abc.abstractmethod
    def steps(self, options: Any) -> Sequence[Step]:
        """The preparation steps, in order: plain functions ``step(model, options) -> model`` with a docstring."""

    @abc.abstractmethod
    def emit(self, model: ModelWrapper, options: Any, out_dir: Path, ctx: RunContext) -> dict[str, Any]:
        """Write the artefact for the prepared ``model`` into ``out_dir``; return target facts for the report
        (per_layer, board, ...). ``ctx.source`` is the graph as the user gave it (the specification)."""

    @abc.abstractmethod
    def runner(self, out_dir: Path, run_options: Any = None) -> Callable[[np.ndarray], np.ndarray]:
        """A callable that runs the artefact in ``out_dir`` on a batch of inputs (batch first)."""


def available_targets() -> dict[str, Any]:
    """Registered target entry points by name (qdeploy's own and third-party ones)."""
    return registered(TARGETS_GROUP)


def get_target(name: str) -> Target:
    """Instantiate the target registered as ``name``. Import errors of a plugin propagate, never swallowed."""
    target_class = load_registered(TARGETS_GROUP, name, "target")
    if not (isinstance(target_class, type) and issubclass(target_class, Target)):
        raise QDeployError(f"entry point {name!r} does not provide a qdeploy Target")
    return target_class()
