"""Binarised and fixed-point layers used by ``qdeploy.binarize``.

A layer computes ``conv_or_linear(x, w_q) * alpha + bias`` as three separate operations, in that order, in
training, in the frozen module and in the exported graph (MatMul/Conv, Mul, Add): with +-1 (or small fixed-point)
weights and inputs the MatMul/Conv sums are exact integers in float32, so every backend that keeps the three ops
gets the same float32 result bit for bit. ``alpha`` is the per-output-channel scale (learned; after freezing it
also carries the folded BatchNorm).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from qdeploy.config import BinarizeMethod
from qdeploy.passes.binarize.functions import (
    ApproxSignActivation,
    BiPerWeight,
    BipolarQuant,
    IntQuant,
    SignSTEActivation,
    SignSTEWeight,
    bipolar_values,
)

METHODS = tuple(method.value for method in BinarizeMethod)


def po2_scale(max_abs: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """Smallest power of two that covers ``max_abs`` with ``bits`` bits (no clipping of the largest value)."""
    levels = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return torch.exp2(torch.ceil(torch.log2(torch.clamp(max_abs, min=1e-8) / levels)))


class QuantInput(nn.Module):
    """The model input as ``bits``-bit fixed point (power-of-two scale from the training data's range): the first
    layer then sums exact products."""

    def __init__(self, x_min: float, x_max: float, bits: int = 8):
        super().__init__()
        self.bits = bits
        self.signed = x_min < 0
        self.register_buffer("scale", po2_scale(torch.tensor(max(abs(x_min), abs(x_max))), bits, self.signed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return IntQuant.apply(x, self.scale, self.bits, self.signed)


class BinaryActivation(nn.Module):
    """Activation binarised to +-1. BiPer: per-sample normalization in training (changes the surrogate's window,
    never the sign, as the released code) and the ApproxSign gradient; sign-STE: hard-tanh gradient."""

    def __init__(self, method: str):
        super().__init__()
        self.method = method

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return BipolarQuant.apply(a)
        if self.method == "biper":
            dims = tuple(range(1, a.dim()))
            return ApproxSignActivation.apply(a / torch.sqrt(a.var(dims, keepdim=True) + 1e-5))
        return SignSTEActivation.apply(a)

    def extra_repr(self) -> str:
        return f"method={self.method}"


class _QLayer(nn.Module):
    """Shared body of the Linear and Conv2d layers. ``mode``: 'biper' or 'ste' (binary weights) or 'int'
    (``bits``-bit weights, per-output-channel power-of-two scales: the first/last layers)."""

    def __init__(self, layer: nn.Linear | nn.Conv2d, mode: str, omega: float, bits: int = 8):
        super().__init__()
        self.mode, self.omega, self.bits = mode, float(omega), bits
        self.stage = 2  # BiPer stage 1 trains with sin(omega w) weights, stage 2 with the square wave
        self.frozen = False
        self.weight = nn.Parameter(layer.weight.detach().clone())
        self.bias = nn.Parameter(layer.bias.detach().clone()) if layer.bias is not None else None
        out_channels = self.weight.shape[0]
        if mode == "int":
            # a per-channel output scale on fixed-point layers too: every layer is MatMul/Conv -> Mul -> Add, which
            # also keeps backends from fusing the bias into the integer sum (ORT's Gemm/MatMulNBits would)
            self.alpha = nn.Parameter(torch.ones(self.weight.shape[0]))
        else:
            with torch.no_grad():  # XNOR-Net's per-channel mean |w|, of the weights the forward pass uses
                self.alpha = nn.Parameter(self._latent_binary_magnitude().clone())
        self.register_buffer("frozen_weight", torch.zeros(0))
        self.register_buffer("weight_scale", torch.zeros(0))
        self.out_channels = out_channels

    def _latent_binary_magnitude(self) -> torch.Tensor:
        w = torch.sin(self.omega * self.weight) if self.mode == "biper" else self.weight
        return w.abs().flatten(1).mean(1).clamp(min=1e-3)

    def _broadcast(self, v: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *([1] * (self.weight.dim() - 2)))

    def _int_scale(self, w: torch.Tensor) -> torch.Tensor:
        return po2_scale(w.detach().abs().flatten(1).amax(1), self.bits, signed=True).view(-1, *[1] * (w.dim() - 1))

    def quantized_weight(self) -> torch.Tensor:
        """The weights the forward pass multiplies with (+-1, sin(omega w) in BiPer stage 1, or fixed point)."""
        if self.frozen:
            if self.mode == "int":
                return IntQuant.apply(self.frozen_weight, self.weight_scale, self.bits, True)
            return BipolarQuant.apply(self.frozen_weight)
        if self.mode == "int":
            return IntQuant.apply(self.weight, self._int_scale(self.weight), self.bits, True)
        if self.mode == "ste":
            return SignSTEWeight.apply(self.weight)
        if self.stage == 1:
            return torch.sin(self.omega * self.weight)
        return BiPerWeight.apply(self.weight, self.omega)

    def regularizer(self) -> torch.Tensor:
        """BiPer's quantization-error term as the released code computes it: mean(1/2 - 1/2 cos(2 omega w))."""
        return torch.mean(0.5 - 0.5 * torch.cos(2 * self.omega * self.weight))

    def _matmul(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._matmul(x, self.quantized_weight())
        if self.alpha is not None:
            out = out * self._broadcast(self.alpha)
        if self.bias is not None:
            out = out + self._broadcast(self.bias)
        return out

    @torch.no_grad()
    def freeze(self, bn: nn.modules.batchnorm._BatchNorm | None = None) -> None:
        """Fix the deployed weights (+-1, or integers x scale) and fold a following eval-mode BatchNorm into
        ``alpha`` and ``bias`` (float64 arithmetic, then float32)."""
        if self.mode == "int":
            self.weight_scale = self._int_scale(self.weight)
            self.frozen_weight = self.weight.detach().clone()
        else:
            self.stage = 2
            self.frozen_weight = self.quantized_weight().detach().clone()
        if bn is not None:
            inv_std = (bn.weight.double() if bn.affine else 1.0) / torch.sqrt(bn.running_var.double() + bn.eps)
            alpha = self.alpha.double() if self.alpha is not None else torch.ones_like(inv_std)
            bias = self.bias.double() if self.bias is not None else torch.zeros_like(inv_std)
            shift = bn.bias.double() if bn.affine else 0.0
            self.alpha = nn.Parameter((alpha * inv_std).float())
            self.bias = nn.Parameter(((bias - bn.running_mean.double()) * inv_std + shift).float())
        self.frozen = True

    def extra_repr(self) -> str:
        extra = f", omega={self.omega:g}" if self.mode == "biper" else ""
        bits = f", bits={self.bits}" if self.mode == "int" else ""
        return f"{tuple(self.weight.shape)}, mode={self.mode}{extra}{bits}, frozen={self.frozen}"


class QLinear(_QLayer):
    def _matmul(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.linear(x, w)


class QConv2d(_QLayer):
    def __init__(self, layer: nn.Conv2d, mode: str, omega: float, bits: int = 8):
        super().__init__(layer, mode, omega, bits)
        self.stride, self.padding, self.dilation, self.groups = layer.stride, layer.padding, layer.dilation, layer.groups

    def _matmul(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.groups)


class BinarizedNet(nn.Module):
    """A binarised network: input quantizer, then the user's model with its layers replaced.
    ``history`` holds the mean training loss of every epoch; ``method``/``omega`` what trained it."""

    def __init__(self, body: nn.Module, input_quant: QuantInput, method: str, omega: float):
        super().__init__()
        self.input_quant = input_quant
        self.body = body
        self.method, self.omega = method, omega
        self.history: list[float] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.input_quant(x))

    def qlayers(self) -> list[_QLayer]:
        return [m for m in self.modules() if isinstance(m, _QLayer)]

    def binary_layers(self) -> list[_QLayer]:
        return [m for m in self.qlayers() if m.mode != "int"]


__all__ = ["BinaryActivation", "BinarizedNet", "QConv2d", "QLinear", "QuantInput", "bipolar_values", "po2_scale"]
