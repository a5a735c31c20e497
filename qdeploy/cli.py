"""The ``qdeploy`` command line: a thin shell over the Python API.

Every failure prints one line ``qdeploy: error: ...`` and exits non-zero (1: error, 2: usage, 3: not bit-exact).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from qdeploy.config import DEFAULT_TARGET, BinarizeMethod, BudgetObjective, CompileConfig, QATOptimizer, compile_config
from qdeploy.errors import QDeployError, one_line
from qdeploy.options import Flag, add_flag, add_flags, flag_values, flags_of, load_config_file
from qdeploy.staging import staged_file

EXIT_ERROR = 1
EXIT_NOT_EXACT = 3

log = logging.getLogger("qdeploy")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


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
    p.add_argument("model", help="QONNX/ONNX file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_common(p)

    p = sub.add_parser("list", help="registered targets, graph passes and board presets")
    _add_common(p)

    p = sub.add_parser("demo", help="quantize the bundled digits example and compile it to every available target")
    p.add_argument("-o", "--output", default="demo_out", help="folder for the demo's outputs (default demo_out)")
    _add_common(p)
    return parser


def _version() -> str:
    from qdeploy import __version__

    return __version__


def cmd_quantize(args: argparse.Namespace) -> int:
    from qdeploy.config import QuantizeConfig, from_mapping
    from qdeploy.data import load_array
    from qdeploy.frontend import load_factory, quantize

    config = from_mapping(QuantizeConfig, flag_values(args, QuantizeConfig), "command line")
    model = load_factory(args.model, args.weights)
    calib = load_array(args.calib)
    qmodel = quantize(model, calib, config=config)
    chosen = getattr(qmodel, "qdeploy_pipeline", {})
    if chosen:
        print(f"method auto chose {chosen}")
    output = Path(args.output)
    _write_model_atomically(qmodel, calib[:1], output)
    # auto may narrow the request (po2 within float, per-tensor within per-channel): report what was written
    scale = chosen.get("scale", config.scale.value)
    per_channel = chosen.get("per_channel", config.per_channel)
    print(
        f"wrote {output} (W{config.weight_bits}A{config.act_bits}, {scale} scales, "
        f"{'per-channel' if per_channel else 'per-tensor'} weights)"
    )
    return 0


def _write_model_atomically(qmodel, example, output: Path) -> None:
    """Export beside the destination, then rename: no half-written model on failure."""
    from qdeploy.frontend import export

    with staged_file(output) as tmp:
        export(qmodel, example, tmp)


def cmd_binarize(args: argparse.Namespace) -> int:
    from qdeploy.data import load_labelled
    from qdeploy.frontend import load_factory
    from qdeploy.passes.binarize import binarize

    model = load_factory(args.model, args.weights)
    x, y = load_labelled(args.data)
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
    _write_model_atomically(bmodel, x[:1], Path(args.output))
    method = f"BiPer omega={args.omega:g}" if args.method == BinarizeMethod.BIPER else "sign-STE"
    print(f"wrote {args.output} ({method}, {args.epochs} epochs, final training loss {bmodel.history[-1]:.4f})")
    return 0


def cmd_mixed(args: argparse.Namespace) -> int:
    from qdeploy.data import load_labelled
    from qdeploy.frontend import load_factory
    from qdeploy.passes.mixed import mixed

    try:
        candidates = tuple(int(b) for b in args.candidates.split(","))
    except ValueError as exc:
        raise QDeployError(f"--candidates {args.candidates!r} must be comma-separated integers, e.g. 2,4,8") from exc
    model = load_factory(args.model, args.weights)
    x, y = load_labelled(args.data)
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
    _write_model_atomically(qmodel, x[:1], output)
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
    from qdeploy.frontend import load_factory, qat

    model = load_factory(args.model, args.weights)
    x, y = load_labelled(args.data)
    validation = load_labelled(args.validation) if args.validation else None
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
    _write_model_atomically(qmodel, x[:1], Path(args.output))
    print(f"wrote {args.output} (QAT W{args.wbits}A{args.abits}, {args.epochs} epochs, {args.optimizer})")
    return 0


def target_flags(kind: str) -> dict[Flag, list[str]]:
    """The flags every registered target declares on its ``Options`` or ``RunOptions`` dataclass, with the targets
    that declare each. Targets may share a flag name (``--device``): it is added once, and its value goes to the
    selected target."""
    from qdeploy.options import Flag, flags_of
    from qdeploy.registry import TARGETS_GROUP, load_registered
    from qdeploy.target import available_targets

    by_name: dict[str, list[tuple[str, Flag]]] = {}
    for name in sorted(available_targets()):
        for flag in flags_of(getattr(load_registered(TARGETS_GROUP, name, "target"), kind)):
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
    print(f"output: {artifact.path}")
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
    from qdeploy.inspection import format_inspection

    info = qdeploy.inspect(args.model)
    print(json.dumps(info, indent=2, default=str) if args.json else format_inspection(info))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from qdeploy.registry import PASSES_GROUP, registered
    from qdeploy.target import available_targets, get_target

    print("targets:")
    for name in sorted(available_targets()):
        target = get_target(name)
        print(f"  {name}")
        for line in target.describe():
            print(f"    {line}")
    print("passes:  " + ", ".join(sorted(registered(PASSES_GROUP))))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from qdeploy.demo import run_demo

    report = run_demo(Path(args.output))
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
    "list": cmd_list,
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


def _run(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from qdeploy.progress import set_quiet

    set_quiet(args.quiet)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    # Third-party chatter (brevitas/torch export warnings) is not ours to show.
    for noisy in ("brevitas", "torch", "hls4ml", "qonnx"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    if not args.debug:
        warnings.filterwarnings("ignore", module=r"(brevitas|torch|hls4ml|qonnx|onnxscript|onnx)(\.|$)")
    try:
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
