"""The core's one thread, and group commit of single submissions.

The core is single-threaded: every call the service makes on it runs on one worker thread,
in arrival order, so the event loop never waits on the ledger store and keeps reading,
parsing and answering requests meanwhile.

Single submissions that arrive while the core is busy are committed together: the next turn
of the worker submits all of them (up to `max_group`) with `Core.submit_many`, one store
transaction in which each message has its own outcome. Each request is
answered only once that transaction has committed, so an acknowledged message is durable,
and the idempotency record is committed with its entry as before; what a group saves is the
per-transaction cost (the writer lock, the catch-up check, the commit and its WAL flush),
shared by every message in it. Consecutive messages of the same sender form one group.
If a group's transaction fails, nothing of it was applied (the batch rolled back) and each of
its messages is submitted again on its own, so one message's failure is its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from integration.core import Core
from integration.outcome import Outcome
from integration.validation import Sender

__all__ = ["CoreRunner"]

T = TypeVar("T")


@dataclass
class _Pending:
    """One single submission waiting for its group's turn."""

    payload: bytes
    sender: Sender
    answer: asyncio.Future = field(repr=False)


class CoreRunner:
    """Runs every core call on one worker thread; groups single submissions (see the module
    docstring). Use from one event loop."""

    def __init__(self, core: Core, max_group: int) -> None:
        self.core = core
        self.max_group = max(1, max_group)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mfg-twin-core")
        self._pending: list[_Pending] = []
        self._drainer: asyncio.Task | None = None

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on the core's thread, after everything queued before it."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, function, *args)

    async def submit(self, payload: bytes, sender: Sender) -> Outcome:
        """Submit one message in the next group; its outcome once the group has committed."""
        pending = _Pending(payload, sender, asyncio.get_running_loop().create_future())
        self._pending.append(pending)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await pending.answer

    async def _drain(self) -> None:
        """Submit what is pending, a group per worker turn, until nothing is left. Every
        pending answer gets its outcome or its error, whatever happens."""
        while self._pending:
            group = self._take_group()
            try:
                results = await self.call(self._submit_group, group)
            except Exception as error:  # the worker is gone (shut down): fail the group
                results = [error] * len(group)
            for pending, result in zip(group, results, strict=True):
                if pending.answer.done():  # the client went away meanwhile
                    continue
                if isinstance(result, BaseException):
                    pending.answer.set_exception(result)
                else:
                    pending.answer.set_result(result)

    def _take_group(self) -> list[_Pending]:
        """The oldest pending submissions of one sender, in arrival order."""
        sender = self._pending[0].sender
        size = 0
        while (
            size < len(self._pending)
            and size < self.max_group
            and self._pending[size].sender == sender
        ):
            size += 1
        group, self._pending = self._pending[:size], self._pending[size:]
        return group

    def _submit_group(self, group: list[_Pending]) -> list[Outcome | BaseException]:
        """On the core's thread: the group in one transaction, or else each on its own."""
        if len(group) > 1:
            try:
                return list(self.core.submit_many([p.payload for p in group], group[0].sender))
            except Exception:  # rolled back entirely: each message again, alone
                pass
        return [self._submit_one(pending) for pending in group]

    def _submit_one(self, pending: _Pending) -> Outcome | BaseException:
        try:
            return self.core.submit(pending.payload, pending.sender)
        except Exception as error:
            return error

    def close(self) -> None:
        """Stop the worker thread once what is queued has run."""
        self._worker.shutdown(wait=True)
