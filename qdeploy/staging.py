"""Files and folders that appear whole or not at all: written to a temporary sibling, moved into place on success,
deleted on failure (a crash, a refusal, Ctrl-C)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from qdeploy.errors import QDeployError


@contextlib.contextmanager
def staged_file(out: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``out`` (same suffix); on success it replaces ``out``, on failure it is
    deleted. Same folder, so the final rename is atomic."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_folder(out: str | Path, marker: str) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success replace ``out`` with it, on failure delete it. An existing
    ``out`` is replaced only when it is empty or a previous output (it holds the file ``marker``)."""
    out = Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / marker).exists())):
        raise QDeployError(f"output folder {out} exists and is not a qdeploy output; choose another -o")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
