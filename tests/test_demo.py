"""The README's demo, through the command line: quantize the bundled example, compile to every available target,
verify; the whole output fits on one screen and ends with each target's verification. (The MLP only here; `bash
run.sh demo` runs the CNN too, and the line budget below leaves room for it.)"""

from __future__ import annotations

import json

import pytest

from qdeploy.cli import main

#: one screen
MAX_LINES = 60


def test_demo_fits_one_screen_and_ends_with_each_targets_verification(tmp_path, capsys):
    pytest.importorskip("hls4ml")
    pytest.importorskip("qiskit")
    out_dir = tmp_path / "demo"
    assert main(["demo", "-o", str(out_dir), "--models", "mlp"]) == 0
    captured = capsys.readouterr()
    out, err = captured.out.splitlines(), captured.err.splitlines()
    # the CNN adds what the MLP printed: its own lines on stdout, and (at most) every log line
    per_model = sum("mlp" in line for line in out) + len(err)
    assert len(out) + len(err) + per_model <= MAX_LINES, captured.out + captured.err
    assert not any("Pass:" in line for line in err)  # qiskit's pass timings stay out of the terminal
    # the end: the verification of each target, then the verdict
    block = out[out.index(next(line for line in out if line.startswith("verification against"))) :]
    assert block[1].split()[:4] == ["mlp", "onnxruntime", "bit-exact:", "1449/1449"]
    assert block[2].split()[:4] == ["mlp", "hls4ml", "bit-exact:", "1449/1449"]
    assert "fits pynq-z2" in block[2]
    assert block[3].split()[:4] == ["iris", "quantum", "within", "the"]
    assert block[4].startswith("all targets verified") and len(block) == 5
    report = json.loads((out_dir / "demo_report.json").read_text())
    assert report["all_exact"] is True and report["all_verified"] is True
    mlp = report["models"]["mlp"]
    # method auto keeps accuracy: within a point of the float model (plain rounding lost 1.3 points here)
    assert mlp["float_accuracy"] - mlp["quantized_accuracy"] <= 0.01
    assert all(t["outputs_equal"] == t["outputs_compared"] >= 1000 for t in mlp["targets"].values())
    hybrid = report["hybrid"]
    assert hybrid["verified"] is True and 0 < hybrid["derived_bound"] < 1e-4
    assert hybrid["max_abs_error"] <= hybrid["derived_bound"] and hybrid["compiled_accuracy"] >= 0.7
    for folder in ("mlp_onnxruntime", "mlp_hls4ml", "iris_quantum"):
        assert (out_dir / folder / "report.html").exists()


def test_demo_refuses_an_unknown_model(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path / "demo"), "--models", "resnet", "--no-hybrid"]) == 1
    assert "the demo has no model 'resnet'; choose from mlp, cnn" in capsys.readouterr().err
