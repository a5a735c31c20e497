"""Files that appear whole or not at all: written to a temporary sibling, moved into place on success, deleted on
failure (a crash, a refusal, Ctrl-C). Output folders are staged the same way by ``qdeploy.compiler``."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
