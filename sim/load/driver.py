"""The open-model driver: each delivery is sent at its scheduled wall-clock time, whatever
the earlier answers did, so a slow target cannot slow the load down and hide its own latency
(coordinated omission).

Virtual time maps to wall time as `wall = start + (at - first_at) / speed`. A delivery holds
one of `max_in_flight` request slots while a request is outstanding; a delivery that finds
none free waits, and if it starts more than `late_after` after its time it counts as late
(`sim.load.figures`). Retries follow the scenario: a timeout, a broken connection or a 5xx
waits the backoff, a 429 waits its Retry-After, and the same message id is resent; after
`max_attempts` the delivery is parked for the heal phase. A 4xx without an outcome (a wrong
key, a body too large) is refused: a retry would not help.
"""

from __future__ import annotations

import asyncio
import gc
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from integration import Outcome, SourceSystem, Status
from sim.load.client import Client, Reply, RequestFailed
from sim.load.figures import LoadFigures
from sim.load.schedule import Send
from sim.run.http_target import outcome_from

__all__ = ["Driver", "RetryPolicy", "Listener", "Timeline", "Slots"]

MESSAGES = "/v1/messages"
LAG_PROBE_S = 0.01
LEAD_S = 0.05  # the first send is due this long after the driver starts


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Hide everything alive now (the schedule above all) from the garbage collector while
    sending. A full collection walks every object it tracks; over a schedule that pauses the
    loop long enough to make sends late. New garbage is still collected."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class Slots:
    """At most `count` requests in flight; waiters are served first come, first served, in
    O(1) each (Python 3.11's `asyncio.Semaphore` scans its waiters on every release, which
    turns a backlog of late sends into quadratic work just when the driver is behind)."""

    def __init__(self, count: int) -> None:
        self.free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        handed = asyncio.get_running_loop().create_future()
        self._waiters.append(handed)
        try:
            await handed  # a releasing holder hands its slot over
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():
                self._release()
            raise

    async def __aexit__(self, *_exc) -> None:
        self._release()

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1


class Timeline:
    """Virtual seconds (since the scenario start) against the event loop's clock, compressed
    by `speed`: fixed when the driver starts."""

    def __init__(self, speed: float) -> None:
        self.speed = speed
        self.wall0 = 0.0
        self.virtual0 = 0.0

    def start(self, wall0: float, virtual0: float) -> None:
        self.wall0, self.virtual0 = wall0, virtual0

    def virtual(self, wall: float) -> float:
        return self.virtual0 + (wall - self.wall0) * self.speed

    def wall(self, virtual: float) -> float:
        return self.wall0 + (virtual - self.virtual0) / self.speed


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_s: float  # wall seconds between attempts, unless a 429 says otherwise


class Listener(Protocol):
    def started(self, send: Send, wall: float) -> None:
        """The first attempt of `send` is about to go out."""

    def answered(self, send: Send, outcome: Outcome, wall: float) -> None:
        """The target answered `send` with `outcome`."""


def _outcome(reply: Reply) -> Outcome | None:
    body = reply.body
    if isinstance(body, dict) and body.get("status") in Status.__members__:
        return outcome_from(body)
    return None


class Driver:
    def __init__(
        self,
        client: Client,
        keys: Mapping[SourceSystem, str],
        listener: Listener,
        figures: LoadFigures,
        timeline: Timeline,
        *,
        max_in_flight: int,
        policy: RetryPolicy,
    ) -> None:
        self.client = client
        self.keys = dict(keys)
        self.listener = listener
        self.figures = figures
        self.timeline = timeline
        self.policy = policy
        self.in_flight = 0
        self._slots = Slots(max_in_flight)

    async def run(self, sends: Sequence[Send]) -> list[Send]:
        """Send the schedule open-model and wait for every answer: the deliveries parked
        after their last attempt."""
        loop = asyncio.get_running_loop()
        if not sends:
            return []
        with frozen_heap():
            timeline = self.timeline
            timeline.start(loop.time() + LEAD_S, sends[0].at)
            probe = asyncio.create_task(self._probe_lag())
            tasks: list[asyncio.Task[bool]] = []
            index = 0
            while index < len(sends):
                intended = timeline.wall(sends[index].at)
                now = loop.time()
                if intended > now:
                    await asyncio.sleep(intended - now)
                    continue
                self.figures.schedule(intended)
                tasks.append(loop.create_task(self.deliver(sends[index], intended)))
                index += 1
            delivered = await asyncio.gather(*tasks)
            probe.cancel()
        return [send for send, ok in zip(sends, delivered, strict=True) if not ok]

    def queue_depth(self) -> int:
        """What the target holds of this driver's messages now: requests in flight."""
        return self.in_flight

    async def close(self) -> None:
        await self.client.close()

    async def resend(self, sends: Sequence[Send]) -> list[Send]:
        """The heal phase: send parked deliveries again, now (not timed against a schedule)."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self.deliver(send, None)) for send in sends]
        delivered = await asyncio.gather(*tasks)
        return [send for send, ok in zip(sends, delivered, strict=True) if not ok]

    async def deliver(self, send: Send, intended: float | None) -> bool:
        """One delivery with its retries: True once answered or refused, False if parked.
        `intended` None: a heal-phase resend, outside the timed figures."""
        key = self.keys.get(send.envelope.source_system)
        if key is None:
            self.figures.refused[f"no key for {send.envelope.source_system.value}"] += 1
            return True
        first: list[float] = []  # when the first attempt went out
        for attempt in range(1, self.policy.max_attempts + 1):
            retry = await self._attempt(send, key, intended, first)
            if retry is None:
                return True
            if attempt < self.policy.max_attempts:
                kind, wait = retry
                self.figures.retries[kind] += 1
                await asyncio.sleep(wait)
        self.figures.parked += 1
        return False

    async def _attempt(self, send: Send, key: str, intended: float | None, first: list[float]):
        """One request: None when it is settled (answered or refused), else (why, wait)."""
        loop = asyncio.get_running_loop()
        async with self._slots:
            now = loop.time()
            if not first:
                first.append(now)
                self.listener.started(send, now)
                if intended is not None:
                    self.figures.start(intended, now)
            self.in_flight += 1
            try:
                reply = await self.client.post(MESSAGES, key, send.body)
            except RequestFailed as failure:
                return failure.kind, self.policy.backoff_s
            finally:
                self.in_flight -= 1
        outcome = _outcome(reply)
        if outcome is not None:
            answered = loop.time()
            if intended is not None:
                self.figures.answer(send.event.workflow, intended, first[0], answered)
            self.listener.answered(send, outcome, answered)
            return None
        if reply.status == 429:
            return "rate_limited", reply.retry_after or self.policy.backoff_s
        if reply.status >= 500:
            return "server_error", self.policy.backoff_s
        self.figures.refused[str(reply.status)] += 1
        return None

    async def _probe_lag(self) -> None:
        """How late the event loop wakes a sleeper: the driver's own delay, recorded."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_PROBE_S)
            self.figures.lag(loop.time() - before - LAG_PROBE_S)
