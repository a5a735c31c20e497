"""Hessian-aware mixed precision (HAWQ-style, a torch-module stage): layer sensitivities from Hessian traces, exact
bit allocation (``hawq.py``), and the composer behind ``qdeploy.mixed`` (``compose.py``)."""

from qdeploy.passes.mixed.compose import CANDIDATES, Sensitivity, measure_sensitivity, mixed
from qdeploy.passes.mixed.hawq import (
    Allocation,
    allocate_bits,
    check_budget,
    cost_per_bit,
    hessian_traces,
    layer_macs,
    measured_perturbations,
    quantizable_budget,
    weight_perturbation,
)

__all__ = [
    "CANDIDATES",
    "Allocation",
    "Sensitivity",
    "allocate_bits",
    "check_budget",
    "cost_per_bit",
    "hessian_traces",
    "layer_macs",
    "measure_sensitivity",
    "measured_perturbations",
    "mixed",
    "quantizable_budget",
    "weight_perturbation",
]
