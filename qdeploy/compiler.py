"""``qdeploy.compile``: run a target's steps on a QONNX graph, emit the artefact, verify it against the golden
executor, write the folder.

Every target goes through the same shape: ``Target.steps(options)`` under the run context's instruments (timing,
``ir/`` dumps of each intermediate model, errors naming the step), then ``Target.emit``, then verification of the
folder's runner against the graph as the user gave it. The output folder is staged in a temporary sibling and moved
into place only when everything succeeded, so a failure never leaves a half-written folder.
"""

from __future__ import annotations

import json
import logging
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from qonnx.core.modelwrapper import ModelWrapper

from qdeploy.artifact import GOLDEN_FILE, INPUTS_FILE, REPORT_FILE, Artifact
from qdeploy.batch_axis import check_batch_separable
from qdeploy.config import CompileConfig, compile_config
from qdeploy.data import check_array
from qdeploy.errors import QDeployError
from qdeploy.input_quant import parse_input_quant, with_input_quant
from qdeploy.ir import check_datatype, load_model, reference_of, sample_shape
from qdeploy.options import field_names, from_mapping, to_jsonable
from qdeploy.order_dependence import check_order_independent
from qdeploy.pipeline import DumpModels, RunContext, Timing, run_steps, step_name
from qdeploy.progress import StepBar
from qdeploy.report_html import write_report_html
from qdeploy.staging import staged_folder
from qdeploy.target import Target, get_target
from qdeploy.verify import BATCH_ONE_SAMPLES, random_inputs, verify_against_golden

log = logging.getLogger(__name__)

CONFIG_FILE = "qdeploy_config.json"
IR_DIR = "ir"


def _model_label(model: Any) -> str:
    if isinstance(model, (str, Path)):
        return str(model)
    return getattr(getattr(model, "graph", None), "name", None) or type(model).__name__


def compile(  # noqa: A001 - the public verb users expect: qdeploy.compile
    model: str | Path | ModelWrapper | onnx.ModelProto,
    target: str | Target | None = None,
    out: str | Path = "build/qdeploy",
    data: np.ndarray | None = None,
    config: CompileConfig | None = None,
    **options: Any,
) -> Artifact:
    """Compile ``model`` (QONNX file or graph) for ``target`` into ``out`` and verify it bit for bit.

    ``target`` is a registered target's name (``qdeploy list``), or a Target object (to try a target before
    registering it under the ``qdeploy.targets`` entry point; re-verifying its folder later needs the registration).

    ``data`` (batch first) are real inputs added to the verification set. ``options`` are CompileConfig keys
    (``verify_samples``, ``seed``), options of the selected target (``board="pynq-z2"`` for hls4ml), or whole
    tables by target name (``hls4ml={...}``, ``quantum={"device": "heavy-hex"}``).
    Returns the Artifact; its ``report`` holds ``bit_exact`` and the counts.
    """
    if config is not None and (target is not None or options):
        raise QDeployError("compile(): pass either config= or target/options, not both")
    if isinstance(target, Target):  # an unregistered target object: try a target before packaging it
        target_impl = target
        neutral = {k: options.pop(k) for k in list(options) if k in field_names(CompileConfig) - {"targets"}}
        config = from_mapping(CompileConfig, {**neutral, "target": target.name, "targets": {target.name: options}})
    else:
        if config is None:
            config = compile_config({**({"target": target} if target else {}), **options}, "compile()")
        target_impl = get_target(config.target)
    target_options = target_impl.options(config.options_for(config.target))
    target_impl.check_available()
    # the user's graph is the specification (with a declared input precision, if any); targets work on a cleaned copy
    given = load_model(model, clean=False)
    declared = parse_input_quant(config.input_quant) if config.input_quant else None
    if declared is not None:
        given = with_input_quant(given, declared)
    reference = reference_of(given)
    check_batch_separable(reference)  # before anything is written: a graph mixing samples has no per-sample form
    graph = load_model(given)
    shape = sample_shape(reference)
    user_x = check_array(data, shape, "verification data") if data is not None else np.zeros((0, *shape), np.float32)
    check_datatype(reference, user_x, "verification data")
    x = np.concatenate([user_x, random_inputs(reference, shape, config.verify_samples, config.seed)])
    if len(x) == 0:
        raise QDeployError("nothing to verify: give --data or verify_samples > 0")
    if target_impl.exact_sums:
        # before anything is written: a graph whose own levels depend on float32 summation order has no exact form
        check_order_independent(reference, x, batch_one=BATCH_ONE_SAMPLES)
    timing = Timing()
    steps = target_impl.steps(target_options)
    with (
        staged_folder(Path(out), REPORT_FILE) as folder,
        closing(StepBar([*(step_name(step) for step in steps), "emit", "verify"], f"compile {config.target}")) as step_bar,
    ):
        ctx = RunContext(instruments=[timing, DumpModels(folder / IR_DIR), step_bar], source=reference)
        reference.save(str(folder / GOLDEN_FILE))
        prepared = run_steps(graph, target_options, steps, ctx)
        facts = ctx.timed("emit", lambda: target_impl.emit(prepared, target_options, folder, ctx))
        np.save(folder / INPUTS_FILE, x)
        result = ctx.timed("verify", lambda: verify_against_golden(reference, target_impl.runner(folder), x))
        report = {
            "target": config.target,
            "model": _model_label(model),
            **result,
            "verification_inputs": {"user": int(len(user_x)), "random": int(len(x) - len(user_x))},
            # the reference is the user's graph, except for a declared input precision (a Quant node added first)
            "input_quant": None if declared is None else {**declared.describe(), "added_to_reference": True},
            **facts,
            "time_per_step": {k: round(v, 4) for k, v in timing.seconds.items()},
        }
        resolved = {**to_jsonable(config), "targets": {config.target: to_jsonable(target_options)}}
        (folder / REPORT_FILE).write_text(json.dumps(report, indent=2))
        (folder / CONFIG_FILE).write_text(json.dumps(resolved, indent=2))
        write_report_html(folder, report)  # inside the staged folder: it lands with the rest or not at all
    return Artifact(Path(out))
