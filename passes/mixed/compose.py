"""The mixed-precision composer behind ``qdeploy.mixed``: layer sensitivities (Hessian traces and the exported
quantizer's weight error per candidate width), the exact allocation under a budget, and the mixed-precision PTQ.

``measure_sensitivity`` is separate from ``mixed`` so that one measurement serves many budgets
(``benchmarks/mixed.py``); the budget is given as average weight bits: what uniform weights of that width cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from qdeploy.config import QuantizeConfig
from qdeploy.data import check_array
from qdeploy.errors import QDeployError
from qdeploy.passes.mixed.hawq import (
    Allocation,
    allocate_bits,
    check_budget,
    cost_per_bit,
    hessian_traces,
    layer_macs,
    measured_perturbations,
    quantizable_budget,
)
from qdeploy.passes.ptq.compose import quantize

#: the weight bit widths an allocation chooses from unless told otherwise
CANDIDATES = (2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class Sensitivity:
    """What an allocation is made from: per quantizable layer its MACs, mean Hessian trace and ``||Q_b(W) - W||^2``
    for every candidate width ``b`` (measured with activations at ``act_bits``)."""

    model: nn.Module = field(repr=False)
    macs: dict[str, int]
    traces: dict[str, float]
    perturbations: dict[str, dict[int, float]]
    candidates: tuple[int, ...]
    act_bits: int

    def budget(self, average_bits: float, objective: str = "bops") -> float:
        """What uniform ``average_bits``-bit weights cost (BOPs or bits of weight memory)."""
        return quantizable_budget(self.model, self.macs, average_bits, self.act_bits, objective)

    def allocate(self, average_bits: float, objective: str = "bops") -> Allocation:
        """The bit widths minimizing the total sensitivity at the cost of uniform ``average_bits``-bit weights."""
        return allocate_bits(
            self.traces,
            self.model,
            self.macs,
            self.budget(average_bits, objective),
            self.candidates,
            act_bits=self.act_bits,
            objective=objective,
            perturbations=self.perturbations,
        )


def measure_sensitivity(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    candidates: tuple[int, ...] = CANDIDATES,
    probes: int = 32,
    act_bits: int = 8,
    calib: np.ndarray | None = None,
    seed: int = 0,
) -> Sensitivity:
    """Hutchinson traces (``probes`` Rademacher probes, ``seed``) of the cross-entropy loss on (x, y), and the weight
    error of every candidate width with the quantizer ``qdeploy.quantize`` builds, calibrated on ``calib`` (default
    ``x``)."""
    x, y = _labelled(x, y)
    inputs = torch.from_numpy(x)
    traces = hessian_traces(model, inputs, torch.from_numpy(y), probes=probes, seed=seed)
    # ||Q_b(W) - W||^2 with the quantizer the exported model uses (mixed() quantizes with the same options)
    perturbations = measured_perturbations(model, x if calib is None else calib, candidates, act_bits=act_bits)
    return Sensitivity(model, layer_macs(model, inputs[:1]), traces, perturbations, tuple(candidates), act_bits)


def mixed(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    average_bits: float,
    objective: str = "bops",
    candidates: tuple[int, ...] = CANDIDATES,
    probes: int = 32,
    samples: int = 512,
    act_bits: int = 8,
    seed: int = 0,
) -> tuple[nn.Module, Allocation]:
    """Hessian-aware mixed-precision PTQ: per-layer weight widths from ``candidates`` that minimize HAWQ-V3's
    sensitivity within the cost of uniform ``average_bits``-bit weights (``objective`` 'bops': MACs x weight bits x
    ``act_bits``; 'memory': bits of weight storage), then ``qdeploy.quantize`` with those widths. The first
    ``samples`` rows of (x, y) give the traces and the calibration. Returns the quantized module and the
    ``Allocation`` (bits per layer, cost, budget). A budget below the narrowest candidate everywhere is refused
    before any costly step."""
    candidates = tuple(sorted(candidates))
    if not candidates or any(not isinstance(b, int) or not 2 <= b <= 8 for b in candidates):
        raise QDeployError(f"candidates {candidates} must be bit widths from 2 to 8")
    if samples < 1:
        raise QDeployError(f"samples={samples} must be >= 1")
    x, y = _labelled(x, y)
    x, y = x[:samples], y[:samples]
    macs = layer_macs(model, torch.from_numpy(x[:1]))
    budget = quantizable_budget(model, macs, average_bits, act_bits, objective)
    # refuse an impossible budget before the costly steps (Hessian traces, one quantization per candidate width)
    check_budget(cost_per_bit(model, macs, act_bits, objective), budget, candidates, objective)
    sensitivity = measure_sensitivity(model, x, y, candidates, probes=probes, act_bits=act_bits, seed=seed)
    allocation = sensitivity.allocate(average_bits, objective)
    config = QuantizeConfig(weight_bits=max(allocation.bits.values()), act_bits=act_bits, layer_weight_bits=allocation.bits)
    return quantize(model, x, config), allocation


def _labelled(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = check_array(x, None, "training data")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise QDeployError(f"training data: {len(x)} inputs but labels of shape {y.shape}; give one label per input")
    return x, y.astype(np.int64)
