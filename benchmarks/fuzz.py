"""Protobuf fuzzing of the model loader and the onnxruntime target (issue 17, item 5).

Seeded mutants of the QONNX zoo fixtures and of a qdeploy-quantized digits MLP go through
``qdeploy compile --target onnxruntime`` and ``qdeploy inspect`` in-process. The contract says every compile ends
bit-exact, verified within a derived bound, or refused with one line before anything is written; so a case is a
finding when it ends in "unexpected <Exception>" (an internal error), a traceback, NOT EXACT (exit 3), more than one
error line, an output folder after a refusal, or runs past its time limit.

    python -m benchmarks.fuzz --cases 5000 --workers 2     # writes benchmarks/results/fuzz.json and fuzz.md

``tests/test_fuzz.py`` runs a bounded number of the same cases in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures" / "qonnx"
RESULTS = ROOT / "benchmarks" / "results"

#: outcomes that keep the contract; every other outcome is a finding
CLEAN_OUTCOMES = ("exact", "bounded", "refused")

# -- mutations -------------------------------------------------------------------------------------------------------
# Each takes the model (mutated in place) and a seeded generator, and returns a short description, or None when the
# model offers nothing to mutate that way (another mutation is drawn then).

OP_TYPES = ("Relu", "Conv", "MatMul", "Gemm", "Quant", "BipolarQuant", "Trunc", "Softmax", "Add", "Mul", "Reshape",
            "Transpose", "MultiThreshold", "Identity", "LSTM", "NotAnOp", "")  # fmt: skip
SPECIAL_VALUES = (np.nan, np.inf, -np.inf, 0.0, -1.0, -0.5, 1e30, 1e-30)
BIT_WIDTHS = (0.0, 40.0, -3.0, 1.5, np.inf, np.nan, 64.0, 1.0)
ELEM_TYPES = (TensorProto.INT8, TensorProto.INT64, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.STRING,
              TensorProto.BOOL, TensorProto.UNDEFINED, 99)  # fmt: skip


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def mutate_attribute(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    nodes = [n for n in model.graph.node if n.attribute]
    if not nodes:
        return None
    node = _pick(rng, nodes)
    attribute = _pick(rng, list(node.attribute))
    change = int(rng.integers(6))
    if change == 0:
        node.attribute.remove(attribute)
        return f"deleted attribute {attribute.name} of {node.op_type}"
    if change == 1:  # same name, another type
        attribute.ClearField("s")
        attribute.ClearField("i")
        attribute.ClearField("f")
        del attribute.ints[:]
        attribute.type = _pick(rng, (AttributeProto.INT, AttributeProto.STRING, AttributeProto.FLOAT,
                                     AttributeProto.INTS))  # fmt: skip
        if attribute.type == AttributeProto.STRING:
            attribute.s = b"ROUND"
        return f"retyped attribute {attribute.name} of {node.op_type}"
    if change == 2:
        value = int(_pick(rng, (-1, 0, 2, 7, 1 << 40, -(1 << 31))))
        attribute.i = value
        del attribute.ints[:]
        attribute.ints.extend([value] * max(1, len(attribute.ints)))
        return f"attribute {attribute.name} of {node.op_type} = {value}"
    if change == 3:
        attribute.s = _pick(rng, (b"\xff\xfe", b"", b"round", b"NEAREST", b"HALF_EVEN", b"\x00"))
        return f"attribute {attribute.name} of {node.op_type} bytes changed"
    if change == 4:
        attribute.f = float(_pick(rng, SPECIAL_VALUES))
        return f"attribute {attribute.name} of {node.op_type} float changed"
    node.attribute.append(onnx.helper.make_attribute(f"bogus_{int(rng.integers(100))}", 1))
    return f"added attribute to {node.op_type}"


def mutate_dim(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    infos = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    infos = [i for i in infos if i.type.tensor_type.shape.dim]
    if not infos:
        return None
    info = _pick(rng, infos)
    dims = info.type.tensor_type.shape.dim
    dim = dims[int(rng.integers(len(dims)))]
    change = int(rng.integers(5))
    if change == 0:
        dim.dim_param = "N"
    elif change == 1:
        dim.dim_value = int(_pick(rng, (0, 1, 3, 1 << 20)))
    elif change == 2:
        dims.remove(dim)
    elif change == 3:
        info.type.tensor_type.ClearField("shape")
    else:
        dims.add().dim_value = 2
    return f"shape of {info.name} changed ({change})"


def mutate_dtype(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    if rng.random() < 0.5 and model.graph.initializer:
        init = _pick(rng, list(model.graph.initializer))
        init.data_type = int(_pick(rng, ELEM_TYPES))
        return f"initializer {init.name} data_type {init.data_type}"
    info = _pick(rng, [*model.graph.input, *model.graph.output])
    info.type.tensor_type.elem_type = int(_pick(rng, ELEM_TYPES))
    return f"elem_type of {info.name} changed"


def mutate_op_type(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    node = _pick(rng, list(model.graph.node))
    old, node.op_type = node.op_type, _pick(rng, OP_TYPES)
    if rng.random() < 0.2:
        node.domain = _pick(rng, ("", "qonnx.custom_op.general", "com.microsoft", "os"))
    return f"{old} -> {node.op_type!r}"


def delete_node(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    node = _pick(rng, list(model.graph.node))
    model.graph.node.remove(node)
    return f"deleted node {node.op_type}"


def delete_initializer(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    if not model.graph.initializer:
        return None
    init = _pick(rng, list(model.graph.initializer))
    model.graph.initializer.remove(init)
    return f"deleted initializer {init.name}"


def rewire_input(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    nodes = [n for n in model.graph.node if n.input]
    if not nodes:
        return None
    node = _pick(rng, nodes)
    index = int(rng.integers(len(node.input)))
    tensors = [t for n in model.graph.node for t in n.output] + [i.name for i in model.graph.initializer]
    tensors += [i.name for i in model.graph.input] + ["", "no_such_tensor"]
    node.input[index] = _pick(rng, tensors)
    return f"rewired input {index} of {node.op_type}"


def _replace_initializer(model: onnx.ModelProto, init: TensorProto, values: np.ndarray) -> None:
    init.CopyFrom(numpy_helper.from_array(values.astype(numpy_helper.to_array(init).dtype, copy=False), init.name))


def special_initializer_values(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    floats = [i for i in model.graph.initializer if i.data_type == TensorProto.FLOAT]
    if not floats:
        return None
    init = _pick(rng, floats)
    values = numpy_helper.to_array(init).copy()
    value = float(_pick(rng, SPECIAL_VALUES))
    if values.size == 0:
        return None
    if rng.random() < 0.5:
        values.flat[int(rng.integers(values.size))] = value
    else:
        values[...] = value
    _replace_initializer(model, init, values)
    return f"initializer {init.name} holds {value}"


def quantizer_input(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    """A quantizer's scale or bit width set to a value the spec forbids (or allows at an edge: 1 bit, 64 bits)."""
    quantizers = [n for n in model.graph.node if n.op_type in ("Quant", "IntQuant", "BipolarQuant", "Trunc")]
    if not quantizers:
        return None
    node = _pick(rng, quantizers)
    inits = {i.name: i for i in model.graph.initializer}
    if node.op_type != "BipolarQuant" and rng.random() < 0.5 and node.input[-1] in inits:
        value, init = float(_pick(rng, BIT_WIDTHS)), inits[node.input[-1]]
    elif len(node.input) > 1 and node.input[1] in inits:
        value, init = float(_pick(rng, SPECIAL_VALUES)), inits[node.input[1]]
    else:
        return None
    _replace_initializer(model, init, np.full(numpy_helper.to_array(init).shape, value))
    return f"{node.op_type} input {init.name} = {value}"


