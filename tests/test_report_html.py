"""report.html: written into every output folder with the rest (or not at all), self-contained, with the figures the
folder's facts allow; ``qdeploy report FOLDER`` writes the same page again."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import qdeploy
import qdeploy.compiler
from qdeploy.cli import EXIT_ERROR, main
from qdeploy.evaluation import Evaluation, attach
from qdeploy.report_html import (
    REPORT_HTML,
    accuracy_figure,
    error_figure,
    precision_width,
    resources_figure,
    write_report_html,
)
from qdeploy.verify import error_histogram
from tests.targets.helpers import assert_no_output, copy_graph


def figure_count(page: str) -> int:
    return len(re.findall(r"<figure>\s*<svg", page))


@pytest.fixture(scope="module")
def ort_folder(mlp_w4a8, data, tmp_path_factory):
    """The digits MLP compiled for onnxruntime, its graph carrying an --eval record (as quantize --eval leaves it)."""
    graph = copy_graph(mlp_w4a8[1])
    evaluation = Evaluation("accuracy", 449, 0.9532, 0.9488, 1.0, "W4A8 auto: gptq, po2 scales", 4, 8)
    evaluation.variants = [{"label": "W4A8 bias corr., po2 scales", "value": 0.9399}]
    attach(graph, evaluation)
    out = tmp_path_factory.mktemp("report") / "ort"
    qdeploy.compile(graph, target="onnxruntime", out=out, data=data.x_test[:64], verify_samples=64)
    return out


def test_every_compile_writes_a_self_contained_report(ort_folder):
    page = (ort_folder / REPORT_HTML).read_text()
    # bit widths, error histogram, accuracy (from the graph's --eval record), time per step
    assert figure_count(page) >= 4
    assert "BIT-EXACT" in page and "bit-exact: 128/128 outputs" in page
    assert "Gemm_0" in page and "int4" in page  # the per-layer table: the target's precisions
    assert "W4A8 auto: gptq, po2 scales (written)" in page and "95.32" in page
    # nothing loaded from elsewhere: no scripts, stylesheets or images by reference
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:|file:|//)""", page)


def test_qdeploy_report_writes_the_same_page_again(ort_folder, capsys):
    before = (ort_folder / REPORT_HTML).read_text()
    (ort_folder / REPORT_HTML).unlink()
    assert main(["report", str(ort_folder), "-q"]) == 0
    assert f"wrote {ort_folder / REPORT_HTML}" in capsys.readouterr().out
    assert (ort_folder / REPORT_HTML).read_text() == before


def test_report_of_a_folder_that_is_not_an_output(tmp_path, capsys):
    assert main(["report", str(tmp_path), "-q"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("qdeploy: error: ") and "not a qdeploy output folder" in err and "\n" not in err


def test_a_failing_report_leaves_no_output_folder(mlp_w4a8, tmp_path, monkeypatch):
    def broken(folder, report=None):
        raise RuntimeError("figure failed")

    monkeypatch.setattr(qdeploy.compiler, "write_report_html", broken)
    with pytest.raises(RuntimeError, match="figure failed"):
        qdeploy.compile(mlp_w4a8[1], target="onnxruntime", out=tmp_path / "out", verify_samples=16)
    assert_no_output(tmp_path / "out")


def test_resources_against_the_board_capacity():
    fit = {
        "capacity": {"LUT": 53200, "DSP": 220},
        "estimated": {"LUT": 43672, "DSP": 667},
        "utilization": {"LUT": 0.82, "DSP": 3.03},
        "fits": False,
    }
    svg, caption = resources_figure({"board": "pynq-z2", "part": "xc7z020clg400-1", "board_fit": fit})
    assert "does NOT fit" in svg and "303 %" in svg and "667 of 220" in svg
    assert "capacity" in caption
    assert resources_figure({"estimated_resources": {"DSP": 3}}) is None  # no capacity: no figure


def test_error_histogram_of_a_bounded_result():
    golden = np.linspace(-1, 1, 300).reshape(100, 3)
    target = golden.copy()
    target[:50] += 1e-7  # half the samples off by a rounding-sized amount, all within a bound of 1e-6
    histogram = error_histogram(target, golden, np.full(golden.shape, 1e-6))
    assert histogram["elements"] == 300 and histogram["equal"] == 150
    assert sum(histogram["log10_abs_error"]["counts"]) == 150
    assert histogram["error_over_bound"]["above_bound"] == 0 and sum(histogram["error_over_bound"]["counts"]) == 150
    svg, caption = error_figure({"error_histogram": json.loads(json.dumps(histogram))})
    assert "150 of 300 elements differ" in svg and "0 above it" in svg and "derived bound" in caption
    exact = error_histogram(golden, golden)
    svg, _ = error_figure({"error_histogram": exact})
    assert "all 300 output elements bit-exact" in svg


def test_accuracy_figure_needs_an_evaluation():
    assert accuracy_figure(None) is None
    evaluation = Evaluation("mse", 20, 0.5, 0.75, 1.0, "W4A8").to_json()
    svg, _ = accuracy_figure(evaluation)
    assert "MSE on 20 evaluation samples" in svg


@pytest.mark.parametrize(
    ("spec", "width"),
    [("fixed<18,5,TRN,WRAP,0>", 18), ("ufixed<8,0,RND_CONV,SAT,0>", 8), ("uint<1>", 1), ("int4", 4), ("int32", 32)],
)
def test_precision_widths_as_targets_spell_them(spec, width):
    assert precision_width(spec) == width


def test_precision_width_of_other_spellings_is_unknown():
    assert precision_width("float") is None and precision_width(None) is None


def test_write_report_html_into_a_folder(ort_folder):
    path = write_report_html(ort_folder)
    assert path == ort_folder / REPORT_HTML and figure_count(path.read_text()) >= 2
