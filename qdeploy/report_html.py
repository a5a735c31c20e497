"""``report.html``: one self-contained page per output folder, drawn from its ``report.json`` and ``golden.onnx``.

The figures are matplotlib SVG written into the page, so the file can be mailed, archived or opened offline: the
precision of each layer, the estimated resources against the board's capacity (when the target estimates them), the
verification's error histogram, accuracy per method and bits (when the model was quantized with ``--eval``), the
time per step, and for quantum targets the transpiled circuits' sizes. ``qdeploy compile`` writes it inside the
staged folder; ``qdeploy report FOLDER`` writes it again from the folder's files.
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from string import Template
from typing import Any

from qdeploy.artifact import GOLDEN_FILE, REPORT_FILE, format_summary
from qdeploy.errors import QDeployError
from qdeploy.staging import staged_file

REPORT_HTML = "report.html"
TEMPLATE = Path(__file__).parent / "report_template.html"
#: shared with the sweep page (qdeploy.sweeps)
STYLESHEET = Path(__file__).parent / "templates" / "report.css"

#: rows drawn in the per-layer figure and listed in the table (a long graph still gives a readable page)
MAX_FIGURE_ROWS = 30
MAX_TABLE_ROWS = 300

#: colours: one per series, consistent across figures
COLORS = {"weight": "#4c72b0", "activation": "#dd8452", "accumulator": "#55a868", "other": "#8172b3"}
#: legend of the per-layer widths: a target's "activation" precision is the type of the layer's result
SERIES_LABELS = {"weight": "weight", "activation": "result / activation", "accumulator": "accumulator"}
#: target precision spellings: hls4ml ``fixed<W,I,...>`` / ``ufixed<...>`` / ``uint<W>``, ORT ``int8`` / ``uint4``
_WIDTH = re.compile(r"^\s*u?(?:fixed|int)\s*<\s*(\d+)|^\s*u?int(\d+)\s*$")


def precision_width(spec: Any) -> int | None:
    """The bit width of a precision as targets spell it (``fixed<18,5,TRN,WRAP,0>`` -> 18, ``int4`` -> 4)."""
    if not isinstance(spec, str):
        return None
    match = _WIDTH.match(spec)
    return int(match.group(1) or match.group(2)) if match else None


# -- figures -----------------------------------------------------------------------------------------------------------


def _svg(figure: Any) -> str:
    """The figure as an inline <svg> element (text kept as text: smaller, searchable; fixed ids: same input, same
    page)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "qdeploy"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "qdeploy"})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _figure(width: float, height: float, columns: int = 1) -> tuple[Any, Any]:
    # matplotlib.figure.Figure, not pyplot: no global figure registry, no GUI backend, nothing to close
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots(1, columns)


def _layer_label(row: dict[str, Any]) -> str:
    return str(row.get("name") or row.get("node") or row.get("layer") or "?")


