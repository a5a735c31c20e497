"""qdeploy: quantize PyTorch networks and compile QONNX graphs to bit-exact ONNX Runtime models and FPGA firmware.

    import qdeploy
    qmodel = qdeploy.quantize(model, calib=x_calib, weight_bits=4, act_bits=8)
    graph  = qdeploy.export(qmodel, example=x_calib[:1])
    art    = qdeploy.compile(graph, target="hls4ml", board="pynq-z2", out="build/fpga")
    report = art.verify(x_test)

Heavy modules (torch, brevitas, hls4ml) are imported on first use, so ``import qdeploy`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "quantize",
    "qat",
    "mixed",
    "binarize",
    "export",
    "compile",
    "load",
    "inspect",
    "run_golden",
    "sweep",
    "Artifact",
    "QDeployError",
    "__version__",
]

_LAZY = {
    "quantize": ("qdeploy.frontend", "quantize"),
    "qat": ("qdeploy.frontend", "qat"),
    "mixed": ("qdeploy.passes.mixed", "mixed"),
    "binarize": ("qdeploy.passes.binarize", "binarize"),
    "export": ("qdeploy.frontend", "export"),
    "compile": ("qdeploy.compiler", "compile"),
    "load": ("qdeploy.ir", "load_model"),
    "run_golden": ("qdeploy.golden", "run_golden"),
    "sweep": ("qdeploy.sweeps", "sweep"),
    "Artifact": ("qdeploy.artifact", "Artifact"),
    "QDeployError": ("qdeploy.errors", "QDeployError"),
}

if TYPE_CHECKING:
    from qdeploy.artifact import Artifact
    from qdeploy.compiler import compile
    from qdeploy.errors import QDeployError
    from qdeploy.frontend import export, qat, quantize
    from qdeploy.golden import run_golden
    from qdeploy.ir import load_model as load
    from qdeploy.passes.binarize import binarize
    from qdeploy.passes.mixed import mixed
    from qdeploy.sweeps import sweep


def inspect(model: Any) -> dict:
    """Per-layer summary of a QONNX model (path or graph): ops, bit widths, scales, params, MACs, BOPs."""
    from qdeploy.inspection import inspect_model
    from qdeploy.ir import load_model

    return inspect_model(load_model(model))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'qdeploy' has no attribute {name!r}")
