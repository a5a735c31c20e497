"""The ``hls4ml`` target: QONNX graph -> hls4ml project for a named board, every precision derived exactly.

Preparation follows hls4ml's QONNX recipe (cleanup, channels-last, Gemm->MatMul), with additions:
Quant nodes on constants are folded to their exact values (their types then come from ``qdeploy.precision``
instead of hls4ml's scale handling), and bias-less Gemms get a zero bias first (qonnx GemmToMatMul crash).
Graphs with no fixed-point form (float scales, BatchNorm, bipolar layers, float input pre-scaling) are first
lowered to integer layers and ``MultiThreshold`` activations (``LowerToThresholds``), which hls4ml runs through
qdeploy's own layer (``multithreshold.py``); float ops after the last integer tensor (a scale, BatchNorm on the
logits) run on the host, from ``epilogue.onnx``, by the golden executor.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import logging
import re
import string
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from qonnx.core.modelwrapper import ModelWrapper

import qdeploy
from qdeploy.config import CompileConfig, IOType, Strategy
from qdeploy.deps import require, require_executable
from qdeploy.errors import QDeployError, UnsupportedModelError, one_line
from qdeploy.golden import run_golden
from qdeploy.ir import cleanup, const_input, extract_chain, is_power_of_two, node_attr, sample_shape
from qdeploy.pipeline import RunContext, run_steps
from qdeploy.precision import HLS_ROUNDING, FixedType, LayerPrecision, infer_precisions
from qdeploy.target import Target
from qdeploy.targets.hls4ml.boards import get_board
from qdeploy.targets.hls4ml.resources import total as estimated_total
from qdeploy.verify import random_inputs

log = logging.getLogger(__name__)

PROJECT = "qdeploy_fw"
FIRMWARE_DIR = "firmware"
BACKENDS = ("Vitis", "Vivado", "Quartus", "Catapult")
TESTBENCH_SAMPLES = 64
UNROLL_LIMIT = 4096  # "Vivado has an unroll limit of 4096 hardcoded" (hls4ml #904)
IO_FILE = "qdeploy_io.json"  # how the firmware expects its inputs laid out
BUILD_COMMANDS = {
    "Vitis": "vitis-run --mode hls --tcl build_prj.tcl",
    "Vivado": "vivado_hls -f build_prj.tcl",
    "Quartus": "make myproject-fpga   # Intel HLS (i++); see the Makefile",
    "Catapult": "catapult -shell -file build_prj.tcl",
}


# -- preparation steps: plain functions step(model, cfg) -> model --------------------------------------------------

EPILOGUE_FILE = "epilogue.onnx"
EPILOGUE_OPS = ("Mul", "Add", "Sub", "Div", "BatchNormalization")
# ops with no fixed-point form in hls4ml: a graph with any of them is lowered to thresholds
_THRESHOLD_OPS = {"BatchNormalization", "BipolarQuant", "MultiThreshold", "Sub", "Div", "Mul"}


def needs_thresholds(model: ModelWrapper) -> bool:
    """True when the graph has float arithmetic that fixed-point types cannot hold: see ``_THRESHOLD_OPS``, or a
    Quant with a non-power-of-two scale (on weights or activations), per-channel activation scales, or a rounding
    mode hls4ml's types cannot express."""

    for node in model.graph.node:
        if node.op_type in _THRESHOLD_OPS:
            return True
        if node.op_type in ("Quant", "IntQuant"):
            scale = const_input(model, node, 1)
            if scale is not None and not is_power_of_two(np.asarray(scale, dtype=np.float64)):
                return True
            on_datapath = model.get_initializer(node.input[0]) is None
            if on_datapath and scale is not None and np.unique(scale).size > 1:
                return True
            if on_datapath and str(node_attr(node, "rounding_mode", "ROUND")).upper() not in HLS_ROUNDING:
                return True
    return False


def lower_to_thresholds(model: ModelWrapper, cfg: CompileConfig) -> ModelWrapper:
    """Integer layers + MultiThreshold activations, when the graph has no fixed-point form (see needs_thresholds)."""
    if not needs_thresholds(model):
        return model
    from qdeploy.passes.graph.lower_to_thresholds import LowerToThresholds

    return cleanup(model.transform(LowerToThresholds()))


