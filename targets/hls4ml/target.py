"""The ``hls4ml`` target: QONNX graph -> hls4ml project for a named board, every precision derived exactly.

Steps (``steps.py``) prepare the graph as hls4ml's QONNX recipe wants it; ``emit`` cuts a float host epilogue
(``epilogue.py``), derives every precision (``config.py``), converts with hls4ml, builds the C simulation, and writes
the project (``project.py``) and the per-layer report (``report.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.artifact import file_in_folder
from qdeploy.deps import require, require_executable
from qdeploy.errors import QDeployError, UnsupportedModelError, one_line
from qdeploy.golden import run_golden
from qdeploy.ir import sample_shape
from qdeploy.pipeline import RunContext
from qdeploy.target import Target
from qdeploy.targets.hls4ml.boards import BACKEND_VENDOR, BOARDS
from qdeploy.targets.hls4ml.config import build_hls_config
from qdeploy.targets.hls4ml.csim_processes import predict_in_processes
from qdeploy.targets.hls4ml.epilogue import EPILOGUE_FILE, split_float_epilogue
from qdeploy.targets.hls4ml.implementation import choose_implementations
from qdeploy.targets.hls4ml.options import Backend, Hls4mlOptions, Hls4mlRunOptions, split_hls4ml_sections
from qdeploy.targets.hls4ml.project import (
    FIRMWARE_DIR,
    IO_FILE,
    PROJECT,
    check_relocatable,
    library_name,
    make_relocatable,
    missing_weight_files,
    to_firmware_layout,
    write_portable_config,
    write_readmes,
)
from qdeploy.targets.hls4ml.report import per_layer_report
from qdeploy.targets.hls4ml.resources import board_fit, describe_overfit
from qdeploy.targets.hls4ml.resources import total as estimated_total
from qdeploy.targets.hls4ml.steps import STEPS, check_fixed_point_quants, input_is_channels_last, resolve_io_type
from qdeploy.verify import random_inputs

log = logging.getLogger(__name__)

TESTBENCH_SAMPLES = 64


class Hls4mlTarget(Target):
    name = "hls4ml"
    extra = "hls4ml"
    Options = Hls4mlOptions
    RunOptions = Hls4mlRunOptions
    exact_sums = True  # integer accumulators: a graph whose levels hang on float32 summation order is refused first

    def options(self, mapping: Any = None) -> Hls4mlOptions:
        """hls4ml's own sections (``Model``, ``LayerName``, ...) may sit in the ``[hls4ml]`` table beside qdeploy's
        keys: they pass through to hls4ml as ``hls_config``."""
        return super().options(split_hls4ml_sections(mapping))

    def describe(self) -> list[str]:
        vendors = set(BACKEND_VENDOR.values())
        backends = {vendor: "/".join(b for b, v in BACKEND_VENDOR.items() if v == vendor) for vendor in vendors}
        return ["boards (--backend they build with):"] + [
            f"  {board.name:<14}{board.part:<24}{board.clock_period_ns:>6} ns {board.capacity['LUT']:>10,} LUT "
            f"{board.capacity['DSP']:>6,} DSP  {board.description} ({backends[board.vendor]})"
            for board in BOARDS.values()
        ]

    def check_available(self) -> None:
        require("hls4ml", self.extra, "the hls4ml target")
        require_executable("g++", "hls4ml's C simulation", "install it (Debian: apt-get install g++)")

    def steps(self, options: Hls4mlOptions) -> list:
        return list(STEPS)

    def emit(self, model: ModelWrapper, options: Hls4mlOptions, out_dir: Path, ctx: RunContext) -> dict[str, Any]:
        hls4ml = require("hls4ml", self.extra, "the hls4ml target")
        from qdeploy.targets.hls4ml import multithreshold

        source = ctx.source if ctx.source is not None else model
        options = dataclasses.replace(options, io_type=resolve_io_type(source, options))
        board = options.board_preset
        prepared, epilogue = ctx.timed("split_float_epilogue", lambda: split_float_epilogue(model))
        check_fixed_point_quants(prepared, options)
        multithreshold.register(options.backend.value)
        implementations = choose_implementations(prepared, options)
        hls_config, input_type = ctx.timed("infer_precisions", lambda: build_hls_config(prepared, options, implementations))

        # Golden testbench vectors for the C testbench, written by qdeploy (not by hls4ml's own float model).
        tb_dir = out_dir / "testbench"
        tb_dir.mkdir()
        tb_inputs = random_inputs(source, sample_shape(source), TESTBENCH_SAMPLES, 1)
        channels_last = input_is_channels_last(source, options)
        firmware_inputs = to_firmware_layout(tb_inputs, channels_last)
        np.save(tb_dir / "inputs.npy", firmware_inputs)
        # what the firmware itself outputs: the golden graph up to the host epilogue, if there is one
        np.save(
            tb_dir / "golden_outputs.npy",
            run_golden(prepared, firmware_inputs, chunk=1) if epilogue else run_golden(source, tb_inputs),
        )
        if epilogue is not None:
            epilogue.save(str(out_dir / EPILOGUE_FILE))

        project_dir = out_dir / FIRMWARE_DIR

        def hls4ml_step(what: str, action: Callable[[], Any]) -> Any:
            try:
                with contextlib.redirect_stdout(io.StringIO()) as captured:
                    result = action()
            except Exception as exc:
                # hls4ml prints the C++ compiler's output before raising: name the first error it reports
                errors = [line.strip() for line in captured.getvalue().splitlines() if "error" in line.lower()]
                detail = f" ({errors[0][:300]})" if errors else ""
                raise UnsupportedModelError(
                    f"hls4ml failed to {what}: {type(exc).__name__}: {one_line(exc)}{detail}"
                ) from exc
            log.debug(captured.getvalue())
            return result

        hls_model = ctx.timed(
            "hls4ml_convert",
            lambda: hls4ml_step(
                "convert the graph",
                lambda: hls4ml.converters.convert_from_onnx_model(
                    multithreshold.thresholds_as_attributes(prepared),
                    output_dir=str(project_dir),
                    project_name=PROJECT,
                    backend=options.backend.value,
                    part=board.part,
                    clock_period=options.clock,
                    io_type=options.io_type.value,
                    hls_config=hls_config,
                    input_data_tb=str(tb_dir / "inputs.npy"),
                    output_data_tb=str(tb_dir / "golden_outputs.npy"),
                ),
            ),
        )
        per_layer = per_layer_report(hls_model, options, implementations)
        fit = board_fit(per_layer, board.capacity)
        if not fit["fits"]:
            message = describe_overfit(fit, board.name)
            if options.strict_fit:
                raise UnsupportedModelError(
                    f"{message}; raise reuse factors (hls4ml LayerName ReuseFactor), lower bit widths or choose a "
                    "larger --board (or drop --strict-fit)"
                )
            log.warning("%s", message)

        def build_c_simulation() -> None:
            # hls4ml's ModelGraph.compile (write, then build and load the library), with the sources made
            # relocatable between the two
            hls_model.write()
            make_relocatable(project_dir, options.backend)
            hls_model._compile()

        ctx.timed("hls4ml_csim_build", lambda: hls4ml_step("build the C simulation", build_c_simulation))
        write_portable_config(hls_model, project_dir)
        (project_dir / IO_FILE).write_text(json.dumps({"input_channels_last": channels_last}))
        library = library_name(str(hls_model.config.get_config_value("Stamp")))
        write_readmes(out_dir, options, board, source.graph.name or "model", implementations, library)
        check_relocatable(out_dir)
        return {
            "board": board.name,
            "part": board.part,
            "vendor": board.vendor,
            "clock_period_ns": options.clock,
            "backend": options.backend.value,
            "io_type": options.io_type.value,
            "strategy": options.strategy.value,
            "reuse_factor": options.reuse_factor,
            "strict_fit": options.strict_fit,
            "input_precision": hls_config["LayerName"][prepared.graph.input[0].name]["Precision"]["result"],
            "per_layer": per_layer,
            "multiplications": sum(row.get("multiplications", 0) for row in per_layer),
            "thresholds": sum(row.get("thresholds", 0) for row in per_layer),
            "comparisons": sum(row.get("comparisons", 0) for row in per_layer),
            "estimated_resources": estimated_total(per_layer),
            "board_fit": fit,
            "host_epilogue": [node.op_type for node in epilogue.graph.node] if epilogue is not None else [],
            "files": [FIRMWARE_DIR, "testbench", "README.md"] + ([EPILOGUE_FILE] if epilogue is not None else []),
        }

    def runner(self, out_dir: Path, run_options: Hls4mlRunOptions | None = None) -> Callable[[np.ndarray], np.ndarray]:
        hls4ml = require("hls4ml", self.extra, "the hls4ml target")
        from qdeploy.targets.hls4ml import multithreshold

        project_dir = Path(out_dir) / FIRMWARE_DIR
        config_file = project_dir / "hls4ml_config.yml"
        if not config_file.exists():
            raise QDeployError(f"{project_dir} has no hls4ml_config.yml; recompile with qdeploy compile")
        try:
            config = yaml.safe_load(config_file.read_text())
            stamp = config["Stamp"]
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            raise QDeployError(
                f"{config_file} is not an hls4ml configuration ({one_line(exc)}); recompile the folder"
            ) from None
        # The library is the one this configuration names, inside the folder. A folder is data: verify and run load
        # what the compile built, and build it (running the folder's build_lib.sh) only when asked to.
        library = file_in_folder(project_dir, library_name(str(stamp)), str(config_file))
        rebuild = run_options is not None and run_options.rebuild
        if not library.is_file() and not rebuild:
            raise QDeployError(
                f"{project_dir} has no C-simulation library ({library_name(str(stamp))}); recompile the folder with "
                "qdeploy compile (or, for a folder you trust, qdeploy run --rebuild)"
            )
        missing = missing_weight_files(project_dir)
        if missing:
            raise QDeployError(
                f"{project_dir} lacks {len(missing)} weight file(s) its C simulation reads ({', '.join(missing[:3])}); "
                "copy or move the whole output folder, or recompile it"
            )
        multithreshold.register(config.get("Backend", Backend.VITIS.value))
        try:
            hls_model = hls4ml.converters.link_existing_project(str(project_dir))
            # where the project is now (the file says "."): hls4ml builds there
            hls_model.config.config["OutputDir"] = str(project_dir.resolve())
            if rebuild:
                with contextlib.redirect_stdout(io.StringIO()) as captured:
                    hls_model.compile()
                log.debug(captured.getvalue())
            else:
                hls_model._top_function_lib = ctypes.cdll.LoadLibrary(str(library))
        except Exception as exc:  # hls4ml's, the compiler's and the loader's errors, as one line
            what = "rebuild" if rebuild else "load"
            raise QDeployError(
                f"cannot {what} the C simulation of {project_dir}: {type(exc).__name__}: {one_line(exc)}; recompile "
                "the folder with qdeploy compile"
            ) from exc

        io_file = project_dir / IO_FILE
        channels_last = bool(json.loads(io_file.read_text())["input_channels_last"]) if io_file.exists() else False
        epilogue_file = Path(out_dir) / EPILOGUE_FILE
        epilogue = ModelWrapper(str(epilogue_file)) if epilogue_file.exists() else None

        def predict(x: np.ndarray) -> np.ndarray:
            with contextlib.redirect_stdout(io.StringIO()):
                return np.asarray(hls_model.predict(np.ascontiguousarray(x)), dtype=np.float32)

        def run(x: np.ndarray) -> np.ndarray:
            x = to_firmware_layout(np.asarray(x, dtype=np.float32), channels_last)
            y = predict_in_processes(predict, x)
            if epilogue is not None:
                shape = epilogue.get_tensor_shape(epilogue.graph.input[0].name)
                y = run_golden(epilogue, y.reshape(len(x), *shape[1:]))
            return np.asarray(y).reshape(len(x), -1)

        return run
