"""4-bit state quantization of "Memory Efficient Optimizers with 4-bit States" (Li, Chen, Zhu, 2023).

Quantizer = normalization, then nearest entry of a 16-value map; two 4-bit codes are packed per byte.
- First moment: block-wise absmax normalization (blocks of 128) + signed dynamic-exponent (DE) map.
- Second moment: rank-1 normalization (each entry over the min of the maxima along every dimension containing
  it; 1-D tensors fall back to blocks of 128) + linear map without zero, ``T(i) = (i + 1) / 16``: an entry is
  never decoded as 0, which would blow up ``1 / sqrt(v)``.
Written here because no package provides the rank-1 variant on CPU (lpmm is CUDA-only and not on PyPI;
torchao's AdamW4bit has no rank-1 normalization).

Speed: the optimizer step codes every state entry twice per step, so coding is a few vector passes, not a search.
``nearest_codes`` (``torch.bucketize`` over the map's midpoints) is the definition; ``Codebook.encode`` returns
the same codes (tested bit for bit) from two small-table look-ups per entry, keyed by the top 13 bits of the
float (sign, exponent, 4 mantissa bits): such a bucket holds at most one midpoint of the map, so the code is the
bucket's lowest code plus one comparison with that midpoint. For the linear map the code is arithmetic
(``ceil(16 x - 1.5)``). Decoding looks up both codes of a byte at once (a 256-entry table of value pairs).
"""

from __future__ import annotations

import math

import numpy as np
import torch

BLOCK = 128
_BUCKET_SHIFT = 19  #: float32 bits kept as the bucket key: sign, 8 exponent bits, 4 mantissa bits
_BUCKETS = 1 << (32 - _BUCKET_SHIFT)


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
    """Index of the nearest map value for every entry (uint8); ties go to the lower value. The reference
    definition: ``Codebook.encode`` computes the same codes faster."""
    midpoints = (qmap[1:] + qmap[:-1]) / 2
    return torch.bucketize(normalized.contiguous(), midpoints.to(normalized.device)).to(torch.uint8)


