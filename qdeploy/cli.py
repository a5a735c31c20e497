"""The ``qdeploy`` command line: a thin shell over the Python API.

Every failure prints one line ``qdeploy: error: ...`` and exits non-zero (1: error, 2: usage, 3: not bit-exact).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qdeploy.config import DEFAULT_TARGET, BinarizeMethod, BudgetObjective, CompileConfig, QATOptimizer, compile_config
from qdeploy.errors import QDeployError, one_line
from qdeploy.options import Flag, add_flag, add_flags, flag_values, flags_of, load_config_file
from qdeploy.progress import BarSafeHandler
from qdeploy.staging import staged_file

EXIT_ERROR = 1
EXIT_NOT_EXACT = 3

log = logging.getLogger("qdeploy")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors: no progress bars, no info")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more detail: -v qdeploy's debug messages, -vv every library's too (e.g. qiskit's pass timings)",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors, and every warning")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        help="math threads for torch and ONNX Runtime (default: the physical cores this process may use)",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_eval(parser: argparse.ArgumentParser) -> None:
    """--eval: float vs quantized on labelled data (quantize, qat, binarize, mixed)."""
    from qdeploy.evaluation import DEFAULT_MARGIN

    parser.add_argument(
        "--eval",
        metavar="DATA.npz",
        help="labelled data (.npz with 'x' and 'y'): print float vs quantized accuracy (MSE for non-integer 'y'), "
        "warn on a collapse or a loss beyond --eval-margin, and keep the result in the model for report.html",
    )
    parser.add_argument(
        "--eval-margin",
        type=float,
        default=DEFAULT_MARGIN,
        help=f"warn when the quantized model is this many accuracy points below float (MSE: percent above float; "
        f"default {DEFAULT_MARGIN:g})",
    )


#: the QuantizeConfig fields every command that quantizes a PyTorch model takes (--wbits, --abits)
_BIT_WIDTH_FIELDS = ("weight_bits", "act_bits")


def _add_torch_model(parser: argparse.ArgumentParser, bit_widths: bool = True) -> None:
    """The arguments every command that starts from a PyTorch model shares; ``bit_widths``: QuantizeConfig's
    --wbits/--abits too (help, default and checks are the dataclass fields')."""
    from qdeploy.config import QuantizeConfig

    parser.add_argument("model", help="path/to/file.py:factory returning a torch.nn.Module")
    parser.add_argument("--weights", help="state dict (.pt) to load into the factory's model")
    for flag in flags_of(QuantizeConfig) if bit_widths else ():
        if flag.field in _BIT_WIDTH_FIELDS:
            add_flag(parser, flag)


def _add_quantize_options(parser: argparse.ArgumentParser) -> None:
    """QuantizeConfig's other flags (``qdeploy quantize``), generated from its fields: help, choices, defaults."""
    from qdeploy.config import QuantizeConfig

    for flag in flags_of(QuantizeConfig):
        if flag.field not in _BIT_WIDTH_FIELDS:
            add_flag(parser, flag)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qdeploy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"qdeploy {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("quantize", help="post-training quantize a PyTorch model and export QONNX")
    _add_torch_model(p)
    p.add_argument("--calib", required=True, help="calibration inputs: .npy, or .npz with array 'x'")
    _add_quantize_options(p)
    p.add_argument("-o", "--output", required=True, help="QONNX file to write")
    _add_eval(p)
    _add_common(p)

    p = sub.add_parser("mixed", help="Hessian-aware mixed-precision weights under a budget, then PTQ and export QONNX")
    _add_torch_model(p)
    p.add_argument("--data", required=True, help=".npz with 'x' (inputs) and 'y' (labels): Hessian traces, calibration")
    p.add_argument(
        "--average-bits", type=float, required=True, help="budget: what uniform weights of this many bits would cost"
    )
    p.add_argument(
        "--objective",
        choices=list(BudgetObjective),
        default=BudgetObjective.BOPS.value,
        help="bit operations or weight memory",
    )
    p.add_argument("--candidates", default="2,3,4,5,6,7,8", help="weight bit widths to choose from (default 2,3,4,5,6,7,8)")
    p.add_argument("--probes", type=int, default=32, help="Hutchinson probes per layer (default 32)")
    p.add_argument("--samples", type=int, default=512, help="data rows for the traces and calibration (default 512)")
    _add_eval(p)
    p.add_argument("-o", "--output", required=True, help="QONNX file to write (the allocation goes beside it, .json)")
    _add_common(p)

    p = sub.add_parser("qat", help="quantization-aware training of a PyTorch model, then export QONNX")
    _add_torch_model(p)
    p.add_argument("--data", required=True, help="training data: .npz with arrays 'x' (inputs) and 'y' (labels)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=list(QATOptimizer), default=QATOptimizer.ADAMW.value)
    p.add_argument("--checkpoint", help="save the training state here after every epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument(
        "--validation",
        help="held-out .npz ('x', 'y') that picks the best epoch (default: --val-fraction of --data is held out)",
    )
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of --data held out without --validation")
    p.add_argument("--seed", type=int, default=0, help="batch order and held-out split")
    _add_eval(p)
    p.add_argument("-o", "--output", required=True, help="QONNX file to write")
    _add_common(p)

    p = sub.add_parser("binarize", help="binarise a PyTorch model (BiPer or sign-STE), train it, export QONNX")
    _add_torch_model(p, bit_widths=False)
    p.add_argument("--data", required=True, help="training data: .npz with arrays 'x' (inputs) and 'y' (labels)")
    p.add_argument(
        "--method", choices=list(BinarizeMethod), default=BinarizeMethod.BIPER.value, help="BiPer or sign with STE"
    )
    p.add_argument("--omega", type=float, default=30.0, help="BiPer frequency (default 30; the paper's scripts 20)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--stage1-epochs", type=int, help="BiPer stage-1 epochs (default half of --epochs)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--tau", type=float, help="BiPer quantization-error regulariser weight (default 0.037)")
    p.add_argument("--binarize-all", action="store_true", help="binarise the first and last layers too")
    p.add_argument("--first-last-bits", type=int, default=8, help="weight bits of the first/last layers (default 8)")
    _add_eval(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="QONNX file to write")
    _add_common(p)

    p = sub.add_parser("compile", help="compile a QONNX model for a target and verify it bit for bit")
    p.add_argument("model", help="QONNX/ONNX file (brevitas, FINN, model zoo, qdeploy quantize)")
    p.add_argument("--data", help="real inputs to verify on: .npy, or .npz with array 'x'")
    p.add_argument(
        "--config",
        help="TOML/YAML/JSON file with compile settings and a table per target, e.g. [hls4ml] (flags override it)",
    )
    # the target-neutral settings, then every registered target's own options ([name] marks whose they are)
    add_flags(p, CompileConfig, defaults=False)
    for flag, owners in target_flags("Options").items():
        add_flag(p, flag, owners, defaults=False)
    p.add_argument("-o", "--output", required=True, help="output folder")
    _add_common(p)

    p = sub.add_parser("verify", help="re-run a compiled folder against the golden executor")
    p.add_argument("folder", help="output folder of qdeploy compile")
    p.add_argument("--data", help="inputs: .npy, or .npz with array 'x' (default: the stored verification inputs)")
    _add_common(p)

    p = sub.add_parser("run", help="run a compiled folder on inputs (hybrid: classical on ORT, quantum on qiskit)")
    p.add_argument("folder", help="output folder of qdeploy compile")
    p.add_argument("--data", required=True, help="inputs: .npy, or .npz with array 'x'")
    for flag, owners in target_flags("RunOptions").items():
        add_flag(p, flag, owners, defaults=False)
    p.add_argument("-o", "--output", help="write the outputs to this .npy file (default: print them)")
    _add_common(p)

    p = sub.add_parser("inspect", help="per-layer ops, bit widths, scales, parameters, BOPs")
    p.add_argument("model", help="QONNX/ONNX file, or an output folder of qdeploy compile (its golden.onnx)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_common(p)

    p = sub.add_parser("report", help="write an output folder's report.html again (figures and tables, self-contained)")
    p.add_argument("folder", help="output folder of qdeploy compile")
    _add_common(p)

    p = sub.add_parser("list", help="registered targets, graph passes and board presets")
    _add_common(p)

    p = sub.add_parser("sweep", help="quantize and compile over a grid of options on Ray; table and Pareto plot")
    p.add_argument("model", help="path/to/file.py:factory returning a torch.nn.Module, or a QONNX file (compiled as is)")
    p.add_argument(
        "--grid",
        required=True,
        help="TOML/YAML/JSON file with a [grid] table: option = [values] (quantize and compile option names)",
    )
    p.add_argument("--data", required=True, help="labelled data to score each point on: .npz with 'x' and 'y'")
    p.add_argument("--calib", help="calibration data: .npy, or .npz with 'x' (and 'y' for average_bits); default --data")
    p.add_argument("--weights", help="state dict (.pt) to load into the factory's model")
    p.add_argument("--cache", help="content-addressed cache folder (default: the user cache folder's qdeploy/sweep)")
    p.add_argument("--address", help="an existing Ray cluster to run on (default: a local Ray on this machine)")
    p.add_argument("--workers", type=_positive_int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--cpus-per-point", type=_positive_int, default=1, help="CPUs each point declares (default 1)")
    p.add_argument("--memory-per-point", type=float, default=2.0, help="memory each point declares, in GiB (default 2)")
    p.add_argument("-o", "--output", required=True, help="output folder: results.csv, results.json, report.html")
    _add_common(p)

    p = sub.add_parser("demo", help="quantize the bundled digits example and compile it to every available target")
    p.add_argument("-o", "--output", default="demo_out", help="folder for the demo's outputs (default demo_out)")
    p.add_argument(
        "--models", default="mlp,cnn", help="digits networks to quantize and compile, comma-separated (default mlp,cnn)"
    )
    p.add_argument("--no-hybrid", action="store_true", help="skip the Iris hybrid model on the quantum target")
    _add_common(p)
    return parser


def _version() -> str:
    from qdeploy import __version__

    return __version__


def _check_torch_inputs(args: argparse.Namespace, *data_flags: str) -> None:
    """Every file a torch command names must exist before the model factory runs (a factory may train for minutes)."""
    from qdeploy.errors import InputDataError, ModelLoadError

    for flag in data_flags:
        path = getattr(args, flag, None)
        if path is not None and not Path(path).exists():
            raise InputDataError(f"--{flag} file {path} does not exist; pass an existing .npy/.npz file")
    if args.weights is not None and not Path(args.weights).exists():
        raise ModelLoadError(f"weights file {args.weights} does not exist")
    model_file = args.model.rsplit(":", 1)[0] if ":" in args.model else args.model
    if not Path(model_file).exists():
        raise ModelLoadError(f"model file {model_file} does not exist")


def _load_eval(args: argparse.Namespace) -> tuple[Any, Any] | None:
    from qdeploy.evaluation import load_eval_data

    return load_eval_data(args.eval) if args.eval else None


def _pipeline_label(options: dict[str, Any]) -> str:
    """A PTQ pipeline (QuantizeConfig fields, e.g. method auto's choice) in a few words: ``gptq, CLE, po2 scales``."""
    words = []
    if options.get("rounding", "rtn") != "rtn":
        words.append(str(options["rounding"]))
    if options.get("gpfq_alphabet", "int") != "int":
        words.append(str(options["gpfq_alphabet"]))
    if options.get("equalize"):
        words.append("CLE")
    if options.get("bias_correction"):
        words.append("bias corr.")
    if options.get("calibration", "minmax") != "minmax":
        words.append(f"{options['calibration']} ranges")
    if options.get("per_channel") is False:
        words.append("per-tensor")
    words.append(f"{options.get('scale', 'po2')} scales")
    return ", ".join(words if len(words) > 1 else ["nearest rounding", *words])


def _evaluate_and_report(
    model: Any,
    graph: Any,
    eval_data: tuple[Any, Any] | None,
    args: argparse.Namespace,
    label: str,
    variants: list[dict[str, Any]] | None = None,
    bits: tuple[int | None, int | None] = (None, None),
) -> None:
    """--eval: the float model (torch) vs the exported graph (golden executor) on the user's data; print the
    comparison, warn on a collapse or a loss past the margin, and keep the record in the graph's metadata."""
    if eval_data is None:
        return
    from qdeploy.evaluation import attach, evaluate
    from qdeploy.frontend import torch_forward
    from qdeploy.golden import run_golden

    x, y = eval_data
    result = evaluate(
        lambda data: torch_forward(model, data),
        lambda data: run_golden(graph, data),
        x,
        y,
        label,
        margin=args.eval_margin,
        weight_bits=bits[0],
        act_bits=bits[1],
    )
    result.variants = list(variants or [])
    attach(graph, result)
    print(result.summary())
    for message in result.warnings:
        log.warning("%s", message)


def _candidate_scorer(model: Any, eval_data: tuple[Any, Any]) -> Any:
    """For method auto: each candidate's accuracy (or MSE) on the --eval data, run by torch."""
    from qdeploy.evaluation import metric_kind, score
    from qdeploy.frontend import torch_forward

    x, y = eval_data
    kind = metric_kind(y, torch_forward(model, x[:2]))
    return lambda qmodel: score(torch_forward(qmodel, x), y, kind)


def cmd_quantize(args: argparse.Namespace) -> int:
    from qdeploy.config import Method, QuantizeConfig, from_mapping
    from qdeploy.data import load_array
    from qdeploy.frontend import check_model_input, export, load_factory, quantize
    from qdeploy.options import to_jsonable

    config = from_mapping(QuantizeConfig, flag_values(args, QuantizeConfig), "command line")
    _check_torch_inputs(args, "calib", "eval")
    calib = load_array(args.calib)
    eval_data = _load_eval(args)
    model = load_factory(args.model, args.weights)
    check_model_input(model, calib, "calibration data")
    if eval_data is not None:
        check_model_input(model, eval_data[0], "evaluation data")
    scorer = _candidate_scorer(model, eval_data) if eval_data is not None and config.method is Method.AUTO else None
    qmodel = quantize(model, calib, config=config, evaluate=scorer)
    chosen = getattr(qmodel, "qdeploy_pipeline", {})
    # auto may narrow the request (po2 within float, per-tensor within per-channel): report what was written
    per_channel = chosen.get("per_channel", config.per_channel)
    bits = f"W{config.weight_bits}A{config.act_bits}"
    graph = export(qmodel, calib[:1])
    variants = [
        {"label": f"{bits} {_pipeline_label(candidate)}", "value": candidate["eval"]}
        for candidate in getattr(qmodel, "qdeploy_auto_scores", [])
        if "eval" in candidate
    ]
    label = f"{bits} {'auto: ' if chosen else ''}{_pipeline_label(chosen or to_jsonable(config))}"
    _evaluate_and_report(model, graph, eval_data, args, label, variants, (config.weight_bits, config.act_bits))
    output = Path(args.output)
    _save_graph_atomically(graph, output)
    print(f"wrote {output} ({label}, {'per-channel' if per_channel else 'per-tensor'} weights)")
    return 0


def _save_graph_atomically(graph: Any, output: Path) -> None:
    """Write beside the destination, then rename: no half-written model on failure."""
    with staged_file(output) as tmp:
        graph.save(str(tmp))


def cmd_binarize(args: argparse.Namespace) -> int:
    from qdeploy.data import load_labelled
    from qdeploy.frontend import check_model_input, export, load_factory
    from qdeploy.passes.binarize import binarize

    _check_torch_inputs(args, "data", "eval")
    x, y = load_labelled(args.data)
    eval_data = _load_eval(args)
    model = load_factory(args.model, args.weights)
    check_model_input(model, x, "training data")
    options = {"tau": args.tau} if args.tau is not None else {}
    bmodel = binarize(
        model,
        x,
        y,
        method=args.method,
        omega=args.omega,
        epochs=args.epochs,
        stage1_epochs=args.stage1_epochs,
        lr=args.lr,
        keep_first_last=not args.binarize_all,
        first_last_bits=args.first_last_bits,
        seed=args.seed,
        **options,
    )
    method = f"BiPer omega={args.omega:g}" if args.method == BinarizeMethod.BIPER else "sign-STE"
    graph = export(bmodel, x[:1])
    _evaluate_and_report(model, graph, eval_data, args, f"binarized, {method}", bits=(1, 1))
    _save_graph_atomically(graph, Path(args.output))
    print(f"wrote {args.output} ({method}, {args.epochs} epochs, final training loss {bmodel.history[-1]:.4f})")
    return 0


def cmd_mixed(args: argparse.Namespace) -> int:
    from qdeploy.data import load_labelled
    from qdeploy.frontend import check_model_input, export, load_factory
    from qdeploy.passes.mixed import mixed

    try:
        candidates = tuple(int(b) for b in args.candidates.split(","))
    except ValueError as exc:
        raise QDeployError(f"--candidates {args.candidates!r} must be comma-separated integers, e.g. 2,4,8") from exc
    _check_torch_inputs(args, "data", "eval")
    x, y = load_labelled(args.data)
    eval_data = _load_eval(args)
    model = load_factory(args.model, args.weights)
    check_model_input(model, x, "training data")
    qmodel, allocation = mixed(
        model,
        x,
        y,
        average_bits=args.average_bits,
        objective=args.objective,
        candidates=candidates,
        probes=args.probes,
        samples=args.samples,
        act_bits=args.abits,
    )
    output = Path(args.output)
    summary = {"budget": allocation.budget, "cost": allocation.cost, "objective": args.objective, "bits": allocation.bits}
    graph = export(qmodel, x[:1])
    label = f"mixed {args.average_bits:g}-bit {args.objective} budget, A{args.abits}"
    _evaluate_and_report(model, graph, eval_data, args, label, bits=(None, args.abits))
    _save_graph_atomically(graph, output)
    try:  # the model and its allocation land together or not at all
        with staged_file(output.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(summary, indent=2))
    except OSError:
        output.unlink(missing_ok=True)
        raise
    print(
        f"wrote {output}: weight bits {allocation.bits} ({args.objective} {allocation.cost:,.0f} of "
        f"{allocation.budget:,.0f}); allocation in {output.with_suffix('.json')}"
    )
    return 0


def cmd_qat(args: argparse.Namespace) -> int:
    from qdeploy.data import load_labelled
    from qdeploy.frontend import check_model_input, export, load_factory, qat

    _check_torch_inputs(args, "data", "validation", "eval")
    x, y = load_labelled(args.data)
    validation = load_labelled(args.validation) if args.validation else None
    eval_data = _load_eval(args)
    model = load_factory(args.model, args.weights)
    check_model_input(model, x, "training data")
    qmodel = qat(
        model,
        x,
        y,
        weight_bits=args.wbits,
        act_bits=args.abits,
        epochs=args.epochs,
        lr=args.lr,
        optimizer=args.optimizer,
        checkpoint=args.checkpoint,
        resume=args.resume,
        validation=validation,
        val_fraction=args.val_fraction,
        seed=args.seed,
    )
    graph = export(qmodel, x[:1])
    label = f"QAT W{args.wbits}A{args.abits}, {args.epochs} epochs, {args.optimizer}"
    _evaluate_and_report(model, graph, eval_data, args, label, bits=(args.wbits, args.abits))
    _save_graph_atomically(graph, Path(args.output))
    print(f"wrote {args.output} ({label})")
    return 0


def target_flags(kind: str) -> dict[Flag, list[str]]:
    """The flags every registered target declares on its ``Options`` or ``RunOptions`` dataclass, with the targets
    that declare each. Targets may share a flag name (``--device``): it is added once, and its value goes to the
    selected target."""
    from qdeploy.options import Flag, flags_of

    by_name: dict[str, list[tuple[str, Flag]]] = {}
    for name, target_class in _loadable_targets().items():
        for flag in flags_of(getattr(target_class, kind)):
            by_name.setdefault(flag.flag, []).append((name, flag))
    merged: dict[Flag, list[str]] = {}
    for owners in by_name.values():
        first = owners[0][1]
        if any(flag.kind is not first.kind for _, flag in owners[1:]):  # differing types: each target parses its own
            first = Flag(first.flag, first.field, first.help, str, None)
        helps = list(dict.fromkeys(flag.help for _, flag in owners))
        merged[Flag(first.flag, first.field, "; ".join(helps), first.kind, first.default, first.const)] = [
            name for name, _ in owners
        ]
    return merged


def _loadable_targets() -> dict[str, type]:
    """Every registered target class that imports: a broken plugin's flags are left out with a warning (see
    ``qdeploy.registry.loadable``); selecting it (``--target NAME``, ``qdeploy list``) raises its import error."""
    from qdeploy.registry import TARGETS_GROUP, loadable

    return loadable(TARGETS_GROUP, "target")  # type: ignore[return-value]


def target_flag_values(args: argparse.Namespace, kind: str, target: str) -> dict[str, Any]:
    """The ``kind`` (Options / RunOptions) fields of ``target`` given as flags; a flag of another target is refused."""
    values: dict[str, Any] = {}
    from qdeploy.registry import TARGETS_GROUP, load_registered

    for flag, owners in target_flags(kind).items():
        value = getattr(args, flag.dest, None)
        if value is None:
            continue
        if target not in owners:
            raise QDeployError(
                f"{flag.flag} is an option of target {' / '.join(owners)}, not {target}; add --target {owners[0]}"
            )
        own = {f.flag: f for f in flags_of(getattr(load_registered(TARGETS_GROUP, target, "target"), kind))}
        values[own[flag.flag].field] = value
    return values


def _compile_mapping(args: argparse.Namespace) -> dict[str, Any]:
    """Config file, overridden by the neutral flags, overridden by the selected target's flags."""
    mapping: dict[str, Any] = load_config_file(args.config) if args.config else {}
    mapping.update(flag_values(args, CompileConfig))
    target = mapping.get("target", DEFAULT_TARGET)
    given = target_flag_values(args, "Options", target)
    if given:
        table = mapping.get(target)
        mapping[target] = {**(table if isinstance(table, dict) else {}), **given}
    return mapping


def cmd_compile(args: argparse.Namespace) -> int:
    from qdeploy.compiler import compile as compile_model
    from qdeploy.data import load_array

    config = compile_config(_compile_mapping(args), args.config or "command line")
    data = load_array(args.data) if args.data else None
    artifact = compile_model(args.model, out=args.output, data=data, config=config)
    print(artifact.summary())
    print(f"output: {artifact.path}  (open {artifact.path / 'report.html'} for figures and tables)")
    if not artifact.verified:
        print(
            "qdeploy: error: the compiled artefact is neither bit-exact with the QONNX graph nor within the bound "
            "derived from its float arithmetic (a bug in the target's lowering: please report it; see report.json)",
            file=sys.stderr,
        )
        return EXIT_NOT_EXACT
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from qdeploy.artifact import Artifact, format_summary
    from qdeploy.data import load_array

    artifact = Artifact(args.folder)
    result = artifact.verify(load_array(args.data) if args.data else None)
    print(format_summary({**artifact.report, **result}))
    return 0 if result.get("verified", result["bit_exact"]) else EXIT_NOT_EXACT


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from qdeploy.artifact import Artifact
    from qdeploy.data import load_array

    artifact = Artifact(args.folder)
    x = load_array(args.data)
    y = artifact.predict(x, run_options=target_flag_values(args, "RunOptions", artifact.target))
    if args.output:
        output = Path(args.output)
        with staged_file(output) as tmp, open(tmp, "wb") as stream:  # a file object: np.save adds no suffix
            np.save(stream, y)
        print(f"ran {len(x)} inputs on {artifact.target}; wrote outputs {y.shape} to {output}")
    else:
        np.savetxt(sys.stdout, y.reshape(len(y), -1), fmt="%.7g")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import qdeploy
    from qdeploy.inspection import format_inspection, model_path

    info = qdeploy.inspect(model_path(args.model))
    print(json.dumps(info, indent=2, default=str) if args.json else format_inspection(info))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from qdeploy.report_html import write_report_html

    print(f"wrote {write_report_html(args.folder)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from qdeploy.registry import PASSES_GROUP, registered
    from qdeploy.target import available_targets, get_target

    print("targets:")
    for name in sorted(available_targets()):
        print(f"  {name}")
        try:
            target = get_target(name)
        except QDeployError as error:  # a broken plugin is listed with its import error, the others still are
            print(f"    unavailable: {error}")
            continue
        for line in target.describe():
            print(f"    {line}")
    print("passes:  " + ", ".join(sorted(registered(PASSES_GROUP))))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from qdeploy.sweeps import sweep

    result = sweep(
        args.model,
        args.grid,
        args.data,
        out=args.output,
        calib=args.calib,
        weights=args.weights,
        cache=args.cache,
        address=args.address,
        workers=args.workers,
        cpus_per_point=args.cpus_per_point,
        memory_per_point=int(args.memory_per_point * 2**30),
    )
    for row in result.failed:
        log.warning("point %s failed: %s", result.point_label(row), row["error"])
    print(result.summary())
    print(f"output: {result.out} (results.csv, results.json, report.html)")
    return 0 if len(result.failed) < len(result.rows) else EXIT_ERROR


def cmd_demo(args: argparse.Namespace) -> int:
    from qdeploy.demo import run_demo

    models = tuple(name.strip() for name in args.models.split(",") if name.strip())
    report = run_demo(Path(args.output), models=models, hybrid=not args.no_hybrid)
    return 0 if report["all_verified"] else EXIT_NOT_EXACT


COMMANDS = {
    "quantize": cmd_quantize,
    "mixed": cmd_mixed,
    "qat": cmd_qat,
    "binarize": cmd_binarize,
    "compile": cmd_compile,
    "verify": cmd_verify,
    "run": cmd_run,
    "inspect": cmd_inspect,
    "report": cmd_report,
    "list": cmd_list,
    "sweep": cmd_sweep,
    "demo": cmd_demo,
}


class Terminated(BaseException):
    """SIGTERM or SIGHUP, raised where the process is, so every ``finally``/staging cleanup runs as for Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    previous = {}
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        previous = {signum: signal.signal(signum, _raise_terminated) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _run(argv)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


#: commands that run torch: their thread count is set before the work starts (others leave torch unimported)
TORCH_COMMANDS = {"quantize", "qat", "binarize", "mixed", "demo"}


def physical_cores() -> int:
    """Cores this process may run on, hyper-threaded siblings counted once (``os.cpu_count()`` counts every logical
    CPU of the machine, including ones a container or ``taskset`` does not give the process)."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in allowed:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        # without the topology files (not Linux) each allowed CPU counts as a core
        cores.add(siblings.read_text().strip() if siblings.exists() else str(cpu))
    return max(1, len(cores))


def default_threads() -> int:
    """``OMP_NUM_THREADS`` when set (a test runner's or a batch system's choice for the whole process tree), else
    the physical cores."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else physical_cores()


def _set_threads(args: argparse.Namespace) -> None:
    """--threads for torch and for the ONNX Runtime sessions qdeploy opens. torch alone would take every logical CPU
    of the machine, which made quantize 2-6x slower next to other jobs."""
    from qdeploy.runtime import set_session_threads

    threads = args.threads or default_threads()
    set_session_threads(threads)
    if args.threads is not None or args.command in TORCH_COMMANDS or "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


class TerminalFormatter(logging.Formatter):
    """One line per record: qdeploy's info as it is, warnings and errors prefixed with their level and, for other
    libraries, their name; a Python warning (captured from ``warnings``) on its first line only."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.name == "py.warnings":
            message = message.strip().splitlines()[0]
        if record.exc_info and record.levelno >= logging.ERROR:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno < logging.WARNING:
            return message
        ours = record.name == "qdeploy" or record.name.startswith("qdeploy.") or record.name == "py.warnings"
        origin = "" if ours else f" [{record.name.split('.')[0]}]"
        return f"{record.levelname.lower()}{origin}: {message}"


@contextlib.contextmanager
def terminal_logging(verbose: int, quiet: bool, debug: bool) -> Iterator[None]:
    """What the terminal shows while a command runs, undone afterwards (``main`` may be called in-process):
    qdeploy's INFO lines (-v: DEBUG; -q: WARNING), other libraries' WARNING and above (-vv: everything, e.g.
    qiskit's pass timings; -q: ERROR), Python warnings as log lines (without --debug, none from the libraries qdeploy
    drives: their deprecation notes are not the user's to act on). Everything goes through a handler that keeps
    progress bars whole."""
    root, ours = logging.getLogger(), logging.getLogger("qdeploy")
    saved = (root.level, ours.level)
    handler = BarSafeHandler()
    handler.setFormatter(TerminalFormatter())
    root.addHandler(handler)
    root.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose >= 2 else logging.WARNING)
    ours.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose >= 1 else logging.INFO)
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.filterwarnings("ignore", module=r"(brevitas|torch|hls4ml|qonnx|onnxscript|onnx|qiskit)(\.|$)")
            logging.captureWarnings(True)
            yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from qdeploy.progress import set_quiet

    previous = set_quiet(args.quiet)
    try:
        with terminal_logging(args.verbose, args.quiet, args.debug):
            return _dispatch(args)
    finally:
        set_quiet(previous)  # main may run in-process (tests, notebooks): leave the bars as they were


def _dispatch(args: argparse.Namespace) -> int:
    try:
        _set_threads(args)
        return COMMANDS[args.command](args)
    except QDeployError as exc:
        if args.debug:
            raise
        print(f"qdeploy: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("qdeploy: interrupted", file=sys.stderr)
        return 130
    except Terminated as exc:  # SIGTERM/SIGHUP: staging already removed on the way out, as for Ctrl-C
        print(f"qdeploy: stopped by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum
    except Exception as exc:  # an unexpected failure still gets one line; --debug shows the traceback
        if args.debug:
            raise
        print(
            f"qdeploy: error: unexpected {type(exc).__name__}: {one_line(exc)} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