def non_constant_scale(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    """A quantizer's scale read from the graph input or another node's output instead of an initializer."""
    quantizers = [n for n in model.graph.node if n.op_type in ("Quant", "BipolarQuant") and len(n.input) > 1]
    if not quantizers:
        return None
    node = _pick(rng, quantizers)
    node.input[1] = _pick(rng, [model.graph.input[0].name, *(n.output[0] for n in model.graph.node)])
    return f"non-constant scale of {node.op_type}"


def extra_graph_io(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    node = _pick(rng, list(model.graph.node))
    if rng.random() < 0.5:
        model.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None))
        return "second graph output"
    model.graph.input.append(onnx.helper.make_tensor_value_info("extra_input", TensorProto.FLOAT, [1, 4]))
    if rng.random() < 0.5:  # read by a node, or only declared
        node.input.append("extra_input")
    return "second graph input"


def reorder_nodes(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    nodes = list(model.graph.node)
    if len(nodes) < 2:
        return None
    order = rng.permutation(len(nodes))
    del model.graph.node[:]
    model.graph.node.extend(nodes[i] for i in order)
    return "nodes out of topological order"


def opset(model: onnx.ModelProto, rng: np.random.Generator) -> str | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = int(_pick(rng, (1, 7, 30, 10_000)))
            return f"opset {entry.version}"
    return None


STRUCTURED: dict[str, Callable[[onnx.ModelProto, np.random.Generator], str | None]] = {
    "attribute": mutate_attribute,
    "dim": mutate_dim,
    "dtype": mutate_dtype,
    "op_type": mutate_op_type,
    "delete_node": delete_node,
    "delete_initializer": delete_initializer,
    "rewire": rewire_input,
    "initializer_values": special_initializer_values,
    "quantizer_input": quantizer_input,
    "non_constant_scale": non_constant_scale,
    "extra_io": extra_graph_io,
    "reorder": reorder_nodes,
    "opset": opset,
}
BYTE_LEVEL = ("byte_flip", "truncate")
KINDS = (*STRUCTURED, *BYTE_LEVEL)


def mutant(source: bytes, seed: int) -> tuple[str, str, bytes]:
    """(kind, description, serialized mutant) for ``seed``: one or, one time in four, two structured mutations, or
    a byte-level corruption of the serialized file."""
    rng = np.random.default_rng(seed)
    kind = _pick(rng, KINDS)
    if kind == "byte_flip":
        data = bytearray(source)
        for _ in range(int(rng.integers(1, 9))):
            data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        return kind, "flipped bits", bytes(data)
    if kind == "truncate":
        cut = int(rng.integers(len(source)))
        return kind, f"truncated at {cut}/{len(source)}", source[:cut]
    model = onnx.ModelProto.FromString(source)
    descriptions = []
    for _ in range(2 if rng.random() < 0.25 else 1):
        description = None
        for _attempt in range(10):  # draw another kind when the model offers nothing to mutate this way
            description = STRUCTURED[kind](model, rng)
            if description is not None:
                break
            kind = _pick(rng, tuple(STRUCTURED))
        descriptions.append(description or "unchanged")
    return kind, "; ".join(descriptions), model.SerializeToString()


# -- running one case ------------------------------------------------------------------------------------------------


class CaseTimeout(BaseException):
    """Raised by the alarm inside a case; a BaseException so the CLI's ``except Exception`` cannot absorb it."""


def _on_alarm(signum, frame):
    raise CaseTimeout


def run_cli(argv: list[str], time_limit: float) -> tuple[int | None, str, str]:
    """``qdeploy.cli.main(argv)`` in-process: (exit code or None on timeout, stdout, stderr)."""
    from qdeploy.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    code: int | None
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
    except CaseTimeout:
        code = None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return code, out.getvalue(), err.getvalue()


def classify(command: str, code: int | None, out: str, err: str, output: Path | None) -> tuple[str, str]:
    """(outcome, signature): outcome is one of CLEAN_OUTCOMES or a finding; signature the error line with the
    model-specific parts (numbers, quoted names, paths) masked, to count distinct messages."""
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("qdeploy: error: ")]
    signature = signature_of(errors[0]) if errors else ""
    if code is None:
        return "hang", ""
    if "Traceback" in err or "Traceback" in out:
        return "traceback", signature
    if code == 3:
        return "not_exact", signature
    if code == 0:
        if command == "inspect":
            return "exact", ""
        if "bit-exact:" in out and "result: NOT EXACT" not in out:
            return "exact", ""
        if "verified within the derived bound" in out:
            return "bounded", ""
        return "unverified_success", out.strip().splitlines()[-1] if out.strip() else ""
    if code != 1:
        return f"exit_{code}", signature
    if len(errors) != 1:
        return "not_one_error_line", signature or (lines[0] if lines else "")
    if "unexpected" in errors[0]:
        return "internal", signature
    if output is not None and (output.exists() or list(output.parent.glob(f".{output.name}.*"))):
        return "output_left", signature
    return "refused", signature


