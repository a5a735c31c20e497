"""Design-space sweeps (qdeploy.sweep, qdeploy sweep): a small grid on a local Ray with 2 workers, the rerun served
from the cache, a point a target refuses recorded while the others complete, and grids refused before any work."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import qdeploy
from qdeploy import sweeps
from qdeploy.cli import main
from qdeploy.errors import QDeployError
from tests.conftest import ROOT
from tests.targets.helpers import assert_no_output

pytest.importorskip("ray", reason="sweeps need Ray: pip install 'qdeploy[sweep]'")

FACTORY = f"{ROOT / 'examples' / 'digits.py'}:mlp"

# two points onnxruntime compiles and verifies; two hls4ml points it refuses (strict_fit: the Latency MLP needs more
# DSPs than a PYNQ-Z2 has) after converting the graph, in the worker
GRID_TOML = """\
[grid]
weight_bits = [4, 8]
target = ["onnxruntime", "hls4ml"]
strategy = ["Latency"]
strict_fit = [true]
verify_samples = [200]
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory, data) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sweep")
    paths = {"calib": folder / "calib.npz", "test": folder / "test.npz", "grid": folder / "sweep.toml"}
    np.savez(paths["calib"], x=data.x_train[:256])
    np.savez(paths["test"], x=data.x_test, y=data.y_test)
    paths["grid"].write_text(GRID_TOML)
    return paths


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


def _ray_running() -> bool:
    import ray

    return ray.is_initialized()


def test_sweep_on_ray_then_all_from_the_cache(files, tmp_path, capsys, monkeypatch):
    pytest.importorskip("hls4ml")
    cache, out = tmp_path / "cache", tmp_path / "sweep"
    result = qdeploy.sweep(FACTORY, files["grid"], files["test"], out=out, calib=files["calib"], cache=cache, workers=2)
    assert not _ray_running()  # the sweep started its own Ray and stopped it

    rows = {(row["target"], row["weight_bits"]): row for row in result.rows}
    assert len(result.rows) == 4 and set(rows) == {(t, b) for t in ("onnxruntime", "hls4ml") for b in (4, 8)}
    for bits in (4, 8):
        done = rows["onnxruntime", bits]
        assert done["error"] == "" and done["bit_exact"] and done["verified"] and not done["cached"]
        assert 0.8 < done["accuracy"] <= 1.0  # digits MLP at W4A8/W8A8, scored by the ORT artefact itself
        assert (Path(done["artifact"]) / "report.json").exists()
        assert Path(done["artifact"]).is_relative_to(cache)
        # a target option is not part of another target's point
        assert "strict_fit" not in done and "strategy" not in done
        refused = rows["hls4ml", bits]
        assert "estimated resources exceed pynq-z2" in refused["error"] and "\n" not in refused["error"]
        assert refused.get("accuracy") is None
    assert rows["onnxruntime", 8]["accuracy"] >= rows["onnxruntime", 4]["accuracy"] - 0.02

    table = _read_csv(out / "results.csv")
    assert [r["target"] for r in table] == [r["target"] for r in result.rows]
    header = list(table[0])
    for column in ("weight_bits", "target", "strategy", "accuracy", "bit_exact", "verified", "seconds", "cached", "error"):
        assert column in header
    assert sum(1 for r in table if r["error"]) == 2
    assert json.loads((out / "results.json").read_text())["rows"][0]["weight_bits"] == 4
    page = (out / "report.html").read_text()
    assert "<svg" in page and "Pareto" in page and "estimated resources exceed" in page
    assert "<script" not in page and "src=" not in page  # self-contained

    # the rerun, through the command line: every point from the cache, Ray never started, nothing compiled
    def no_ray(*args, **kwargs):
        raise AssertionError("a fully cached sweep must not start Ray")

    monkeypatch.setattr(sweeps, "_run_on_ray", no_ray)
    code = main(
        ["sweep", FACTORY, "--grid", str(files["grid"]), "--data", str(files["test"]), "--calib", str(files["calib"]),
         "--cache", str(cache), "-o", str(out), "-q"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "4 points: 2 done, 2 failed, 4 from the cache" in captured.out
    again = _read_csv(out / "results.csv")
    assert all(r["cached"] == "True" for r in again)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in table]
    assert [r["artifact"] for r in again] == [r["artifact"] for r in table]

    # an overlapping grid, spelled differently (a scalar, a default given explicitly): the same entries
    overlap = qdeploy.sweep(
        FACTORY,
        {"weight_bits": [8], "target": "onnxruntime", "verify_samples": 200, "per_channel": True},
        files["test"],
        out=tmp_path / "overlap",
        calib=files["calib"],
        cache=cache,
    )
    assert overlap.rows[0]["cached"] and overlap.rows[0]["artifact"] == rows["onnxruntime", 8]["artifact"]


def test_unknown_keys_are_refused_before_any_work(tmp_path, files):
    marker = tmp_path / "factory_ran"
    factory = tmp_path / "factory.py"
    factory.write_text(
        "from pathlib import Path\nfrom torch import nn\n\n\n"
        f"def model():\n    Path({str(marker)!r}).write_text('ran')\n    return nn.Linear(64, 10)\n"
    )
    spec, cache, out = f"{factory}:model", tmp_path / "cache", tmp_path / "out"

    def refused(grid: dict, *fragments: str) -> None:
        with pytest.raises(QDeployError) as info:
            qdeploy.sweep(spec, grid, files["test"], out=out, cache=cache)
        message = str(info.value)
        assert "\n" not in message
        for fragment in fragments:
            assert fragment in message, message

    # a typo: the key and the valid names (quantize's, compile's, the target's, read from their option classes)
    refused({"wieght_bits": [2, 4]}, "unknown key 'wieght_bits'", "weight_bits", "verify_samples", "act_bits")
    # an option of a target the grid does not compile for
    refused({"weight_bits": [4], "reuse_factor": [1, 2]}, "reuse_factor is an option of target hls4ml", "target")
    refused({"target": ["onnxruntime", "fpga9000"]}, "target 'fpga9000' is not registered", "onnxruntime")
    refused({"objective": ["bops"]}, "average_bits")
    refused({"average_bits": [3], "rounding": ["gptq"]}, "act_bits only", "rounding")
    # a QONNX model is compiled as it is: quantize options do not apply
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"not read before the grid is checked")
    with pytest.raises(QDeployError, match="weight_bits is a quantization option"):
        qdeploy.sweep(graph, {"weight_bits": [4]}, files["test"], out=out, cache=cache)
    with pytest.raises(QDeployError, match=r"\[grid\]"):
        bad_file = tmp_path / "bad.toml"
        bad_file.write_text("[sweep]\nweight_bits = [4]\n")
        qdeploy.sweep(spec, bad_file, files["test"], out=out, cache=cache)
    assert not marker.exists() and not cache.exists()
    assert_no_output(out)