def fold_constant_quants(model: ModelWrapper, cfg: CompileConfig) -> ModelWrapper:
    """Replace Quant nodes on constants (weights, biases) by their exact quantized values."""
    from qonnx.transformation.fold_constants import FoldConstants

    return model.transform(FoldConstants(exclude_op_types=[]))


def fill_gemm_bias(model: ModelWrapper, cfg: CompileConfig) -> ModelWrapper:
    """Give bias-less Gemms a zero bias (qonnx GemmToMatMul crashes without one)."""
    from qdeploy.passes.graph.fill_gemm_bias import FillGemmBias

    return model.transform(FillGemmBias())


def input_is_channels_last(model: ModelWrapper, cfg: CompileConfig) -> bool:
    """io_stream firmware takes image inputs channels-last (hls4ml streams pixels with their channels)."""
    shape = model.get_tensor_shape(model.graph.input[0].name)
    return cfg.io_type is IOType.STREAM and shape is not None and len(shape) >= 3


def move_quant_before_layout(model: ModelWrapper, cfg: CompileConfig) -> ModelWrapper:
    """Per-tensor Quants above Flatten/Reshape/Transpose, so the channels-last transpose folds into weights."""
    from qdeploy.passes.graph.move_quant_before_layout import MoveQuantBeforeLayout

    return model.transform(MoveQuantBeforeLayout())


def to_channels_last(model: ModelWrapper, cfg: CompileConfig) -> ModelWrapper:
    """qonnx ConvertToChannelsLastAndClean: hls4ml computes convolutions channels-last."""
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean

    return model.transform(ConvertToChannelsLastAndClean(make_input_channels_last=input_is_channels_last(model, cfg)))


def thresholds_channels_last(model: ModelWrapper, cfg: CompileConfig) -> ModelWrapper:
    """Move the transposes qonnx leaves around MultiThresholds across them and cancel/absorb them as qonnx does."""
    if not any(node.op_type == "MultiThreshold" for node in model.graph.node):
        return model
    from qonnx.transformation.channels_last import (
        AbsorbChanFirstIntoMatMul,
        MoveChanFirstDownstream,
        RemoveConsecutiveChanFirstAndChanLastTrafos,
    )

    from qdeploy.passes.graph.move_transpose_across_multithreshold import MoveTransposeAcrossMultiThreshold
    from qdeploy.pipeline import until_fixed_point

    def one_round(current: ModelWrapper) -> tuple[ModelWrapper, bool]:
        before = current.model.SerializeToString()
        current = until_fixed_point(MoveTransposeAcrossMultiThreshold().apply, current)
        for transformation in (
            RemoveConsecutiveChanFirstAndChanLastTrafos(),
            MoveChanFirstDownstream(),
            AbsorbChanFirstIntoMatMul(),
        ):
            current = current.transform(transformation)
        return current, current.model.SerializeToString() != before

    return cleanup(until_fixed_point(one_round, model))


def gemm_to_matmul(model: ModelWrapper, cfg: CompileConfig) -> ModelWrapper:
    """qonnx GemmToMatMul, then cleanup (hls4ml parses MatMul + Add, not Gemm)."""
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul

    return cleanup(model.transform(GemmToMatMul()))