_MASKS = (
    (re.compile(r"/[^\s:;,)]+"), "<path>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<q>"),
    (re.compile(r"\b(node|initializer|tensor|input|output)\s+[#\w./:-]+"), r"\1 <name>"),
    (re.compile(r"-?\d+(\.\d+)?(e[-+]?\d+)?"), "<n>"),
    (re.compile(r"\b(nan|inf)\b", re.IGNORECASE), "<n>"),
)


def signature_of(line: str) -> str:
    text = line.removeprefix("qdeploy: error: ")
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text[:160]


def run_case(model_path: Path, work: Path, time_limit: float, target: str = "onnxruntime") -> list[dict]:
    """Compile (``target``, 50 samples) and inspect one mutant; one record per command."""
    output = work / "out"
    records = []
    for command, argv, out_dir in (
        ("compile", ["compile", str(model_path), "--target", target, "--samples", "50", "-o", str(output), "-q"],
         output),
        ("inspect", ["inspect", str(model_path), "-q"], None),
    ):  # fmt: skip
        start = time.perf_counter()
        code, out, err = run_cli(argv, time_limit)
        outcome, signature = classify(command, code, out, err, out_dir)
        records.append({
            "command": command, "outcome": outcome, "signature": signature, "code": code,
            "seconds": round(time.perf_counter() - start, 3),
            "stderr": err.strip()[-600:] if outcome not in CLEAN_OUTCOMES else "",
        })  # fmt: skip
        shutil.rmtree(output, ignore_errors=True)
    return records


