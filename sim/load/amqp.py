"""`twin load --target amqp://…`: the schedule published to the broker `twin consume` reads,
and the core's outcomes read back from the outcomes exchange.

Each delivery is published, at its scheduled time, to the `{prefix}.inbound` consistent-hash
exchange (`integration.broker.topology`), routed by its stream, with publisher confirms, over
the connection of its source system: one connection per source, as the AMQP user named like
the source's key in the keys file `twin serve` reads (password: the key), so the consumer
authenticates the source by RabbitMQ's validated `user_id`. The body is the envelope's JSON,
byte for byte what `twin load` posts over HTTP.

Outcomes come back on an exclusive queue bound to `{prefix}.outcomes` (every routing key), in
batches: one message per routing key and consumer group, its body the JSON list of
{message_id, correlation_id, source, outcome}; every outcome of a batch is heard when it comes.
A delivery's latency runs from its scheduled send time to its outcome (corrected for
coordinated omission); it counts as late when its publish is confirmed more than `late_after`
after that time. A broker holds what it confirmed, so a confirmed message is never published
again: only a refused publish (a nack, a return, a broken connection) is retried, and after
`max_attempts` parked for the heal phase. A confirmed message whose outcome never comes is
*unanswered*: it is given up once no outcome at all has been heard for `stall_s` (and its own
confirm is that old), so a dead consumer ends the run instead of hanging it, and the measures
count the message's physical event as undelivered. Outcomes heard for a message already
answered (a redelivery after a consumer crash, answered DUPLICATE) still reach the measures as
extra deliveries, as the twin's own crash-after-commit does.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from integration import ConfigurationError, Outcome, SourceSystem
from sim.load.client import RequestFailed
from sim.load.driver import Driver, Listener, RetryPolicy, Timeline
from sim.load.figures import LoadFigures
from sim.load.schedule import Send
from sim.run.http_target import outcome_from

if TYPE_CHECKING:
    from integration.broker import Topology

__all__ = [
    "AmqpPublisher",
    "OutcomeReader",
    "AmqpDriver",
    "SourceUser",
    "broker_driver",
    "is_amqp",
]

SourceUser = tuple[str, str]  # (AMQP user name = the key's name, password = the key)
SCHEMES = ("amqp://", "amqps://")


def is_amqp(target: str) -> bool:
    """Whether `target` names a broker rather than an HTTP service."""
    return target.startswith(SCHEMES)


def user_url(target: str, user: SourceUser) -> str:
    """`target` with `user`'s credentials (any in `target` replaced)."""
    from yarl import URL

    name, password = user
    return str(URL(target).with_user(name).with_password(password))


class NoOutcome(Exception):
    """A confirmed message's outcome did not come while the outcomes stalled."""


class AmqpPublisher:
    """One confirming channel per source system, each on a connection of its own user."""

    def __init__(self, target: str, users: Mapping[SourceSystem, SourceUser], topology: Topology):
        self.target = target
        self.users = dict(users)
        self.topology = topology
        self._connections: list[Any] = []
        self._exchanges: dict[SourceSystem, Any] = {}

    async def open(self) -> None:
        """Connect every source and declare the two exchanges it touches (idempotent, as the
        consumer declares them; the queues are the consumer's to declare)."""
        import aio_pika

        from integration.broker import routing_key

        self._routing_key = routing_key
        for source, user in sorted(self.users.items()):
            try:
                connection = await aio_pika.connect(user_url(self.target, user))
            except (aio_pika.exceptions.AMQPError, OSError) as error:
                raise ConfigurationError(
                    f"cannot connect to {self.target} as {user[0]} ({source.value}): {error!r}"
                ) from error
            self._connections.append(connection)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchanges[source] = await channel.declare_exchange(
                self.topology.inbound, "x-consistent-hash", durable=True
            )
            await channel.declare_exchange(
                self.topology.outcomes, aio_pika.ExchangeType.TOPIC, durable=True
            )

    async def publish(self, send: Send) -> None:
        """Publish one delivery and wait for the broker's confirm; `RequestFailed` when it
        was refused or the connection broke (nothing is known to be queued)."""
        import aio_pika

        envelope = send.envelope
        source = envelope.source_system
        message = aio_pika.Message(
            send.body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=envelope.message_id,
            correlation_id=envelope.correlation_id or envelope.message_id,
            timestamp=datetime.now(UTC),
            user_id=self.users[source][0],
        )
        try:
            await self._exchanges[source].publish(
                message, self._routing_key(envelope.stream, envelope.message_id)
            )
        except aio_pika.exceptions.DeliveryError as error:  # a nack, or returned unroutable
            raise RequestFailed("server_error", repr(error)) from error
        except (aio_pika.exceptions.AMQPError, RuntimeError, OSError) as error:
            raise RequestFailed("connection", repr(error)) from error

    async def close(self) -> None:
        for connection in self._connections:
            await connection.close()
        self._connections.clear()


