"""Layer-by-layer helpers shared by AdaRound and the general-alphabet GPFQ: quantized layers in execution order,
their inputs on the calibration data (quantized model and float reference), their weight grid, and writing rounded
weights back so the frozen weight quantizer reproduces them exactly (as brevitas's GPTQ/GPFQ do)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from torch import nn

from qdeploy.errors import QDeployError, UnsupportedModelError


class _Stop(Exception):
    """Raised by a capture hook: nothing after the captured layer needs to run."""


def quant_layers(qmodel: nn.Module, sample: np.ndarray) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every quantized Linear/Conv in the order the forward pass reaches them."""
    from brevitas.nn.quant_layer import QuantWeightBiasInputOutputLayer

    order: list[tuple[str, nn.Module]] = []
    hooks = [
        module.register_forward_pre_hook(lambda m, _a, name=name: order.append((name, m)))
        for name, module in qmodel.named_modules()
        if isinstance(module, QuantWeightBiasInputOutputLayer)
    ]
    try:
        with torch.no_grad():
            qmodel(torch.from_numpy(sample[:1]))
    finally:
        for hook in hooks:
            hook.remove()
    seen: set[int] = set()
    unique = []
    for name, module in order:
        if id(module) in seen:
            raise QDeployError(
                f"layer {name} is called more than once per forward pass; layer-wise rounding needs each once"
            )
        seen.add(id(module))
        unique.append((name, module))
    return unique


def float_reference(qmodel: nn.Module) -> nn.Module:
    """A copy of ``qmodel`` taken before any weight is rounded; run it under ``float_mode`` for float activations."""
    return copy.deepcopy(qmodel).eval()


class float_mode:
    """Context: ``model`` computes in float (no activation, weight or bias quantization), via brevitas."""

    def __init__(self, model: nn.Module) -> None:
        from brevitas.graph.calibrate import quantization_status_manager

        self._manager = quantization_status_manager(
            model, disable_act_quant=True, disable_weight_quant=True, disable_bias_quant=True, is_training=False
        )

    def __enter__(self) -> None:
        self._manager.__enter__()

    def __exit__(self, *exc) -> None:
        self._manager.__exit__(*exc)


def capture_inputs(model: nn.Module, layer: nn.Module, calib: np.ndarray, batch_size: int) -> torch.Tensor:
    """The input ``layer`` sees on every calibration sample (plain tensor, batch first); stops each forward there."""

    def hook(_module, args):
        value = args[0]
        captured.append((value.value if hasattr(value, "value") else value).detach().clone())
        raise _Stop

    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for start in range(0, len(calib), batch_size):
                try:
                    model(torch.from_numpy(calib[start : start + batch_size]))
                except _Stop:
                    pass
    finally:
        handle.remove()
    return torch.cat(captured)


@dataclasses.dataclass
class WeightGrid:
    """The integer grid of a layer's (frozen) weight quantizer: weight = scale * integer, integer in [low, high]."""

    scale: torch.Tensor  # broadcastable to the weight (per channel or per tensor)
    low: int
    high: int


def weight_grid(layer: nn.Module) -> WeightGrid:
    from brevitas.function.ops import max_int, min_int

    with torch.no_grad():
        quant = layer.quant_weight()
    narrow = bool(layer.weight_quant.is_narrow_range)
    bits = quant.bit_width.detach()
    scale = quant.scale.detach().clone()
    while scale.dim() < layer.weight.dim():
        scale = scale.unsqueeze(-1)
    return WeightGrid(scale, int(min_int(quant.signed, narrow, bits)), int(max_int(quant.signed, narrow, bits)))


def write_weight(layer: nn.Module, integers: torch.Tensor, grid: WeightGrid, name: str) -> None:
    """Store scale * integers as the layer's weight and check the quantizer now returns exactly those integers."""
    with torch.no_grad():
        layer.weight.copy_(grid.scale * integers.to(layer.weight.dtype))
        got = layer.quant_weight().int().to(torch.int64)
    if not torch.equal(got, integers.to(torch.int64)):
        raise QDeployError(f"layer {name}: the weight quantizer does not reproduce the rounded weights; report this bug")


