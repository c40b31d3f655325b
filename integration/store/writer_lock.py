"""The writer lock of an SQLite ledger file, held across processes.

Several processes may open one ledger file: `twin consume` writing it while `twin load`'s
heal phase expires holds and replays dead letters in it, or two services sharing it. Each
core decides against books caught up with the store, then commits, and SQLite's own locks
guard only the commit: between one core's catching up and its commit, another could commit,
and the first would write over a state it never saw (it could expire, and replay, a held
message the other had just released and posted). So, as PostgreSQL's advisory lock does for
that adapter, every pipeline step holds this lock from catching up to its last commit.

It is an exclusive `flock` on a file beside the ledger (`<ledger>.lock`, created when
missing): a process that dies releases it with its file descriptors. Within a process it is
re-entrant and shared by threads, which take turns.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["WriterLock"]


class WriterLock:
    """An exclusive lock on `<path>.lock`, across processes and threads; re-entrant."""

    def __init__(self, path: str) -> None:
        self.path = f"{path}.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._closed = weakref.finalize(self, os.close, self._fd)  # a store never closed
        self._guard = threading.RLock()
        self._depth = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock for the block, waiting for another process to release it."""
        with self._guard:
            if self._depth == 0:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._closed()
