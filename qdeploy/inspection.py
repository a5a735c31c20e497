"""``qdeploy inspect``: per-layer ops, bit widths, scales, parameter count and bit operations (BOPs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.ir import const_input, is_power_of_two, node_attr
from qdeploy.ops import LAYER_OPS, QUANT_OPS, VALUE_SET_PRESERVING_OPS


def model_path(path: str | Path) -> Path:
    """The model file to inspect: ``path`` itself, or the ``golden.onnx`` of an output folder of qdeploy compile (the
    graph every artefact in it was verified against)."""
    from qdeploy.artifact import GOLDEN_FILE
    from qdeploy.errors import ModelLoadError

    path = Path(path)
    if path.is_dir():
        if not (path / GOLDEN_FILE).exists():
            raise ModelLoadError(
                f"{path} is a folder without {GOLDEN_FILE}; pass a .onnx file or an output folder of qdeploy compile"
            )
        return path / GOLDEN_FILE
    return path


def _quant_info(model: ModelWrapper, tensor: str, through_layout: bool) -> dict[str, Any] | None:
    """Bit width / scale of the quantizer producing ``tensor`` (following layout-only ops upstream)."""
    node = model.find_producer(tensor)
    while node is not None and through_layout and node.op_type in VALUE_SET_PRESERVING_OPS:
        node = model.find_producer(node.input[0])
    if node is None or node.op_type not in QUANT_OPS:
        return None
    if node.op_type == "BipolarQuant":
        scale = const_input(model, node, 1)
        return {"bits": 1, "signed": True, "scale": scale, "quant_node": node.name}
    bits = const_input(model, node, 3)
    scale = const_input(model, node, 1)
    return {
        "bits": None if bits is None else int(np.asarray(bits).ravel()[0]),
        "signed": bool(node_attr(node, "signed", 1)),
        "scale": scale,
        "quant_node": node.name,
    }


def _scale_summary(scale: np.ndarray | None) -> str:
    if scale is None:
        return "?"
    scale = np.asarray(scale, dtype=np.float64)
    kind = "po2" if is_power_of_two(scale) else "float"
    granularity = "per-channel" if scale.size > 1 else "per-tensor"
    return f"{granularity} {kind} [{scale.min():.4g}, {scale.max():.4g}]"


def layer_table(model: ModelWrapper) -> list[dict[str, Any]]:
    """One row per compute layer (MatMul/Gemm/Conv) of a QONNX graph."""
    rows = []
    for node in model.graph.node:
        if node.op_type not in LAYER_OPS:
            continue
        weight_q = _quant_info(model, node.input[1], through_layout=False)
        weight = const_input(model, node, 1)
        if weight is None and weight_q is not None:
            weight = const_input(model, model.find_producer(node.input[1]), 0)
        act_q = _quant_info(model, node.input[0], through_layout=True)
        params = int(weight.size) if weight is not None else 0
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = const_input(model, node, 2)
            if bias is None:
                producer = model.find_producer(node.input[2])
                bias = const_input(model, producer, 0) if producer is not None else None
        params += int(bias.size) if bias is not None else 0
        out_shape = model.get_tensor_shape(node.output[0]) or []
        if weight is None:
            macs = 0
        elif node.op_type == "Conv":
            # each output position applies the whole kernel (grouped kernels are already 1/group wide)
            spatial = int(np.prod(out_shape[2:])) if len(out_shape) > 2 else 1
            macs = int(np.prod(weight.shape)) * spatial
        else:
            macs = int(np.prod(weight.shape))
        w_bits = weight_q["bits"] if weight_q else 32
        a_bits = act_q["bits"] if act_q else 32
        rows.append(
            {
                "name": node.name,
                "op": node.op_type,
                "weight_bits": w_bits if weight_q else None,
                "weight_scale": _scale_summary(weight_q["scale"]) if weight_q else "float (unquantized)",
                "activation_bits": a_bits if act_q else None,
                "activation_scale": _scale_summary(act_q["scale"]) if act_q else "float (unquantized)",
                "params": params,
                "macs": macs,
                "bops": macs * (w_bits or 32) * (a_bits or 32),
            }
        )
    return rows


def inspect_model(model: ModelWrapper) -> dict[str, Any]:
    """Model summary: op histogram, quantizers, compute layers and totals."""
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    layers = layer_table(model)
    return {
        "input": {"name": model.graph.input[0].name, "shape": model.get_tensor_shape(model.graph.input[0].name)},
        "output": {"name": model.graph.output[0].name, "shape": model.get_tensor_shape(model.graph.output[0].name)},
        "ops": ops,
        "layers": layers,
        "total_params": sum(r["params"] for r in layers),
        "total_macs": sum(r["macs"] for r in layers),
        "total_bops": sum(r["bops"] for r in layers),
    }


def format_inspection(info: dict[str, Any]) -> str:
    lines = [
        f"input  {info['input']['name']} {info['input']['shape']}",
        f"output {info['output']['name']} {info['output']['shape']}",
        "ops    " + ", ".join(f"{k}x{v}" for k, v in sorted(info["ops"].items())),
        "",
        f"{'layer':<14}{'op':<8}{'w bits':>7}{'a bits':>7}{'params':>9}{'MACs':>10}{'BOPs':>13}  weight scale",
    ]
    for row in info["layers"]:
        lines.append(
            f"{row['name']:<14}{row['op']:<8}{row['weight_bits'] or '-':>7}{row['activation_bits'] or '-':>7}"
            f"{row['params']:>9}{row['macs']:>10}{row['bops']:>13}  {row['weight_scale']}"
        )
    lines.append(f"total: {info['total_params']} params, {info['total_macs']} MACs, {info['total_bops']} BOPs")
    return "\n".join(lines)
