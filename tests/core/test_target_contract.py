"""The target contract is closed: a third-party target registered through the ``qdeploy.targets`` entry point brings
its own options, flag, steps, emit and runner, and compiles through the CLI and the API without any core edit."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import qdeploy
from qdeploy.errors import QDeployError

TOY_TARGET = textwrap.dedent(
    '''
    """A third-party target: copies the graph and runs it with the golden executor; writes its option to a file."""
    import dataclasses
    from pathlib import Path

    from qonnx.core.modelwrapper import ModelWrapper

    from qdeploy.golden import run_golden
    from qdeploy.options import Options, option
    from qdeploy.target import Target


    @dataclasses.dataclass(frozen=True)
    class ToyOptions(Options):
        label: str = option("plain", "text the toy target writes to label.txt", flag="--toy-label")
        copies: int = option(1, "how many copies of the graph to write", cli=False)


    def name_the_graph(model, options):
        """Give the graph the label as its name (a step that changes the model, dumped to ir/)."""
        model.graph.name = options.label
        return model


    class ToyTarget(Target):
        name = "toy"
        Options = ToyOptions

        def check_available(self):
            pass

        def describe(self):
            return ["golden-executor copies of the graph, for tests"]

        def steps(self, options):
            return [name_the_graph]

        def emit(self, model, options, out_dir, ctx):
            for k in range(options.copies):
                model.save(str(Path(out_dir) / f"copy{k}.onnx"))
            (Path(out_dir) / "label.txt").write_text(options.label)
            return {"per_layer": [], "copies": options.copies}

        def runner(self, out_dir, run_options=None):
            copy = ModelWrapper(str(Path(out_dir) / "copy0.onnx"))
            return lambda x: run_golden(copy, x)
    '''
)


def _cli(env: dict[str, str], *args: object) -> subprocess.CompletedProcess:
    """``qdeploy ARGS`` in a new interpreter with ``env`` (a plugin's site folder on PYTHONPATH)."""
    return subprocess.run(
        [sys.executable, "-m", "qdeploy.cli", *map(str, args)], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch) -> Path:
    """An installed-looking plugin: its module and a dist-info folder with the entry point, on sys.path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "qdeploy_toy_target.py").write_text(TOY_TARGET)
    dist = site / "qdeploy_toy_target-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qdeploy-toy-target\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[qdeploy.targets]\ntoy = qdeploy_toy_target:ToyTarget\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


def test_toy_target_compiles_through_the_api_with_its_own_options(toy_plugin, mlp_w4a8, tmp_path):
    out = tmp_path / "toy"
    artifact = qdeploy.compile(mlp_w4a8[1], target="toy", label="api", copies=2, out=out, verify_samples=50)
    assert artifact.bit_exact and artifact.report["copies"] == 2
    assert (out / "label.txt").read_text() == "api" and (out / "copy1.onnx").exists()
    assert sorted(p.name for p in (out / "ir").iterdir()) == ["00_name_the_graph.onnx"]
    resolved = json.loads((out / "qdeploy_config.json").read_text())
    assert resolved["targets"] == {"toy": {"label": "api", "copies": 2}}
    with pytest.raises(QDeployError, match=r"\[toy\] options: unknown key\(s\) \['colour'\]"):
        qdeploy.compile(mlp_w4a8[1], target="toy", toy={"colour": "red"}, out=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_toy_target_flag_list_and_config_table_on_the_command_line(toy_plugin, mlp_w4a8, tmp_path):
    model = tmp_path / "model.onnx"
    mlp_w4a8[1].save(str(model))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy_plugin), os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return _cli(env, *args)

    listed = cli("list")
    assert listed.returncode == 0 and "toy" in listed.stdout and "golden-executor copies" in listed.stdout
    assert "--toy-label" in cli("compile", "--help").stdout
    done = cli("compile", model, "--target", "toy", "--toy-label", "flag", "--samples", "20", "-o", tmp_path / "a", "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a" / "label.txt").read_text() == "flag"
    config = tmp_path / "c.toml"
    config.write_text('target = "toy"\nverify_samples = 20\n[toy]\nlabel = "file"\ncopies = 3\n')
    done = cli("compile", model, "--config", config, "-o", tmp_path / "b", "-q")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "b" / "label.txt").read_text() == "file" and (tmp_path / "b" / "copy2.onnx").exists()
    # a flag of one target given to another is refused by name, before anything is written
    refused = cli("compile", model, "--target", "onnxruntime", "--toy-label", "x", "-o", tmp_path / "c")
    assert refused.returncode == 1 and "--toy-label is an option of target toy, not onnxruntime" in refused.stderr
    assert not (tmp_path / "c").exists()


def test_a_broken_plugin_fails_only_the_commands_that_select_it(tmp_path, mlp_w4a8):
    """A third-party target whose import fails: commands that do not use it still work (with a warning naming it);
    selecting it is refused in one line naming the plugin and its entry point, before anything is written."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "qdeploy_broken_target.py").write_text("import a_module_that_does_not_exist  # noqa: F401\n")
    dist = site / "qdeploy_broken_target-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: qdeploy-broken-target\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[qdeploy.targets]\nbroken = qdeploy_broken_target:BrokenTarget\n")
    model = tmp_path / "model.onnx"
    mlp_w4a8[1].save(str(model))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return _cli(env, *args)

    done = cli("compile", model, "--target", "onnxruntime", "--samples", "20", "-o", tmp_path / "ort", "-q")
    assert done.returncode == 0, done.stderr
    assert "target 'broken' (entry point qdeploy_broken_target:BrokenTarget) failed to import" in done.stderr
    assert (tmp_path / "ort" / "model.onnx").exists() or any((tmp_path / "ort").iterdir())
    refused = cli("compile", model, "--target", "broken", "-o", tmp_path / "b")
    assert refused.returncode == 1
    error_lines = [line for line in refused.stderr.splitlines() if line.startswith("qdeploy: error:")]
    assert len(error_lines) == 1 and "Traceback" not in refused.stderr
    assert "target 'broken' (entry point qdeploy_broken_target:BrokenTarget) failed to import" in error_lines[0]
    assert "a_module_that_does_not_exist" in error_lines[0]
    assert not (tmp_path / "b").exists()
    listed = cli("list")
    assert listed.returncode == 0 and "onnxruntime" in listed.stdout
    assert "unavailable: target 'broken' (entry point qdeploy_broken_target:BrokenTarget) failed" in listed.stdout
    # a sweep's option vocabulary leaves the broken plugin out too (a sweep over other targets still validates)
    swept = subprocess.run(
        [sys.executable, "-c", "from qdeploy.sweeps import option_names; print(sorted(option_names().targets))"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert swept.returncode == 0, swept.stderr
    assert "onnxruntime" in swept.stdout and "broken" not in swept.stdout
    assert "target 'broken' (entry point qdeploy_broken_target:BrokenTarget) failed to import" in swept.stderr
