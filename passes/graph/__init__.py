"""QONNX graph passes: ``qonnx.transformation.base.Transformation`` subclasses, one per file."""

from qdeploy.passes.graph.fill_gemm_bias import FillGemmBias

__all__ = ["FillGemmBias"]
