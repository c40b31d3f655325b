"""`twin consume`: the core as a RabbitMQ consumer (topology in `topology.py`).

One channel with a prefetch of P consumes every inbound queue (its deliveries read straight
from aiormq: `deliveries.py`). Whatever has arrived (up to P deliveries) is one group:
submitted with one `Core.submit_many` on the core's own thread, each message authorised as
the sender its AMQP `user_id` maps to (the broker refuses a publish whose `user_id` is not
the publishing connection's user, so it is an authenticated origin).
Only after the store has committed are the outcomes published to the outcomes exchange, one
message per routing key holding that key's outcomes of the group (`replies.py`), and each
rejected delivery to the dead-letter exchange, every publish confirmed by the broker, and
only then is the group acked. A crash anywhere before the ack redelivers the group: the
core answers DUPLICATE for what it had committed, and the replies go out again. While one
group's replies are being confirmed, the next group is already being submitted (the core
works while the event loop waits on the broker); groups are acked in order, and a failed
publish ends the session before the next group is acked.

A delivery the core could not process at all (its own transaction failed) is nacked back to
its queue; the queue dead-letters it after `Topology.delivery_limit` deliveries. A lost
connection is opened again with exponential backoff, the topology declared again and
consuming resumed; `stop` (SIGTERM) cancels the consumers, finishes what was received,
acks it and returns.

Scale-out (`members` > 1): member I of N subscribes at once to its share of the queues (queue
index % N == I), so it becomes their active consumer, and only after `standby_delay_s` to the
others, where a peer that started with it is already active: it stands by for them, and the
broker hands it a queue as soon as that queue's active consumer goes. Every queue keeps one
active consumer, so per-stream order holds; the members share the work instead of the first
to start doing all of it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC

import aio_pika
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from integration.broker.deliveries import Delivery, ack_up_to, settle, subscribe
from integration.broker.metrics import ConsumerMetrics
from integration.broker.replies import (
    Reply,
    dead_letter_reply,
    outcome_batches,
    unauthorised_reply,
)
from integration.broker.topology import HEADER_CODE, Topology
from integration.clock import Clock
from integration.core import Core
from integration.outcome import Outcome
from integration.service.keys import ApiKeys
from integration.service.runner import submit_together
from integration.validation import Sender

__all__ = ["Consumer", "ConsumerOptions"]

_log = logging.getLogger("integration.broker")
CRASH_EXIT_CODE = 70  # how a process stopped by `ConsumerOptions.crash_on` exits


@dataclass(frozen=True)
class ConsumerOptions:
    """How `Consumer` connects and groups; `member` of `members` (module docstring).
    Test-only switches: `ack_before_commit` (the negative control) acks each group before
    submitting it, so a crash loses what was acked; `crash_on` makes the process exit at once
    (no ack, no cleanup) whenever a delivery's body contains it: a poison message."""

    amqp_url: str
    topology: Topology = field(default_factory=Topology)
    prefetch: int = 500
    ack_before_commit: bool = False
    depth_interval_s: float = 1.0
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    member: int = 0
    members: int = 1
    standby_delay_s: float = 5.0
    crash_on: bytes | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.member < self.members:
            raise ValueError(f"member {self.member} is not one of 0..{self.members - 1}")

    def shares(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(the queues this member is active for, the ones it stands by for)."""
        names = self.topology.inbound_queues
        own = tuple(n for i, n in enumerate(names) if i % self.members == self.member)
        return own, tuple(n for n in names if n not in own)


class _ConnectionLost(Exception):
    """The broker closed the connection (or the network did)."""


@dataclass
class _Session:
    """One connection's channels: deliveries arrive in `inbox` from `consuming` (aiormq's
    channel of `declaring`); replies go out confirmed."""

    connection: AbstractConnection
    declaring: AbstractChannel
    consuming: aiormq.abc.AbstractChannel
    outcomes: AbstractExchange
    dead: AbstractExchange
    inbox: asyncio.Queue[Delivery]
    lost: asyncio.Event
    finishing: asyncio.Future | None = None  # the previous group's replies and ack
    subscribed: list[str] = field(default_factory=list)  # consumer tags


class Consumer:
    """Consumes the topology's inbound queues into `core` until `stop` (module docstring)."""

    def __init__(
        self,
        core: Core,
        keys: ApiKeys,
        options: ConsumerOptions,
        clock: Clock,
        metrics: ConsumerMetrics | None = None,
    ) -> None:
        self.core = core
        self.keys = keys
        self.options = options
        self.clock = clock
        self.metrics = metrics or ConsumerMetrics()
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mfg-twin-core")
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Stop consuming; `run` returns once what was received is committed and acked."""
        self._stopping.set()

    async def run(self, announce: Callable[[str], None] = print) -> None:
        """Consume until `stop`, opening the connection again whenever it is lost. `announce`
        gets one line once consuming has started (later reconnections are logged)."""
        self._announce = announce
        self._backoff = self.options.first_backoff_s
        while not self._stopping.is_set():
            try:
                await self._consume()
            except Exception as error:  # the connection, a channel or a publish failed
                _log.warning("broker session ended (%s: %s); again in %.1fs",
                             type(error).__name__, error, self._backoff)  # fmt: skip
                self.metrics.reconnects.inc()
                await self._sleep(self._backoff)
                self._backoff = min(self._backoff * 2, self.options.max_backoff_s)
        self._worker.shutdown(wait=True)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _consume(self) -> None:
        """One connection, until stopped (returns) or lost (raises)."""
        session = await self._open()
        loop = asyncio.get_running_loop()
        own, others = self.options.shares()
        tasks = [loop.create_task(self._poll_depth(session))]
        try:
            await self._subscribe(own, session)
            self._started()
            tasks.append(loop.create_task(self._stand_by(others, session)))
            while not self._stopping.is_set():
                await self._handle(await self._next_group(session), session)
            tasks[-1].cancel()  # subscribes to nothing more
            for tag in session.subscribed:
                await session.consuming.basic_cancel(tag)
            await self._handle(_drained(session.inbox, self.options.prefetch), session)
            await self._finished(session)
        finally:
            for task in tasks:
                task.cancel()
            if session.finishing is not None:
                session.finishing.cancel()
            await session.connection.close()

    @staticmethod
    async def _subscribe(names: tuple[str, ...], session: _Session) -> None:
        for name in names:
            session.subscribed.append(await subscribe(session.consuming, name, session.inbox))

    async def _stand_by(self, names: tuple[str, ...], session: _Session) -> None:
        """After the standby delay, subscribe to the peers' queues: active for none of them
        while their members run (single active consumer: the first subscriber is active)."""
        await self._sleep(self.options.standby_delay_s)
        if not names or self._stopping.is_set():
            return
        try:
            await self._subscribe(names, session)
        except Exception as error:  # the session is lost: `_next_group` sees it and ends it
            _log.info("standing by failed: %s", error)
            return
        _log.info("standing by for %d queues: %s", len(names), " ".join(names))

    def _started(self) -> None:
        topology, options = self.options.topology, self.options
        shared = ""
        if options.members > 1:
            own = " ".join(options.shares()[0]) or "none"
            shared = f" member {options.member} of {options.members} (active for {own})"
        self._announce(
            f"consuming {topology.queues} queues at {_shown(options.amqp_url)} "
            f"prefix {topology.prefix} prefetch {options.prefetch}{shared}"
        )
        self._announce = _log.info

    async def _open(self) -> _Session:
        name = f"twin consume {self.options.topology.prefix}"  # how operators tell it apart
        connection = await aio_pika.connect(
            self.options.amqp_url, client_properties={"connection_name": name}
        )
        lost = asyncio.Event()
        connection.close_callbacks.add(lambda *_: lost.set())
        try:
            declaring = await connection.channel(publisher_confirms=False)
            await declaring.set_qos(prefetch_count=self.options.prefetch)
            await self.options.topology.declare(declaring)
            publishing = await connection.channel(publisher_confirms=True, on_return_raises=True)
            topology = self.options.topology
            return _Session(
                connection,
                declaring,
                await declaring.get_underlay_channel(),
                await publishing.get_exchange(topology.outcomes, ensure=False),
                await publishing.get_exchange(topology.dead, ensure=False),
                asyncio.Queue(),
                lost,
            )
        except BaseException:
            await connection.close()
            raise

    async def _next_group(self, session: _Session) -> list[Delivery]:
        """What has arrived, up to the prefetch, once something has; [] when stopping."""
        if session.inbox.empty():
            arrival = asyncio.ensure_future(session.inbox.get())
            stop = asyncio.ensure_future(self._stopping.wait())
            lost = asyncio.ensure_future(session.lost.wait())
            waits = {arrival, stop, lost, *([session.finishing] if session.finishing else [])}
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            lost.cancel()
            arrived = arrival.done()
            if not arrived:
                arrival.cancel()
            if session.finishing is not None and session.finishing.done():
                await self._finished(session)  # raises when its publishing failed
            if not arrived:
                if session.lost.is_set():
                    raise _ConnectionLost("the broker closed the connection")
                return []
            return [arrival.result(), *_drained(session.inbox, self.options.prefetch - 1)]
        return _drained(session.inbox, self.options.prefetch)

    async def _handle(self, group: list[Delivery], session: _Session) -> None:
        """Submit the group in one transaction; then, once the previous group is finished,
        publish this one's replies and ack it in the background (`_finish`)."""
        if not group:
            return
        if self.options.crash_on is not None:
            self._crash_on_poison(group)
        self.metrics.redeliveries.inc(sum(1 for delivery in group if delivery.redelivered))
        for queue, count in Counter(delivery.queue for delivery in group).items():
            self.metrics.queue_deliveries.labels(queue).inc(count)
        if self.options.ack_before_commit:
            await ack_up_to(session.consuming, group[-1])
        senders = [self._sender_of(delivery) for delivery in group]
        submitted = [(d, s) for d, s in zip(group, senders, strict=True) if s is not None]
        results = await asyncio.get_running_loop().run_in_executor(
            self._worker, submit_together, self.core, [(d.body, s) for d, s in submitted]
        )
        self._observe(submitted, results)
        replies = [unauthorised_reply(d) for d, s in zip(group, senders, strict=True) if s is None]
        failed, answered = [], []
        for (delivery, sender), result in zip(submitted, results, strict=True):
            if isinstance(result, BaseException):
                failed.append(delivery)
                continue
            answered.append((result, delivery, sender.source.value))
            dead = dead_letter_reply(result, delivery, sender.source.value)
            if dead is not None:
                replies.append(dead)
        replies.extend(outcome_batches(answered))
        await self._finished(session)  # acks stay in group order
        session.finishing = asyncio.ensure_future(self._finish(group, replies, failed, session))

    def _crash_on_poison(self, group: list[Delivery]) -> None:
        """The test-only poison (`ConsumerOptions.crash_on`): exit as a segfault would."""
        for delivery in group:
            if self.options.crash_on in delivery.body:
                count = delivery.headers.get("x-delivery-count", 0)
                _log.error("poison %s, x-delivery-count %s: exiting", delivery.message_id, count)
                logging.shutdown()  # the line above reaches the log; nothing else runs
                os._exit(CRASH_EXIT_CODE)

    async def _finish(
        self,
        group: list[Delivery],
        replies: list[Reply],
        failed: list[Delivery],
        session: _Session,
    ) -> None:
        """Publish the replies, each confirmed, then ack the group (the failed excepted)."""
        await asyncio.gather(*(self._publish(reply, session) for reply in replies))
        if not self.options.ack_before_commit:
            await settle(session.consuming, group, failed)
        self._backoff = self.options.first_backoff_s  # this session works: start again short

    @staticmethod
    async def _finished(session: _Session) -> None:
        """Wait for the previous group's replies and ack; raises what made them fail."""
        if session.finishing is not None:
            finishing, session.finishing = session.finishing, None
            await finishing

    def _sender_of(self, delivery: Delivery) -> Sender | None:
        key = self.keys.named(delivery.user_id) if delivery.user_id else None
        return key.sender if key is not None else None

    def _observe(self, submitted: list[tuple[Delivery, Sender]], results: list) -> None:
        committed_at = self.clock.now()
        self.metrics.groups.observe(len(submitted))
        for (delivery, _sender), result in zip(submitted, results, strict=True):
            if isinstance(result, Outcome):
                self.metrics.observe(result)
            if delivery.timestamp is not None:
                sent = delivery.timestamp
                sent = sent if sent.tzinfo else sent.replace(tzinfo=UTC)
                self.metrics.lag.observe(max(0.0, (committed_at - sent).total_seconds()))

    async def _publish(self, reply: Reply, session: _Session) -> None:
        """Publish and wait for the broker's confirm (a nack or a return raises)."""
        if reply.dead:
            await session.dead.publish(reply.message, reply.routing_key, mandatory=True)
            code = reply.message.headers.get(HEADER_CODE, "")
            self.metrics.dead_lettered.labels(str(code)).inc()
        else:
            await session.outcomes.publish(reply.message, reply.routing_key, mandatory=False)

    async def _poll_depth(self, session: _Session) -> None:
        """Every `depth_interval_s`, the ready messages of each queue, on a channel of its own
        (a passive declare of a missing queue closes its channel)."""
        topology = self.options.topology
        names = (*topology.inbound_queues, topology.dead)
        try:
            channel = await session.connection.channel()
            while True:
                for name in names:
                    queue = await channel.declare_queue(name, passive=True)
                    depth = queue.declaration_result.message_count
                    self.metrics.queue_depth.labels(name).set(depth)
                await asyncio.sleep(self.options.depth_interval_s)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the session's end shows elsewhere; the gauges stay
            _log.info("queue depth polling stopped: %s", error)


def _drained(inbox: asyncio.Queue, limit: int) -> list[Delivery]:
    group = []
    while len(group) < limit and not inbox.empty():
        group.append(inbox.get_nowait())
    return group


def _shown(url: str) -> str:
    """The URL without its password."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}://{credentials.partition(':')[0]}{at}{host}" if at else url
