"""The ``onnxruntime`` target: writes ``model.onnx`` (integer layers where exact, QDQ elsewhere) and runs it in an
ORT session."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.deps import require
from qdeploy.inspection import layer_table
from qdeploy.ir import is_power_of_two
from qdeploy.pipeline import RunContext
from qdeploy.runtime import OPTIMIZATION_LEVEL, ort_session, session_threads
from qdeploy.target import NoOptions, Target

MODEL_FILE = "model.onnx"
OPTIMIZED_FILE = "model.optimized.onnx"
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
            if scale is None or not is_power_of_two(scale):
                return False
    return True


def session_config(proto: onnx.ModelProto) -> dict[str, str]:
    """The session settings qdeploy runs ``model.onnx`` with (``report.json``: to get the same numbers elsewhere,
    in any ORT language binding, set these config entries and OPTIMIZATION_LEVEL). A model this target lowered
    carries the entries its lowering proved exact (``lower.recorded_session_config``); others get the rules below."""
    from qdeploy.targets.onnxruntime.lower import recorded_session_config

    recorded = recorded_session_config(proto)
    if recorded:
        return recorded
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
    """An ORT session on ``path`` with ``config`` (default: ``session_config`` of the file)."""
    if config is None:
        config = session_config(onnx.load(str(path), load_external_data=False))
    return ort_session(path, config, optimized_path, "the onnxruntime target")


def lower_to_qdq(model: ModelWrapper, options: NoOptions) -> ModelWrapper:
    """QONNX Quant/BipolarQuant nodes to standard QuantizeLinear/DequantizeLinear (integer QDQ) that ORT fuses."""
    from qdeploy.targets.onnxruntime.lower import lower_to_qdq as lower

    return ModelWrapper(lower(model))


class OnnxRuntimeTarget(Target):
    name = "onnxruntime"
    extra = "onnxruntime"

    def check_available(self) -> None:
        require("onnxruntime", self.extra, "the onnxruntime target")

    def describe(self) -> list[str]:
        return [
            "integer model for ONNX Runtime's CPU kernels: requantized QLinearConv / QGemm where exact, QDQ "
            f"elsewhere (graph optimization {OPTIMIZATION_LEVEL})"
        ]

    def steps(self, options: NoOptions) -> list:
        return [lower_to_qdq]

    def emit(self, model: ModelWrapper, options: NoOptions, out_dir: Path, ctx: RunContext) -> dict[str, Any]:
        proto = model.model
        onnx.save(proto, str(out_dir / MODEL_FILE))
        optimized = out_dir / OPTIMIZED_FILE
        config = session_config(proto)
        ctx.timed("ort_session", lambda: make_session(out_dir / MODEL_FILE, optimized, config))
        kernel_ops = Counter(node.op_type for node in onnx.load(str(optimized)).graph.node)
        rows = layer_table(ctx.source)
        for row in rows:
            quantized = bool(row["weight_bits"] and row["activation_bits"])
            row["weight"] = f"int{row['weight_bits']}" if row["weight_bits"] else "float32"
            row["activation"] = f"int{row['activation_bits']}" if row["activation_bits"] else "float32"
            row["accumulator"] = "int32" if quantized else "float32"
        from qdeploy.targets.onnxruntime.exactness import PLAN_KEY

        plan = next((prop.value for prop in proto.metadata_props if prop.key == PLAN_KEY), "")
        return {
            "per_layer": rows,
            # which dot products run on integer kernels, which stay in float and why (``exactness.plan_model``)
            "plan": plan,
            "ort_kernels": dict(sorted(kernel_ops.items())),
            "integer_kernels": sum(n for op, n in kernel_ops.items() if op in INTEGER_OPS),
            # how to run model.onnx elsewhere with the same numbers (model.optimized.onnx is this machine's
            # optimized form, for reading: re-optimizing it under other settings may fuse QDQ groups again)
            "session_config": {"graph_optimization_level": OPTIMIZATION_LEVEL, **config},
            # ORT's float GEMM partitions its sums by thread count: a plan that keeps float dot products on
            # unquantized data reproduces the verified numbers at this intra-op thread count (None: ORT's default)
            "intra_op_num_threads": session_threads(),
            "files": [MODEL_FILE, OPTIMIZED_FILE],
        }

    def runner(self, out_dir: Path, run_options: Any = None) -> Callable[[np.ndarray], np.ndarray]:
        session = make_session(Path(out_dir) / MODEL_FILE)
        input_name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            chunks = [session.run(None, {input_name: x[i : i + 4096]})[0] for i in range(0, len(x), 4096)]
            return np.concatenate(chunks)

        return run
