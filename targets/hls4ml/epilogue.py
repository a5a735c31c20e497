"""The host epilogue (``qdeploy.ir.split_float_epilogue``): float ops after the last integer tensor of a thresholded
graph run on the host, from this file in the output folder."""

from __future__ import annotations

from qdeploy.ir import split_float_epilogue

EPILOGUE_FILE = "epilogue.onnx"

__all__ = ["EPILOGUE_FILE", "split_float_epilogue"]