# -- sources ---------------------------------------------------------------------------------------------------------


def zoo_fixtures() -> dict[str, bytes]:
    return {path.stem: path.read_bytes() for path in sorted(FIXTURES.glob("*.onnx"))}


def digits_mlp_w4a8() -> bytes:
    """The digits MLP, quantized W4A8 (po2 scales) by qdeploy, as the tests' ``mlp_w4a8`` fixture."""
    sys.path.insert(0, str(ROOT))
    import qdeploy
    from examples import digits

    data = digits.load_digits_data()
    model = digits.mlp()
    qmodel = qdeploy.quantize(model, data.x_train[:256], weight_bits=4, act_bits=8)
    return qdeploy.export(qmodel, data.x_train[:1]).model.SerializeToString()


def case_seeds(sources: dict[str, bytes], cases: int, seed: int) -> list[tuple[str, int]]:
    """Cases spread round-robin over the sources, each with its own seed."""
    names = sorted(sources)
    return [(names[i % len(names)], seed * 1_000_003 + i) for i in range(cases)]


# -- the benchmark ---------------------------------------------------------------------------------------------------

_SOURCES: dict[str, bytes] = {}


def _init_worker(sources: dict[str, bytes]) -> None:
    import logging
    import warnings

    _SOURCES.update(sources)
    warnings.simplefilter("ignore")
    logging.getLogger().setLevel(logging.ERROR)


def _worker(args: tuple) -> dict:
    source, case_seed, time_limit, *rest = args
    target = rest[0] if rest else "onnxruntime"
    kind, description, data = mutant(_SOURCES[source], case_seed)
    with tempfile.TemporaryDirectory(prefix="qdeploy-fuzz-") as tmp:
        path = Path(tmp) / f"{source}.onnx"
        path.write_bytes(data)
        records = run_case(path, Path(tmp), time_limit, target)
    return {"source": source, "seed": case_seed, "kind": kind, "mutation": description, "results": records}


