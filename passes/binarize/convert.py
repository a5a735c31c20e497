"""Turn a float model into a binarised one (layer replacement) and freeze it for export (BatchNorm folding).

The model is traced with torch.fx once, to check every operation before anything is replaced: a layer type that
cannot be binarised, an activation written as a function call (it could not be replaced by the sign) or a
BatchNorm that does not directly follow a Linear/Conv layer is refused by name.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from qdeploy.errors import UnsupportedModelError, one_line
from qdeploy.passes.binarize.layers import BinarizedNet, BinaryActivation, QConv2d, QLinear, QuantInput

log = logging.getLogger(__name__)

COMPUTE = (nn.Linear, nn.Conv2d)
BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)
# Replaced by the binary activation: any of these followed by sign would only lose information (ReLU then sign is
# the constant +1), so the sign takes their place, as in every BNN.
ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softsign,
)
# Operations on +-1 values that stay exact in float32 and export to standard ONNX.
PASSTHROUGH = (nn.Flatten, nn.Unflatten, nn.Dropout, nn.Identity, nn.MaxPool1d, nn.MaxPool2d)
FUNCTIONAL_ACTIVATIONS = {
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.hardtanh,
    F.hardswish,
    F.softsign,
    torch.relu,
    torch.tanh,
    torch.sigmoid,
    F.tanh,
    F.sigmoid,
}
METHOD_ACTIVATIONS = {"relu", "relu_", "tanh", "sigmoid", "tanh_", "sigmoid_"}
SUPPORTED = "Linear and Conv2d layers, with BatchNorm1d/2d, activation modules, MaxPool, Flatten and Dropout"


@dataclass
class Plan:
    """What ``binarize`` replaces: compute layers in execution order, activations, BatchNorm -> its layer."""

    compute: list[str] = field(default_factory=list)
    activations: list[str] = field(default_factory=list)
    batchnorm: dict[str, str] = field(default_factory=dict)


def analyse(model: nn.Module) -> Plan:
    """Check that every operation of ``model`` can be binarised exactly; return the replacement plan."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as exc:
        raise UnsupportedModelError(
            f"binarize could not trace the model with torch.fx ({type(exc).__name__}: {one_line(exc)}); "
            "use modules without data-dependent control flow"
        ) from exc
    modules = dict(model.named_modules())
    plan = Plan()
    for node in graph.nodes:
        if node.op == "call_module":
            name, module = node.target, modules[node.target]
            if isinstance(module, COMPUTE):
                if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
                    raise UnsupportedModelError(
                        f"layer {name!r}: Conv2d padding_mode={module.padding_mode!r} cannot be binarised; use 'zeros'"
                    )
                if name in plan.compute:
                    raise UnsupportedModelError(f"layer {name!r} is called twice; binarize needs one call per layer")
                plan.compute.append(name)
            elif isinstance(module, BATCHNORM):
                source = node.args[0]
                if not (
                    getattr(source, "op", None) == "call_module"
                    and isinstance(modules[source.target], COMPUTE)
                    and len(source.users) == 1
                ):
                    raise UnsupportedModelError(
                        f"BatchNorm {name!r} does not directly follow a Linear/Conv2d layer, so it cannot be folded "
                        "into the binarised layer's scale; move it right after one"
                    )
                plan.batchnorm[name] = source.target
            elif isinstance(module, ACTIVATIONS):
                plan.activations.append(name)
            elif not isinstance(module, PASSTHROUGH):
                raise UnsupportedModelError(
                    f"layer {name!r} ({type(module).__name__}) cannot be binarised; binarize handles {SUPPORTED}"
                )
        elif node.op in ("call_function", "call_method"):
            if node.target in FUNCTIONAL_ACTIVATIONS or node.target in METHOD_ACTIVATIONS:
                label = getattr(node.target, "__name__", node.target)
                raise UnsupportedModelError(
                    f"the model's forward calls the activation function {label!r} ({node.name}); binarize replaces "
                    "activations by the sign only when they are modules: use e.g. nn.ReLU()"
                )
    if not plan.compute:
        raise UnsupportedModelError(f"the model has no Linear or Conv2d layer: nothing to binarise ({SUPPORTED})")
    return plan


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def build(
    model: nn.Module,
    method: str,
    omega: float,
    x_range: tuple[float, float],
    keep_first_last: bool = True,
    first_last_bits: int = 8,
    input_bits: int = 8,
) -> tuple[BinarizedNet, Plan]:
    """Binarised copy of ``model`` (the caller's model is not modified) and the plan it followed."""
    plan = analyse(model)
    kept = {plan.compute[0], plan.compute[-1]} if keep_first_last else set()
    if keep_first_last and len(plan.compute) <= 2:
        raise UnsupportedModelError(
            f"the model has {len(plan.compute)} Linear/Conv2d layer(s), all kept at {first_last_bits} bits as the "
            "first/last layer: nothing to binarise; pass keep_first_last=False (CLI --binarize-all)"
        )
    body = copy.deepcopy(model).train()
    for name in plan.compute:
        layer = body.get_submodule(name)
        mode = "int" if name in kept else method
        replacement = (QLinear if isinstance(layer, nn.Linear) else QConv2d)(layer, mode, omega, first_last_bits)
        _set_module(body, name, replacement)
    for name in plan.activations:
        _set_module(body, name, BinaryActivation(method))
    log.info(
        "binarize: %d binary layer(s) (%s), %d kept at %d bits, %d activation(s) binarised",
        len(plan.compute) - len(kept),
        method,
        len(kept),
        first_last_bits,
        len(plan.activations),
    )
    return BinarizedNet(body, QuantInput(*x_range, bits=input_bits), method, omega), plan


@torch.no_grad()
def freeze(net: BinarizedNet, plan: Plan) -> BinarizedNet:
    """Deployable module: weights fixed to their binary/fixed-point values, BatchNorm folded into the layers'
    ``alpha`` and ``bias`` and replaced by Identity. Its eval outputs are what the exported graph computes."""
    net = copy.deepcopy(net).eval()
    folded = {layer: bn for bn, layer in plan.batchnorm.items()}
    for name in plan.compute:
        layer = net.body.get_submodule(name)
        bn = net.body.get_submodule(folded[name]) if name in folded else None
        layer.freeze(bn)
    for bn in plan.batchnorm:
        _set_module(net.body, bn, nn.Identity())
    return net
