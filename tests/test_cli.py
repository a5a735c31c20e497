"""The qdeploy command line: the README's workflow, and one clear line + non-zero exit for each bad input."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import qdeploy
from qdeploy.cli import EXIT_ERROR, main
from qdeploy.evaluation import evaluate, stored_evaluation
from tests.conftest import ROOT
from tests.targets.helpers import assert_no_output

EXAMPLE = ROOT / "examples" / "digits.py"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("qdeploy: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_quantize_compile_verify_inspect(capsys, tmp_path, calib_npz, data, umask_022):
    model = tmp_path / "model.onnx"
    test_npz = tmp_path / "test.npz"
    np.savez(test_npz, x=data.x_test, y=data.y_test)
    code, out, _ = run_cli(
        capsys, "quantize", f"{EXAMPLE}:mlp", "--calib", calib_npz, "--wbits", "4", "--abits", "8", "--eval", test_npz,
        "-o", model, "-q",
    )  # fmt: skip
    assert code == 0 and model.exists() and "W4A8" in out
    # --eval: float vs quantized on the user's data, printed and kept in the model for report.html
    assert re.search(r"accuracy on 449 evaluation samples: float 9\d\.\d\d % -> quantized \d+\.\d\d %", out), out
    assert stored_evaluation(qdeploy.load(model))["samples"] == len(data.x_test)
    x_path = tmp_path / "x.npz"
    np.savez(x_path, x=data.x_test)
    code, out, _ = run_cli(
        capsys, "compile", model, "--target", "onnxruntime", "--data", x_path, "-o", tmp_path / "ort", "-q"
    )
    assert code == 0
    assert f"bit-exact: {len(data.x_test) + 1000}/{len(data.x_test) + 1000} outputs" in out
    assert json.loads((tmp_path / "ort" / "qdeploy_config.json").read_text())["target"] == "onnxruntime"
    assert "Evaluation on the user" in (tmp_path / "ort" / "report.html").read_text()
    # ordinary permissions (the umask's), not tempfile's private 0600/0700
    assert stat.S_IMODE(model.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "ort").stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "ort").iterdir() if p.is_file()} == {0o644}
    code, out, _ = run_cli(capsys, "verify", tmp_path / "ort", "--data", x_path, "-q")
    assert code == 0 and f"bit-exact: {len(data.x_test)}/{len(data.x_test)} outputs" in out
    code, out, _ = run_cli(capsys, "inspect", model, "-q")
    assert code == 0 and "Gemm" in out and "BOPs" in out
    code, out, _ = run_cli(capsys, "inspect", model, "--json", "-q")
    assert json.loads(out)["total_params"] == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    code, folder_out, _ = run_cli(capsys, "inspect", tmp_path / "ort", "-q")  # an output folder: its golden.onnx
    assert code == 0 and "Gemm" in folder_out and folder_out.splitlines()[-1] == out_total(out)
    code, _, err = run_cli(capsys, "inspect", tmp_path, "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "without golden.onnx")


def out_total(inspect_json: str) -> str:
    info = json.loads(inspect_json)
    return f"total: {info['total_params']} params, {info['total_macs']} MACs, {info['total_bops']} BOPs"


def test_quantize_with_weights_and_options(capsys, tmp_path, calib_npz, float_mlp):
    weights = tmp_path / "mlp.pt"
    torch.save(float_mlp.state_dict(), weights)
    model = tmp_path / "model.onnx"
    code, out, _ = run_cli(
        capsys,
        "quantize",
        f"{EXAMPLE}:build_mlp",
        "--weights",
        weights,
        "--calib",
        calib_npz,
        "--wbits",
        "3",
        "--abits",
        "6",
        "--per-tensor",
        "--calibration",
        "percentile",
        "-o",
        model,
        "-q",
    )
    assert code == 0
    layers = qdeploy.inspect(model)["layers"]
    assert {row["weight_bits"] for row in layers} == {3} and {row["activation_bits"] for row in layers} == {6}
    assert all("per-tensor po2" in row["weight_scale"] for row in layers)


def test_compile_to_hls4ml_with_config_file(capsys, tmp_path, mlp_w4a8):
    pytest.importorskip("hls4ml")
    model = tmp_path / "m.onnx"
    mlp_w4a8[1].save(str(model))
    config = tmp_path / "fpga.toml"
    config.write_text('board = "arty-a7-100t"\nstrategy = "Resource"\nreuse_factor = 4\nverify_samples = 300\n')
    code, out, _ = run_cli(capsys, "compile", model, "--target", "hls4ml", "--config", config, "-o", tmp_path / "fpga", "-q")
    assert code == 0, out
    report = json.loads((tmp_path / "fpga" / "report.json").read_text())
    assert report["bit_exact"] and report["strategy"] == "Resource" and report["reuse_factor"] == 4
    assert report["part"] == "xc7a100tcsg324-1"
    assert "board: arty-a7-100t" in out


def test_readme_config_file_example_compiles(capsys, tmp_path, mlp_w4a8):
    """The README's --config example, as written: neutral keys, the [hls4ml] table, hls4ml's own sections."""
    pytest.importorskip("hls4ml")
    import re

    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```toml\n(.*?)```", readme, flags=re.S).group(1)
    config = tmp_path / "fpga.toml"
    config.write_text("\n".join(line.strip() for line in block.splitlines()))
    model = tmp_path / "m.onnx"
    mlp_w4a8[1].save(str(model))
    code, out, _ = run_cli(capsys, "compile", model, "--config", config, "-o", tmp_path / "fpga", "-q")
    assert code == 0, out
    report = json.loads((tmp_path / "fpga" / "report.json").read_text())
    assert report["bit_exact"] and report["board"] == "zcu104" and report["reuse_factor"] == 4
    assert report["outputs_compared"] == 300
    assert "BramFactor: 1000000000" in (tmp_path / "fpga" / "firmware" / "hls4ml_config.yml").read_text()


# -- bad input: one line, non-zero exit, nothing half-written ---------------------------------------------------------


def test_missing_model_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "compile", tmp_path / "none.onnx", "-o", tmp_path / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "none.onnx", "does not exist")
    assert_no_output(tmp_path / "out")


def test_non_onnx_file(capsys, tmp_path):
    bogus = tmp_path / "model.onnx"
    bogus.write_text("hello")
    code, _, err = run_cli(capsys, "compile", bogus, "-o", tmp_path / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "model.onnx is not a readable ONNX model")
    assert_no_output(tmp_path / "out")


def test_op_the_target_cannot_lower(capsys, tmp_path, data):
    pytest.importorskip("hls4ml")
    torch.manual_seed(0)
    # Softmax mixes a layer's outputs before the next quantizer: no thresholds express it (an elementwise Sigmoid
    # there lowers to thresholds)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.Softmax(dim=1), torch.nn.Linear(8, 10))
    model = tmp_path / "m.onnx"
    qdeploy.export(qdeploy.quantize(net, data.x_train[:64]), data.x_train[:1], model)
    code, _, err = run_cli(capsys, "compile", model, "--target", "hls4ml", "-o", tmp_path / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "Softmax_0", "not supported")
    assert_no_output(tmp_path / "out")


def test_factory_that_raises(capsys, tmp_path, calib_npz):
    source = tmp_path / "broken.py"
    source.write_text("def make():\n    raise RuntimeError('weights corrupted')\n")
    code, _, err = run_cli(capsys, "quantize", f"{source}:make", "--calib", calib_npz, "-o", tmp_path / "m.onnx", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "broken.py:make raised RuntimeError: weights corrupted")
    assert not (tmp_path / "m.onnx").exists()


def test_calibration_data_with_nan(capsys, tmp_path, data):
    calib = tmp_path / "calib.npy"
    x = data.x_train[:64].copy()
    x[5, 0, 0, 0] = np.nan
    np.save(calib, x)
    code, _, err = run_cli(capsys, "quantize", f"{EXAMPLE}:mlp", "--calib", calib, "-o", tmp_path / "m.onnx", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "calibration data contains NaN", "sample 5")
    assert not (tmp_path / "m.onnx").exists()


def test_calibration_data_of_the_wrong_shape(capsys, tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((64, 3, 5), dtype=np.float32))
    code, _, err = run_cli(capsys, "quantize", f"{EXAMPLE}:mlp", "--calib", calib, "-o", tmp_path / "m.onnx", "-q")
    assert code == EXIT_ERROR
    # the shape the model expects, in words, not only torch's matrix sizes
    assert_one_line_error(
        err, "fails on calibration data of per-sample shape (3, 5)", "expects any shape with 64 values per sample"
    )
    assert not (tmp_path / "m.onnx").exists()
    code, _, err = run_cli(capsys, "quantize", f"{EXAMPLE}:build_cnn", "--calib", calib, "-o", tmp_path / "m.onnx", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "expects (1, H, W) per sample", "Conv2d(1, 8)")


FACTORY_WITH_SIDE_EFFECTS = """
import logging, warnings
from pathlib import Path
from torch import nn

