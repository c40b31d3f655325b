"""What every process of one run shares: the SimPy environment, the scenario, the truth, the
measures, and the source systems that report events as messages."""

from __future__ import annotations

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

if TYPE_CHECKING:
    from sim.run.measures import Measures

__all__ = ["World", "Reporter"]


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
        """Send everything held back, spread over the burst window in the order it happened."""
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
