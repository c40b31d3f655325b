"""On-call operators (the scenario's `operations:`): every `interval` the alert rules are
evaluated on what the twin's monitoring has seen (`Incidents`); a firing rule detects the open
incidents it covers, and each detected incident waits for one of `staffing` operators, who
responds, fixes it by its error class and replays its dead letters by filter through the
`Target` port (README, Operations and governance).

What a rule covers: `dead_letters` the open dead letters of its code and message type (within
its window); `hold_age` the messages it found held too long; `success_rate` the failures of
its message type within its window; `reconciliation_exceptions` every failure of an event that
moves stock (an exception in the books is looked for among them).

The fixes: `master_data`, a confirmation with a stale revision or a missing lot: it is sent
again corrected (the order's own revision; the lots the floor holds most of) under a new
message id and key and, once it has posted, the superseded dead letter is discarded (closed
without a replay), and after a stale revision the parts it takes are counted as for `stock`
(the order's revision takes other quantities of them than the floor used); `stock`: the
warehouse counts the keys the failed message takes from and posts a StockAdjusted for what the
books miss (truth less the effects still on their way), then the letters are replayed;
`quality`: quality releases the held lots the refused confirmation names (`sim.model.quality`),
then every letter of the code and lot is replayed; anything else: replayed. An incident a fix
did not close is taken up again at an evaluation that still covers it, up to `attempts` times.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import simpy

from integration import (
    AlertBook,
    AlertKind,
    AlertRule,
    AlertState,
    AlertSubject,
    DeadLetterFilter,
    Envelope,
    ErrorCode,
    OperationCompleted,
    Outcome,
    SourceSystem,
    StockAdjusted,
    evaluate_alert,
)
from sim.model import quality
from sim.model.incidents import Failing
from sim.model.streams import sample_seconds
from sim.model.target import Target, TargetError
from sim.model.truth import PhysicalEvent, StockKey, quantity
from sim.model.world import World
from sim.scenario.vocabulary import error_class

__all__ = ["Operators"]

POLL = 1.0  # seconds between looks at whether a fix message has posted
SETTLE = 3600.0  # the longest an operator waits for it before replaying anyway
_CODES = {code.value: code for code in ErrorCode}


class _Signals:
    """`integration.AlertSignals` over the monitoring's view (`Incidents`), in datetimes."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.incidents = world.measures.incidents

    def _seconds(self, instant: datetime) -> float:
        return (instant - self.world.scenario.start).total_seconds()

    def subject(self, failing: Failing) -> AlertSubject:
        """The failure as a rule sees it, named by its physical event."""
        correlation = getattr(failing.delivery, "correlation_id", "")
        return AlertSubject(
            str(failing.event.id), self.world.at(failing.at), failing.message_type, failing.code,
            correlation,
        )  # fmt: skip

    def open_dead_letters(self, received_since: datetime | None) -> list[AlertSubject]:
        since = None if received_since is None else self._seconds(received_since)
        return [
            self.subject(f) for f in self.incidents.open_failures()
            if not f.held and (since is None or f.at >= since)
        ]  # fmt: skip

    def held_since_before(self, instant: datetime) -> list[AlertSubject]:
        before = self._seconds(instant)
        failures = self.incidents.open_failures()
        return [self.subject(f) for f in failures if f.held and f.at < before]

    def reconciliation_exceptions(self) -> int:
        return self.incidents.exceptions

    def first_pass(self, since: datetime, message_type: str | None) -> tuple[int, int]:
        return self.incidents.first_passes(self._seconds(since), message_type)


