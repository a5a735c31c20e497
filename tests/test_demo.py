"""The README's demo: quantize the bundled example, compile to every available target, verify (MLP only here;
`bash run.sh demo` runs the CNN too)."""

from __future__ import annotations

import json

import pytest

from qdeploy.demo import run_demo


def test_demo_compiles_every_target_bit_exactly(tmp_path, capsys):
    report = run_demo(tmp_path / "demo", models=("mlp",), hybrid=False)
    out = capsys.readouterr().out
    assert report["all_exact"] is True
    targets = report["models"]["mlp"]["targets"]
    assert set(targets) == {"onnxruntime", "hls4ml"}
    assert all(t["outputs_equal"] == t["outputs_compared"] >= 1000 for t in targets.values())
    assert "bit-exact: 1449/1449 outputs" in out and "all classical targets bit-exact" in out
    assert json.loads((tmp_path / "demo" / "demo_report.json").read_text())["all_exact"] is True


def test_demo_hybrid_part_verifies_the_quantum_target(tmp_path, capsys):
    pytest.importorskip("qiskit")
    report = run_demo(tmp_path / "demo", models=(), hybrid=True)
    hybrid = report["hybrid"]
    assert hybrid["verified"] is True and 0 < hybrid["derived_bound"] < 1e-4
    assert hybrid["max_abs_error"] <= hybrid["derived_bound"]
    assert hybrid["outputs_compared"] > 0 and hybrid["compiled_accuracy"] >= 0.7
    assert "VERIFIED over" in capsys.readouterr().out