class OutcomeReader:
    """Outcomes from the outcomes exchange, each handed at once, in the broker's order (a
    batch's in its order), to `on_outcome(message_id, outcome, heard)` (`heard` on the event
    loop's clock, the batch's)."""

    def __init__(self, target: str, user: SourceUser | None, topology: Topology) -> None:
        self.url = target if user is None else user_url(target, user)
        self.topology = topology
        self.on_outcome: Callable[[str, Outcome, float], None] = lambda *_: None
        self.last_heard = 0.0
        self.heard = 0
        self._connection: Any = None

    async def open(self) -> None:
        import aio_pika

        self._connection = await aio_pika.connect(self.url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=1000)
        outcomes = await channel.declare_exchange(
            self.topology.outcomes, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(outcomes, routing_key="#")
        await queue.consume(self._on_message, no_ack=True)
        self.last_heard = asyncio.get_running_loop().time()

    async def _on_message(self, message: Any) -> None:
        now = asyncio.get_running_loop().time()
        self.last_heard = now
        for answer in json.loads(message.body):
            self.heard += 1
            self.on_outcome(answer["message_id"] or "", outcome_from(answer["outcome"]), now)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


@dataclass(eq=False, slots=True)
class _Awaited:
    """A delivery waiting for its outcome (from before its publish: the outcome may come
    before the confirm)."""

    send: Send
    intended: float | None
    started: float
    answered: asyncio.Future[None]


class AmqpDriver(Driver):
    """The open-model driver of `sim.load.driver` publishing to a broker: `max_in_flight`
    bounds the publishes awaiting their confirm, not the messages awaiting their outcome."""

    def __init__(
        self,
        publisher: AmqpPublisher,
        outcomes: OutcomeReader,
        listener: Listener,
        figures: LoadFigures,
        timeline: Timeline,
        *,
        max_in_flight: int,
        policy: RetryPolicy,
        stall_s: float,
    ) -> None:
        keys = {source: user[1] for source, user in publisher.users.items()}
        super().__init__(
            publisher, keys, listener, figures, timeline, max_in_flight=max_in_flight,
            policy=policy,
        )  # fmt: skip
        self.outcomes = outcomes
        outcomes.on_outcome = self._heard
        self.stall_s = stall_s
        self._unanswered: Counter[str] = Counter()  # deliveries given up, by message id
        self._sends: dict[str, Send] = {}
        self._awaited: dict[str, deque[_Awaited]] = {}
        self._peak = 0
        self._extra: Counter[str] = Counter()

    async def run(self, sends: Sequence[Send]) -> list[Send]:
        """Connect, then send the schedule open-model (`Driver.run`)."""
        self._sends = {send.envelope.message_id: send for send in sends}
        await self.client.open()
        await self.outcomes.open()
        return await super().run(sends)

    async def close(self) -> None:
        await self.client.close()
        await self.outcomes.close()

    def queue_depth(self) -> int:
        """The most messages published and not yet answered at once since the last call:
        what the broker and the consumer hold between them."""
        peak, self._peak = max(self._peak, self.in_flight), self.in_flight
        return peak

    def broker_figures(self) -> dict[str, Any]:
        """The load section's broker part."""
        return {
            "outcomes_heard": self.outcomes.heard,
            "unanswered": self._unanswered.total(),
            "stall_s": self.stall_s,
            "extra_outcomes": dict(sorted(self._extra.items())),
        }

    async def deliver(self, send: Send, intended: float | None) -> bool:
        """Publish (retrying a refused publish), then wait for the outcome: True once answered
        or given up as unanswered, False if the publish was parked."""
        loop = asyncio.get_running_loop()
        if send.envelope.source_system not in self.keys:
            self.figures.refused[f"no key for {send.envelope.source_system.value}"] += 1
            return True
        awaited = _Awaited(send, intended, loop.time(), loop.create_future())
        queue = self._awaited.setdefault(send.envelope.message_id, deque())
        queue.append(awaited)
        self.in_flight += 1
        self._peak = max(self._peak, self.in_flight)
        try:
            self.listener.started(send, awaited.started)
            confirmed = await self._publish(send, intended)
            if confirmed is None:
                self.figures.parked += 1
                return False
            await self._answer(awaited.answered, confirmed)
            return True
        except NoOutcome:
            self._unanswered[send.envelope.message_id] += 1
            return True
        finally:
            self.in_flight -= 1
            if not awaited.answered.done():
                queue.remove(awaited)

    def _heard(self, message_id: str, outcome: Outcome, heard: float) -> None:
        """An outcome, in the broker's order: it answers the oldest delivery of its message
        still waiting; with none waiting (a redelivery after a consumer crash answered
        again), it is one more delivery of a message of this run, or not this run's."""
        queue = self._awaited.get(message_id)
        if queue:
            awaited = queue.popleft()
            if awaited.intended is not None:
                self.figures.answer(
                    awaited.send.event.workflow, awaited.intended, awaited.started, heard
                )
            self.listener.answered(awaited.send, outcome, heard)
            awaited.answered.set_result(None)
            return
        send = self._sends.get(message_id)
        if self._unanswered[message_id] > 0:  # given up too early: answered after all
            self._unanswered[message_id] -= 1
        self._extra["foreign" if send is None else outcome.status.value] += 1
        if send is not None:
            self.listener.answered(send, outcome, heard)

    async def _publish(self, send: Send, intended: float | None) -> float | None:
        """When the broker confirmed the message, or None after `max_attempts` refusals."""
        loop = asyncio.get_running_loop()
        for attempt in range(1, self.policy.max_attempts + 1):
            async with self._slots:
                try:
                    await self.client.publish(send)
                except RequestFailed as failure:
                    kind = failure.kind
                else:
                    confirmed = loop.time()
                    if intended is not None:
                        self.figures.start(intended, confirmed)
                    return confirmed
            if attempt < self.policy.max_attempts:
                self.figures.retries[kind] += 1
                await asyncio.sleep(self.policy.backoff_s)
        return None

    async def _answer(self, answered: asyncio.Future[None], confirmed: float) -> None:
        """Until the outcome came, unless the outcomes stall for `stall_s` after the confirm."""
        loop = asyncio.get_running_loop()
        while not answered.done():
            quiet = loop.time() - max(self.outcomes.last_heard, confirmed)
            if quiet >= self.stall_s:
                raise NoOutcome
            await asyncio.wait((answered,), timeout=self.stall_s - quiet)


def broker_driver(
    target: str,
    users: Mapping[SourceSystem, SourceUser],
    prefix: str,
    listener: Listener,
    figures: LoadFigures,
    timeline: Timeline,
    *,
    max_in_flight: int,
    policy: RetryPolicy,
    stall_s: float,
) -> AmqpDriver:
    """The driver for `target` (amqp://HOST:PORT/VHOST): outcomes are read as the user in
    `target` when it names one, else as the first source's user."""
    from yarl import URL

    from integration.broker import Topology

    if not users:
        raise ConfigurationError("an amqp:// target needs the keys file's source keys (--keys)")
    topology = Topology(prefix=prefix)
    reader_user = None if URL(target).user else users[min(users)]
    return AmqpDriver(
        AmqpPublisher(target, users, topology),
        OutcomeReader(target, reader_user, topology),
        listener,
        figures,
        timeline,
        max_in_flight=max_in_flight,
        policy=policy,
        stall_s=stall_s,
    )