def bit_width_figure(per_layer: list[dict[str, Any]], inspection: dict[str, Any] | None) -> tuple[str, str] | None:
    """Weight / activation / accumulator widths per layer: the target's own precisions when its report spells them
    (hls4ml, onnxruntime), else the quantizers' bit widths read from the graph."""
    series = ("weight", "activation", "accumulator")
    rows = [
        (_layer_label(row), {key: precision_width(row.get(key)) for key in series})
        for row in per_layer
        if any(precision_width(row.get(key)) for key in series)
    ]
    source = "the target's precisions (report.json per_layer)"
    if not rows and inspection:
        rows = [
            (row["name"], {"weight": row.get("weight_bits"), "activation": row.get("activation_bits")})
            for row in inspection["layers"]
            if row.get("weight_bits") or row.get("activation_bits")
        ]
        source = "the graph's quantizers (golden.onnx)"
    if not rows:
        return None
    shown = rows[:MAX_FIGURE_ROWS]
    figure, ax = _figure(5.4, max(2.2, 0.32 * len(shown) + 1.0))
    present = [key for key in series if any(bits.get(key) for _, bits in shown)]
    height = 0.8 / len(present)
    for k, key in enumerate(present):
        positions = [i + (k - (len(present) - 1) / 2) * height for i in range(len(shown))]
        widths = [bits.get(key) or 0 for _, bits in shown]
        ax.barh(positions, widths, height=height, label=SERIES_LABELS[key], color=COLORS[key])
        for y, w in zip(positions, widths, strict=True):
            if w:
                ax.text(w, y, f" {w}", va="center", fontsize=7)
    ax.set_yticks(range(len(shown)), [name for name, _ in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("bits")
    ax.set_title("bit width per layer", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    more = f"; first {MAX_FIGURE_ROWS} of {len(rows)} layers" if len(rows) > len(shown) else ""
    return _svg(figure), f"Bit widths per layer, from {source}{more}."


def resources_figure(report: dict[str, Any]) -> tuple[str, str] | None:
    """Estimated resources as a share of the board's capacity (the target's ``board_fit``), 100 % marked."""
    fit = report.get("board_fit")
    if not isinstance(fit, dict) or not fit.get("capacity") or not fit.get("estimated"):
        return None
    kinds = [kind for kind in fit["capacity"] if fit["capacity"][kind]]
    shares = [100.0 * fit["estimated"].get(kind, 0) / fit["capacity"][kind] for kind in kinds]
    colors = ["#c0392b" if s > 100 else "#e67e22" if s > 80 else "#27ae60" for s in shares]
    figure, ax = _figure(5.4, 0.45 * len(kinds) + 1.2)
    ax.barh(kinds, shares, color=colors)
    ax.axvline(100, color="#333", linestyle="--", linewidth=1)
    for y, (kind, share) in enumerate(zip(kinds, shares, strict=True)):
        ax.text(
            share,
            y,
            f" {share:.0f} %  ({fit['estimated'].get(kind, 0):,} of {fit['capacity'][kind]:,})",
            va="center",
            fontsize=7,
        )
    ax.set_xlim(0, max(120.0, 1.35 * max(shares)))
    ax.invert_yaxis()
    ax.set_xlabel("% of the board's capacity")
    board = report.get("board") or "the board"
    verdict = "fits" if fit.get("fits") else "does NOT fit"
    ax.set_title(f"estimated resources on {board} ({report.get('part', '')}): {verdict}", fontsize=10)
    caption = (
        "Estimated resources (qdeploy's first-order model of the generated HLS, not a synthesis report) against the "
        "part's datasheet capacity; the dashed line is 100 %."
    )
    return _svg(figure), caption


def error_figure(report: dict[str, Any]) -> tuple[str, str] | None:
    """The verification's per-element differences: all equal (bit-exact), or their magnitudes and their share of
    the derived bound."""
    histogram = report.get("error_histogram")
    if not isinstance(histogram, dict):
        return None
    elements, equal = histogram["elements"], histogram["equal"]
    differing = elements - equal
    if differing == 0:
        figure, ax = _figure(5.4, 2.0)
        ax.barh(["equal", "different"], [equal, 0], color=["#27ae60", "#c0392b"])
        ax.text(equal, 0, f" {equal:,}", va="center", fontsize=8)
        ax.text(0, 1, " 0", va="center", fontsize=8)
        ax.set_xlim(0, 1.2 * max(equal, 1))
        ax.invert_yaxis()
        ax.set_xlabel("output elements")
        ax.set_title(f"target vs golden: all {elements:,} output elements bit-exact", fontsize=10)
        return _svg(figure), "Every output element of the target equals the golden executor's, bit for bit."
    over = histogram.get("error_over_bound")
    figure, axes = _figure(6.4 if over else 5.4, 2.6, columns=2 if over else 1)
    axes = list(axes) if over else [axes]
    log_errors = histogram.get("log10_abs_error")
    if log_errors:
        edges, counts = log_errors["edges"], log_errors["counts"]
        axes[0].stairs(counts, edges, fill=True, color=COLORS["weight"])
        axes[0].set_xlabel("log10 |target - golden|")
        axes[0].set_ylabel("elements")
    axes[0].set_title(f"{differing:,} of {elements:,} elements differ", fontsize=10)
    caption = f"Differences between the target and the golden executor ({equal:,} elements equal"
    if histogram.get("not_finite"):
        caption += f"; {histogram['not_finite']} not finite"
    caption += ")."
    if over:
        axes[1].stairs(over["counts"], over["edges"], fill=True, color=COLORS["accumulator"])
        axes[1].axvline(1.0, color="#c0392b", linestyle="--", linewidth=1)
        axes[1].set_xlim(0, 1.05)
        axes[1].set_xlabel("|difference| / derived bound")
        axes[1].set_title(f"within the bound; {over['above_bound']} above it", fontsize=10)
        caption += " Right: each difference as a share of its element's derived bound (1 = the bound)."
    return _svg(figure), caption


def accuracy_figure(evaluation: dict[str, Any] | None) -> tuple[str, str] | None:
    """Float vs quantized on the user's ``--eval`` data, with method auto's candidates when there were any."""
    if not evaluation:
        return None
    accuracy = evaluation["kind"] == "accuracy"
    scale = 100.0 if accuracy else 1.0
    bars = [("float", evaluation["float_value"], "#7f7f7f")]
    bars += [(variant["label"], variant["value"], COLORS["other"]) for variant in evaluation.get("variants", [])]
    bars.append((f"{evaluation['label']} (written)", evaluation["quantized_value"], COLORS["weight"]))
    figure, ax = _figure(5.4, 0.34 * len(bars) + 1.2)
    values = [scale * value for _, value, _ in bars]
    ax.barh([label for label, _, _ in bars], values, color=[color for _, _, color in bars])
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:.2f}" if accuracy else f" {value:.4g}", va="center", fontsize=7)
    if accuracy:
        low = min(values)
        ax.set_xlim(max(0.0, low - 10), 100.5)
    ax.tick_params(axis="y", labelsize=7)
    ax.invert_yaxis()
    metric = "accuracy %" if accuracy else "MSE"
    ax.set_xlabel(metric)
    ax.set_title(f"{metric} on {evaluation['samples']} evaluation samples", fontsize=10)
    caption = (
        "From the quantize/qat/binarize/mixed run's --eval data (stored in the model). The written model is run by "
        "the golden executor; method auto's candidates (fitted on 3/4 of the calibration data) by torch."
    )
    return _svg(figure), caption


def time_figure(report: dict[str, Any]) -> tuple[str, str] | None:
    """Seconds per compile step."""
    steps = report.get("time_per_step") or {}
    if not steps:
        return None
    names, seconds = list(steps), list(steps.values())
    figure, ax = _figure(5.4, 0.28 * len(names) + 1.1)
    ax.barh(names, seconds, color=COLORS["activation"])
    for y, value in enumerate(seconds):
        ax.text(value, y, f" {value:.2f} s", va="center", fontsize=7)
    ax.set_xlim(0, 1.25 * max(max(seconds), 1e-3))
    ax.tick_params(axis="y", labelsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("time per step", fontsize=10)
    caption = (
        "Wall time of each compile step, emit and verification (report.json time_per_step); work a target times "
        "inside emit (e.g. its C compilation) is counted in emit too."
    )
    return _svg(figure), caption


def circuit_figure(per_layer: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Two-qubit gates, depth and SWAPs of each transpiled quantum circuit."""
    rows = [row for row in per_layer if "two_qubit_gates" in row]
    if not rows:
        return None
    figure, ax = _figure(5.4, 0.5 * len(rows) + 1.3)
    series = [("two_qubit_gates", COLORS["weight"]), ("depth", COLORS["activation"]), ("swaps", COLORS["accumulator"])]
    height = 0.8 / len(series)
    for k, (key, color) in enumerate(series):
        positions = [i + (k - 1) * height for i in range(len(rows))]
        values = [row.get(key) or 0 for row in rows]
        ax.barh(positions, values, height=height, color=color, label=key.replace("_", " "))
        for y, value in zip(positions, values, strict=True):
            ax.text(value, y, f" {value}", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{_layer_label(row)} ({row.get('qubits', '?')} qubits)" for row in rows], fontsize=7)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("transpiled circuits", fontsize=10)
    return _svg(figure), "Per quantum node: two-qubit gates, depth and SWAPs after transpiling for the device."


# -- tables and text ---------------------------------------------------------------------------------------------------


def _cell(value: Any) -> tuple[str, bool]:
    """(escaped text, numeric?) for one table cell."""
    if value is None:
        return "–", False
    if isinstance(value, bool):
        return ("yes" if value else "no"), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        return f"{value:.4g}", True
    if isinstance(value, dict):
        return html.escape("; ".join(f"{k}: {_cell_text(v)}" for k, v in value.items())), False
    if isinstance(value, list):
        if len(value) <= 4 and all(not isinstance(v, (dict, list)) for v in value):
            return html.escape(", ".join(_cell_text(v) for v in value)), False
        return f"{len(value)} entries", False
    return html.escape(str(value)), False


def _cell_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)[:80]
    return str(value)


def html_table(rows: list[dict[str, Any]], columns: Iterable[str] | None = None) -> str:
    """A table with one column per key (in order of first appearance), at most MAX_TABLE_ROWS rows."""
    if not rows:
        return "<p>none</p>"
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    columns = list(columns)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cells = []
        for column in columns:
            text, numeric = _cell(row.get(column))
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = f"<p>first {MAX_TABLE_ROWS} of {len(rows)} rows</p>" if len(rows) > MAX_TABLE_ROWS else ""
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{more}"


def _verdict(report: dict[str, Any]) -> str:
    bound = report.get("bound") or {}
    if report.get("bit_exact"):
        return '<p><span class="verdict ok">BIT-EXACT</span> with golden.onnx</p>'
    if report.get("verified") and bound.get("kind") == "derived":
        return (
            '<p><span class="verdict ok">VERIFIED WITHIN THE DERIVED BOUND</span> '
            "(float arithmetic past the last quantizer)</p>"
        )
    return '<p><span class="verdict bad">NOT EXACT</span> — a bug in the target\'s lowering; see report.json</p>'


def _warnings(report: dict[str, Any], evaluation: dict[str, Any] | None) -> list[str]:
    messages = []
    fit = report.get("board_fit")
    if isinstance(fit, dict) and fit.get("fits") is False:
        over = [
            f"{kind} {fit['estimated'][kind]:,} of {fit['capacity'][kind]:,}"
            for kind in fit.get("capacity", {})
            if fit["capacity"][kind] and fit["estimated"].get(kind, 0) > fit["capacity"][kind]
        ]
        messages.append(f"estimated resources exceed {report.get('board', 'the board')}: {', '.join(over)}")
    one = report.get("batch_one") or {}
    if one and not one.get("verified", True):
        messages.append(f"batch 1 (one sample at a time): {one['outputs_equal']}/{one['outputs_compared']} outputs verified")
    messages += (evaluation or {}).get("warnings", [])
    return messages


def _bound_text(report: dict[str, Any]) -> str:
    bound = report.get("bound")
    inputs = report.get("verification_inputs") or {}
    parts = []
    if inputs:
        parts.append(
            f"Inputs: {inputs.get('user', 0):,} given (--data) and {inputs.get('random', 0):,} random "
            "(with an input quantizer, half of them on its rounding ties)."
        )
    if isinstance(bound, dict) and bound.get("float_tail_ops"):
        parts.append(f"Derived bound: max {bound.get('max', 0):.3g}; {bound.get('derivation', '')}.")
    elif isinstance(bound, dict):
        parts.append(f"Bound: {bound.get('derivation', 'none')} — outputs must be bit-exact.")
    if report.get("input_quant"):
        parts.append(f"Declared input precision: {json.dumps(report['input_quant'])}.")
    return "".join(f"<p>{html.escape(p)}</p>" for p in parts)


def _evaluation_section(evaluation: dict[str, Any] | None) -> str:
    if not evaluation:
        return ""
    rows = [{"model": "float", "value": evaluation["float_value"]}]
    rows += [{"model": v["label"], "value": v["value"]} for v in evaluation.get("variants", [])]
    rows.append({"model": f"{evaluation['label']} (written)", "value": evaluation["quantized_value"]})
    metric = "accuracy" if evaluation["kind"] == "accuracy" else "MSE"
    return f"<h2>Evaluation on the user's data ({metric}, {evaluation['samples']:,} samples)</h2>" + html_table(
        [{"model": r["model"], metric: r["value"]} for r in rows]
    )


def _files(folder: Path) -> str:
    items = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            count = sum(1 for p in path.rglob("*") if p.is_file())
            items.append(f"<li><code>{html.escape(path.name)}/</code> ({count} files)</li>")
        else:
            items.append(f"<li><code>{html.escape(path.name)}</code> ({path.stat().st_size:,} bytes)</li>")
    return f"<ul>{''.join(items)}</ul>"


# -- the page ----------------------------------------------------------------------------------------------------------


def render_report_html(folder: str | Path, report: dict[str, Any] | None = None) -> str:
    """The page for an output folder (``report`` defaults to its report.json)."""
    from qdeploy import __version__
    from qdeploy.evaluation import stored_evaluation
    from qdeploy.inspection import inspect_model
    from qdeploy.ir import load_model

    folder = Path(folder)
    if report is None:
        report_path = folder / REPORT_FILE
        if not report_path.exists():
            raise QDeployError(f"{folder} is not a qdeploy output folder (no {REPORT_FILE}); run qdeploy compile first")
        report = json.loads(report_path.read_text())
    golden = load_model(folder / GOLDEN_FILE, clean=False)  # the user's graph as given: its names, its metadata
    inspection = inspect_model(golden)
    evaluation = stored_evaluation(golden)
    per_layer = report.get("per_layer") or []
    drawn = [
        bit_width_figure(per_layer, inspection),
        resources_figure(report),
        error_figure(report),
        accuracy_figure(evaluation),
        circuit_figure(per_layer),
        time_figure(report),
    ]
    figures = "\n".join(
        f"<figure>{svg}<figcaption>{html.escape(caption)}</figcaption></figure>" for svg, caption in filter(None, drawn)
    )
    where = ", ".join(f"{key} {report[key]}" for key in ("board", "part", "backend", "device") if report.get(key))
    inspection_rows = [{k: v for k, v in row.items()} for row in inspection["layers"]]
    values = {
        "title": html.escape(f"{Path(str(report.get('model', 'model'))).name} → {report.get('target', '?')}"),
        "subtitle": html.escape(where or f"target {report.get('target', '?')}"),
        "target": html.escape(str(report.get("target", "?"))),
        "verdict": _verdict(report),
        "warnings": "".join(f'<div class="warning">{html.escape(m)}</div>' for m in _warnings(report, evaluation)),
        "summary": html.escape(format_summary(report)),
        "bound": _bound_text(report),
        "figures": figures,
        "evaluation": _evaluation_section(evaluation),
        "per_layer": html_table(per_layer),
        "inspection": html_table(inspection_rows)
        + html.escape(
            f"total: {inspection['total_params']:,} parameters, {inspection['total_macs']:,} MACs, "
            f"{inspection['total_bops']:,} BOPs"
        ),
        "files": _files(folder),
        "version": html.escape(__version__),
    }
    return Template(TEMPLATE.read_text()).substitute(values, style=STYLESHEET.read_text())


def write_report_html(folder: str | Path, report: dict[str, Any] | None = None) -> Path:
    """Write ``report.html`` into ``folder`` (whole or not at all) and return its path."""
    path = Path(folder) / REPORT_HTML
    page = render_report_html(folder, report)
    with staged_file(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