def test_invalid_values_are_rows_with_their_reason(tmp_path, files, monkeypatch):
    """Values an option class refuses are the point's error, found without a worker; the sweep still writes its
    table (and starts no Ray when nothing is left to run)."""
    monkeypatch.setattr(sweeps, "_run_on_ray", lambda *a, **k: pytest.fail("nothing to run"))
    result = qdeploy.sweep(
        FACTORY,
        {"weight_bits": [1], "target": ["onnxruntime", "hls4ml"], "reuse_factor": [0]},
        files["test"],
        out=tmp_path / "out",
        cache=tmp_path / "cache",
    )
    assert "weight_bits=1 is out of range" in result.rows[0]["error"]
    assert "reuse_factor=0" in result.rows[1]["error"]
    assert result.summary().startswith("2 points: 0 done, 2 failed")
    assert len(_read_csv(tmp_path / "out" / "results.csv")) == 2


def test_interrupted_sweep_writes_nothing(tmp_path, files, monkeypatch):
    def interrupted(tasks, *args, **kwargs):
        yield tasks[0].index, {"error": "", "seconds": 1.0, "cached": False}
        raise KeyboardInterrupt

    monkeypatch.setattr(sweeps, "_run_on_ray", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        qdeploy.sweep(FACTORY, {"weight_bits": [2, 4]}, files["test"], out=out, cache=tmp_path / "cache")
    assert_no_output(out)


def test_resources_from_reports():
    hls = {"target": "hls4ml", "estimated_resources": {"LUT": 1200, "FF": 900, "DSP": 12, "BRAM_18K": 0}}
    assert sweeps.resources_of(hls) == {
        "luts": 1200, "ffs": 900, "dsps": 12, "brams": 0, "resource_source": "hls4ml estimate"
    }  # fmt: skip
    rtl = {
        "target": "rtl",
        "synthesis": {"tool": "yosys synth_ice40", "total": {"luts": 900}, "network": {"luts": 700, "ffs": 80}},
        "latency_cycles": 3,
        "latency_ns": 41.5,
        "fmax_mhz": 72.3,
    }
    assert sweeps.resources_of(rtl) == {
        "luts": 700, "ffs": 80, "resource_source": "yosys synth_ice40", "latency_cycles": 3, "latency_ns": 41.5,
        "fmax_mhz": 72.3,
    }  # fmt: skip
    assert sweeps.resources_of({"target": "onnxruntime"}) == {}


def test_pareto_front_and_plot_axes(tmp_path):
    #                          cost, score
    points = [(100.0, 0.90), (50.0, 0.80), (200.0, 0.85), (50.0, 0.70), (300.0, 0.95)]
    assert sweeps.pareto_front(points) == [1, 0, 4]
    rows = [
        {"weight_bits": b, "target": "hls4ml", "accuracy": a, "luts": lut, "error": ""}
        for b, a, lut in ((2, 0.7, 900), (4, 0.93, 1500), (8, 0.95, 4000))
    ] + [{"weight_bits": 4, "target": "onnxruntime", "accuracy": 0.94, "error": ""}]
    result = sweeps.SweepResult(rows, tmp_path, ["weight_bits", "target", "accuracy", "luts"], 1.0, ["weight_bits"])
    svg, caption = sweeps.pareto_figure(result)
    assert svg.startswith("<svg") and "LUTs" in caption
    without_cost = sweeps.SweepResult(rows[3:], tmp_path, ["weight_bits", "target", "accuracy"], 1.0, ["weight_bits"])
    assert "weight bits" in sweeps.pareto_figure(without_cost)[1]


def test_cache_key_follows_content(tmp_path):
    """The key changes with the model file, the calibration data, an option or a tool version, and with nothing
    else (two spellings of one configuration share it)."""
    model = tmp_path / "m.py"
    model.write_text("def f(): ...\n")
    source = sweeps.ModelSource.of(f"{model}:f")
    point = sweeps.expand_grid({"weight_bits": [4]}, True)[0]
    explicit = sweeps.expand_grid({"weight_bits": [4], "act_bits": [8], "target": ["onnxruntime"]}, True)[0]
    calib = sweeps.array_digest(np.zeros((4, 2), np.float32))
    key = sweeps.cache_key(source, calib, sweeps.resolve_point(point), "onnxruntime")
    assert key == sweeps.cache_key(source, calib, sweeps.resolve_point(explicit), "onnxruntime")
    other_bits = sweeps.expand_grid({"weight_bits": [3]}, True)[0]
    assert key != sweeps.cache_key(source, calib, sweeps.resolve_point(other_bits), "onnxruntime")
    other_calib = sweeps.array_digest(np.ones((4, 2), np.float32))
    assert key != sweeps.cache_key(source, other_calib, sweeps.resolve_point(point), "onnxruntime")
    model.write_text("def f(): return 1\n")
    changed = sweeps.ModelSource.of(f"{model}:f")
    assert key != sweeps.cache_key(changed, calib, sweeps.resolve_point(point), "onnxruntime")
    versions = sweeps.tool_versions("hls4ml")
    assert {"qdeploy", "qdeploy-source", "onnxruntime", "torch", "brevitas", "hls4ml"} <= set(versions)
    assert "hls4ml" not in sweeps.tool_versions("onnxruntime")


def test_classes_of_the_factory_file_travel_by_value(tmp_path):
    """A worker never imported the user's factory file: the model's own classes are pickled by value."""
    import subprocess
    import sys

    import ray.cloudpickle

    factory = tmp_path / "custom.py"
    factory.write_text(
        "from torch import nn\n\n\nclass Twice(nn.Module):\n    def forward(self, x):\n        return 2 * x\n\n\n"
        "def model():\n    return nn.Sequential(nn.Linear(4, 2), Twice())\n"
    )
    source = sweeps.ModelSource.of(f"{factory}:model")
    model = sweeps._load_model(source)
    sweeps._ship_user_classes(model, source)
    blob = tmp_path / "model.pkl"
    blob.write_bytes(ray.cloudpickle.dumps(model))
    load = "import sys, torch, ray.cloudpickle; m = ray.cloudpickle.loads(open(sys.argv[1], 'rb').read()); print(m[1])"
    other = tmp_path / "elsewhere"
    other.mkdir()
    done = subprocess.run([sys.executable, "-c", load, str(blob)], cwd=other, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Twice()" in done.stdout


def test_mixed_precision_budget_point(float_mlp, data, tmp_path):
    """A mixed-precision budget point (average_bits) runs HAWQ's allocation, then compiles and scores like any
    point; without labelled calibration data it is the point's error."""
    import torch

    grid = {"average_bits": [3], "act_bits": [8], "probes": [2], "samples": [128], "verify_samples": [100]}
    sweeps.check_grid(grid, True, "mlp")
    (point,) = sweeps.expand_grid(grid, True)
    assert point.quantize is None and point.mixed == {"average_bits": 3, "act_bits": 8, "probes": 2, "samples": 128}
    task = sweeps.PointTask(0, "ab" * 32, sweeps.resolve_point(point), str(tmp_path / "cache"), "data", 1)
    threads = torch.get_num_threads()
    try:
        row = sweeps.run_point(task, float_mlp, (data.x_train[:256], data.y_train[:256]), (data.x_test, data.y_test))
        graph = qdeploy.load(Path(row["artifact"]) / "golden.onnx")
        unlabelled = sweeps.PointTask(1, "cd" * 32, task.resolved, str(tmp_path / "cache"), "data", 1)
        refused = sweeps.run_point(unlabelled, float_mlp, (data.x_train[:256], None), (data.x_test, data.y_test))
    finally:
        torch.set_num_threads(threads)
    assert "error" not in row and row["bit_exact"] and 0.5 < row["accuracy"] <= 1.0, row
    # widths chosen per layer within the budget: bit operations of uniform 3-bit weights (activations all 8 bits)
    layers = [layer for layer in qdeploy.inspect(graph)["layers"] if layer.get("weight_bits")]
    assert sum(layer["macs"] * layer["weight_bits"] for layer in layers) <= 3 * sum(layer["macs"] for layer in layers)
    assert "needs labelled calibration data" in refused["error"]
