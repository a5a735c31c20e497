"""Every example runs as the README shows it: ``python examples/<name>.py`` from the repository root, in a fresh
process (no test-suite sys.path), here with its smallest settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

#: the smallest settings of each example script (an example without an entry fails the test below)
SMALLEST = {
    "digits.py": ["--epochs", "3"],
    "iris_quantum.py": ["--epochs", "5", "--device", "line"],
    "creep.py": ["--epochs", "2", "--finetune-epochs", "1", "--steps", "1", "--device", "line"],
}
#: what each one prints when it worked
EXPECTED = {
    "digits.py": "W4A8",
    "iris_quantum.py": "test accuracy (compiled, qiskit)",
    "creep.py": "result: VERIFIED WITHIN DERIVED BOUND",
}


def test_every_example_has_smallest_settings():
    scripts = {path.name for path in (ROOT / "examples").glob("*.py") if path.name != "__init__.py"}
    assert scripts == set(SMALLEST)


@pytest.mark.parametrize("script", sorted(SMALLEST))
def test_example_runs_as_a_script_from_the_repository_root(script, tmp_path):
    if script != "digits.py":
        pytest.importorskip("qiskit")
    # the interpreter's environment without this test session's import path: as a user's shell runs it
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, f"examples/{script}", "-o", str(tmp_path / "out"), *SMALLEST[script]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert EXPECTED[script] in result.stdout, result.stdout
    assert (tmp_path / "out").exists()