def set_weight_scale(layer: nn.Module, target: torch.Tensor) -> None:
    """Move a frozen (PARAMETER_FROM_STATS) weight scale to ``target`` per channel: exactly for float scales, to the
    nearest power of two for po2 scales (an integer shift of brevitas's log2 parameter shifts the scale exactly)."""
    from brevitas.core.restrict_val import PowerOfTwoRestrictValue

    scaling = layer.weight_quant.tensor_quant.scaling_impl
    restrict = scaling.stats_scaling_impl.restrict_clamp_scaling.restrict_value_impl
    with torch.no_grad():
        current = layer.quant_weight().scale.detach().reshape(scaling.value.shape)
        ratio = (target.reshape(current.shape) / current).clamp_min(1e-12)
        if isinstance(restrict, PowerOfTwoRestrictValue):
            scaling.value.add_(torch.round(torch.log2(ratio)))
        else:
            scaling.value.mul_(ratio)


def layer_rows(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Inputs as the rows a linear map sees: (samples x positions, fan-in), im2col for convolutions."""
    if isinstance(layer, nn.Linear):
        return inputs.reshape(-1, inputs.shape[-1])
    if isinstance(layer, nn.Conv1d):
        inputs = inputs.unsqueeze(-2)
        kernel, stride, padding, dilation = (
            (1, *layer.kernel_size),
            (1, *layer.stride),
            (0, *layer.padding),
            (1, *layer.dilation),
        )
    else:
        kernel, stride, padding, dilation = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    cols = nn.functional.unfold(inputs, kernel, dilation=dilation, padding=padding, stride=stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def fan_in(layer: nn.Module) -> int:
    return int(np.prod(layer.weight.shape[1:]))


def check_enough_rows(layers: list[tuple[str, nn.Module]], model: nn.Module, calib: np.ndarray, method: str) -> None:
    """Learned/greedy rounding from far fewer rows (samples x positions) than a layer has inputs fits the
    calibration set, not the data. The floor is an eighth of the fan-in (the choices are bounded to neighbouring
    grid points, unlike free least squares). Checked for every layer before any work: refuse naming the layer
    instead of returning a silently overfitted model."""
    for name, layer in layers:
        sample = capture_inputs(model, layer, calib[:1], 1)
        per_sample = int(layer_rows(layer, sample).shape[0])
        rows, need = per_sample * len(calib), -(-fan_in(layer) // 8)
        if rows < need:
            raise QDeployError(
                f"layer {name}: {method} needs at least {need} calibration rows (an eighth of its {fan_in(layer)} "
                f"inputs), got {rows}; give at least {-(-need // per_sample)} calibration samples"
            )


def check_weights_quantized(qmodel: nn.Module) -> None:
    """Refuse weight layers brevitas left in float (qdeploy quantizes Linear/Conv1d/Conv2d): a W4 request would
    otherwise come back with e.g. a float Conv3d or GRUCell inside, silently not the model asked for. An allow-list,
    not a list of known offenders: any module outside brevitas's quant layers that owns a parameter of two or more
    dimensions (a weight matrix or kernel) is refused; 1-D parameters (norms, quantum circuit angles) pass."""
    quant_layers = [name for name, module in qmodel.named_modules() if _is_brevitas(module) and name]
    for name, module in qmodel.named_modules():
        if _is_brevitas(module) or any(name.startswith(f"{q}.") for q in quant_layers):
            continue  # brevitas layers and their quantizers' own parameters (per-channel scales are 2-D)
        weights = [p for p, value in module.named_parameters(recurse=False) if value.dim() >= 2]
        if weights:
            raise UnsupportedModelError(
                f"layer {name or '(model)'} ({type(module).__name__}) cannot be quantized: its {', '.join(weights)} "
                "would stay float (qdeploy quantizes Linear, Conv1d and Conv2d weights); replace it with those or "
                "keep it outside the model you quantize"
            )


def _is_brevitas(module: nn.Module) -> bool:
    return type(module).__module__.startswith("brevitas.")
