"""The ONNX/QONNX operator vocabulary qdeploy reasons with: defined once, imported by the core, passes and targets."""

from __future__ import annotations

#: QONNX quantizers (``qonnx.custom_op.general``): every one fixes the values a tensor can take
QUANT_OPS = ("Quant", "IntQuant", "BipolarQuant", "Trunc")
#: every QONNX quantizer, minifloat FloatQuant included (exporters put them in older domains; qdeploy moves them)
QONNX_QUANTIZER_OPS = (*QUANT_OPS, "FloatQuant")
#: quantizers with a scale, zero point and bit width (``y = (round(clip(x / s + z)) - z) * s``)
SCALED_QUANT_OPS = ("Quant", "IntQuant")
#: layers with a constant weight tensor (a multiply-accumulate per weight)
LAYER_OPS = ("MatMul", "Gemm", "Conv")
#: ops that move or relabel elements without changing any value
LAYOUT_OPS = ("Transpose", "Reshape", "Flatten", "Identity")
#: ops that only reshape (the element order stays), so a per-tensor quantizer commutes with them
RESHAPE_OPS = ("Reshape", "Flatten", "Identity")
#: value-preserving at inference (training-only ops and layout)
PASS_THROUGH_OPS = (*LAYOUT_OPS, "Dropout")
#: element-wise float arithmetic with a constant operand (scales, biases, BatchNorm)
AFFINE_OPS = ("Mul", "Div", "Add", "Sub", "BatchNormalization")
#: float functions of a whole row with no fixed-point form, which classifier heads end in: after the last quantizer
#: the fixed-point targets leave them to the host epilogue (the golden executor on the firmware's exact output)
HOST_ONLY_OPS = ("Softmax", "LogSoftmax")
#: ops that keep a tensor's value set (they select or order values, never make new ones)
VALUE_SET_PRESERVING_OPS = (*LAYOUT_OPS, "MaxPool", "Relu")
