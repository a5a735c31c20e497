"""HAWQ-style mixed precision (Dong et al., HAWQ-V2/V3; the codesign seed's HAWQ -> QONNX -> hls4ml flow).

Sensitivity of layer l at b bits (HAWQ-V3): ``Omega_l(b) = trace(H_l) / n_l x ||Q_b(W_l) - W_l||^2``, with the
trace estimated by Hutchinson's method (Rademacher probes, Hessian-vector products by double backprop) and
``Q_b`` the quantizer the exported model really uses (``measured_perturbations``: brevitas's weight quantizer as
``qdeploy.quantize`` configures it -- scale rule, power-of-two rounding, per-channel, narrow range -- read back
from the quantized layers). The allocation minimizes the total sensitivity subject to a bit-operation (or
weight-memory) budget, solved exactly as a 0/1 integer program with scipy's ``milp`` (HiGHS).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from qdeploy.config import BudgetObjective, QuantizeConfig, from_mapping
from qdeploy.errors import QDeployError
from qdeploy.passes.ptq.compose import quantize

QUANTIZABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    layers = {name: m for name, m in model.named_modules() if isinstance(m, QUANTIZABLE)}
    if not layers:
        raise QDeployError("the model has no Linear or Conv layer to allocate bit widths to")
    return layers


def hessian_traces(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, probes: int = 32, seed: int = 0, loss_fn=nn.functional.cross_entropy
) -> dict[str, float]:
    """Mean Hessian trace (trace / number of weights) of the loss w.r.t. each layer's weight, by Hutchinson."""
    layers = quantizable_layers(model)
    weights = [layer.weight for layer in layers.values()]
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, weights, create_graph=True)
    totals = np.zeros(len(weights))
    for _ in range(probes):
        vs = [torch.randint(0, 2, w.shape, generator=generator).to(w.dtype) * 2 - 1 for w in weights]
        hvs = torch.autograd.grad(grads, weights, grad_outputs=vs, retain_graph=True)
        totals += [float((hv * v).sum()) for hv, v in zip(hvs, vs, strict=True)]
    return {name: totals[i] / probes / w.numel() for i, (name, w) in enumerate(zip(layers, weights, strict=True))}


def weight_perturbation(weight: torch.Tensor, bits: int) -> float:
    """||Q_b(W) - W||^2 for a textbook symmetric per-output-channel quantizer with power-of-two scales (absmax over
    2^(b-1) - 1, rounded up to a power of two). Only an approximation of what brevitas does: the allocation uses
    ``measured_perturbations`` when it is given them."""
    w = weight.detach().reshape(weight.shape[0], -1).double()
    levels = 2 ** (bits - 1) - 1
    absmax = w.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    scale = torch.exp2(torch.ceil(torch.log2(absmax / levels)))
    quantized = torch.clamp(torch.round(w / scale), -levels, levels) * scale
    return float(((quantized - w) ** 2).sum())


def measured_perturbations(
    model: nn.Module, calib: np.ndarray, candidates: tuple[int, ...], **quantize_options
) -> dict[str, dict[int, float]]:
    """||Q_b(W_l) - W_l||^2 for every quantizable layer l and candidate b, measured on the model ``qdeploy.quantize``
    builds with ``weight_bits=b`` and ``quantize_options`` (the same options must be used for the export).

    The reference W_l is the quantized layer's float weight (after BatchNorm folding / equalization, when the
    options ask for it): that is the weight the quantizer rounds.
    """
    layers = quantizable_layers(model)
    options = {k: v for k, v in quantize_options.items() if k not in ("weight_bits", "layer_weight_bits")}
    result: dict[str, dict[int, float]] = {name: {} for name in layers}
    for bits in candidates:
        config = from_mapping(QuantizeConfig, {**options, "weight_bits": bits}, "measured_perturbations()")
        qmodel = quantize(model, calib, config)
        found = set()
        with torch.no_grad():
            for name, module in qmodel.named_modules():
                if name in layers and hasattr(module, "quant_weight"):
                    quantized = module.quant_weight().value
                    result[name][bits] = float(((quantized.double() - module.weight.double()) ** 2).sum())
                    found.add(name)
        if found != set(layers):
            raise QDeployError(
                f"the quantized model has no quantized layer for {sorted(set(layers) - found)}; "
                "measured perturbations need the float model's layer names (no layer renaming)"
            )
    return result


@dataclass(frozen=True)
class Allocation:
    """The chosen bit width per layer, with what the choice was made from."""

    bits: dict[str, int]
    cost: float
    budget: float
    sensitivity: float
    table: dict[str, dict[int, dict[str, float]]] = field(repr=False)


