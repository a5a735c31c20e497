"""Autograd functions of binarised training and their QONNX export forms.

Every binariser maps ``x >= 0`` to +1 and ``x < 0`` to -1 (QONNX ``BipolarQuant`` semantics; ``torch.sign`` would
send 0 to 0), so the trained module, the exported graph and every target agree on ties.
"""

from __future__ import annotations

import torch

QONNX_DOMAIN = "qonnx.custom_op.general"


def bipolar_values(x: torch.Tensor) -> torch.Tensor:
    """+1 where ``x >= 0``, else -1, in ``x``'s dtype."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


class BipolarQuant(torch.autograd.Function):
    """Inference-time binariser; exports as QONNX ``BipolarQuant(x, scale=1)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return bipolar_values(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad  # only used when an exported (frozen) model is fine-tuned: straight through

    @staticmethod
    def symbolic(g, x):
        scale = g.op("Constant", value_t=torch.tensor(1.0, dtype=torch.float32))
        return g.op(f"{QONNX_DOMAIN}::BipolarQuant", x, scale).setType(x.type())


class IntQuant(torch.autograd.Function):
    """Signed/unsigned ``bits``-bit quantizer with a (power-of-two) scale tensor and zero point 0, rounding half to
    even like numpy (QONNX ``ROUND``); exports as QONNX ``Quant``. Backward: straight through inside the range."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
        low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        scaled = x / scale
        ctx.save_for_backward((scaled >= low) & (scaled <= high))
        return torch.clamp(torch.round(scaled), low, high) * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None

    @staticmethod
    def symbolic(g, x, scale, bits, signed):
        zero = g.op("Constant", value_t=torch.tensor(0.0, dtype=torch.float32))
        width = g.op("Constant", value_t=torch.tensor(float(bits), dtype=torch.float32))
        return g.op(
            f"{QONNX_DOMAIN}::Quant", x, scale, zero, width, signed_i=int(signed), narrow_i=0, rounding_mode_s="ROUND"
        ).setType(x.type())


class BiPerWeight(torch.autograd.Function):
    """BiPer: forward the square wave ``sign(sin(omega w))``, backward the derivative of its sine,
    ``omega cos(omega w)`` (the released code: sign with identity backward applied to ``sin(omega w)``)."""

    @staticmethod
    def forward(ctx, w: torch.Tensor, omega: float) -> torch.Tensor:
        ctx.save_for_backward(w)
        ctx.omega = omega
        return bipolar_values(torch.sin(omega * w))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (w,) = ctx.saved_tensors
        return grad * ctx.omega * torch.cos(ctx.omega * w), None


class SignSTEWeight(torch.autograd.Function):
    """BinaryConnect / XNOR-Net weights: sign forward, straight-through gradient clipped to ``|w| <= 1``."""

    @staticmethod
    def forward(ctx, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w)
        return bipolar_values(w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


class SignSTEActivation(SignSTEWeight):
    """BNN (Hubara et al.) activations: sign forward, hard-tanh straight-through gradient (same as the weights)."""


class ApproxSignActivation(torch.autograd.Function):
    """BiPer / Bi-Real activations: sign forward, piecewise-linear ``max(0, 2 - |2a|)`` gradient (released code)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(a)
        return bipolar_values(a)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (a,) = ctx.saved_tensors
        return grad * (2 - (2 * a).abs()).clamp(min=0)