def summarize(
    cases: list[dict], seconds: float, workers: int, reruns: list[dict] | None = None, target: str = "onnxruntime"
) -> dict:
    outcomes = {command: Counter() for command in ("compile", "inspect")}
    by_kind: dict[str, Counter] = {}
    signatures: dict[tuple[str, str, str], int] = Counter()
    findings = []
    for case in cases:
        for record in case["results"]:
            outcomes[record["command"]][record["outcome"]] += 1
            by_kind.setdefault(case["kind"], Counter())[record["outcome"]] += 1
            if record["signature"]:
                signatures[(record["command"], record["outcome"], record["signature"])] += 1
            if record["outcome"] not in CLEAN_OUTCOMES:
                findings.append({k: case[k] for k in ("source", "seed", "kind", "mutation")} | record)
    return {
        "cases": len(cases),
        "target": target,
        "workers": workers,
        "seconds": round(seconds, 1),
        "sources": sorted({case["source"] for case in cases}),
        "outcomes": {command: dict(counter.most_common()) for command, counter in outcomes.items()},
        "by_mutation": {kind: dict(counter.most_common()) for kind, counter in sorted(by_kind.items())},
        "signatures": [
            {"command": c, "outcome": o, "signature": s, "count": n}
            for (c, o, s), n in sorted(signatures.items(), key=lambda item: -item[1])
        ],
        "findings": findings[:200],
        "findings_total": len(findings),
        # cases that were findings when the run reached them, rerun (same seed, same mutant) after the fix landed
        "reruns": reruns or [],
    }