class Operators:
    """The alert loop and the people it calls."""

    def __init__(self, world: World, target: Target) -> None:
        self.world = world
        self.target = target
        self.spec = world.scenario.operations
        self.incidents = world.measures.incidents
        self.signals = _Signals(world)
        self.staff = simpy.Resource(world.env, self.spec.staffing)
        self.book = AlertBook()
        self._counts = 0
        self._working: set[int] = set()  # events an operator is on
        self._attempts: Counter[int] = Counter()  # event -> times taken up
        windows = [r.trailing for r in self.spec.alerts if r.kind is AlertKind.SUCCESS_RATE]
        if windows:
            self.incidents.keep_answers(max(windows).total_seconds())

    def start(self) -> None:
        if self.spec.alerting:
            self.world.env.process(self._watch())

    def _watch(self):
        """Evaluate every interval until the horizon; the heal phase takes over from there."""
        env, interval = self.world.env, self.spec.interval.total_seconds()
        while True:
            yield env.timeout(interval)
            if not self.world.producing:
                return
            self.evaluate(env.now)

    def evaluate(self, now: float) -> None:
        """One round: notices for rules that changed state; for each open incident a firing
        rule covers, its detection (the first time) and an operator, unless one is on it or
        it has had its `attempts`."""
        at = self.world.at(now)
        evaluations = [evaluate_alert(rule, self.signals, at) for rule in self.spec.alerts]
        for notice in self.book.observe(evaluations, at):
            if notice.state is AlertState.FIRING:
                self.incidents.fired(notice.rule.name, now)
        for evaluation in evaluations:
            if not evaluation.firing:
                continue
            rule = evaluation.rule
            for failing in self.incidents.open_failures():
                event_id = failing.event.id
                if event_id in self.incidents.open and self._covers(rule, failing, now):
                    self.incidents.detect(event_id, now, rule.name)
                    self._take_up(event_id)

    def _take_up(self, event_id: int) -> None:
        if event_id in self._working or self._attempts[event_id] >= self.spec.attempts:
            return
        self._working.add(event_id)
        self._attempts[event_id] += 1
        self.world.env.process(self._respond(event_id))

    def _covers(self, rule: AlertRule, failing: Failing, now: float) -> bool:
        window = rule.trailing
        recent = window is None or failing.at >= now - window.total_seconds()
        if rule.kind is AlertKind.RECONCILIATION:
            return bool(failing.event.deltas)
        if not rule.matches(self.signals.subject(failing)):
            return False
        if rule.kind is AlertKind.DEAD_LETTERS:
            return not failing.held and recent
        if rule.kind is AlertKind.HOLD_AGE:
            return failing.held and failing.at < now - rule.older_than.total_seconds()
        return recent  # success_rate: the failures within its window

    def _respond(self, event_id: int):
        """An operator takes the incident, responds, fixes and replays, unless it closed
        meanwhile."""
        try:
            yield from self._work(event_id)
        finally:
            self._working.discard(event_id)

    def _work(self, event_id: int):
        env = self.world.env
        with self.staff.request() as request:
            yield request
            failing = self._failure_of(event_id)
            if failing is None:
                return
            kind = error_class(failing.code)
            rng = self.world.streams[f"operations:{kind}"]
            yield env.timeout(sample_seconds(rng, getattr(self.spec.response, kind)))
            yield env.timeout(sample_seconds(rng, getattr(self.spec.fix, kind)))
            failing = self._failure_of(event_id)
            if failing is None:
                return
            replayed = 0
            corrected = self._corrected(failing) if kind == "master_data" else None
            if corrected is not None:
                self._send_corrected(failing, corrected)
                yield from self._settled([failing.event])
                self._discard_superseded(failing)
                yield from self._settled(self._count_after_correction(failing))
            elif kind == "quality":
                lots = self._held_lots(failing)
                yield from self._settled(self._release(failing.event.plant, lots))
                replayed = sum(self._replay(failing, lot=lot) for _item, lot in lots)
            else:
                if kind == "stock":
                    yield from self._settled(self._count(failing))
                replayed = self._replay(failing)
            self.incidents.fixed(event_id, kind, replayed, env.now)

    def _failure_of(self, event_id: int) -> Failing | None:
        """The latest open failure of the event's open incident (None once it closed)."""
        if event_id not in self.incidents.open:
            return None
        failures = [f for f in self.incidents.open_failures() if f.event.id == event_id]
        return failures[-1] if failures else None

    # --- fixes -------------------------------------------------------------------------------
    def _corrected(self, failing: Failing) -> OperationCompleted | None:
        """A stale revision: the confirmation on the order's own revision; a missing lot: the
        lots the floor holds most of for the lot-controlled parts it took without one (drift
        is kept per location, lots summed). None when the twin knows no correction."""
        message = _message(failing)
        if not isinstance(message, OperationCompleted):
            return None
        if failing.code == ErrorCode.REVISION_MISMATCH.value:
            return message.model_copy(update={"bom_revision": None})
        if failing.code != ErrorCode.LOT_REQUIRED.value:
            return None
        items, truth = self.world.catalogue.items, self.world.truth
        lots = dict(message.component_lots)
        for key, qty in sorted(failing.event.deltas.items()):
            item = key[1]
            if qty < 0 and items[item].lot_controlled and item not in lots:
                lots[item] = truth.fullest_lot(key)[0] or f"NOLOT-{item}"
        return message.model_copy(update={"component_lots": lots})

    def _send_corrected(self, failing: Failing, corrected: OperationCompleted) -> None:
        """The corrected message, under a new id and key, outside its stream."""
        original: Envelope = failing.delivery
        envelope = original.model_copy(
            update={
                "message_id": f"{original.message_id}-C",
                "idempotency_key": f"{original.idempotency_key}-C",
                "stream": None,
                "source_seq": None,
                "sent_at": self.world.at(self.world.env.now),
                "message": corrected,
            }
        )
        self._send(envelope, failing.event)

    def _discard_superseded(self, failing: Failing) -> None:
        """Close the dead letter the corrected message superseded, so that no replay (the
        heal phase's) sends it again."""
        if failing.dead_letter is None:
            return
        original: Envelope = failing.delivery
        selection = DeadLetterFilter(ids=(failing.dead_letter,))
        reason = f"superseded by the corrected message {original.message_id}-C"
        try:
            self.target.discard(selection, reason, self.world.at(self.world.env.now))
        except TargetError:
            return  # the target did not answer: the letter stays open
        self.incidents.discarded(original.message_id)

    def _count(self, failing: Failing) -> list[PhysicalEvent]:
        """Count the keys the failed message takes from; a StockAdjusted per key whose books
        miss what is physically there, less the effects of events not applied yet."""
        books = self.target.stock()
        pending = self._pending_effects()
        events = []
        for key, qty in sorted(failing.event.deltas.items()):
            if qty >= 0:
                continue
            truth = self.world.truth.on_hand(key)
            missing = quantity(truth - pending.get(key, Decimal(0)) - books.get(key, Decimal(0)))
            if missing:
                events.append(self._adjust(key, missing))
        return events

    def _count_after_correction(self, failing: Failing) -> list[PhysicalEvent]:
        """After a stale revision's correction has posted: the books backflushed the order's
        revision, whose quantities of the same parts differ from what the floor used (an ECO
        changes how many of a component a unit takes), so the warehouse counts those parts
        (`_count`). A missing lot's correction names lots and takes what the floor took: no
        count."""
        if failing.code != ErrorCode.REVISION_MISMATCH.value:
            return []
        return self._count(failing)

    def _pending_effects(self) -> dict[StockKey, Decimal]:
        """Stock effects of the events whose messages have not applied: still failing, or
        never answered."""
        measures = self.world.measures
        events = {i.event.id: i.event for i in self.incidents.open.values()}
        events.update((e.id, e) for e in measures.unanswered() if measures.applied(e) == 0)
        effects: dict[StockKey, Decimal] = {}
        for event in events.values():
            for key, qty in event.deltas.items():
                effects[key] = effects.get(key, Decimal(0)) + qty
        return effects

    def _adjust(self, key: StockKey, qty: Decimal) -> PhysicalEvent:
        plant, item_id, location = key
        world = self.world
        item = world.catalogue.items[item_id]
        lot = world.truth.fullest_lot(key)[0] if item.lot_controlled else None
        self._counts += 1
        number = f"CNT-{plant}-{self._counts:06d}"
        event = world.new_event("stock_count", plant)
        world.measures.reported(event)
        message = StockAdjusted(
            plant=plant, item=item_id, location=location, lot=lot, qty=qty,
            uom=item.base_uom, reason="count", count_id=number,
        )  # fmt: skip
        now = world.at(world.env.now)
        envelope = Envelope(
            message_id=f"WMS-{number}", idempotency_key=number, source_system=SourceSystem.WMS,
            occurred_at=now, sent_at=now, message=message,
        )  # fmt: skip
        self._send(envelope, event)
        return event

    def _send(self, envelope: Envelope, event: PhysicalEvent) -> None:
        """Into the pipes, as a source system sends (and as the measures count it)."""
        self.world.measures.sent(envelope, event, self.world.env.now)
        self.world.send(envelope, event)

    def _settled(self, events: list[PhysicalEvent]) -> Iterator[simpy.Event]:
        """Wait (at most `SETTLE`) until the fix messages of `events` have posted."""
        env, measures = self.world.env, self.world.measures
        waited = 0.0
        while any(measures.applied(e) == 0 for e in events) and waited < SETTLE:
            yield env.timeout(POLL)
            waited += POLL

    def _held_lots(self, failing: Failing) -> list[tuple[str, str]]:
        """(item, lot) of the lots the failed message names that quality holds, or, if
        another fix released them meanwhile, that it names at all."""
        plant = failing.event.plant
        named = sorted(getattr(_message(failing), "component_lots", {}).items())
        held = [(item, lot) for item, lot in named if (plant, item, lot) in self.world.held_lots]
        return held or named

    def _release(self, plant: str, lots: list[tuple[str, str]]) -> list[PhysicalEvent]:
        """Quality releases the held lots among `lots`; the releases' events."""
        released = (quality.release(self.world, (plant, item, lot)) for item, lot in lots)
        return [event for event in released if event is not None]

    def _replay(self, failing: Failing, lot: str | None = None) -> int:
        """Replay the open dead letters of the failure's code and business ids (its `lot`
        rather than its work order, when given: every letter a released lot held back); how
        many posted."""
        message = _message(failing)
        names = ("plant", "item", "work_order") if lot is None else ("plant", "item")
        fields = {
            name: value for name in names if isinstance(value := getattr(message, name, None), str)
        }
        selection = DeadLetterFilter(code=_CODES.get(failing.code), lot=lot, **fields)
        now = self.world.env.now
        try:
            outcomes: list[Outcome] = self.target.replay(selection, self.world.at(now))
        except TargetError:
            return 0  # the target did not answer: the heal phase replays it
        self.world.measures.healed([], outcomes, now)
        return sum(outcome.applied for outcome in outcomes)


def _message(failing: Failing):
    return getattr(failing.delivery, "message", None)
