"""Progress of a long job, for the person waiting: on a terminal a rich bar with the time
elapsed and an ETA; anywhere else (CI, make, a pipe) a plain line on every tenth of the work,
or at the first update 30 s after the last line, whichever comes first, so that a long run is
never silent. Both go to standard error; standard output keeps the results.

The wall clock is read here for display only: nothing it gives reaches a model or a result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["ProgressDisplay", "span"]


def span(seconds: float) -> str:
    """A wall-clock span for people: `42s`, `3m05s`, `1h02m`."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class ProgressDisplay:
    """`with ProgressDisplay(title, total) as shown: shown.update(done, detail)`: a bar on a
    terminal, else progress lines (`title: 30 %, detail, 4m10s elapsed, ETA 9m43s`)."""

    def __init__(
        self,
        title: str,
        total: float,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = 30.0,
        steps: int = 10,
    ) -> None:
        self.title, self.total = title, total
        self.stream = stream if stream is not None else sys.stderr
        self.clock, self.every_s, self.steps = clock, every_s, steps
        self.started = self.last_line = 0.0
        self.step = 0
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Self:
        self.started = self.last_line = self.clock()
        if self.stream.isatty():
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.title, total=self.total, detail="")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, error, trace)

    @property
    def elapsed(self) -> float:
        """Wall seconds since the display opened."""
        return self.clock() - self.started

    def update(self, completed: float, detail: str) -> None:
        """`completed` of the total is done; `detail` says what that means."""
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, detail=detail)
            return
        now = self.clock()
        share = min(completed / self.total, 1.0) if self.total > 0 else 1.0
        step = int(share * self.steps)
        if step <= self.step and now - self.last_line < self.every_s:
            return
        self.step, self.last_line = max(step, self.step), now
        print(self.line(share, detail, now - self.started), file=self.stream, flush=True)

    def line(self, share: float, detail: str, elapsed: float) -> str:
        """One progress line; the ETA assumes the rest goes as fast as what is done."""
        eta = span(elapsed * (1 - share) / share) if share > 0 else "unknown"
        return f"{self.title}: {share:.0%}, {detail}, {span(elapsed)} elapsed, ETA {eta}"