def _take(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` for a small 1-D table (``index_select`` with int32 indices: several times faster on CPU
    than advanced indexing, ``torch.take`` or ``numpy.take`` of the same table, measured interleaved)."""
    return table.to(index.device).index_select(0, index.to(torch.int32))


class Codebook:
    """A sorted 16-value map with its coding tables (built once per map)."""

    def __init__(self, values: torch.Tensor) -> None:
        if values.numel() != 16 or not bool(torch.all(values[1:] > values[:-1])):
            raise ValueError("a 4-bit codebook needs 16 increasing values")
        self.values = values.to(torch.float32)
        self.midpoints = (self.values[1:] + self.values[:-1]) / 2
        byte = torch.arange(256)
        pairs = torch.stack([self.values[byte & 0x0F], self.values[byte >> 4]], dim=1)
        # one float64 entry = the two float32 values of a byte's codes (low nibble first), so decoding is one look-up
        self._pair_table = pairs.contiguous().view(torch.float64).reshape(256)
        self._bucket_lowest_code, self._bucket_midpoint = self._buckets()
        step = float(self.values[0])
        uniform = torch.equal(self.values, torch.arange(1, 17, dtype=torch.float32) * step)
        #: maps ``(i + 1) * 2^-k`` are coded arithmetically (see ``encode``)
        self._inverse_step = 1 / step if uniform and math.frexp(step)[0] == 0.5 else None

    def _buckets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per 13-bit key: the lowest code in its bucket (uint8) and the map midpoint inside it (float32, +inf if
        none)."""
        keys = np.arange(_BUCKETS, dtype=np.uint64)
        first = (keys << _BUCKET_SHIFT).astype(np.uint32).view(np.float32)
        last = ((keys << _BUCKET_SHIFT) + (1 << _BUCKET_SHIFT) - 1).astype(np.uint32).view(np.float32)
        with np.errstate(invalid="ignore"):
            negative = (keys >> (31 - _BUCKET_SHIFT)).astype(bool)
            # Inf/NaN buckets: normalized states lie in [-1, 1], these only need a defined code (the extreme one)
            first = np.where(np.isnan(first), np.where(negative, -np.inf, np.inf), first).astype(np.float32)
            last = np.where(np.isnan(last), np.where(negative, -np.inf, np.inf), last).astype(np.float32)
        lowest, highest = np.minimum(first, last), np.maximum(first, last)
        midpoints = self.midpoints.numpy()
        low_code = np.searchsorted(midpoints, lowest, side="left")  # = #(midpoints < x), bucketize's convention
        high_code = np.searchsorted(midpoints, highest, side="left")
        if np.any(high_code - low_code > 1):
            raise ValueError("map midpoints closer than the coding buckets resolve")
        inside = np.where(high_code > low_code, midpoints[np.minimum(low_code, len(midpoints) - 1)], np.inf)
        return torch.from_numpy(low_code.astype(np.uint8)), torch.from_numpy(inside.astype(np.float32))

    def encode(self, normalized: torch.Tensor) -> torch.Tensor:
        """Codes (uint8 0..15, the shape of ``normalized``) of the nearest map values; equals ``nearest_codes``.

        May overwrite ``normalized`` (callers pass a temporary)."""
        if self._inverse_step is not None:
            # nearest of (i + 1) * step: i = ceil(x / step - 1.5) clamped; both operations are exact in float32
            # (a power-of-two scaling, then a subtraction whose result is a multiple of the operand's ulp), and a
            # midpoint itself gives the lower code, as bucketize
            return normalized.mul_(self._inverse_step).sub_(1.5).ceil_().clamp_(0, 15).to(torch.uint8)
        key = (normalized.view(torch.int32) >> _BUCKET_SHIFT).bitwise_and_(_BUCKETS - 1)
        codes = _take(self._bucket_lowest_code, key)
        return codes.add_(torch.gt(normalized, _take(self._bucket_midpoint, key)))

    def decode(self, packed: torch.Tensor) -> torch.Tensor:
        """The map values of all ``2 * len(packed)`` codes (float32, flat, the padding code included)."""
        return _take(self._pair_table, packed).view(torch.float32)


DE_CODEBOOK = Codebook(DE_MAP)
LINEAR_CODEBOOK = Codebook(LINEAR_MAP)


def pack(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes (uint8) per byte, the first in the low nibble (flattened; odd lengths are padded with one
    zero code)."""
    flat = codes.reshape(-1)
    if flat.numel() % 2:
        flat = torch.cat([flat, flat.new_zeros(1)])
    # a little-endian int16 word of two codes is c0 + 256 c1; word | word >> 4 has c0 | c1 << 4 in its low byte
    word = flat.view(torch.int16)
    return (word | (word >> 4)).to(torch.uint8)


def unpack(packed: torch.Tensor, numel: int) -> torch.Tensor:
    codes = torch.stack([packed & 0x0F, packed >> 4], dim=1).reshape(-1)
    return codes[:numel]


def _padded_blocks(numel: int) -> int:
    return math.ceil(numel / BLOCK) * BLOCK


def _safe(scale: torch.Tensor) -> torch.Tensor:
    """Divide by 1 where the scale is 0: those entries are 0 and decode to code * 0 = 0."""
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def quantize_blockwise(x: torch.Tensor, codebook: Codebook) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed codes, per-block absmax scales) of ``x``; ``x`` is left unchanged."""
    buffer = torch.zeros(_padded_blocks(x.numel()), dtype=torch.float32, device=x.device)
    buffer[: x.numel()] = x.reshape(-1)
    return quantize_blockwise_(buffer, x.numel(), codebook)


def quantize_blockwise_(buffer: torch.Tensor, numel: int, codebook: Codebook) -> tuple[torch.Tensor, torch.Tensor]:
    """``quantize_blockwise`` of ``buffer[:numel]``, a flat float32 tensor of whole blocks whose padding is 0;
    ``buffer`` is overwritten (the optimizer's temporaries are coded in place)."""
    blocks = buffer.view(-1, BLOCK)
    scales = torch.maximum(blocks.amax(dim=1), blocks.amin(dim=1).neg_())  # absmax without an |x| temporary
    blocks.div_(_safe(scales)[:, None])
    codes = codebook.encode(buffer)
    if numel % 2:
        codes[numel] = 0  # the pad code of an odd length, as ``pack`` writes it
    return pack(codes[: numel + numel % 2]), scales


def decode_blockwise(packed: torch.Tensor, scales: torch.Tensor, codebook: Codebook, numel: int) -> torch.Tensor:
    """The first ``numel`` decoded entries in a flat float32 buffer of whole blocks whose padding is 0 (the form
    ``quantize_blockwise_`` codes in place)."""
    values = codebook.decode(packed)
    padded = _padded_blocks(numel)
    if values.numel() != padded:
        values = torch.cat([values[:numel], values.new_zeros(padded - numel)])
    values.view(-1, BLOCK).mul_(scales[:, None])
    return values


def dequantize_blockwise(packed: torch.Tensor, scales: torch.Tensor, codebook: Codebook, shape: torch.Size) -> torch.Tensor:
    numel = math.prod(shape)
    return decode_blockwise(packed, scales, codebook, numel)[:numel].view(shape)


def rank1_maxima(x: torch.Tensor) -> list[torch.Tensor]:
    """For every dimension d, the max of |x| over all other dimensions (a vector of length shape[d]); ``x`` >= 0
    as second moments are, so no absolute value is taken."""
    return [x.amax(dim=[k for k in range(x.dim()) if k != d]) for d in range(x.dim())]


def rank1_scale(maxima: list[torch.Tensor]) -> torch.Tensor:
    """Entry-wise min over dimensions of the broadcast maxima (SM3-style rank-1 statistics), broadcastable to the
    tensor's shape (materialized only by the operation that uses it)."""
    dims = len(maxima)
    scale = None
    for d, vector in enumerate(maxima):
        view = [1] * dims
        view[d] = vector.numel()
        broadcast = vector.view(view)
        scale = broadcast if scale is None else torch.minimum(scale, broadcast)
    return scale


def quantize_rank1(x: torch.Tensor, codebook: Codebook) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(packed codes, per-dimension maxima) for a non-negative tensor of two or more dimensions; ``x`` is left
    unchanged."""
    return quantize_rank1_(x.float().clone(), codebook)


def quantize_rank1_(x: torch.Tensor, codebook: Codebook) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``quantize_rank1`` that overwrites ``x`` (contiguous float32)."""
    maxima = rank1_maxima(x)
    # a zero maximum zeroes its whole row (column, ...), so replacing it by 1 leaves every quotient exact
    x.div_(rank1_scale([_safe(m) for m in maxima]))
    return pack(codebook.encode(x)), maxima


def dequantize_rank1(
    packed: torch.Tensor, maxima: list[torch.Tensor], codebook: Codebook, shape: torch.Size
) -> torch.Tensor:
    numel = math.prod(shape)
    values = codebook.decode(packed)
    values = (values[:numel] if values.numel() != numel else values).view(shape)
    return values.mul_(rank1_scale(maxima))
