"""The core's one thread, admission in front of it, and group commit of single submissions.

The core is single-threaded: every call the service makes on it runs on one worker thread,
in arrival order, so the event loop never waits on the ledger store and keeps reading,
parsing and answering requests meanwhile.

Every submission passes `Admission` first (see `admission.py`): when the expected wait is over
the bound it is refused with 429 before anything is queued.

Single submissions that arrive while the core is busy are committed together: the next turn
of the worker submits all of them (up to `max_group`), whichever senders they came from, with
`Core.submit_many`, one store transaction in which each message has its own outcome and is
authorised as its own sender. Each request is answered only once that transaction has
committed, so an acknowledged message is durable, and the idempotency record is committed
with its entry as before; what a group saves is the per-transaction cost (the writer lock, the
catch-up check, the commit and its WAL flush), shared by every message in it.

A group's or a batch's transaction that fails (a store error, or anything unexpected that one
message caused) applied nothing (it rolled back), and each of its messages is submitted again
in a transaction of its own: one message's failure stays its own, and the others post.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from integration.core import Core
from integration.outcome import Outcome
from integration.service.admission import Admission
from integration.service.metrics import ServiceMetrics
from integration.validation import Sender

__all__ = ["CoreRunner", "submit_together"]

_log = logging.getLogger("integration.service")

T = TypeVar("T")


def submit_together(
    core: Core, messages: list[tuple[Any, Sender | None]]
) -> list[Outcome | BaseException]:
    """On the core's thread: the messages in one transaction (`Core.submit_many`, each under
    its own sender), or else, when that transaction failed, each in a transaction of its own:
    an outcome per message, or the exception its own transaction raised. A lone message goes
    the same way: on PostgreSQL, one message in a batch's transaction (two round trips) costs
    less than a plain submission (a round trip a statement; benchmarks/postgres_groups.py)."""
    if not messages:
        return []
    payloads, senders = zip(*messages, strict=True)
    try:
        return list(core.submit_many(list(payloads), list(senders)))
    except Exception as error:
        if len(messages) > 1:  # rolled back entirely: each message again, alone
            return [_submit_one(core, payload, sender) for payload, sender in messages]
        _log.exception("a submission failed on its own")
        return [error]


def _submit_one(core: Core, payload: Any, sender: Sender | None) -> Outcome | BaseException:
    try:
        return core.submit(payload, sender)
    except Exception as error:  # this item's own failure: logged, answered as its outcome
        _log.exception("a submission failed on its own")
        return error


@dataclass
class _Pending:
    """One single submission waiting for its group's turn."""

    payload: bytes
    sender: Sender
    answer: asyncio.Future = field(repr=False)


class CoreRunner:
    """Runs every core call on one worker thread; admits submissions and groups single ones
    (see the module docstring). Use from one event loop."""

    def __init__(
        self, core: Core, max_group: int, admission: Admission, metrics: ServiceMetrics
    ) -> None:
        self.core = core
        self.max_group = max(1, max_group)
        self.admission = admission
        self.metrics = metrics
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mfg-twin-core")
        self._pending: list[_Pending] = []
        self._drainer: asyncio.Task | None = None

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on the core's thread, after everything queued before it."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, function, *args)

    async def submit(self, payload: bytes, sender: Sender) -> Outcome:
        """Submit one message in the next group; its outcome once the group has committed.
        Raises `Refused` when the core is overloaded."""
        self.admission.admit(1)
        try:
            pending = _Pending(payload, sender, asyncio.get_running_loop().create_future())
            self._pending.append(pending)
            if self._drainer is None or self._drainer.done():
                self._drainer = asyncio.get_running_loop().create_task(self._drain())
            return await pending.answer
        finally:
            self.admission.answered(1)

    async def submit_batch(
        self, payloads: list[str], sender: Sender
    ) -> list[Outcome | BaseException]:
        """Submit a batch in one transaction: each message's outcome, or the exception that
        its own transaction raised when the batch's failed. Raises `Refused` when the core is
        overloaded."""
        self.admission.admit(len(payloads))
        try:
            return await self.call(submit_together, self.core, [(p, sender) for p in payloads])
        finally:
            self.admission.answered(len(payloads))

    async def _drain(self) -> None:
        """Submit what is pending, a group per worker turn, until nothing is left. Every
        pending answer gets its outcome or its error, whatever happens. The next group goes
        to the worker before this one's requests are answered: the worker opens its
        transaction while the event loop writes the answers."""
        group = self._take_group()
        running = self._start(group)
        while True:
            try:
                results = await running
            except Exception as error:  # the worker is gone (shut down): fail the group
                results = [error] * len(group)
            following = self._take_group() if self._pending else None
            if following is not None:
                running = self._start(following)
            _answer(group, results)
            if following is None:
                return
            group = following

    def _start(self, group: list[_Pending]) -> asyncio.Future:
        """The group's submission, handed to the worker thread now (not at the next turn of
        the event loop); its future."""
        self.metrics.observe_group([pending.sender for pending in group])
        messages = [(pending.payload, pending.sender) for pending in group]
        loop = asyncio.get_running_loop()
        try:
            return loop.run_in_executor(self._worker, submit_together, self.core, messages)
        except RuntimeError as error:  # the worker is shut down: the group fails
            failed = loop.create_future()
            failed.set_exception(error)
            return failed

    def _take_group(self) -> list[_Pending]:
        """The oldest pending submissions, whichever their senders, in arrival order."""
        group, self._pending = self._pending[: self.max_group], self._pending[self.max_group :]
        return group

    def close(self) -> None:
        """Stop the worker thread once what is queued has run."""
        self._worker.shutdown(wait=True)


def _answer(group: list[_Pending], results: list[Outcome | BaseException]) -> None:
    """Each pending request's outcome, or its error; a client gone meanwhile gets nothing."""
    for pending, result in zip(group, results, strict=True):
        if pending.answer.done():
            continue
        if isinstance(result, BaseException):
            pending.answer.set_exception(result)
        else:
            pending.answer.set_result(result)