def make():
    Path(__file__).with_suffix(".called").touch()
    logging.getLogger("qiskit.passmanager").info("Pass: UnrollCustomDefinitions - 0.19 (ms)")
    logging.getLogger("qiskit.transpiler").warning("a third-party warning")
    logging.getLogger("qdeploy.user").info("qdeploy info line")
    warnings.warn("a user warning from the model's own code", UserWarning)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
"""


def test_inputs_are_checked_before_the_factory_runs(capsys, tmp_path, calib_npz):
    source = tmp_path / "factory.py"
    source.write_text(FACTORY_WITH_SIDE_EFFECTS)
    cases = [
        ("quantize", "--calib", tmp_path / "missing.npz"),
        ("quantize", "--calib", calib_npz, "--eval", tmp_path / "missing.npz"),
        ("qat", "--data", tmp_path / "missing.npz"),
        ("binarize", "--data", tmp_path / "missing.npz"),
        ("mixed", "--data", tmp_path / "missing.npz", "--average-bits", "4"),
        ("quantize", "--calib", calib_npz, "--weights", tmp_path / "missing.pt"),
    ]
    for command, *options in cases:
        code, _, err = run_cli(capsys, command, f"{source}:make", *options, "-o", tmp_path / "m.onnx", "-q")
        assert code == EXIT_ERROR
        assert_one_line_error(err, "missing.", "does not exist")
    assert not source.with_suffix(".called").exists()


def test_terminal_shows_qdeploy_info_and_other_libraries_warnings_only(capsys, tmp_path, calib_npz):
    source = tmp_path / "factory.py"
    source.write_text(FACTORY_WITH_SIDE_EFFECTS)
    levels = (logging.getLogger().level, logging.getLogger("qdeploy").level, list(logging.getLogger().handlers))
    code, out, err = run_cli(capsys, "quantize", f"{source}:make", "--calib", calib_npz, "-o", tmp_path / "m.onnx")
    assert code == 0, err
    assert "qdeploy info line" in err
    assert "warning [qiskit]: a third-party warning" in err
    assert "Pass: UnrollCustomDefinitions" not in err  # qiskit's INFO pass timings
    # a Python warning is one log line (written through the bar-safe handler), not warnings' two-line print
    warning_lines = [line for line in err.splitlines() if "a user warning from the model's own code" in line]
    assert len(warning_lines) == 1 and warning_lines[0].startswith("warning: ") and "UserWarning" in warning_lines[0]
    assert "warnings.warn(" not in err
    code, _, err = run_cli(capsys, "quantize", f"{source}:make", "--calib", calib_npz, "-o", tmp_path / "m.onnx", "-vv")
    assert code == 0 and "Pass: UnrollCustomDefinitions" in err and "nn.Flatten -> torch.flatten" in err
    code, _, err = run_cli(capsys, "quantize", f"{source}:make", "--calib", calib_npz, "-o", tmp_path / "m.onnx", "-q")
    assert code == 0 and "qdeploy info line" not in err and "third-party" not in err
    # the CLI leaves the logging configuration as it found it (main may run in-process)
    assert (logging.getLogger().level, logging.getLogger("qdeploy").level, logging.getLogger().handlers) == levels


def test_threads_for_torch_and_onnxruntime(capsys, monkeypatch):
    from qdeploy import runtime
    from qdeploy.cli import default_threads, physical_cores

    before = torch.get_num_threads()
    try:
        assert run_cli(capsys, "list", "--threads", "1", "-q")[0] == 0
        assert torch.get_num_threads() == 1 and runtime._session_threads == 1
    finally:
        torch.set_num_threads(before)
        runtime.set_session_threads(None)
    assert 1 <= physical_cores() <= (os.cpu_count() or 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == physical_cores()
    with pytest.raises(SystemExit):
        main(["list", "--threads", "0"])


def test_evaluation_warns_on_a_collapse_and_on_a_loss_past_the_margin():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    logits = np.stack([1 - y, y], axis=1).astype(np.float32) + rng.normal(0, 0.1, (200, 2))
    collapsed = evaluate(lambda x: logits, lambda x: np.tile([0.0, 1.0], (len(x), 1)), logits, y, "W2A2")
    assert collapsed.kind == "accuracy" and collapsed.float_value == 1.0
    assert collapsed.quantized_value == pytest.approx(np.mean(y == 1))
    assert any("collapsed: it predicts class 1 for every evaluation sample" in w for w in collapsed.warnings)
    assert any("loses" in w and "margin of 1" in w for w in collapsed.warnings)
    close = evaluate(lambda x: logits, lambda x: logits * 0.9, logits, y, "W8A8", margin=1.0)
    assert close.warnings == [] and "+0.00 points" in close.summary()
    regression = evaluate(lambda x: x, lambda x: x + 0.5, np.zeros((10, 1), np.float32), np.zeros(10), "W4A8", margin=5)
    assert regression.kind == "mse" and regression.quantized_value == pytest.approx(0.25)
    assert any("MSE" in w for w in regression.warnings) and regression.summary().startswith("MSE on 10")


def test_verification_data_of_the_wrong_shape(capsys, tmp_path, mlp_w4a8):
    model = tmp_path / "m.onnx"
    mlp_w4a8[1].save(str(model))
    np.save(tmp_path / "x.npy", np.zeros((10, 64), dtype=np.float32))
    code, _, err = run_cli(capsys, "compile", model, "--data", tmp_path / "x.npy", "-o", tmp_path / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "per-sample shape (64,) but the model expects (1, 8, 8)")
    assert_no_output(tmp_path / "out")


def test_unknown_target_and_unknown_config_key(capsys, tmp_path, mlp_w4a8):
    model = tmp_path / "m.onnx"
    mlp_w4a8[1].save(str(model))
    code, _, err = run_cli(capsys, "compile", model, "--target", "tpu", "-o", tmp_path / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "unknown target 'tpu'", "hls4ml", "onnxruntime")
    config = tmp_path / "c.yaml"
    config.write_text("target: onnxruntime\nreuse: 2\n")
    code, _, err = run_cli(capsys, "compile", model, "--config", config, "-o", tmp_path / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "c.yaml: unknown key 'reuse'", "a table per target (hls4ml, onnxruntime")
    assert_no_output(tmp_path / "out")
    config.write_text("target: onnxruntime\nhls4ml:\n  reuse: 2\n")  # a typo in another target's table, too
    code, _, err = run_cli(capsys, "compile", model, "--config", config, "-o", tmp_path / "out", "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "[hls4ml] options: unknown key(s) ['reuse']", "reuse_factor")
    assert_no_output(tmp_path / "out")


def test_verify_of_a_folder_that_is_not_an_output(capsys, tmp_path):
    code, _, err = run_cli(capsys, "verify", tmp_path, "-q")
    assert code == EXIT_ERROR
    assert_one_line_error(err, "is not a qdeploy output folder")


def test_missing_optional_dependency_names_the_extra(tmp_path, mlp_w4a8):
    """Run the real console script with hls4ml hidden from the interpreter."""
    model = tmp_path / "m.onnx"
    mlp_w4a8[1].save(str(model))
    shim = tmp_path / "shim"
    shim.mkdir()
    # A meta-path finder that reports hls4ml as absent, as on a machine without the extra installed.
    (shim / "sitecustomize.py").write_text(
        "import sys\n"
        "class _Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'hls4ml' or name.startswith('hls4ml.'):\n"
        "            raise ModuleNotFoundError(f\"No module named '{name}'\", name=name)\n"
        "sys.meta_path.insert(0, _Hide())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(shim)}
    qdeploy_exe = Path(sys.executable).parent / "qdeploy"
    result = subprocess.run(
        [str(qdeploy_exe), "compile", str(model), "--target", "hls4ml", "-o", str(tmp_path / "out"), "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == EXIT_ERROR
    assert_one_line_error(result.stderr, "hls4ml is not installed", "pip install 'qdeploy[hls4ml]'")
    assert_no_output(tmp_path / "out")


def test_progress_bars_only_for_a_terminal(monkeypatch):
    import io

    from qdeploy import progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert progress.bars_enabled()
    step_bar = progress.StepBar(["clean", "lower", "emit", "verify"], "compile onnxruntime")
    for name in ["clean", "lower", "csim_build", "emit"]:  # work timed inside emit does not advance the bar
        step_bar.after_step(name, None, 0.0)
    assert step_bar.done == 3 and "compile onnxruntime: verify" in step_bar.bar.desc
    step_bar.close()
    assert "compile onnxruntime: clean" in terminal.getvalue()
    progress.set_quiet(True)
    try:
        assert not progress.bars_enabled()
    finally:
        progress.set_quiet(False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe or a log file
    assert not progress.bars_enabled()
