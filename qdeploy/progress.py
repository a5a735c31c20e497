"""Progress bars for long work: shown on a terminal, silent under --quiet or when stderr is not a TTY.

Log lines and Python warnings that arrive while a bar is drawn must not tear it: the CLI's log handler
(``BarSafeHandler``) writes through ``tqdm.write``, which clears the bars, prints the line and redraws them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from qdeploy.pipeline import Instrument

T = TypeVar("T")

_quiet = False


def set_quiet(quiet: bool) -> bool:
    """Globally silence progress bars (the CLI's --quiet); returns the previous setting, to restore it."""
    global _quiet
    previous, _quiet = _quiet, quiet
    return previous


def bars_enabled() -> bool:
    """Bars are drawn only for a person watching a terminal: not under --quiet, not into a pipe or a log file."""
    return not _quiet and sys.stderr.isatty()


def progress(iterable: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """``iterable``, with a bar labelled ``desc`` while it is consumed (the bar disappears when it ends)."""
    from tqdm.auto import tqdm

    yield from tqdm(iterable, desc=desc, total=total, disable=not bars_enabled(), leave=False, file=sys.stderr)


def bar(total: int, desc: str) -> Any:
    """A bar to advance by hand (``update``, ``set_description``, ``close``; also a context manager), for work
    that is not one loop: the steps of a compile. Disabled bars accept the same calls and draw nothing."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not bars_enabled(), leave=False, file=sys.stderr)


class StepBar(Instrument):
    """The instrument that shows a compile's steps on one bar: ``planned`` are the step names in order; the bar
    names the step running now. Work timed inside a step (``RunContext.timed`` calls a target makes during emit)
    does not advance it."""

    def __init__(self, planned: Sequence[str], desc: str = "compile") -> None:
        self.planned = list(planned)
        self.done = 0
        self.desc = desc
        self.bar = bar(len(self.planned), self._label())

    def _label(self) -> str:
        step = self.planned[self.done] if self.done < len(self.planned) else "done"
        return f"{self.desc}: {step}"

    def after_step(self, name: str, model: Any, seconds: float) -> None:
        if self.done < len(self.planned) and name == self.planned[self.done]:
            self.done += 1
            self.bar.update(1)
            self.bar.set_description(self._label())

    def close(self) -> None:
        self.bar.close()


class BarSafeHandler(logging.Handler):
    """A log handler for the terminal that prints through ``tqdm.write`` (so an active bar is redrawn below the
    line instead of being cut in half) into whatever ``sys.stderr`` is at the time of the record."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            message = self.format(record)
        except Exception:  # logging's own convention: a bad record is reported by handleError, not raised
            self.handleError(record)
            return
        tqdm.write(message, file=sys.stderr)
