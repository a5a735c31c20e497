"""AdamW4bit's step as compiled loops (numba): decode, update, re-encode in one pass over a parameter.

Why compiled loops: coding in torch takes ~20 passes over the state per step (decode, scale, update, block
maxima, normalize, look up, compare, pack), each a fresh temporary; fused, a block of 128 first-moment entries
is decoded, updated and re-encoded while it sits in cache, and only the rank-1 second moment needs a second pass
(its row and column maxima are known only after the whole tensor is updated). ``torch.compile`` was measured on
the same function first: ~30 s to compile per shape and a slower step than torch's eager ops on this CPU.

Every loop is a plain loop over a block's contiguous scratch (decode, update, absmax, normalize, look up, pack as
separate loops, no branch on the map inside them) so that LLVM vectorizes it; the rank-1 scale of an entry,
``min(row max, column max)``, is taken per row segment of a block, so no index division per entry. Tensors of
more than two dimensions are coded as ``(shape[0], rest)``: the rank-1 scale over the trailing dimensions is
computed once per step (a vector of ``numel / shape[0]``) and min is exact, so the codes are the same.
Parameters small enough to keep 32-bit states take one compiled loop too (``step_full``): one call instead of
torch's eight element-wise operations, whose per-call cost dominates on small tensors.

Same state format and the same coding as ``quant4`` (the bucket tables of ``Codebook``, the linear map's
arithmetic code, the pad code of odd lengths); the update is AdamW's, computed in float32 like torch's kernels.
Used for contiguous float32 CPU parameters when numba is installed (``pip install 'qdeploy[optim]'``);
everything else takes the torch path.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import torch

from qdeploy.passes.optim.quant4 import BLOCK, DE_CODEBOOK, LINEAR_CODEBOOK, rank1_scale

try:
    import numba
except ModuleNotFoundError:  # the torch path serves; ``available`` tells the optimizer
    numba = None

_BUCKET_SHIFT = 19
_BUCKET_MASK = (1 << 13) - 1


def available() -> bool:
    return numba is not None


def supports(p: torch.Tensor) -> bool:
    """Whether the fused step handles ``p`` (and its gradient) as they are."""
    grad = p.grad
    return (
        numba is not None
        and p.device.type == "cpu"
        and p.dtype == torch.float32
        and p.dim() >= 1
        and p.is_contiguous()
        and grad is not None
        and grad.dtype == torch.float32
        and grad.is_contiguous()
    )


def _kernels() -> dict[str, Any]:
    """Compile (or load from numba's cache) the loops once per process.

    The per-block scratch arrays are arguments of the entry points, allocated by the caller: an array allocated
    inside a kernel is reached through a pointer LLVM reloads after every store (it cannot prove the store does not
    alias it), which kept the block loops scalar (measured: 2-3x slower); an argument's data pointer is a value.
    Maxima are taken over the float bits as int32 (``|x|``'s bits order like ``|x|``; no NaN here): LLVM vectorizes
    an integer max reduction, not a float one."""
    njit = numba.njit(cache=True, fastmath={"nnan", "ninf", "nsz"}, error_model="numpy", nogil=True)

    @njit
    def update(p, grad, count, m_block, v_block, decay, beta1_weight, beta2, beta2_weight, step_size, eps_term):
        """AdamW on ``count`` entries, in float32 as torch's p.mul_, m.lerp_, v.mul_.addcmul_, p.addcdiv_ compute
        it; the moments in ``m_block``/``v_block`` are updated in place. (Callers pass slices indexed from 0: an
        index ``start + j`` that LLVM cannot prove non-negative keeps numba's wraparound select, and the loop
        scalar.)"""
        for j in range(count):
            g = grad[j]
            m = m_block[j] + beta1_weight * (g - m_block[j])
            v = v_block[j] * beta2 + beta2_weight * g * g
            p[j] = p[j] * decay + (-step_size) * (m / (np.sqrt(v) + eps_term))
            m_block[j] = m
            v_block[j] = v

    @njit
    def decode(packed, count, values, scale, out):
        """``scale`` times the map values of the first ``count`` codes of ``packed`` into ``out`` (one entry of
        scratch past an odd ``count``)."""
        for k in range((count + 1) >> 1):
            byte = packed[k]
            out[2 * k] = values[byte & 15] * scale
            out[2 * k + 1] = values[byte >> 4] * scale

    @njit
    def pack(codes, count, packed):
        """Two codes per byte, the first in the low nibble; an odd tail's pad code is 0."""
        for k in range(count >> 1):
            packed[k] = codes[2 * k] | (codes[2 * k + 1] << 4)
        if count & 1:
            packed[count >> 1] = codes[count - 1]

    @njit
    def absmax(bits, count, word, word_bits):
        """max |x| of the first ``count`` floats whose int32 view is ``bits`` (``word``/``word_bits``: one float of
        scratch and its int32 view, to turn the bits back into the float)."""
        result = np.int32(0)
        for j in range(count):
            a = bits[j] & np.int32(0x7FFFFFFF)
            result = a if a > result else result
        word_bits[0] = result
        return word[0]

    @njit
    def encode_de(values, bits, count, packed, low_code, midpoint, normalized, normalized_bits, codes, word,
                  word_bits):  # fmt: skip
        """Block-wise dynamic-exponent coding of ``values[:count]`` into ``packed``; returns the absmax scale.
        The code is the bucket's lowest code (keyed by the float's top bits) plus one comparison."""
        scale = absmax(bits, count, word, word_bits)
        safe = scale if scale > 0 else np.float32(1.0)
        for j in range(count):
            normalized[j] = values[j] / safe
        for j in range(count):
            key = (normalized_bits[j] >> _BUCKET_SHIFT) & _BUCKET_MASK
            codes[j] = low_code[key] + np.uint8(normalized[j] > midpoint[key])
        pack(codes, count, packed)
        return scale

    @njit
    def encode_linear(values, bits, count, packed, inverse_step, codes, word, word_bits):
        """Block-wise linear-map coding (``ceil(16 x - 1.5)`` clamped) of ``values[:count]``; returns the scale."""
        scale = absmax(bits, count, word, word_bits)
        safe = scale if scale > 0 else np.float32(1.0)
        low, high = np.float32(0.0), np.float32(15.0)
        for j in range(count):
            c = np.ceil((values[j] / safe) * inverse_step - np.float32(1.5))
            c = low if c < low else c
            codes[j] = np.uint8(high if c > high else c)
        pack(codes, count, packed)
        return scale

    @njit
    def step_vector(p, grad, m_codes, m_scales, v_codes, v_scales, m_values, m_low, m_mid, v_values, v_inverse_step,
                    decay, beta1_weight, beta2, beta2_weight, step_size, eps_term, m_block, m_bits, v_block, v_bits,
                    normalized, normalized_bits, codes, word, word_bits):  # fmt: skip
        """1-D parameter: both moments block-wise; one pass, block by block."""
        numel = p.shape[0]
        for b in range(m_scales.shape[0]):
            start = b * BLOCK
            count = min(BLOCK, numel - start)
            m_packed, v_packed = m_codes[start >> 1 :], v_codes[start >> 1 :]
            decode(m_packed, count, m_values, m_scales[b], m_block)
            decode(v_packed, count, v_values, v_scales[b], v_block)
            update(p[start:], grad[start:], count, m_block, v_block, decay, beta1_weight, beta2, beta2_weight,
                   step_size, eps_term)  # fmt: skip
            m_scales[b] = encode_de(m_block, m_bits, count, m_packed, m_low, m_mid, normalized, normalized_bits, codes,
                                    word, word_bits)  # fmt: skip
            v_scales[b] = encode_linear(v_block, v_bits, count, v_packed, v_inverse_step, codes, word, word_bits)

    @njit
    def rank1_first_pass(p, grad, m_codes, m_scales, v_codes, v_row, v_col, m_values, m_low, m_mid, v_values,
                         decay, beta1_weight, beta2, beta2_weight, step_size, eps_term, v_updated, new_row, new_col,
                         m_block, m_bits, v_block, v_bits, normalized, normalized_bits, codes, word,
                         word_bits):  # fmt: skip
        """A (rows, cols) parameter whose v entry (r, c) is decoded with scale ``min(v_row[r], v_col[c])``: m
        decoded, updated and re-coded block by block; the updated v goes to ``v_updated`` with its new row and
        column maxima (``new_row``/``new_col``, zero on entry), for ``rank1_encode``."""
        numel = p.shape[0]
        cols = v_col.shape[0]
        one = np.float32(1.0)
        for b in range(m_scales.shape[0]):
            start = b * BLOCK
            count = min(BLOCK, numel - start)
            m_packed = m_codes[start >> 1 :]
            decode(m_packed, count, m_values, m_scales[b], m_block)
            decode(v_codes[start >> 1 :], count, v_values, one, v_block)
            # the block's row segments: entry (r, c) of a segment has v scale min(v_row[r], v_col[c])
            r = start // cols
            j, c = 0, start - r * cols
            while j < count:
                segment = min(count - j, cols - c)
                row_scale, col_scale, block = v_row[r], v_col[c:], v_block[j:]
                for t in range(segment):
                    block[t] *= row_scale if row_scale < col_scale[t] else col_scale[t]
                j += segment
                r += 1
                c = 0
            update(p[start:], grad[start:], count, m_block, v_block, decay, beta1_weight, beta2, beta2_weight,
                   step_size, eps_term)  # fmt: skip
            m_scales[b] = encode_de(m_block, m_bits, count, m_packed, m_low, m_mid, normalized, normalized_bits, codes,
                                    word, word_bits)  # fmt: skip
            v_updated[start : start + count] = v_block[:count]
            r = start // cols
            j, c = 0, start - r * cols
            while j < count:
                segment = min(count - j, cols - c)
                column_max, block = new_col[c:], v_block[j:]
                for t in range(segment):
                    column_max[t] = block[t] if block[t] > column_max[t] else column_max[t]
                row_max = absmax(v_bits[j:], segment, word, word_bits)  # v >= 0: its own absolute value
                new_row[r] = row_max if row_max > new_row[r] else new_row[r]
                j += segment
                r += 1
                c = 0

    @njit
    def rank1_encode(v_updated, row, col, inverse_step, v_codes, safe_col, codes):
        """Linear-map codes of ``v_updated`` (rows, cols flat) over ``min(row[r], col[c])``, a zero maximum replaced
        by 1 (its row or column is all zero), packed two per byte (scratch: ``safe_col`` of cols, ``codes`` of all)."""
        rows, cols = row.shape[0], col.shape[0]
        one = np.float32(1.0)
        for c in range(cols):
            safe_col[c] = col[c] if col[c] > 0 else one
        low, high, offset = np.float32(0.0), np.float32(15.0), np.float32(1.5)
        for r in range(rows):
            row_scale = row[r] if row[r] > 0 else one
            base = r * cols
            values, row_codes = v_updated[base:], codes[base:]
            for c in range(cols):
                scale = row_scale if row_scale < safe_col[c] else safe_col[c]
                x = np.ceil((values[c] / scale) * inverse_step - offset)
                x = low if x < low else x
                row_codes[c] = np.uint8(high if x > high else x)
        pack(codes, rows * cols, v_codes)

    @njit
    def step_full(p, grad, m, v, decay, beta1_weight, beta2, beta2_weight, step_size, eps_term):
        """A parameter with 32-bit states: AdamW in place, one loop."""
        update(p, grad, p.shape[0], m, v, decay, beta1_weight, beta2, beta2_weight, step_size, eps_term)

    return {
        "vector": step_vector,
        "rank1_first_pass": rank1_first_pass,
        "rank1_encode": rank1_encode,
        "full": step_full,
    }


_SCRATCH = threading.local()


def _block_scratch() -> tuple[np.ndarray, ...]:
    """The block kernels' scratch (see ``_kernels``), one set per thread (kernels release the GIL): m and v blocks
    (one entry past an odd tail) with their int32 views, the normalized block and its view, the block's codes, one
    float and its view."""
    scratch = getattr(_SCRATCH, "arrays", None)
    if scratch is None:
        m_block, v_block = np.empty(BLOCK + 1, np.float32), np.empty(BLOCK + 1, np.float32)
        normalized, word = np.empty(BLOCK, np.float32), np.empty(1, np.float32)
        scratch = _SCRATCH.arrays = (
            m_block,
            m_block.view(np.int32),
            v_block,
            v_block.view(np.int32),
            normalized,
            normalized.view(np.int32),
            np.empty(BLOCK, np.uint8),
            word,
            word.view(np.int32),
        )
    return scratch


_COMPILED: dict[str, Any] = {}
_TABLES: tuple[np.ndarray, ...] = ()


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().reshape(-1)


def _compiled() -> dict[str, Any]:
    global _TABLES
    if not _COMPILED:
        _COMPILED.update(_kernels())
        de, linear = DE_CODEBOOK, LINEAR_CODEBOOK
        _TABLES = (
            _numpy(de.values),
            _numpy(de._bucket_lowest_code),
            _numpy(de._bucket_midpoint),
            _numpy(linear.values),
        )
    return _COMPILED


def _scalars(lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, step: float) -> tuple:
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)
    f32 = np.float32
    return (
        f32(1 - lr * weight_decay),
        f32(1 - beta1),
        f32(beta2),
        f32(1 - beta2),
        f32(lr * bias_correction2_sqrt / bias_correction1),
        f32(eps * bias_correction2_sqrt),
    )


def step_full(
    p: torch.Tensor,
    state: dict[str, Any],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: float,
) -> bool:
    """One AdamW step of ``p`` (``supports(p)``) on its 32-bit ``state`` in place; False (nothing done) when the
    states are not contiguous float32 (a loaded state dict may hold other layouts): the torch path takes it."""
    m, v = state["exp_avg"], state["exp_avg_sq"]
    if not (m.dtype == v.dtype == torch.float32 and m.is_contiguous() and v.is_contiguous()):
        return False
    kernels = _compiled()
    kernels["full"](_numpy(p), _numpy(p.grad), _numpy(m), _numpy(v), *_scalars(lr, beta1, beta2, eps, weight_decay, step))
    return True


def step(
    p: torch.Tensor,
    state: dict[str, Any],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    step: float,
) -> bool:
    """One AdamW step of ``p`` (``supports(p)``) on its quantized ``state``, which is updated in place (True)."""
    kernels = _compiled()
    scalars = _scalars(lr, beta1, beta2, eps, weight_decay, step)
    inverse_step = np.float32(LINEAR_CODEBOOK._inverse_step)
    flat_p, flat_grad = _numpy(p), _numpy(p.grad)
    m_codes, m_scales = _numpy(state["exp_avg_codes"]), _numpy(state["exp_avg_scales"])
    v_codes = _numpy(state["exp_avg_sq_codes"])
    if p.dim() == 1:
        v_scales = _numpy(state["exp_avg_sq_scales"])
        kernels["vector"](
            flat_p, flat_grad, m_codes, m_scales, v_codes, v_scales, *_TABLES, inverse_step, *scalars, *_block_scratch()
        )
        return True
    v_updated = np.empty(p.numel(), np.float32)
    # as (shape[0], rest); for more than two dimensions the trailing dimensions' rank-1 scale is the column vector
    shape = p.shape
    trailing = [state[f"exp_avg_sq_max{d}"].float() for d in range(1, p.dim())]
    column_scale = trailing[0] if len(trailing) == 1 else rank1_scale(trailing).reshape(-1)
    new_row, new_col = torch.zeros(shape[0]), torch.zeros(column_scale.numel())
    kernels["rank1_first_pass"](
        flat_p,
        flat_grad,
        m_codes,
        m_scales,
        v_codes,
        _numpy(state["exp_avg_sq_max0"].float().contiguous()),
        _numpy(column_scale.contiguous()),
        *_TABLES,
        *scalars,
        v_updated,
        new_row.numpy(),
        new_col.numpy(),
        *_block_scratch(),
    )
    if p.dim() == 2:
        maxima = [new_col]
        safe_column = new_col  # made safe by rank1_encode
    else:
        block = new_col.view(shape[1:])
        maxima = [block.amax(dim=[k for k in range(block.dim()) if k != d]) for d in range(block.dim())]
        safe_column = rank1_scale([torch.where(m > 0, m, torch.ones_like(m)) for m in maxima]).reshape(-1)
    kernels["rank1_encode"](v_updated, new_row.numpy(), _numpy(safe_column.contiguous()), inverse_step, v_codes,
                            np.empty(new_col.numel(), np.float32), np.empty(p.numel(), np.uint8))  # fmt: skip
    state["exp_avg_sq_max0"] = new_row
    for d, vector in enumerate(maxima, start=1):
        state[f"exp_avg_sq_max{d}"] = vector
    return True
