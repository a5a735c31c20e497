"""Steps, presets and the run context.

A step is a plain function ``step(model, options) -> model`` with a docstring; a preset is a plain list of steps.
Timing, intermediate-model dumps and other cross-cutting work are *instruments* on the RunContext (as TVM's
pass instruments), so ``run_steps`` has no special cases. A failing step is re-raised naming the step.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import QDeployError, one_line

log = logging.getLogger(__name__)

Step = Callable[[ModelWrapper, Any], ModelWrapper]


class Instrument:
    """Hooks around each step. Override what you need."""

    def before_step(self, name: str, model: ModelWrapper) -> None:  # noqa: B027 - optional hook
        pass

    def after_step(self, name: str, model: ModelWrapper | None, seconds: float) -> None:  # noqa: B027 - optional hook
        """``model`` is None for work that produces no model (``RunContext.timed``)."""


class Timing(Instrument):
    """Records wall time per step (written to report.json as ``time_per_step``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def after_step(self, name: str, model: ModelWrapper | None, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        log.debug("step %-28s %.2f s", name, seconds)


class DumpModels(Instrument):
    """Saves the model after each step as ``NN_<step>.onnx`` (open them in Netron)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.count = 0

    def after_step(self, name: str, model: ModelWrapper | None, seconds: float) -> None:
        if model is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        model.save(str(self.folder / f"{self.count:02d}_{name}.onnx"))
        self.count += 1


@dataclass
class RunContext:
    """What a run carries besides the model: instruments, the graph as the user gave it (``source``, the
    specification every artefact is verified against), and facts steps record for the report."""

    instruments: list[Instrument] = field(default_factory=list)
    source: ModelWrapper | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    #: {node name after cleanup: its name in the user's file}, set by ``run_steps``: a refusal from a later timed
    #: step (a target's emit checks the prepared graph) names the node as the user's file does, too
    file_names: dict[str, str] = field(default_factory=dict)

    def instrument(self, kind: type[Instrument]) -> Instrument | None:
        return next((i for i in self.instruments if isinstance(i, kind)), None)

    def timed(self, name: str, work: Callable[[], Any]) -> Any:
        """Run ``work`` as a named step without a model (e.g. C compilation), timed like the others. As in
        ``run_steps``, any failure inside becomes that step's one-line QDeployError carrying the library's message."""
        from qdeploy.ir import with_file_names

        start = time.perf_counter()
        try:
            return work()
        except QDeployError as exc:
            raise type(exc)(with_file_names(f"[{name}] {exc}", self.file_names)) from exc
        except Exception as exc:  # ORT, qonnx, a C compiler: their errors are the step's refusal, never "unexpected"
            message = f"[{name}] failed: {type(exc).__name__}: {one_line(exc)}"
            raise QDeployError(with_file_names(message, self.file_names)) from exc
        finally:
            elapsed = time.perf_counter() - start
            for instrument in self.instruments:
                instrument.after_step(name, None, elapsed)


def step_name(step: Step) -> str:
    return getattr(step, "__name__", type(step).__name__)


def _derivable_names(model: ModelWrapper) -> dict[str, str]:
    """The graph's node names that keep the file's name, each mapped to itself, so a node a pass derives from one
    (``MatMul_28_scale``) is still named after the file's node; only names with a digit or a slash (``Quant_0``,
    ``/1/Conv``): a plain word (a node called ``input``) would turn ``input_quant`` in a message into a derivation."""
    return {node.name: node.name for node in model.graph.node if node.name and re.search(r"[\d/]", node.name)}


def run_steps(model: ModelWrapper, options: Any, steps: Sequence[Step], ctx: RunContext) -> ModelWrapper:
    """Apply ``steps`` in order; errors are re-raised as QDeployError naming the step that failed, and the nodes as
    the user's file names them (cleanup may have renumbered a foreign naming scheme)."""
    from qdeploy.ir import file_node_names, with_file_names

    file_names = {**_derivable_names(model), **file_node_names(model)}
    ctx.file_names = file_names
    for step in steps:
        name = step_name(step)
        for instrument in ctx.instruments:
            instrument.before_step(name, model)
        start = time.perf_counter()
        try:
            model = step(model, options)
        except QDeployError as exc:
            raise type(exc)(with_file_names(f"[{name}] {exc}", file_names)) from exc
        except Exception as exc:
            message = f"[{name}] failed: {type(exc).__name__}: {one_line(exc)}"
            raise QDeployError(with_file_names(message, file_names)) from exc
        elapsed = time.perf_counter() - start
        for instrument in ctx.instruments:
            instrument.after_step(name, model, elapsed)
    return model


def until_fixed_point(
    transform: Callable[[ModelWrapper], tuple[ModelWrapper, bool]], model: ModelWrapper, max_iterations: int = 50
) -> ModelWrapper:
    """Repeat a pass ``apply(model) -> (model, changed)`` until unchanged, at most ``max_iterations`` times."""
    for _ in range(max_iterations):
        model, changed = transform(model)
        if not changed:
            return model
    raise QDeployError(f"{step_name(transform)} did not converge in {max_iterations} iterations")
