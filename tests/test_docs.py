"""The runnable examples in docs/ run exactly as written (in order, one session per document, in a fresh folder)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DOCUMENTS = ["docs/architecture.md"]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_document_examples_run_as_written(document, tmp_path):
    blocks = python_blocks((ROOT / document).read_text())
    assert len(blocks) >= 3, f"{document} lost its examples"
    script = tmp_path / "examples.py"
    script.write_text("\n\n".join(blocks))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "result: EXACT" in done.stdout
