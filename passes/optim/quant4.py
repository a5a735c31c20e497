"""4-bit state quantization of "Memory Efficient Optimizers with 4-bit States" (Li, Chen, Zhu, 2023).

Quantizer = normalization, then nearest entry of a 16-value map; two 4-bit codes are packed per byte.
- First moment: block-wise absmax normalization (blocks of 128) + signed dynamic-exponent (DE) map.
- Second moment: rank-1 normalization (each entry over the min of the maxima along every dimension containing
  it; 1-D tensors fall back to blocks of 128) + linear map without zero, ``T(i) = (i + 1) / 16``: an entry is
  never decoded as 0, which would blow up ``1 / sqrt(v)``.
Written here because no package provides the rank-1 variant on CPU (lpmm is CUDA-only and not on PyPI;
torchao's AdamW4bit has no rank-1 normalization).
"""

from __future__ import annotations

import math

import torch

BLOCK = 128


def dynamic_exponent_map(bits: int = 4) -> torch.Tensor:
    """Signed DE map: per exponent e (0 down to -(bits-2)), fraction midpoints of a linear grid on [0.1, 1].

    With ``bits`` bits: one sign bit, exponent levels ``10^-(bits-2) .. 10^0``, each with ``2^i`` fractions,
    plus 0 and +1 (16 values at 4 bits: 0, +1 and +/-{0.0055, 0.0325, 0.0775, 0.2125, 0.4375, 0.6625, 0.8875}).
    """
    exponent_levels = bits - 1
    values = [0.0, 1.0]
    for i in range(exponent_levels):
        grid = torch.linspace(0.1, 1.0, 2**i + 1, dtype=torch.float64)
        midpoints = (grid[:-1] + grid[1:]) / 2 * 10.0 ** (i - (exponent_levels - 1))
        values += midpoints.tolist() + (-midpoints).tolist()
    assert len(values) == 2**bits
    return torch.tensor(sorted(values), dtype=torch.float32)


def linear_map_without_zero(bits: int = 4) -> torch.Tensor:
    return torch.arange(1, 2**bits + 1, dtype=torch.float32) / 2**bits


DE_MAP = dynamic_exponent_map()
LINEAR_MAP = linear_map_without_zero()


def nearest_codes(normalized: torch.Tensor, qmap: torch.Tensor) -> torch.Tensor:
    """Index of the nearest map value for every entry (uint8)."""
    midpoints = (qmap[1:] + qmap[:-1]) / 2
    return torch.bucketize(normalized.contiguous(), midpoints.to(normalized.device)).to(torch.uint8)


def pack(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte (flattened; odd lengths are padded with one zero code)."""
    flat = codes.reshape(-1)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    return flat[0::2] | (flat[1::2] << 4)


def unpack(packed: torch.Tensor, numel: int) -> torch.Tensor:
    codes = torch.stack([packed & 0x0F, packed >> 4], dim=1).reshape(-1)
    return codes[:numel]


def _blocks(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1)
    padded = math.ceil(flat.numel() / BLOCK) * BLOCK
    if padded != flat.numel():
        flat = torch.cat([flat, flat.new_zeros(padded - flat.numel())])
    return flat.view(-1, BLOCK)


def _safe(scale: torch.Tensor) -> torch.Tensor:
    """Divide by 1 where the scale is 0: those entries are 0 and decode to code * 0 = 0."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def quantize_blockwise(x: torch.Tensor, qmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed codes, per-block absmax scales)."""
    blocks = _blocks(x.float())
    scales = blocks.abs().amax(dim=1)
    codes = nearest_codes(blocks / _safe(scales)[:, None], qmap)
    return pack(codes.reshape(-1)[: x.numel()]), scales


def dequantize_blockwise(packed: torch.Tensor, scales: torch.Tensor, qmap: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    numel = math.prod(shape)
    codes = unpack(packed, numel).long()
    values = qmap.to(scales.device)[codes]
    per_entry = scales.repeat_interleave(BLOCK)[:numel]
    return (values * per_entry).view(shape)


def rank1_maxima(x: torch.Tensor) -> list[torch.Tensor]:
    """For every dimension d, the max of |x| over all other dimensions (a vector of length shape[d])."""
    magnitude = x.abs().float()
    return [magnitude.amax(dim=[k for k in range(x.dim()) if k != d]) for d in range(x.dim())]


def rank1_scale(maxima: list[torch.Tensor]) -> torch.Tensor:
    """Entry-wise min over dimensions of the broadcast maxima (SM3-style rank-1 statistics)."""
    dims = len(maxima)
    scale = None
    for d, vector in enumerate(maxima):
        view = [1] * dims
        view[d] = vector.numel()
        broadcast = vector.view(view)
        scale = broadcast if scale is None else torch.minimum(scale, broadcast)
    return scale


def quantize_rank1(x: torch.Tensor, qmap: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(packed codes, per-dimension maxima) for a tensor of two or more dimensions."""
    maxima = rank1_maxima(x)
    scale = rank1_scale(maxima).expand_as(x)
    return pack(nearest_codes(x.float() / _safe(scale), qmap)), maxima


def dequantize_rank1(
    packed: torch.Tensor, maxima: list[torch.Tensor], qmap: torch.Tensor, shape: torch.Size
) -> torch.Tensor:
    codes = unpack(packed, math.prod(shape)).long().view(shape)
    return qmap.to(packed.device)[codes] * rank1_scale(maxima).expand(shape)
