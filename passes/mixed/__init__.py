"""Hessian-aware mixed precision (HAWQ-style): layer sensitivities from Hessian traces, exact bit allocation."""

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
    "Allocation",
    "allocate_bits",
    "check_budget",
    "cost_per_bit",
    "hessian_traces",
    "layer_macs",
    "measured_perturbations",
    "quantizable_budget",
    "weight_perturbation",
]
