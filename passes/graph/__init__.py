"""QONNX graph passes: ``qonnx.transformation.base.Transformation`` subclasses, one per file."""

from qdeploy.passes.graph.fill_gemm_bias import FillGemmBias
from qdeploy.passes.graph.move_quant_before_layout import MoveQuantBeforeLayout

__all__ = ["FillGemmBias", "MoveQuantBeforeLayout"]
