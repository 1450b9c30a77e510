"""Progress bars for long steps: tqdm on stderr, off when stderr is not a terminal or with --quiet."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Optional

Tick = Callable[[int], None]


def _noop(n: int = 1) -> None:
    return None


class Progress:
    """``with progress.bar("calibrating", total) as tick: ... tick(1)``; also one-line notes."""

    def __init__(self, enabled: Optional[bool] = None, notes: bool = True) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.notes = notes

    @contextlib.contextmanager
    def bar(self, desc: str, total: Optional[int] = None, unit: str = "frame") -> Iterator[Tick]:
        if not self.enabled:
            yield _noop
            return
        try:
            from tqdm import tqdm
        except ImportError:  # the calibrate extra brings tqdm; without it, no bars
            yield _noop
            return
        with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
            yield bar.update

    def note(self, text: str) -> None:
        """A line on stderr for a step without a count (suppressed when quiet)."""
        if self.notes:
            print(text, file=sys.stderr, flush=True)


QUIET = Progress(False, notes=False)
