"""The pipes between the plants and the ERP: a network that delays, duplicates, reorders and
loses messages; a queue with consumers or a synchronous call with timeouts and retries, both
stopped while the middleware is down; an ERP endpoint with a rate limit, outages and consumers
that crash before or after commit. (A source that is down keeps its outbox: `Reporter`.)"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import simpy

from integration import Envelope
from sim.model.streams import sample_seconds
from sim.model.target import Target, TargetUnavailable
from sim.model.truth import PhysicalEvent
from sim.model.world import World
from sim.scenario.document import Pattern
from sim.scenario.sections import System

__all__ = ["Middleware"]

OK, LIMITED, DOWN, CRASHED = "ok", "429", "503", "crash"
ERP_DOWN = (None, System.ERP)  # an outage without a system is the ERP endpoint's


@dataclass(slots=True)
class Delivery:
    envelope: Envelope
    event: PhysicalEvent
    queued_at: float = 0.0
    scheduled: int = -1  # `Middleware._hands` when its publish was scheduled (see `_depth`)


class Middleware:
    """`send(envelope, event)` takes a message from a source system to the target."""

    def __init__(self, world: World, target: Target) -> None:
        self.world = world
        world.send = self.send
        self.target = target
        self.scenario = world.scenario
        integration = self.scenario.integration
        self._streams = world.streams
        self._service = world.streams["erp:service"]
        self.in_flight = 0
        self._peak = 0  # the deepest the queue got since the last sample
        self.parked: list[Delivery] = []
        limit = integration.rate_limit
        self._bucket = max(1.0, limit) if limit is not None else 0.0  # ERP burst allowance
        self._tokens, self._refilled_at = self._bucket, 0.0
        # stream -> message id -> a message held back behind the stream's next one
        self._held_back: dict[str, dict[str, tuple[Envelope, PhysicalEvent]]] = {}
        self._hands = 0  # messages published straight to an idle consumer, ever
        if integration.pattern is Pattern.QUEUE:
            self._waiting: deque[Delivery] = deque()  # in the broker, every consumer busy
            self._idle = integration.consumers  # consumers waiting for a message
            self._instant = (-1.0, 0)  # (the last such publish's time, `_hands` before it)
        else:
            self.server = simpy.Resource(world.env, integration.consumers)

    # --- the network ---------------------------------------------------------------------------
    def _fault(self, kind: str, rate: float) -> bool:
        """Whether fault `kind` strikes now: each kind draws from its own stream, so switching
        one on or sweeping its rate leaves every other fault's draws where they were."""
        if not self.world.faults_on or rate <= 0:
            return False
        return self._streams[f"fault:{kind}"].random() < rate

    def _delay(self, plant: str) -> float:
        """Transit time of one copy, from the plant's own network stream."""
        return sample_seconds(self._streams[f"network:{plant}"], self.scenario.faults.network_delay)

    def send(self, envelope: Envelope, event: PhysicalEvent) -> None:
        """A source publishes `envelope`: held back behind its stream's next message (the
        reorder fault), or onto the network, releasing what was held back behind it."""
        faults = self.scenario.faults
        stream = envelope.stream
        if stream is not None and self._fault("reorder", faults.reorder_rate):
            self._hold_back(stream, envelope, event)
        else:
            self._publish(envelope, event)
            for held in self._held_back.pop(stream, {}).values():
                self._release(held)
        if stream is not None and self._fault("renumbered_resend", faults.renumbered_resend_rate):
            self.in_flight += 1  # pending: the heal phase waits for it
            self.world.after(
                faults.redelivery_after.total_seconds(), lambda: self._renumber(envelope, event)
            )

    def _publish(self, envelope: Envelope, event: PhysicalEvent) -> None:
        """Onto the network: one copy, or several when the network duplicates it."""
        copies = 1
        if self._fault("duplicate", self.scenario.faults.duplicate_rate):
            copies = self._copies()
        for _ in range(copies):
            self._transmit(Delivery(envelope, event))

    def _copies(self) -> int:
        """How many copies a duplicated message gets: `faults.duplicate_copies`, drawn from
        a stream of its own only when it offers a choice."""
        weights = self.scenario.faults.duplicate_copies
        if len(weights) == 1:
            return next(iter(weights))
        rng = self._streams["fault:duplicate_copies"]
        return rng.choices(list(weights), weights=list(weights.values()))[0]

    def _hold_back(self, stream: str, envelope: Envelope, event: PhysicalEvent) -> None:
        """Publish this message right after the stream's next one (or after `reorder_hold`
        if none comes by then): the stream arrives out of order."""
        self._held_back.setdefault(stream, {})[envelope.message_id] = (envelope, event)
        self.in_flight += 1  # pending: the heal phase waits for it

        def give_up_waiting() -> None:
            waiting = self._held_back.get(stream, {})
            held = waiting.pop(envelope.message_id, None)
            if held is not None:  # not yet gone behind a later message
                if not waiting:
                    del self._held_back[stream]
                self._release(held)

        self.world.after(self.scenario.faults.reorder_hold.total_seconds(), give_up_waiting)

    def _release(self, held: tuple[Envelope, PhysicalEvent]) -> None:
        self.in_flight -= 1
        self._publish(*held)

    def _renumber(self, envelope: Envelope, event: PhysicalEvent) -> None:
        """An MES outbox replayed after a restart: same stream position, new id and new key.
        Only the stream sequence can tell the core it has seen this message."""
        self.in_flight -= 1  # now a delivery like any other
        self.world.measures.cover("renumbered_resend")
        copy = envelope.model_copy(
            update={
                "message_id": f"{envelope.message_id}-N",
                "idempotency_key": f"{envelope.idempotency_key}-N",
            }
        )
        self.world.measures.sent(copy, event, self.world.env.now)
        self._transmit(Delivery(copy, event))

    def _transmit(self, delivery: Delivery) -> None:
        """One copy over the network; a lost copy is redelivered (at least once)."""
        self.in_flight += 1
        delivery.scheduled = self._hands
        faults = self.scenario.faults
        if self._fault("loss", faults.loss_rate):
            self.world.measures.cover("loss")
            self.world.after(
                faults.redelivery_after.total_seconds(), lambda: self._arrive(delivery)
            )
            return
        self.world.after(self._delay(delivery.event.plant), lambda: self._arrive(delivery))

    def _middleware_down(self) -> float:
        """When the middleware's outage that covers now ends; 0.0 when it is up."""
        return self.world.down_until((System.MIDDLEWARE,))

    def _arrive(self, delivery: Delivery) -> None:
        if self.scenario.integration.pattern is Pattern.QUEUE:
            self._enqueue(delivery)
        else:
            self.world.env.process(self._call(delivery))

    # --- pattern: queue ------------------------------------------------------------------------
    # Consumers are counted, not run as processes: a message published while one is idle is
    # taken at once, else it waits (in order) for the next consumer that finishes; each stage
    # (service, Retry-After, backoff) is one timeout. The same order of service, draws,
    # refusals and depths as consumers pulling from a `simpy.Store`, without its put and get
    # events; only a zero service time with a zero backoff counts fewer `buffer_full` retries
    # (a store's consumer took two more same-instant hops to free the slot).
    def _depth(self, scheduled: int = -1) -> int:
        """Messages in the broker as a `simpy.Store` counts them for an event scheduled when
        `_hands` was `scheduled`: a message handed to an idle consumer this instant still
        counts until the Store's put event, which comes after every event of this instant
        scheduled before that publish (earlier instants: all of them)."""
        when, before = self._instant
        if when != self.world.env.now:
            return len(self._waiting)
        return len(self._waiting) + self._hands - max(scheduled, before)

    def _enqueue(self, delivery: Delivery) -> None:
        integration = self.scenario.integration
        now = self.world.env.now
        back_at = self._middleware_down()
        if back_at:  # the broker refuses the publish; the sender tries again when it is back
            self.world.measures.cover("outage")
            delivery.scheduled = self._hands
            self.world.after(back_at - now, lambda: self._enqueue(delivery))
            return
        depth = self._depth(delivery.scheduled)
        if depth >= integration.buffer:
            self.world.measures.cover("buffer_full")
            delivery.scheduled = self._hands
            self.world.after(integration.backoff.total_seconds(), lambda: self._enqueue(delivery))
            return
        delivery.queued_at = now
        self._peak = max(self._peak, depth + 1)
        if self._idle:
            self._idle -= 1
            if self._instant[0] != now:
                self._instant = (now, self._hands)
            self._hands += 1
            self._consume(delivery)
        else:
            self._waiting.append(delivery)

    def _consume(self, delivery: Delivery) -> None:
        """A consumer takes `delivery` now; while the middleware is down it hands nothing out."""
        back_at = self._middleware_down()
        if back_at:
            self.world.after(back_at - self.world.env.now, lambda: self._consume(delivery))
            return
        self._attempt(delivery, self.world.env.now - delivery.queued_at)

    def _attempt(self, delivery: Delivery, queued: float) -> None:
        """One call of the ERP endpoint; a 503 or 429 is tried again after its Retry-After."""
        refused = self._refusal()
        if refused is not None:
            self._again(delivery, queued, refused[1])
            return
        self.world.after(self._service_time(), lambda: self._served(delivery, queued))

    def _again(self, delivery: Delivery, queued: float, wait: float | None) -> None:
        wait = wait or self.scenario.integration.backoff.total_seconds()
        self.world.after(wait, lambda: self._attempt(delivery, queued))

    def _served(self, delivery: Delivery, queued: float) -> None:
        answer, wait = self._serve(delivery, queued)
        if answer not in (OK, CRASHED):
            self._again(delivery, queued, wait)
            return
        if answer == CRASHED:  # not acknowledged: the broker redelivers it
            delivery.scheduled = self._hands
            self.world.after(
                self.scenario.faults.redelivery_after.total_seconds(),
                lambda: self._enqueue(delivery),
            )
        else:
            self.in_flight -= 1
        if self._waiting:  # the consumer takes the next message, or waits for one
            self._consume(self._waiting.popleft())
        else:
            self._idle += 1

    # --- pattern: sync -------------------------------------------------------------------------
    def _call(self, delivery: Delivery):
        """The MES calls the ERP and waits; a timeout (even after a commit) means a retry."""
        env = self.world.env
        integration = self.scenario.integration
        for attempt in range(1, integration.max_attempts + 1):
            if attempt > 1:
                delivery = self._retry(delivery, attempt)
            answered = env.event()
            env.process(self._request(delivery, answered))
            result = yield answered | env.timeout(integration.timeout.total_seconds())
            answer, wait = result[answered] if answered in result else ("timeout", None)
            if answer == OK:
                self.in_flight -= 1
                return
            self.world.measures.cover("timeout" if answer == "timeout" else "retry")
            yield env.timeout(wait or integration.backoff.total_seconds())
        self.world.measures.cover("parked")
        self.parked.append(delivery)  # the MES keeps it for a resend once the ERP is healthy
        self.in_flight -= 1

    def _retry(self, delivery: Delivery, attempt: int) -> Delivery:
        """Most MES retries reuse the message id; some send a new one with the same key."""
        if self._streams["fault:retry_id"].random() >= self.scenario.faults.new_id_retry_share:
            return delivery
        envelope = delivery.envelope.model_copy(
            update={"message_id": f"{delivery.envelope.message_id}-R{attempt}"}
        )
        self.world.measures.sent(envelope, delivery.event, self.world.env.now)
        return Delivery(envelope, delivery.event)

    def _request(self, delivery: Delivery, answered: simpy.Event):
        env = self.world.env
        yield env.timeout(self._delay(delivery.event.plant))
        if self._middleware_down():  # no route to the ERP: the call fails at once
            self.world.measures.cover("outage")
            if not answered.triggered:
                answered.succeed((DOWN, None))
            return
        asked_at = env.now
        with self.server.request() as slot:
            self._peak = max(self._peak, len(self.server.queue))
            yield slot
            answer = yield from self._endpoint(delivery, env.now - asked_at)
        yield env.timeout(self._delay(delivery.event.plant))
        if not answered.triggered:
            answered.succeed(answer)

    # --- the ERP endpoint ----------------------------------------------------------------------
    def _endpoint(self, delivery: Delivery, queued: float):
        """Serve one request (a process step): (answer, retry-after seconds or None)."""
        refused = self._refusal()
        if refused is not None:
            return refused
        yield self.world.env.timeout(self._service_time())
        return self._serve(delivery, queued)

    def _refusal(self) -> tuple[str, float] | None:
        """The ERP's answer before it serves a request now: 503 with Retry-After while it is
        down, 429 over the rate limit; None when it serves it."""
        now = self.world.env.now
        outage_end = self.world.down_until(ERP_DOWN)
        if outage_end:
            self.world.measures.cover("outage")
            return DOWN, outage_end - now
        limited = self._rate_limited(now)
        if limited is not None:
            self.world.measures.cover("rate_limited")
            return LIMITED, limited
        return None

    def _service_time(self) -> float:
        return sample_seconds(self._service, self.scenario.integration.service_time)

    def _serve(self, delivery: Delivery, queued: float) -> tuple[str, float | None]:
        """The end of the service time: the consumer may crash before the commit, the core
        answers, and the consumer may crash before it acknowledges."""
        env = self.world.env
        faults = self.scenario.faults
        if self._fault("crash_before_commit", faults.crash_before_commit_rate):
            self.world.measures.cover("crash")
            return CRASHED, None
        at = self.world.at(env.now)
        try:
            for expired in self.target.expire(at):
                self.world.measures.resolve(expired, env.now)
            outcome = self.target.submit(delivery.envelope, at)
        except TargetUnavailable as error:  # a retry is safe: the core deduplicates
            self.world.measures.cover("target_unavailable")
            return DOWN, error.retry_after
        self.world.measures.answered(delivery.envelope, outcome, delivery.event, env.now, queued)
        if self._fault("crash_after_commit", faults.crash_after_commit_rate):
            self.world.measures.cover("crash")
            return CRASHED, None
        return OK, None

    def _rate_limited(self, now: float) -> float | None:
        """A token bucket of `rate_limit` calls per second: None to go ahead, else the
        Retry-After in seconds."""
        limit = self.scenario.integration.rate_limit
        if limit is None:
            return None
        self._tokens = min(self._bucket, self._tokens + (now - self._refilled_at) * limit)
        self._refilled_at = now
        if self._tokens < 1.0 - 1e-9:  # float refills may stop a hair short of a whole call
            return max((1.0 - self._tokens) / limit, 0.001)
        self._tokens -= 1.0
        return None

    def queue_depth(self) -> int:
        """The most messages waiting at once since the last call (the queue, or for the sync
        pattern the callers waiting for a server slot)."""
        if self.scenario.integration.pattern is Pattern.QUEUE:
            waiting = self._depth()
        else:
            waiting = len(self.server.queue)
        peak, self._peak = max(self._peak, waiting), waiting
        return peak

    def resend_parked(self) -> None:
        parked, self.parked = self.parked, []
        for delivery in parked:
            self._transmit(delivery)
