"""QONNX graph passes: ``qonnx.transformation.base.Transformation`` subclasses, one per file."""

from qdeploy.passes.graph.complete_conv_attributes import CompleteConvAttributes
from qdeploy.passes.graph.fill_gemm_bias import FillGemmBias
from qdeploy.passes.graph.move_quant_before_layout import MoveQuantBeforeLayout
from qdeploy.passes.graph.remove_pass_through import RemovePassThrough
from qdeploy.passes.graph.ungroup_conv import UngroupConv

__all__ = ["CompleteConvAttributes", "FillGemmBias", "MoveQuantBeforeLayout", "RemovePassThrough", "UngroupConv"]
