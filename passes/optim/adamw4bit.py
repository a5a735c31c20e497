"""AdamW with 4-bit optimizer states, a drop-in ``torch.optim.Optimizer`` (Li, Chen, Zhu, NeurIPS 2023).

First moment: blocks of 128, dynamic-exponent map. Second moment: rank-1 normalization, linear map without
zero (1-D tensors: blocks of 128). Tensors of at most ``threshold`` (4,096) elements keep 32-bit states, as in
the paper. The update itself is AdamW's (decoupled weight decay, bias correction) on the decoded states.

Speed: with numba installed (``pip install 'qdeploy[optim]'``) a contiguous float32 CPU parameter takes
``fused.step`` when its states are quantized (decode, update and re-encode in one compiled pass, the same codes as
the torch path) and ``fused.step_full`` when they are 32-bit (one compiled loop); others take the torch path here
(``fused_step=False`` forces it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from qdeploy.errors import QDeployError
from qdeploy.passes.optim import fused
from qdeploy.passes.optim.quant4 import (
    DE_CODEBOOK,
    LINEAR_CODEBOOK,
    decode_blockwise,
    dequantize_rank1,
    quantize_blockwise,
    quantize_blockwise_,
    quantize_rank1,
    quantize_rank1_,
)

STATE_FORMAT = "qdeploy-adamw4bit-v1"


class AdamW4bit(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        threshold: int = 4096,
        fused_step: bool = True,
    ) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise QDeployError(f"AdamW4bit: lr={lr}, eps={eps}, weight_decay={weight_decay} must be >= 0")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise QDeployError(f"AdamW4bit: betas={betas} must lie in [0, 1)")
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "threshold": threshold,
            "state_format": STATE_FORMAT,
        }
        super().__init__(params, defaults)
        #: the compiled one-pass step (``fused``, needs numba) where it applies; False forces the torch path
        self._fused = fused_step

    # -- state encoding ---------------------------------------------------------------------------------------------

    @staticmethod
    def _quantized(state: dict[str, Any]) -> bool:
        return "exp_avg_codes" in state

    def _init_state(self, p: torch.Tensor, state: dict[str, Any], threshold: int) -> None:
        state["step"] = torch.tensor(0.0)
        zeros = torch.zeros_like(p, dtype=torch.float32)
        if p.numel() <= threshold:
            state["exp_avg"] = zeros
            state["exp_avg_sq"] = zeros.clone()
        else:
            self._store(p, state, zeros, zeros)

    @staticmethod
    def _store(p: torch.Tensor, state: dict[str, Any], exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor) -> None:
        state["exp_avg_codes"], state["exp_avg_scales"] = quantize_blockwise(exp_avg, DE_CODEBOOK)
        if p.dim() >= 2:
            state["exp_avg_sq_codes"], maxima = quantize_rank1(exp_avg_sq, LINEAR_CODEBOOK)
            for d, vector in enumerate(maxima):
                state[f"exp_avg_sq_max{d}"] = vector
        else:
            state["exp_avg_sq_codes"], state["exp_avg_sq_scales"] = quantize_blockwise(exp_avg_sq, LINEAR_CODEBOOK)

    @staticmethod
    def _load(p: torch.Tensor, state: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None]]:
        """Decoded (m, v) shaped like ``p``, and the flat buffers of whole blocks they view (None for a rank-1 v,
        which is decoded in ``p``'s shape), for ``_store_in_place``."""
        numel = p.numel()
        exp_avg_blocks = decode_blockwise(state["exp_avg_codes"], state["exp_avg_scales"], DE_CODEBOOK, numel)
        exp_avg = exp_avg_blocks[:numel].view(p.shape)
        if p.dim() >= 2:
            maxima = [state[f"exp_avg_sq_max{d}"] for d in range(p.dim())]
            exp_avg_sq = dequantize_rank1(state["exp_avg_sq_codes"], maxima, LINEAR_CODEBOOK, p.shape)
            return exp_avg, exp_avg_sq, [exp_avg_blocks, None]
        exp_avg_sq_blocks = decode_blockwise(state["exp_avg_sq_codes"], state["exp_avg_sq_scales"], LINEAR_CODEBOOK, numel)
        return exp_avg, exp_avg_sq_blocks[:numel].view(p.shape), [exp_avg_blocks, exp_avg_sq_blocks]

    @staticmethod
    def _store_in_place(
        p: torch.Tensor, state: dict[str, Any], exp_avg_sq: torch.Tensor, blocks: list[torch.Tensor | None]
    ) -> None:
        """``_store`` of the step's decoded temporaries (as ``_load`` returned them), overwritten while coding."""
        numel = p.numel()
        exp_avg_blocks, exp_avg_sq_blocks = blocks
        state["exp_avg_codes"], state["exp_avg_scales"] = quantize_blockwise_(exp_avg_blocks, numel, DE_CODEBOOK)
        if exp_avg_sq_blocks is None:
            state["exp_avg_sq_codes"], maxima = quantize_rank1_(exp_avg_sq, LINEAR_CODEBOOK)
            for d, vector in enumerate(maxima):
                state[f"exp_avg_sq_max{d}"] = vector
        else:
            state["exp_avg_sq_codes"], state["exp_avg_sq_scales"] = quantize_blockwise_(
                exp_avg_sq_blocks, numel, LINEAR_CODEBOOK
            )

    # -- the update -------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
            hyper = {"lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weight_decay}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise QDeployError("AdamW4bit does not support sparse gradients")
                state = self.state[p]
                if not state:
                    self._init_state(p, state, group["threshold"])
                quantized = self._quantized(state)
                if self._fused and fused.supports(p):
                    fused_step = fused.step if quantized else fused.step_full
                    if fused_step(p, state, **hyper, step=float(state["step"]) + 1):
                        state["step"] += 1
                        continue
                grad = p.grad.float()
                if quantized:
                    exp_avg, exp_avg_sq, blocks = self._load(p, state)
                else:
                    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                step = float(state["step"])
                p.mul_(1 - lr * weight_decay)
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                bias_correction1 = 1 - beta1**step
                bias_correction2_sqrt = math.sqrt(1 - beta2**step)
                # AdamW's m / (sqrt(v / bc2) + eps) with the 1 / sqrt(bc2) moved into the step size: one temporary
                denom = exp_avg_sq.sqrt().add_(eps * bias_correction2_sqrt)
                step_size = lr * bias_correction2_sqrt / bias_correction1
                p.addcdiv_(exp_avg.to(p.dtype), denom.to(p.dtype), value=-step_size)
                if quantized:
                    self._store_in_place(p, state, exp_avg_sq, blocks)
        return loss

    # -- persistence and accounting ---------------------------------------------------------------------------------

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state saved by AdamW4bit; a state dict of another optimizer is refused, not misread."""
        groups = state_dict.get("param_groups", [])
        if not groups or any(g.get("state_format") != STATE_FORMAT for g in groups):
            raise QDeployError(
                "optimizer state dict was not saved by qdeploy's AdamW4bit (no 'state_format' "
                f"{STATE_FORMAT!r}); start from a fresh optimizer or load it into the optimizer that saved it"
            )
        for key, state in state_dict.get("state", {}).items():
            if state and "step" not in state:
                raise QDeployError(f"optimizer state for parameter {key} has no 'step'; the state dict is corrupt")
        super().load_state_dict(state_dict)
        # torch casts every floating/integer state tensor to the parameter's dtype on load; codes are bytes.
        for state in self.state.values():
            for name in [n for n in state if n.endswith("_codes")]:
                state[name] = state[name].to(torch.uint8)

    def state_bytes(self) -> int:
        """Bytes held by the optimizer states (codes, scales, 32-bit states of small tensors)."""
        return sum(
            t.numel() * t.element_size()
            for state in self.state.values()
            for name, t in state.items()
            if torch.is_tensor(t) and name != "step"
        )
