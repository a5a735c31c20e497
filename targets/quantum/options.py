"""Settings of the quantum target: ``QuantumOptions`` (a config file's ``[quantum]`` table, ``qdeploy compile``
flags ``--device`` / ``--epsilon``) and ``QuantumRunOptions`` (``qdeploy run --shots``). Unknown keys are refused."""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

from qdeploy.errors import QDeployError
from qdeploy.options import Options, option
from qdeploy.targets.quantum.devices import parse_device


def _require_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    in_range = value >= low and (high is None or value <= high) if isinstance(value, numbers.Integral) else False
    if isinstance(value, bool) or not in_range:
        allowed = f"an integer >= {low}" if high is None else f"an integer from {low} to {high}"
        raise QDeployError(f"quantum option {name}={value!r}; choose {allowed}")


@dataclasses.dataclass(frozen=True)
class QuantumOptions(Options):
    """How hybrid graphs are lowered: the device, the transpiler search, and the shot budget."""

    #: without a size the smallest device fitting the widest circuit is used; ``all-to-all`` has no coupling
    #: constraint; ``fake_<name>`` is an IBM device's offline snapshot from qiskit-ibm-runtime's fake provider
    device: str = option(
        "line",
        "device to transpile for: line[:N], heavy-hex[:D], all-to-all[:N], or an IBM fake backend such as "
        "fake_brisbane (needs qdeploy[ibm])",
        flag="--device",
    )
    #: the fewest two-qubit gates, then the smallest depth, wins
    seeds: int = option(
        8,
        "transpiler seeds tried per circuit with each routing method (SABRE, basic, and lookahead on devices of at most "
        "32 qubits), plus the dense and trivial layouts",
        cli=False,
    )
    optimization_level: int = option(3, "qiskit preset pass manager optimization level (0-3)", cli=False)
    epsilon: float = option(0.01, "precision per expectation value, shots = ceil(1/eps^2)", flag="--epsilon")
    shot_check_inputs: int = option(4, "random inputs on which sampled means are checked against exact values", cli=False)
    #: cli=False: ``--seed`` is the core's (verification inputs)
    seed: int = option(0, "device (GenericBackendV2), check-input and sampling seed", cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_device(self.device)
        _require_int("seeds", self.seeds, 1)
        _require_int("optimization_level", self.optimization_level, 0, 3)
        _require_int("shot_check_inputs", self.shot_check_inputs, 1)
        _require_int("seed", self.seed, 0)
        valid_epsilon = isinstance(self.epsilon, numbers.Real) and not isinstance(self.epsilon, bool)
        if not (valid_epsilon and 0 < self.epsilon < 1):
            raise QDeployError(f"quantum option epsilon={self.epsilon!r} must be in (0, 1)")

    @property
    def shots(self) -> int:
        """The shot budget per measured circuit: ``ceil(1 / epsilon**2)``."""
        return math.ceil(1 / self.epsilon**2)


@dataclasses.dataclass(frozen=True)
class QuantumRunOptions(Options):
    """How a compiled quantum folder is run (``Artifact.predict(x, run_options=...)``, ``qdeploy run``)."""

    shots: int | None = option(None, "sample this many shots instead of exact statevectors", flag="--shots")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.shots is not None:
            if isinstance(self.shots, bool) or not isinstance(self.shots, numbers.Integral) or self.shots < 1:
                raise QDeployError(
                    f"shots={self.shots!r} must be a positive integer (leave it unset for exact statevectors)"
                )
            object.__setattr__(self, "shots", int(self.shots))
