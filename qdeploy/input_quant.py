"""A declared input precision (``--input-quant``) for graphs that compute on their float input.

Fixed-point hardware cannot take a float32 input as it is; a graph that computes on it before any quantizer
(QKeras conversions, FINN-style pre-processing, super-resolution nets) has no exact fixed-point form. Declaring
the input's precision makes that explicit: an input ``Quant`` node is added to the *reference* graph (the one saved
as ``golden.onnx`` and verified against), so the compile is exact against what the hardware really computes, and
the report says that the reference was changed and how.

Spellings (hls4ml's, plus integers): ``fixed<W,I>`` / ``ufixed<W,I>`` (W bits, I integer bits including the sign,
truncating), ``fixed<W,I,RND_CONV>`` (round half to even), ``fixed<W,I,RND>`` (round half up), ``int8`` ...
``int32``, ``uint8`` ... Values outside the range saturate, as a QONNX ``Quant`` clips; hls4ml's ``WRAP``
overflow has no QONNX form and is refused.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx
from onnx import helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.errors import QDeployError

#: hls4ml's quantization modes -> QONNX rounding modes
ROUNDING = {"TRN": "FLOOR", "RND_CONV": "ROUND", "RND": "HALF_UP", "TRN_ZERO": "DOWN", "RND_ZERO": "HALF_DOWN"}
_FIXED = re.compile(r"(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*(\w+)\s*)?(?:,\s*(\w+)\s*)?>")
_INTEGER = re.compile(r"(u?)int(\d+)")
NODE_NAME = "qdeploy_input_quant"


@dataclasses.dataclass(frozen=True)
class InputQuant:
    """The quantizer a declared input precision stands for: ``bits`` wide, ``signed``, step ``2**-fraction``."""

    text: str
    bits: int
    signed: bool
    fraction: int
    rounding: str

    @property
    def scale(self) -> float:
        return float(2.0**-self.fraction)

    def describe(self) -> dict:
        return {
            "declared": self.text,
            "bits": self.bits,
            "signed": self.signed,
            "scale": self.scale,
            "rounding_mode": self.rounding,
            "overflow": "saturate",
        }


def parse_input_quant(text: str) -> InputQuant:
    """``fixed<16,6>``, ``ufixed<8,0,RND_CONV>``, ``int8``, ``uint8`` ... -> InputQuant; else QDeployError."""
    spelled = str(text).strip()
    fixed = _FIXED.fullmatch(spelled)
    integer = _INTEGER.fullmatch(spelled)
    if fixed:
        unsigned, width, integer_bits, mode, overflow = fixed.groups()
        bits, fraction = int(width), int(width) - int(integer_bits)
        rounding = ROUNDING.get((mode or "TRN").upper())
        if rounding is None:
            raise QDeployError(f"input_quant {spelled!r}: rounding {mode!r} unknown; use one of {', '.join(ROUNDING)}")
        if overflow is not None and overflow.upper() not in ("SAT", "SAT_SYM"):
            raise QDeployError(
                f"input_quant {spelled!r}: overflow {overflow} has no QONNX form (a Quant saturates); use SAT"
            )
        signed = not unsigned
    elif integer:
        unsigned, width = integer.groups()
        bits, fraction, rounding, signed = int(width), 0, "ROUND", not unsigned
    else:
        raise QDeployError(
            f"input_quant {spelled!r} is not a precision; write e.g. 'fixed<16,6>', 'ufixed<8,0,RND_CONV>', 'int8', 'uint8'"
        )
    if not 1 <= bits <= 32:
        raise QDeployError(f"input_quant {spelled!r}: width {bits} must be 1 to 32 bits")
    return InputQuant(spelled, bits, signed, fraction, rounding)


def with_input_quant(model: ModelWrapper, quant: InputQuant) -> ModelWrapper:
    """A copy of ``model`` whose input first goes through the declared quantizer (a QONNX ``Quant`` node)."""
    graph_input = model.graph.input[0].name
    if model.get_tensor_datatype(graph_input).is_integer():
        raise QDeployError(
            f"input {graph_input} is already declared as {model.get_tensor_datatype(graph_input).name}; drop input_quant"
        )
    copy = ModelWrapper(onnx.ModelProto.FromString(model.model.SerializeToString()))
    quantized = f"{graph_input}_{NODE_NAME}"
    for node in copy.graph.node:
        node.input[:] = [quantized if name == graph_input else name for name in node.input]
    params = {"scale": quant.scale, "zeropt": 0.0, "bitwidth": float(quant.bits)}
    names = {key: f"{NODE_NAME}_{key}" for key in params}
    for key, value in params.items():
        copy.graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), names[key]))
    node = helper.make_node(
        "Quant",
        [graph_input, names["scale"], names["zeropt"], names["bitwidth"]],
        [quantized],
        name=NODE_NAME,
        domain="qonnx.custom_op.general",
        signed=int(quant.signed),
        narrow=0,
        rounding_mode=quant.rounding,
    )
    copy.graph.node.insert(0, node)
    return copy
