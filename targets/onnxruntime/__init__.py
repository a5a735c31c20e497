"""ONNX Runtime target: QONNX ``Quant`` nodes lowered to integer QDQ that ORT fuses into integer kernels."""

from qdeploy.targets.onnxruntime.target import OnnxRuntimeTarget

__all__ = ["OnnxRuntimeTarget"]
