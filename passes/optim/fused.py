"""AdamW4bit's step for one quantized parameter as compiled loops (numba): decode, update, re-encode in one pass.

Why compiled loops: coding in torch takes ~20 passes over the state per step (decode, scale, update, block
maxima, normalize, look up, compare, pack), each a fresh temporary; fused, a block of 128 first-moment entries
is decoded, updated and re-encoded while it sits in cache, and only the rank-1 second moment needs a second pass
(its row and column maxima are known only after the whole tensor is updated). ``torch.compile`` was measured on
the same function first: ~30 s to compile per shape and a slower step than torch's eager ops on this CPU.

Same state format and the same coding as ``quant4`` (the bucket tables of ``Codebook``, the linear map's
arithmetic code, the pad code of odd lengths); the update is AdamW's, computed in float32 like torch's kernels.
Used for contiguous float32 CPU parameters of one or two dimensions when numba is installed
(``pip install 'qdeploy[optim]'``); everything else takes the torch path.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from qdeploy.passes.optim.quant4 import BLOCK, DE_CODEBOOK, LINEAR_CODEBOOK

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
        and p.dim() in (1, 2)
        and p.is_contiguous()
        and grad is not None
        and grad.dtype == torch.float32
        and grad.is_contiguous()
    )


def _kernels() -> dict[str, Any]:
    """Compile (or load from numba's cache) the loops once per process."""
    njit = numba.njit(cache=True, fastmath={"nnan", "ninf", "nsz"}, error_model="numpy", nogil=True)

    @njit
    def update_block(p, grad, start, count, m_block, v_block, decay, beta1_weight, beta2, beta2_weight, step_size,
                     eps_term):  # fmt: skip
        """AdamW on ``count`` entries from ``start``, in float32 as torch's p.mul_, m.lerp_, v.mul_.addcmul_,
        p.addcdiv_ compute it; the decoded moments in ``m_block``/``v_block`` are updated in place. A loop of
        plain arithmetic on contiguous arrays, which LLVM vectorizes."""
        for j in range(count):
            g = grad[start + j]
            m = m_block[j] + beta1_weight * (g - m_block[j])
            v = v_block[j] * beta2 + beta2_weight * g * g
            p[start + j] = p[start + j] * decay + (-step_size) * (m / (np.sqrt(v) + eps_term))
            m_block[j] = m
            v_block[j] = v

    @njit
    def decode_block(packed, start, count, values, scale, out):
        for j in range(0, count, 2):
            byte = packed[(start + j) >> 1]
            out[j] = values[byte & 15] * scale
            out[j + 1] = values[byte >> 4] * scale  # past ``count`` on an odd tail: scratch, never used

    @njit
    def absmax(values, count):
        result = np.float32(0.0)
        for j in range(count):
            result = max(result, abs(values[j]))
        return result

    @njit
    def code_block(values, count, packed, start, low_code, midpoint, inverse_step, normalized, normalized_bits):
        """Block-wise coding of ``values[:count]`` (entries ``start ..`` of the tensor, start even) into ``packed``
        in place; returns the block's absmax scale. ``inverse_step`` > 0 selects the linear map's arithmetic
        code, else the bucket tables. ``normalized`` is scratch of one block, ``normalized_bits`` its int32 view
        (the bucket key is a float's bits). An odd tail's pad code is 0."""
        scale = absmax(values, count)
        safe = scale if scale > 0 else np.float32(1.0)
        for j in range(count):
            normalized[j] = values[j] / safe
        if count % 2:
            normalized[count] = 0  # the pad entry, coded with its pair and then cleared to the pad code 0
        for j in range(0, count, 2):
            pair = 0
            for k in range(2):
                if inverse_step > 0:
                    c = np.ceil(normalized[j + k] * inverse_step - np.float32(1.5))
                    code = 0 if c < 0 else (15 if c > 15 else np.int64(c))
                else:
                    key = (normalized_bits[j + k] >> _BUCKET_SHIFT) & _BUCKET_MASK
                    code = np.int64(low_code[key]) + (1 if normalized[j + k] > midpoint[key] else 0)
                pair |= code << (4 * k)
            packed[(start + j) >> 1] = pair
        if count % 2:
            packed[(start + count - 1) >> 1] &= 15
        return scale

    @njit
    def step_vector(p, grad, m_codes, m_scales, v_codes, v_scales, m_values, m_low, m_mid, v_values, v_inverse_step,
                    decay, beta1_weight, beta2, beta2_weight, step_size, eps_term):  # fmt: skip
        """1-D parameter: both moments block-wise; one pass, block by block."""
        numel = p.shape[0]
        m_block = np.empty(BLOCK, np.float32)
        v_block = np.empty(BLOCK, np.float32)
        normalized = np.empty(BLOCK, np.float32)
        normalized_bits = normalized.view(np.int32)
        no_step = np.float32(0.0)
        for b in range(m_scales.shape[0]):
            start = b * BLOCK
            count = min(BLOCK, numel - start)
            decode_block(m_codes, start, count, m_values, m_scales[b], m_block)
            decode_block(v_codes, start, count, v_values, v_scales[b], v_block)
            update_block(p, grad, start, count, m_block, v_block, decay, beta1_weight, beta2, beta2_weight,
                         step_size, eps_term)  # fmt: skip
            m_scales[b] = code_block(m_block, count, m_codes, start, m_low, m_mid, no_step, normalized, normalized_bits)
            v_scales[b] = code_block(
                v_block, count, v_codes, start, m_low, m_mid, v_inverse_step, normalized, normalized_bits
            )

    @njit
    def step_matrix(p, grad, m_codes, m_scales, v_codes, v_row, v_col, m_values, m_low, m_mid, v_values,
                    v_inverse_step, decay, beta1_weight, beta2, beta2_weight, step_size, eps_term,
                    v_updated, v_codes_unpacked, new_row, new_col):  # fmt: skip
        """2-D parameter (flat views, ``v_row``/``v_col`` its second moment's maxima): m block-wise in the same pass
        as the update; v's rank-1 coding needs its new maxima, so v is kept in ``v_updated`` for a second pass."""
        numel = p.shape[0]
        rows, cols = v_row.shape[0], v_col.shape[0]
        m_block = np.empty(BLOCK, np.float32)
        normalized = np.empty(BLOCK, np.float32)
        normalized_bits = normalized.view(np.int32)
        no_step = np.float32(0.0)
        # v decoded into v_updated row by row (its scale is per row and column), then updated block by block
        for r in range(rows):
            base = r * cols
            for c in range(cols):
                i = base + c
                code = (v_codes[i >> 1] >> ((i & 1) * 4)) & 15
                v_updated[i] = v_values[code] * min(v_row[r], v_col[c])
        for b in range(m_scales.shape[0]):
            start = b * BLOCK
            count = min(BLOCK, numel - start)
            decode_block(m_codes, start, count, m_values, m_scales[b], m_block)
            update_block(p, grad, start, count, m_block, v_updated[start : start + count], decay, beta1_weight, beta2,
                         beta2_weight, step_size, eps_term)  # fmt: skip
            m_scales[b] = code_block(m_block, count, m_codes, start, m_low, m_mid, no_step, normalized, normalized_bits)
        # v over the min of its new row and column maxima (a zero maximum's row or column is all zero: divide by 1)
        for r in range(rows):
            base = r * cols
            row_max = np.float32(0.0)
            for c in range(cols):
                value = v_updated[base + c]
                row_max = max(row_max, value)
                new_col[c] = max(new_col[c], value)
            new_row[r] = row_max
        one = np.float32(1.0)
        safe_col = np.empty(cols, np.float32)
        for c in range(cols):
            safe_col[c] = new_col[c] if new_col[c] > 0 else one
        for r in range(rows):
            row = new_row[r] if new_row[r] > 0 else one
            base = r * cols
            for c in range(cols):
                x = np.ceil((v_updated[base + c] / min(row, safe_col[c])) * v_inverse_step - np.float32(1.5))
                v_codes_unpacked[base + c] = 0 if x < 0 else (15 if x > 15 else np.uint8(x))
        # two codes per little-endian 16-bit word c0 + 256 c1: (word | word >> 4) has c0 | c1 << 4 in its low byte
        words = v_codes_unpacked[: numel - numel % 2].view(np.uint16)
        for k in range(words.shape[0]):
            word = words[k]
            v_codes[k] = (word | (word >> 4)) & 0xFF
        if numel % 2:
            v_codes[numel >> 1] = v_codes_unpacked[numel - 1]

    return {"vector": step_vector, "matrix": step_matrix}


_COMPILED: dict[str, Any] = {}


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().reshape(-1).numpy()


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
) -> None:
    """One AdamW step of ``p`` (``supports(p)``) on its quantized ``state``, which is updated in place."""
    if not _COMPILED:
        _COMPILED.update(_kernels())
    bias_correction1 = 1 - beta1**step
    bias_correction2_sqrt = math.sqrt(1 - beta2**step)
    f32 = np.float32
    scalars = (
        f32(1 - lr * weight_decay),
        f32(1 - beta1),
        f32(beta2),
        f32(1 - beta2),
        f32(lr * bias_correction2_sqrt / bias_correction1),
        f32(eps * bias_correction2_sqrt),
    )
    de, linear = DE_CODEBOOK, LINEAR_CODEBOOK
    tables = (_numpy(de.values), _numpy(de._bucket_lowest_code), _numpy(de._bucket_midpoint), _numpy(linear.values))
    inverse_step = f32(linear._inverse_step)
    flat_p, flat_grad = _numpy(p), _numpy(p.grad)
    m_codes, m_scales = _numpy(state["exp_avg_codes"]), _numpy(state["exp_avg_scales"])
    v_codes = _numpy(state["exp_avg_sq_codes"])
    if p.dim() == 1:
        v_scales = _numpy(state["exp_avg_sq_scales"])
        _COMPILED["vector"](flat_p, flat_grad, m_codes, m_scales, v_codes, v_scales, *tables, inverse_step, *scalars)
        return
    rows, cols = p.shape
    new_row, new_col = torch.zeros(rows), torch.zeros(cols)
    _COMPILED["matrix"](
        flat_p,
        flat_grad,
        m_codes,
        m_scales,
        v_codes,
        _numpy(state["exp_avg_sq_max0"]),
        _numpy(state["exp_avg_sq_max1"]),
        *tables,
        inverse_step,
        *scalars,
        np.empty(rows * cols, np.float32),
        np.empty(rows * cols, np.uint8),
        new_row.numpy(),
        new_col.numpy(),
    )
    state["exp_avg_sq_max0"], state["exp_avg_sq_max1"] = new_row, new_col