def allocate_bits(
    traces: dict[str, float],
    model: nn.Module,
    macs: dict[str, int],
    budget: float,
    candidates: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8),
    act_bits: int = 8,
    objective: str = "bops",
    perturbations: dict[str, dict[int, float]] | None = None,
) -> Allocation:
    """Exact bit allocation: minimize sum of Omega_l(b) s.t. sum cost_l(b) <= budget (0/1 integer program).

    ``objective`` 'bops': cost = MACs x weight bits x ``act_bits``; 'memory': cost = weights x bits (bits of storage).
    ``perturbations``: ||Q_b(W_l) - W_l||^2 per layer and bit width from ``measured_perturbations`` (the exported
    model's quantizer); without it, ``weight_perturbation``'s textbook quantizer stands in.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    layers = quantizable_layers(model)
    if set(traces) != set(layers):
        raise QDeployError(f"sensitivities given for {sorted(traces)} but the model's layers are {sorted(layers)}")
    per_bit = cost_per_bit(model, macs, act_bits, objective)
    check_budget(per_bit, budget, candidates, objective)
    names = list(layers)
    if perturbations is not None:
        missing = [(n, b) for n in names for b in candidates if b not in perturbations.get(n, {})]
        if missing:
            raise QDeployError(f"perturbations lack (layer, bits) {missing[:4]}; measure them for every candidate")
    table: dict[str, dict[int, dict[str, float]]] = {}
    for name in names:
        weight = layers[name].weight
        table[name] = {
            b: {
                "omega": traces[name]
                * (perturbations[name][b] if perturbations is not None else weight_perturbation(weight, b)),
                "cost": per_bit[name] * b,
            }
            for b in candidates
        }
    columns = [(name, b) for name in names for b in candidates]
    omega = np.array([table[n][b]["omega"] for n, b in columns])
    cost = np.array([table[n][b]["cost"] for n, b in columns])
    one_per_layer = np.array([[1.0 if n == name else 0.0 for n, _ in columns] for name in names])
    result = milp(
        c=omega,
        constraints=[LinearConstraint(one_per_layer, 1, 1), LinearConstraint(cost[None, :], 0, budget)],
        integrality=np.ones(len(columns)),
        bounds=Bounds(0, 1),
    )
    if not result.success:
        raise QDeployError(f"bit allocation failed: {result.message}")
    chosen = {n: b for (n, b), x in zip(columns, result.x, strict=True) if x > 0.5}
    return Allocation(
        bits=chosen,
        cost=float(sum(table[n][b]["cost"] for n, b in chosen.items())),
        budget=float(budget),
        sensitivity=float(sum(table[n][b]["omega"] for n, b in chosen.items())),
        table=table,
    )


def cost_per_bit(model: nn.Module, macs: dict[str, int], act_bits: int = 8, objective: str = "bops") -> dict[str, float]:
    """What one weight bit costs per quantizable layer: MACs x activation bits ('bops') or its number of weights
    ('memory', bits of storage). A layer at b bits costs b times this."""
    if objective not in tuple(BudgetObjective):
        raise QDeployError(f"objective {objective!r} must be one of {', '.join(BudgetObjective)}")
    layers = quantizable_layers(model)
    return {
        name: float(layer.weight.numel() if objective == "memory" else macs[name] * act_bits)
        for name, layer in layers.items()
    }


def check_budget(per_bit: dict[str, float], budget: float, candidates: tuple[int, ...], objective: str) -> None:
    """Refuse a budget below what the narrowest candidate everywhere costs (no allocation can meet it)."""
    minimum = sum(per_bit.values()) * min(candidates)
    if budget < minimum:
        raise QDeployError(
            f"budget {budget:,.0f} is below the {minimum:,.0f} {objective} that {min(candidates)} bits everywhere cost; "
            "raise the budget"
        )


def quantizable_budget(
    model: nn.Module, macs: dict[str, int], average_bits: float, act_bits: int = 8, objective: str = "bops"
) -> float:
    """What uniform ``average_bits``-bit weights cost: BOPs (MACs x bits x activation bits) or bits of weight memory."""
    return sum(cost_per_bit(model, macs, act_bits, objective).values()) * average_bits


def layer_macs(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Multiply-accumulates per quantizable layer for one sample (from the output shapes of a forward pass)."""
    layers = quantizable_layers(model)
    macs: dict[str, int] = {}
    hooks = []
    for name, layer in layers.items():

        def hook(module, inputs, output, name=name):
            spatial = int(np.prod(output.shape[2:])) if output.dim() > 2 else 1
            macs[name] = int(module.weight.numel()) * spatial

        hooks.append(layer.register_forward_hook(hook))
    with torch.no_grad():
        model(example[:1])
    for handle in hooks:
        handle.remove()
    return macs