def check_unroll_limit(model: ModelWrapper, cfg: CompileConfig) -> ModelWrapper:
    """Refuse layers the Latency strategy cannot unroll (Vivado/Vitis HLS stop unrolling at 4,096 iterations)."""
    if cfg.strategy is not Strategy.LATENCY:
        return model
    for node in model.graph.node:
        weights = model.get_initializer(node.input[1]) if node.op_type in ("MatMul", "Conv") else None
        if weights is None:
            continue
        per_cycle = weights.size // cfg.reuse_factor
        if per_cycle > UNROLL_LIMIT:
            needed = -(-weights.size // UNROLL_LIMIT)
            raise UnsupportedModelError(
                f"node {node.name}: {weights.size:,} multiplications / reuse factor {cfg.reuse_factor} exceed the "
                f"{UNROLL_LIMIT:,} a Latency-strategy layer can unroll; use --strategy Resource --reuse-factor {needed} "
                "(or larger)"
            )
    return model


def check_conv_reuse_factor(model: ModelWrapper, cfg: CompileConfig) -> ModelWrapper:
    """Refuse a Resource-strategy Conv whose reuse factor exceeds its kernel size x input channels: hls4ml accepts
    it but its C simulation computes wrong outputs (hls4ml #817: the conv needs RF <= kh * kw * channels)."""
    if cfg.strategy is not Strategy.RESOURCE:
        return model
    for node in model.graph.node:
        weights = model.get_initializer(node.input[1]) if node.op_type == "Conv" else None
        if weights is None:
            continue
        limit = int(np.prod(weights.shape[1:]))  # [out, in, kh, kw] (channels-last Conv keeps ONNX weights)
        if cfg.reuse_factor > limit:
            raise UnsupportedModelError(
                f"node {node.name}: reuse factor {cfg.reuse_factor} exceeds this Conv's kernel size x input channels "
                f"({limit}); hls4ml computes it wrongly (hls4ml #817). Use --reuse-factor {limit} or less"
            )
    return model


PREPARE_STEPS = [
    lower_to_thresholds,
    fold_constant_quants,
    fill_gemm_bias,
    move_quant_before_layout,
    to_channels_last,
    thresholds_channels_last,
    gemm_to_matmul,
]
# Checked once precisions are known, so a model is refused for its most fundamental problem first.
CHECK_STEPS = [check_unroll_limit, check_conv_reuse_factor]


# -- configuration --------------------------------------------------------------------------------------------------


def _layer_config(layer: LayerPrecision) -> dict[str, str]:
    """hls4ml precision keys for one ONNX node's layer (hls4ml names layers after the ONNX nodes)."""
    types = layer.types()
    if layer.quant is not None:
        return {}  # hls4ml derives a Quant's type from the node itself; the C simulation checks it
    if layer.op in ("MatMul", "Conv"):
        config = {"weight": types["weight"], "accum": types["accumulator"], "result": types["result"]}
        config["bias"] = types.get("bias", "fixed<1,1>")  # MatMul has no bias (it is the following Add)
        return config
    if layer.op == "Add":
        return {"bias": types["bias"], "result": types["result"]}
    if layer.op == "MultiThreshold":
        return {"thresholds": types["thresholds"], "result": types["result"]}
    if layer.op == "MaxPool":
        return {"accum": types["result"], "result": types["result"]}
    return {"result": types["result"]}


def _deep_merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def build_hls_config(model: ModelWrapper, cfg: CompileConfig) -> tuple[dict, FixedType]:
    """hls4ml HLSConfig with every precision derived from the graph; the user's ``hls4ml`` block overrides."""
    hls4ml = require("hls4ml", "hls4ml", "the hls4ml target")
    input_type, layers = infer_precisions(model)
    for node in model.graph.node:
        layer = layers.get(node.name)
        if layer is not None and layer.threshold_values is not None:
            # clamped to the input's reachable range: same outcome, and every threshold is a finite fixed-point value
            model.set_initializer(node.input[1], layer.threshold_values)
    with contextlib.redirect_stdout(io.StringIO()):
        config = hls4ml.utils.config.config_from_onnx_model(
            model,
            granularity="name",
            backend=cfg.backend,
            default_precision="fixed<16,6>",
            default_reuse_factor=cfg.reuse_factor,
        )
    config["Model"]["Strategy"] = cfg.strategy.value
    config["Model"]["ReuseFactor"] = cfg.reuse_factor
    by_name = config.setdefault("LayerName", {})
    by_name.setdefault("global_in", {}).setdefault("Precision", {})["result"] = input_type.hls()
    for node in model.graph.node:
        if node.name in layers:
            precision = _layer_config(layers[node.name])
        elif node.op_type in ("Transpose", "Reshape", "Flatten"):
            precision = {"result": input_type.hls()}  # layout ops on the raw input keep the input type
        else:
            continue
        if precision:
            by_name.setdefault(node.name, {}).setdefault("Precision", {}).update(precision)
    _deep_merge(config, dict(cfg.hls4ml))
    return config, input_type


# -- the target -----------------------------------------------------------------------------------------------------


class Hls4mlTarget(Target):
    name = "hls4ml"
    extra = "hls4ml"

    def check_available(self) -> None:
        require("hls4ml", self.extra, "the hls4ml target")
        require_executable("g++", "hls4ml's C simulation", "install it (Debian: apt-get install g++)")

    def lower(self, model: ModelWrapper, cfg: CompileConfig, out_dir: Path, ctx: RunContext) -> dict[str, Any]:
        hls4ml = require("hls4ml", self.extra, "the hls4ml target")
        if cfg.backend not in BACKENDS:
            raise QDeployError(f"hls4ml backend {cfg.backend!r} is not supported; choose one of: {', '.join(BACKENDS)}")
        board = get_board(cfg.board)
        clock = cfg.clock_period_ns or board.clock_period_ns
        prepared = run_steps(model, cfg, PREPARE_STEPS, ctx)
        prepared, epilogue = split_float_epilogue(prepared)
        from qdeploy.targets.hls4ml import multithreshold

        multithreshold.register(cfg.backend)
        hls_config, input_type = ctx.timed("infer_precisions", lambda: build_hls_config(prepared, cfg))
        run_steps(prepared, cfg, CHECK_STEPS, ctx)

        # Golden testbench vectors for the C testbench, written by qdeploy (not by hls4ml's own float model).
        tb_dir = out_dir / "testbench"
        tb_dir.mkdir()
        tb_inputs = random_inputs(model, sample_shape(model), TESTBENCH_SAMPLES, cfg.seed + 1)
        channels_last = input_is_channels_last(model, cfg)
        firmware_inputs = _to_firmware_layout(tb_inputs, channels_last)
        np.save(tb_dir / "inputs.npy", firmware_inputs)
        # what the firmware itself outputs: the golden graph up to the host epilogue, if there is one
        np.save(
            tb_dir / "golden_outputs.npy",
            run_golden(prepared, firmware_inputs, chunk=1) if epilogue else run_golden(model, tb_inputs),
        )
        if epilogue is not None:
            epilogue.save(str(out_dir / EPILOGUE_FILE))

        project_dir = out_dir / FIRMWARE_DIR

        def convert():
            try:
                with contextlib.redirect_stdout(io.StringIO()) as captured:
                    hls_model = hls4ml.converters.convert_from_onnx_model(
                        multithreshold.thresholds_as_attributes(prepared),
                        output_dir=str(project_dir),
                        project_name=PROJECT,
                        backend=cfg.backend,
                        part=board.part,
                        clock_period=clock,
                        io_type=cfg.io_type.value,
                        hls_config=hls_config,
                        input_data_tb=str(tb_dir / "inputs.npy"),
                        output_data_tb=str(tb_dir / "golden_outputs.npy"),
                    )
                    hls_model.compile()
            except Exception as exc:
                # hls4ml prints the C++ compiler's output before raising: name the first error it reports
                errors = [line.strip() for line in captured.getvalue().splitlines() if "error" in line.lower()]
                detail = f" ({errors[0][:300]})" if errors else ""
                raise UnsupportedModelError(f"hls4ml failed: {type(exc).__name__}: {one_line(exc)}{detail}") from exc
            log.debug(captured.getvalue())
            return hls_model

        hls_model = ctx.timed("hls4ml_convert_and_csim_build", convert)
        _write_portable_config(hls_model, project_dir)
        (project_dir / IO_FILE).write_text(json.dumps({"input_channels_last": channels_last}))
        per_layer = _per_layer_report(hls_model, cfg)
        self._write_readme(out_dir, cfg, board, clock, model)
        return {
            "board": board.name,
            "part": board.part,
            "clock_period_ns": clock,
            "backend": cfg.backend,
            "io_type": cfg.io_type.value,
            "strategy": cfg.strategy.value,
            "reuse_factor": cfg.reuse_factor,
            "input_precision": input_type.hls(),
            "per_layer": per_layer,
            "multiplications": sum(row.get("multiplications", 0) for row in per_layer),
            "thresholds": sum(row.get("thresholds", 0) for row in per_layer),
            "comparisons": sum(row.get("comparisons", 0) for row in per_layer),
            "estimated_resources": estimated_total(per_layer),
            "host_epilogue": [node.op_type for node in epilogue.graph.node] if epilogue is not None else [],
            "files": [FIRMWARE_DIR, "testbench", "README.md"] + ([EPILOGUE_FILE] if epilogue is not None else []),
        }

    def _write_readme(self, out_dir: Path, cfg: CompileConfig, board, clock: float, model: ModelWrapper) -> None:
        template = string.Template((files("qdeploy.targets.hls4ml") / "templates" / "README.md.tmpl").read_text())
        (out_dir / FIRMWARE_DIR / "README.md").write_text(
            template.substitute(
                board=board.description,
                version=qdeploy.__version__,
                model=model.graph.name or "model",
                backend=cfg.backend,
                io_type=cfg.io_type.value,
                strategy=cfg.strategy.value,
                reuse_factor=cfg.reuse_factor,
                part=board.part,
                clock_period_ns=clock,
                project=PROJECT,
                build_command=BUILD_COMMANDS[cfg.backend],
            )
        )
        (out_dir / "README.md").write_text(
            f"# qdeploy output ({board.name})\n\nThe firmware project is in `{FIRMWARE_DIR}/` (see its README); "
            "`report.json` holds the verification result and per-layer precisions.\n"
        )

    def runner(self, out_dir: Path) -> Callable[[np.ndarray], np.ndarray]:
        hls4ml = require("hls4ml", self.extra, "the hls4ml target")
        from qdeploy.targets.hls4ml import multithreshold

        project_dir = Path(out_dir) / FIRMWARE_DIR
        config_file = project_dir / "hls4ml_config.yml"
        if not config_file.exists():
            raise QDeployError(f"{project_dir} has no hls4ml_config.yml; recompile with qdeploy compile")
        # The folder may have been moved (it is staged, then renamed): point hls4ml at where it is now.
        config = yaml.safe_load(config_file.read_text())
        if config.get("OutputDir") != str(project_dir.resolve()):
            config["OutputDir"] = str(project_dir.resolve())
            config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        multithreshold.register(config.get("Backend", "Vitis"))
        hls_model = hls4ml.converters.link_existing_project(str(project_dir))
        libraries = sorted((project_dir / "firmware").glob(f"{PROJECT}-*.so"))
        if libraries:
            hls_model._top_function_lib = ctypes.cdll.LoadLibrary(str(libraries[-1].resolve()))
        else:
            with contextlib.redirect_stdout(io.StringIO()):
                hls_model.compile()

        io_file = project_dir / IO_FILE
        channels_last = bool(json.loads(io_file.read_text())["input_channels_last"]) if io_file.exists() else False
        epilogue_file = Path(out_dir) / EPILOGUE_FILE
        epilogue = ModelWrapper(str(epilogue_file)) if epilogue_file.exists() else None

        def run(x: np.ndarray) -> np.ndarray:
            x = _to_firmware_layout(np.asarray(x, dtype=np.float32), channels_last)
            with contextlib.redirect_stdout(io.StringIO()):
                y = np.asarray(hls_model.predict(np.ascontiguousarray(x)), dtype=np.float32)
            if epilogue is not None:
                shape = epilogue.get_tensor_shape(epilogue.graph.input[0].name)
                y = run_golden(epilogue, y.reshape(len(x), *shape[1:]))
            return np.asarray(y).reshape(len(x), -1)

        return run


def split_float_epilogue(model: ModelWrapper) -> tuple[ModelWrapper, ModelWrapper | None]:
    """Cut float ops after the last integer tensor of a thresholded graph (a quantizer's scale, BatchNorm on the
    logits) into a host-side epilogue; the firmware then outputs that integer tensor. Graphs without
    MultiThreshold keep everything in firmware."""
    from onnx import TensorProto, helper

    if not any(node.op_type == "MultiThreshold" for node in model.graph.node):
        return model, None
    output = model.graph.output[0].name
    tail, tensor = [], output
    while True:
        producer = model.find_producer(tensor)
        if producer is None or producer.op_type not in EPILOGUE_OPS:
            break
        if any(model.get_initializer(name) is None for name in producer.input[1:] if name):
            break
        if tensor != output and len(model.find_consumers(tensor) or []) != 1:
            break
        tail.insert(0, producer)
        tensor = producer.input[0]
    if not tail:
        return model, None
    boundary, shape = tensor, model.get_tensor_shape(tensor)
    epilogue = extract_chain(model, tail, boundary, output, shape, model.get_tensor_shape(output))
    firmware = ModelWrapper(model.model, make_deepcopy=True)
    names = {node.name for node in tail}
    keep = [node for node in firmware.graph.node if node.name not in names]
    del firmware.graph.node[:]
    firmware.graph.node.extend(keep)
    del firmware.graph.output[:]
    for value_info in list(firmware.graph.value_info):
        if value_info.name == boundary:
            firmware.graph.value_info.remove(value_info)
    firmware.graph.output.append(helper.make_tensor_value_info(boundary, TensorProto.FLOAT, shape))
    return cleanup(firmware), cleanup(epilogue)


def _to_firmware_layout(x: np.ndarray, channels_last: bool) -> np.ndarray:
    """NCHW (the graph's layout) -> NHWC when the firmware streams channels-last inputs."""
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if channels_last else x


def _write_portable_config(hls_model, project_dir: Path) -> None:
    """Rewrite hls4ml_config.yml without the pickled ONNX model hls4ml embeds (``!!python/object``), which
    hls4ml's own ``link_existing_project`` (a safe YAML load) cannot read back."""
    config = {k: v for k, v in hls_model.config.config.items() if k not in ("OnnxModel", "KerasModel", "PytorchModel")}
    (project_dir / "hls4ml_config.yml").write_text(yaml.safe_dump(_plain(config), sort_keys=False))


def _plain(value: Any) -> Any:
    """YAML-safe copy of hls4ml's config (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _per_layer_report(hls_model, cfg: CompileConfig) -> list[dict[str, Any]]:
    """Per hls4ml layer: class, every precision it was built with, multiplier/comparator counts, resource estimate."""
    from qdeploy.targets.hls4ml.resources import estimate_layer

    rows = []
    for layer in hls_model.get_layers():
        precisions, widths = {}, {}
        for key, variable in layer.get_layer_precision().items():
            short = key.replace(f"{layer.name.lower()}_", "").replace(f"{layer.name}_", "")
            if re.fullmatch(r"layer\d+_t|result_t|input_t", short):
                short = "result"  # hls4ml names output types by layer index
            elif short.endswith("_index") or short == "table_t":
                continue  # lookup-table/index types are unused by these layers
            precisions[short.removesuffix("_t")] = str(variable.precision)
            widths[short.removesuffix("_t")] = int(getattr(variable.precision, "width", 0) or 0)
        row: dict[str, Any] = {
            "name": layer.name,
            "op": layer.class_name,
            "weight": precisions.get("weight"),
            "activation": precisions.get("result"),
            "accumulator": precisions.get("accum"),
            "precisions": precisions,
        }
        output = layer.get_output_variable()
        source = layer.get_input_variable() if layer.inputs else None
        counts: dict[str, int] = {}
        thresholds = layer.weights.get("thresholds") if hasattr(layer, "weights") else None
        if thresholds is not None:
            row["thresholds"] = int(np.asarray(thresholds.data).size)
            row["comparisons"] = counts["comparisons"] = int(output.size()) * int(layer.get_attr("n_thresholds"))
            counts["channels_per_cycle"] = int(layer.get_attr("n_chan")) * int(layer.get_attr("n_thresholds"))
        weights = layer.weights.get("weight") if hasattr(layer, "weights") else None
        if weights is not None and layer.class_name in ("Dense", "Conv1D", "Conv2D"):
            data = np.asarray(weights.data)
            # power-of-two or zero weights are shifts, not multipliers
            nonzero = data[data != 0]
            mantissa, _ = np.frexp(np.abs(nonzero))
            row["multiplications"] = counts["multiplications"] = int(np.sum(mantissa != 0.5))
            row["weights"] = counts["weights"] = int(data.size)
            counts["nonzero_weights"] = int(nonzero.size)
        row["estimated_resources"] = estimate_layer(
            layer.class_name,
            strategy=cfg.strategy.value,
            reuse=cfg.reuse_factor,
            io_type=cfg.io_type.value,
            input_bits=int(source.type.precision.width) if source is not None else 0,
            result_bits=widths.get("result", 0),
            n_out=int(output.size()),
            weight_bits=widths.get("weight", 0),
            accumulator_bits=widths.get("accum", 0),
            **counts,
        )
        rows.append(row)
    return rows
