"""hls4ml's spelling of qdeploy's target-neutral fixed-point types (``qdeploy.precision``): ``fixed<W,I,Q,O>``."""

from __future__ import annotations

from qdeploy.errors import UnsupportedModelError
from qdeploy.precision import FixedType, LayerPrecision, Overflow

#: QONNX rounding modes that hls4ml's types can express (hls4ml quant_opt.py): ROUND -> AP_RND_CONV, FLOOR -> AP_TRN
HLS_ROUNDING = {"ROUND": "RND_CONV", "FLOOR": "TRN"}
HLS_OVERFLOW = {Overflow.WRAP: "WRAP", Overflow.SATURATE: "SAT", Overflow.SATURATE_SYMMETRIC: "SAT_SYM"}


def hls_type(fixed: FixedType) -> str:
    """hls4ml precision string, e.g. ``fixed<8,1,RND_CONV,SAT>`` (hls4ml's defaults TRN/WRAP are left out)."""
    if fixed.rounding not in HLS_ROUNDING:
        raise UnsupportedModelError(f"rounding mode {fixed.rounding} has no hls4ml fixed-point form (ROUND and FLOOR do)")
    rounding, overflow = HLS_ROUNDING[fixed.rounding], HLS_OVERFLOW[fixed.overflow]
    base = f"{'' if fixed.signed else 'u'}fixed<{fixed.width},{fixed.integer}"
    if rounding != "TRN" or overflow != "WRAP":
        base += f",{rounding},{overflow}"
    return base + ">"


def layer_types(layer: LayerPrecision) -> dict[str, str]:
    """hls4ml type strings of one node's tensors (``result``, ``weight``, ``bias``, ``accumulator``, ``thresholds``)."""
    return {key: hls_type(fixed) for key, fixed in layer.types().items()}
