"""What every process of one run shares: the SimPy environment, the scenario, the truth, the
measures, and the source systems that report events as messages."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import simpy

from integration import Envelope, SourceSystem
from sim.model.calendar import ShiftCalendar
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams, sample_seconds
from sim.model.truth import PhysicalEvent, Truth
from sim.scenario.document import Reporting, Scenario
from sim.scenario.sections import Outage, System

if TYPE_CHECKING:
    from sim.model.measures import Measures

__all__ = ["World", "Reporter", "Outages"]


@dataclass
class World:
    env: simpy.Environment
    scenario: Scenario
    streams: Streams
    catalogue: Catalogue
    truth: Truth
    measures: Measures
    calendar: ShiftCalendar
    send: Callable[[Envelope, PhysicalEvent], None] = field(init=False)  # the middleware's
    producing: bool = True  # false from the horizon on: the floor stops, the pipes drain
    faults_on: bool = True  # false in the heal phase
    unsent: int = 0  # messages reported but not yet handed to the middleware
    reporters: dict[tuple[str, SourceSystem], Reporter] = field(default_factory=dict)
    outages: Outages = field(init=False)
    held_lots: set[tuple[str, str, str]] = field(default_factory=set)  # (plant, item, lot) QC
    # holds (sim.model.quality)

    def __post_init__(self) -> None:
        self.outages = Outages(self.scenario.faults.outages, self.scenario.horizon)

    def down_until(self, systems: tuple[System | None, ...], plant: str | None = None) -> float:
        """When the outage of any of `systems` (at `plant`) that covers now ends; 0.0 when
        none does, or in the heal phase."""
        if not self.faults_on:
            return 0.0
        return self.outages.until(self.env.now, systems, plant)

    def at(self, seconds: float) -> datetime:
        return self.scenario.start + timedelta(seconds=seconds)

    def new_event(self, workflow: str, plant: str) -> PhysicalEvent:
        """A physical event happening now, known to the truth and the measures."""
        event = self.truth.event(workflow, self.env.now, plant)
        self.measures.happened(event)
        return event

    def reporter(self, plant: str, source: SourceSystem) -> Reporter:
        key = (plant, source)
        if key not in self.reporters:
            self.reporters[key] = Reporter(self, plant, source)
        return self.reporters[key]

    def after(self, delay: float, action: Callable[[], Any]) -> None:
        """Run `action` `delay` seconds from now, without a process of its own."""
        self.env.timeout(max(delay, 0.0)).callbacks.append(lambda _event: action())


class Outages:
    """The scenario's outage windows, looked up by system and plant. Outages are faults, so a
    window ends at the horizon at the latest: the heal phase has none, and nothing that waits
    for a window's end (a consumer told Retry-After) sleeps into it."""

    def __init__(self, outages: tuple[Outage, ...], horizon: timedelta) -> None:
        self._windows = [
            (
                o.system,
                o.plant,
                o.at.total_seconds(),
                min(o.at + o.duration, horizon).total_seconds(),
            )
            for o in outages
        ]

    def until(self, now: float, systems: tuple[System | None, ...], plant: str | None) -> float:
        """The end of the first listed window of `systems` (a plant's or all plants') that
        covers `now`; 0.0 when none does. An overlapping window is found again at that end."""
        if not self._windows:  # most scenarios: asked several times a message
            return 0.0
        return next(
            (
                end
                for system, where, begin, end in self._windows
                if begin <= now < end and system in systems and where in (None, plant)
            ),
            0.0,
        )


@dataclass(slots=True)
class _Pending:
    event: PhysicalEvent
    message: Any
    message_id: str
    key: str
    stream: str | None


class Reporter:
    """One source system at one plant: numbers its messages, keeps streams in order, and sends
    them now (after a reporting delay) or, batched, at the next shift change."""

    def __init__(self, world: World, plant: str, source: SourceSystem) -> None:
        self.world = world
        self.plant = plant
        self.source = source
        skews = {spec.id: spec.clock_skew.total_seconds() for spec in world.scenario.plants}
        self.skew = skews.get(plant, 0.0) if source is SourceSystem.MES else 0.0
        self._rng = world.streams[f"report:{plant}:{source.value}"]
        self._count = 0
        self._seqs: dict[str, int] = {}
        self._last_send = 0.0
        self.held: list[_Pending] = []
        self.outbox: deque[_Pending] = deque()  # sent while down: goes out when it is back
        # what, when down, keeps it from sending: itself and the middleware
        self._systems = tuple(s for s in System if s in (source.value, System.MIDDLEWARE))
        self._drain_due = 0.0

    def report(
        self,
        event: PhysicalEvent,
        message: Any,
        key: str,
        stream: str | None = None,
        batchable: bool = False,
    ) -> None:
        """Report `event` as `message` with business key `key` (the idempotency key)."""
        self._count += 1
        message_id = f"{self.source.value}-{self.plant}-{self._count:08d}"
        pending = _Pending(event, message, message_id, key, stream)
        self.world.unsent += 1
        self.world.measures.reported(event)
        mes = self.world.scenario.mes
        if (
            batchable
            and mes.reporting is Reporting.BATCHED
            and self._rng.random() < mes.batched_share
        ):
            self.held.append(pending)
            return
        now = self.world.env.now
        receipts = self.world.scenario.edge_cases.receipt_posting_delay
        delay = receipts if self.source is SourceSystem.WMS else mes.report_delay
        send_at = max(now + sample_seconds(self._rng, delay), self._last_send)
        self._last_send = send_at
        self.world.after(send_at - now, lambda: self._send(pending))

    def flush(self) -> int:
        """Send everything held back, spread over the burst window in the order it happened
        (after whatever waits in the outbox, if the source is up)."""
        self._drain()
        held, self.held = self.held, []
        spread = self.world.scenario.mes.burst_spread.total_seconds()
        offsets = sorted(self._rng.uniform(0, spread) for _ in held)
        now = self.world.env.now
        for pending, offset in zip(held, offsets, strict=True):
            send_at = max(now + offset, self._last_send)
            self._last_send = send_at
            self.world.after(send_at - now, lambda p=pending: self._send(p))
        return len(held)

    def _send(self, pending: _Pending) -> None:
        """Hand `pending` to the middleware; while this source or the middleware is down, or
        older messages still wait, it waits in the outbox (order kept)."""
        if self.outbox or self._blocked():
            self.outbox.append(pending)
            self.world.measures.cover("outage")
        else:
            self._emit(pending)

    def _blocked(self) -> bool:
        """Whether an outage keeps the source from sending now; if so, the outbox drains
        when it ends."""
        until = self.world.down_until(self._systems, self.plant)
        if until and until != self._drain_due:
            self._drain_due = until
            self.world.after(until - self.world.env.now, self._drain)
        return until > 0

    def _drain(self) -> None:
        while self.outbox and not self._blocked():
            self._emit(self.outbox.popleft())

    def _emit(self, pending: _Pending) -> None:
        world = self.world
        world.unsent -= 1
        now = world.env.now
        seq = None
        if pending.stream is not None:  # numbered as the source's outbox sends, in send order
            seq = self._seqs[pending.stream] = self._seqs.get(pending.stream, 0) + 1
        envelope = Envelope(
            message_id=pending.message_id,
            idempotency_key=pending.key,
            source_system=self.source,
            stream=pending.stream,
            source_seq=seq,
            occurred_at=world.at(pending.event.occurred_at + self.skew),
            sent_at=world.at(now + self.skew),
            message=pending.message,
        )
        world.measures.sent(envelope, pending.event, now)
        world.send(envelope, pending.event)