def write_markdown(summary: dict, path: Path) -> None:
    lines = [
        f"# Fuzzing the loader and the {summary.get('target', 'onnxruntime')} target",
        "",
        f"`python -m benchmarks.fuzz --cases {summary['cases']} --workers {summary['workers']}"
        f"{'' if summary.get('target', 'onnxruntime') == 'onnxruntime' else ' --target ' + summary['target']}`: "
        f"{summary['cases']} seeded protobuf mutants of {', '.join(summary['sources'])}, each through "
        f"`qdeploy compile --target {summary.get('target', 'onnxruntime')} --samples 50` and `qdeploy inspect` in-process "
        f"({summary['seconds']:.0f} s).",
        "Clean outcomes: `exact` (bit-exact, or inspect succeeded), `bounded` (verified within the derived bound), "
        '`refused` (one `qdeploy: error:` line, no "unexpected", nothing written). Anything else is a finding.',
        *([summary["note"]] if summary.get("note") else []),
        "",
        "## Outcomes",
        "",
        "| command | " + " | ".join(sorted({o for c in summary["outcomes"].values() for o in c})) + " |",
    ]
    names = sorted({o for c in summary["outcomes"].values() for o in c})
    lines.append("|---|" + "---|" * len(names))
    for command, counter in summary["outcomes"].items():
        lines.append(f"| {command} | " + " | ".join(str(counter.get(n, 0)) for n in names) + " |")
    lines += ["", f"Findings: {summary['findings_total']}.", "", "## Per mutation", "",
              "| mutation | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]  # fmt: skip
    for kind, counter in summary["by_mutation"].items():
        lines.append(f"| {kind} | " + " | ".join(str(counter.get(n, 0)) for n in names) + " |")
    if summary.get("reruns"):
        lines += ["", "## Findings fixed during the run, rerun", "",
                  "Cases that were findings when the run reached them; after its fix the same seed's "
                  "mutant was rerun and its new outcome is the one counted above.", "",
                  "| source | seed | mutation | command | first run | rerun |", "|---|---|---|---|---|---|"]  # fmt: skip
        for row in summary["reruns"]:
            mutation = row["mutation"].replace("|", "\\|")
            lines.append(f"| {row['source']} | {row['seed']} | {mutation} | {row['command']} | {row['before']} | "
                         f"{row['after']} |")  # fmt: skip
    lines += ["", f"## Distinct error signatures ({len(summary['signatures'])})", "",
              "| command | outcome | count | message (numbers, names, paths masked) |", "|---|---|---|---|"]  # fmt: skip
    for row in summary["signatures"]:
        message = row["signature"].replace("|", "\\|")
        lines.append(f"| {row['command']} | {row['outcome']} | {row['count']} | {message} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per command before a case is a hang")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--target", default="onnxruntime", help="the target each mutant is compiled for")
    parser.add_argument("--name", default="fuzz", help="file names of the table: NAME.json and NAME.md")
    parser.add_argument(
        "--cases-file",
        type=Path,
        default=None,
        help="also append every case's full record to this JSON-lines file (to rerun its findings)",
    )
    parser.add_argument("--rerun-findings", type=Path, default=None, metavar="CASES_FILE",
                        help="rerun the findings of a finished run's --cases-file (after a fix) and write the table "
                        "with their new outcomes")  # fmt: skip
    parser.add_argument("--run-seconds", type=float, default=None, help="with --rerun-findings: the run's duration")
    parser.add_argument("--note", default="", help="with --rerun-findings: a line for the table (how the run went)")
    args = parser.parse_args(argv)
    if args.rerun_findings is not None:
        return rerun_findings(args)
    import multiprocessing

    sources = {**zoo_fixtures(), "digits_mlp_w4a8": digits_mlp_w4a8()}
    work = [(source, seed, args.time_limit, args.target) for source, seed in case_seeds(sources, args.cases, args.seed)]
    start = time.perf_counter()
    cases = []
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no torch threads inherited mid-state
    with context.Pool(args.workers, _init_worker, (sources,), maxtasksperchild=200) as pool:
        for index, case in enumerate(pool.imap_unordered(_worker, work, chunksize=4), 1):
            cases.append(case)
            if args.cases_file is not None:
                with args.cases_file.open("a") as handle:
                    handle.write(json.dumps(case) + "\n")
            if index % 250 == 0:
                print(f"{index}/{len(work)} cases, {time.perf_counter() - start:.0f} s", flush=True)
                _write(cases, time.perf_counter() - start, args)  # partial results survive a killed run
    _write(cases, time.perf_counter() - start, args)
    return 0


def rerun_findings(args: argparse.Namespace) -> int:
    """Rerun, in this process, every case of ``args.rerun_findings`` that was a finding; write the table with the
    new outcomes (and the old ones listed). The run's duration is the one its fuzz.json recorded."""
    cases = [json.loads(line) for line in args.rerun_findings.read_text().splitlines() if line.strip()]
    previous = args.out / f"{args.name}.json"
    seconds = json.loads(previous.read_text())["seconds"] if previous.exists() else 0.0
    seconds = args.run_seconds if args.run_seconds is not None else seconds  # a stopped run's last table is older
    sources = {**zoo_fixtures(), "digits_mlp_w4a8": digits_mlp_w4a8()}
    _init_worker(sources)
    reruns = []
    for index, case in enumerate(cases):
        if all(record["outcome"] in CLEAN_OUTCOMES for record in case["results"]):
            continue
        again = _worker((case["source"], case["seed"], args.time_limit, args.target))
        assert again["mutation"] == case["mutation"], f"seed {case['seed']} no longer gives the same mutant"
        for before, after in zip(case["results"], again["results"], strict=True):
            if before["outcome"] not in CLEAN_OUTCOMES:
                reruns.append({k: case[k] for k in ("source", "seed", "mutation")}
                              | {"command": before["command"], "before": before["outcome"], "after": after["outcome"],
                                 "stderr_before": before["stderr"], "stderr_after": after["stderr"]})  # fmt: skip
        cases[index] = again
    _write(cases, seconds, args, reruns, args.note)
    print(f"{len(reruns)} findings rerun: {Counter(r['after'] for r in reruns)}")
    return 0


def _write(
    cases: list[dict], seconds: float, args: argparse.Namespace, reruns: list[dict] | None = None, note: str = ""
) -> None:
    summary = summarize(cases, seconds, args.workers, reruns, args.target) | {"note": note}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(summary, indent=2))
    write_markdown(summary, args.out / f"{args.name}.md")


if __name__ == "__main__":
    sys.exit(main())
