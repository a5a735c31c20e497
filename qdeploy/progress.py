"""Progress bars for long work: shown on a terminal, silent under --quiet or when stderr is not a TTY."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Globally silence progress bars (the CLI's --quiet)."""
    global _quiet
    _quiet = quiet


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    from tqdm.auto import tqdm

    disable = _quiet or not sys.stderr.isatty()
    yield from tqdm(iterable, desc=desc, total=total, disable=disable, leave=False, file=sys.stderr)
