"""The README's demo: quantize the bundled example, compile to every available target, verify (MLP only here;
`bash run.sh demo` runs the CNN too)."""

from __future__ import annotations

import json

from qdeploy.demo import run_demo


def test_demo_compiles_every_target_bit_exactly(tmp_path, capsys):
    report = run_demo(tmp_path / "demo", models=("mlp",))
    out = capsys.readouterr().out
    assert report["all_exact"] is True
    targets = report["models"]["mlp"]["targets"]
    assert set(targets) == {"onnxruntime", "hls4ml"}
    assert all(t["outputs_equal"] == t["outputs_compared"] >= 1000 for t in targets.values())
    assert "bit-exact: 1449/1449 outputs" in out and "all targets bit-exact" in out
    assert json.loads((tmp_path / "demo" / "demo_report.json").read_text())["all_exact"] is True
