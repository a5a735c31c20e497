"""The ``onnxruntime`` target: writes ``model.onnx`` (integer QDQ) and runs it in an ORT session."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.config import CompileConfig
from qdeploy.deps import require
from qdeploy.inspection import layer_table
from qdeploy.pipeline import RunContext
from qdeploy.target import Target

MODEL_FILE = "model.onnx"
# Operators ORT runs on integers after fusing QDQ groups (QDQ transformers and QLinear/Integer kernels).
INTEGER_OPS = {
    "QLinearMatMul",
    "QLinearConv",
    "QGemm",
    "MatMulInteger",
    "ConvInteger",
    "MatMulIntegerToFloat",
    "QLinearAdd",
    "QLinearMul",
    "DynamicQuantizeMatMul",
    "QLinearGlobalAveragePool",
    "QLinearAveragePool",
}


OPTIMIZATION_LEVEL = "ORT_ENABLE_ALL"
#: ORT's QDQ fusion (QLinearConv, QGemm, ...): integer accumulation, then a requantization by a float32 multiplier
QDQ_FUSION = "QDQSelectorActionTransformer"


def integer_kernels_are_exact(proto: onnx.ModelProto) -> bool:
    """True when every QuantizeLinear/DequantizeLinear scale is a (finite, positive) power of two. Only then is an
    integer kernel's requantization (accumulator x s_in x s_w / s_out, rounded) the same number as the graph's float32
    arithmetic (for accumulators within float32's 24-bit mantissa, as everywhere in the golden executor); with other
    scales the multiplier is itself rounded and the two differ at rounding ties (seen: 1 output in 4,000 on a
    float-scale digits CNN), so such graphs run ORT's float kernels on the dequantized integers, as the graph does."""
    constants = {init.name: numpy_helper.to_array(init) for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            scale = constants.get(node.input[1])
            if scale is None:
                return False
            scale = scale.astype(np.float64)
            if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
                return False
            if not np.array_equal(np.exp2(np.round(np.log2(scale))), scale):
                return False
    return True


def session_config(proto: onnx.ModelProto) -> dict[str, str]:
    """The session settings qdeploy runs ``model.onnx`` with (``report.json``: to get the same numbers elsewhere,
    in any ORT language binding, set these config entries and OPTIMIZATION_LEVEL)."""
    config = {
        # A MatMul of a float activation (e.g. +-1 from BipolarQuant) with DequantizeLinear weights is fused into
        # MatMulNBits, whose default accuracy level 4 quantizes the activation to int8 on the fly: not exact.
        # Level 1 keeps the activation in float32, which is exact like the graph's MatMul.
        "session.qdq_matmulnbits_accuracy_level": "1",
    }
    if not integer_kernels_are_exact(proto):
        config["optimization.disable_specified_optimizers"] = QDQ_FUSION
    return config


def make_session(path: Path, optimized_path: Path | None = None, config: dict[str, str] | None = None):
    """An ORT session on ``path`` at OPTIMIZATION_LEVEL with ``config`` (default: ``session_config`` of the file)."""
    ort = require("onnxruntime", "onnxruntime", "the onnxruntime target")
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION_LEVEL)
    options.log_severity_level = 3
    if config is None:
        config = session_config(onnx.load(str(path), load_external_data=False))
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeTarget(Target):
    name = "onnxruntime"
    extra = "onnxruntime"

    def check_available(self) -> None:
        require("onnxruntime", self.extra, "the onnxruntime target")

    def lower(self, model: ModelWrapper, cfg: CompileConfig, out_dir: Path, ctx: RunContext) -> dict[str, Any]:
        from qdeploy.targets.onnxruntime.lower import lower_to_qdq

        proto = ctx.timed("lower_to_qdq", lambda: lower_to_qdq(model))
        onnx.save(proto, str(out_dir / MODEL_FILE))
        optimized = out_dir / "model.optimized.onnx"
        config = session_config(proto)
        ctx.timed("ort_session", lambda: make_session(out_dir / MODEL_FILE, optimized, config))
        kernel_ops = Counter(node.op_type for node in onnx.load(str(optimized)).graph.node)
        rows = layer_table(model)
        for row in rows:
            quantized = bool(row["weight_bits"] and row["activation_bits"])
            row["weight"] = f"int{row['weight_bits']}" if row["weight_bits"] else "float32"
            row["activation"] = f"int{row['activation_bits']}" if row["activation_bits"] else "float32"
            row["accumulator"] = "int32" if quantized else "float32"
        return {
            "per_layer": rows,
            "ort_kernels": dict(sorted(kernel_ops.items())),
            "integer_kernels": sum(n for op, n in kernel_ops.items() if op in INTEGER_OPS),
            # how to run model.onnx elsewhere with the same numbers (model.optimized.onnx is this machine's
            # optimized form, for reading: re-optimizing it under other settings may fuse QDQ groups again)
            "session_config": {"graph_optimization_level": OPTIMIZATION_LEVEL, **config},
            "files": [MODEL_FILE, "model.optimized.onnx"],
        }

    def runner(self, out_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
        session = make_session(Path(out_dir) / MODEL_FILE)
        input_name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            chunks = [session.run(None, {input_name: x[i : i + 4096]})[0] for i in range(0, len(x), 4096)]
            return np.concatenate(chunks)

        return run
