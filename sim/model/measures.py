"""Latency, duplicates and drift, measured against the truth (docs/architecture.md, Measures).

Memory stays flat over the horizon: histograms, counters, sampled series, and per event only a
small array slot for how often it was delivered and applied. Events are kept in full only
from their report until the core first answers their message, and while the core holds or has
dead-lettered it.
"""

from __future__ import annotations

from array import array
from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hdrh.histogram import HdrHistogram

from integration import Envelope, Outcome, Status
from sim.model.incidents import Incidents
from sim.model.truth import PhysicalEvent, StockKey
from sim.scenario.vocabulary import EDGE_CASES, PARTS, PERCENTILES

if TYPE_CHECKING:
    from sim.model.catalogue import Catalogue

__all__ = ["Measures", "drift"]

MAX_MS = 90 * 86400 * 1000
BATCH = 4096  # applied events whose latencies wait before they are recorded


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, MAX_MS, 3)


def _millis(seconds: float) -> int:
    """A latency as the histograms hold it: whole milliseconds, 1 ms to 90 days."""
    return min(max(1, round(seconds * 1000)), MAX_MS)


def _record(histogram: HdrHistogram, counts: Counter[int]) -> None:
    for value, count in counts.items():
        histogram.record_value(value, count)


def _summary(histogram: HdrHistogram) -> dict[str, Any]:
    count = histogram.get_total_count()
    figures: dict[str, Any] = {"count": count}
    for name, percentile in PERCENTILES.items():
        figures[name] = histogram.get_value_at_percentile(percentile) if count else 0
    figures["max"] = histogram.get_max_value() if count else 0
    return figures


def drift(
    truth: dict[StockKey, Decimal], book: dict[StockKey, Decimal], cost
) -> tuple[Decimal, int]:
    """(value drift, reconciliation exceptions): quantity differences valued at standard cost
    and summed, and how many (plant, item, location) keys differ."""
    value, exceptions = Decimal(0), 0
    for key in sorted(set(truth) | set(book)):
        difference = truth.get(key, Decimal(0)) - book.get(key, Decimal(0))
        if difference:
            exceptions += 1
            value += abs(difference) * cost(key[1], key[0])
    return value.quantize(Decimal("0.01")), exceptions


class Measures:
    """Fed by the middleware and the sources; summarised once at the end."""

    def __init__(self, trace=None, warmup_s: float = 0.0) -> None:
        self.trace = trace
        self.warmup_s = warmup_s  # latency counts only events that occurred from then on
        self.truth_events = 0
        self.messages = 0
        self.message_types: Counter[str] = Counter()  # messages sent, by message type
        self.coverage: Counter[str] = Counter(dict.fromkeys(EDGE_CASES, 0))
        self.statuses: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.late_postings = 0
        self.first_pass = 0
        self.latency: dict[str, HdrHistogram] = {}
        self.parts: dict[str, dict[str, HdrHistogram]] = {}
        self.interval_latency = _histogram()
        self._pending: list[tuple] = []  # (workflow, total, *PARTS) in seconds: `_latencies`
        self._applied = array("H")
        self._deliveries = array("H")
        # Held or dead-lettered messages: id -> [event, parked at, copies, last status]. Several
        # copies of one id park only with idempotency off, and each may later post.
        self._parked: dict[str, list] = {}
        self._unanswered: dict[int, PhysicalEvent] = {}  # reported, no message answered yet
        self._stream_max: dict[str, int] = {}
        self.series: list[dict[str, Any]] = []
        self._interval_counts: Counter[str] = Counter()
        self._interval_codes: Counter[str] = Counter()
        self.max_drift = Decimal(0)
        self.left_over = {"unsent": 0, "in_flight": 0}
        self.incidents = Incidents(trace)

    # --- what happened ---------------------------------------------------------------------
    def happened(self, event: PhysicalEvent) -> None:
        self.truth_events += 1
        missing = event.id - len(self._applied)
        if missing > 0:  # ids are dense; a replayed trace may meet them out of order
            self._applied.extend([0] * missing)
            self._deliveries.extend([0] * missing)

    def cover(self, edge_case: str, times: int = 1) -> None:
        """Count an edge case that happened outside the measures' own sight."""
        if edge_case not in self.coverage:
            raise ValueError(f"{edge_case!r} is not in EDGE_CASES")
        self.coverage[edge_case] += times
        if self.trace is not None:
            self.trace.cover(edge_case, times)

    def costed(self, item: str, costs: dict[str, Decimal]) -> None:
        """New standard costs (an ECO): drift is valued with them from now on."""
        if self.trace is not None:
            self.trace.cost(item, costs)

    def sent(self, envelope: Envelope, event: PhysicalEvent, now: float) -> None:
        self.messages += 1
        self.message_types[envelope.message.type] += 1
        self._interval_counts["arrivals"] += 1
        if event.sent_at < 0:
            event.sent_at = now
        if self.trace is not None:
            self.trace.message(now, event.id, envelope)

    def reported(self, event: PhysicalEvent) -> None:
        """A source has recorded `event` (its stock effects are final): into the trace, so a
        rebuild knows every event, sent or not. Unanswered until a message of it is."""
        self._unanswered[event.id] = event
        if self.trace is not None:
            self.trace.truth(event)

    def _delivered(self, envelope: Envelope, event: PhysicalEvent) -> None:
        index = event.id - 1
        self._deliveries[index] += 1
        self._unanswered.pop(event.id, None)
        if self._deliveries[index] > 1:
            self.coverage["duplicate_delivered"] += 1
        if envelope.stream is not None and self._deliveries[index] == 1:  # copies are not reorders
            highest = self._stream_max.get(envelope.stream, 0)
            if envelope.source_seq < highest:
                self.coverage["reorder"] += 1
            else:
                self._stream_max[envelope.stream] = envelope.source_seq

    # --- what the core answered ------------------------------------------------------------
    def answered(
        self, envelope: Envelope, outcome: Outcome, event: PhysicalEvent, now: float, queued: float
    ) -> None:
        """The core answered a delivery of `envelope` after `queued` seconds in the queue."""
        self._delivered(envelope, event)
        if self.trace is not None:
            self.trace.answer(now, event.id, envelope, outcome, queued)
        self._record(outcome, event, now, queued, parked_at=None)
        self.incidents.answered(envelope, outcome, event, now, self.applied(event))
        for released in outcome.released:
            self.resolve(released, now)

    def healed(self, expired: list[Outcome], replayed: list[Outcome], now: float) -> None:
        """The heal phase: holds that expired are new dead letters; a replay that fails
        again is not, and one that posts resolves its event."""
        for outcome in expired:
            self.resolve(outcome, now)
        for outcome in replayed:
            if outcome.applied:
                self.resolve(outcome, now)
            for released in outcome.released:
                self.resolve(released, now)

    def heal_ended(self, unsent: int, in_flight: int) -> None:
        """What the heal phase could not drain: reported, never counted as the core's drift."""
        self.left_over = {"unsent": unsent, "in_flight": in_flight}
        if self.trace is not None:
            self.trace.heal_ended(unsent, in_flight)

    def resolve(self, outcome: Outcome, now: float) -> None:
        """A later outcome of a held or dead-lettered message (released, expired, replayed)."""
        parked = self._parked.get(outcome.message_id or "")
        if parked is not None:
            event, parked_at, _copies, _status = parked
            if self.trace is not None:
                self.trace.resolution(now, event.id, outcome)
            self._record(outcome, event, now, 0.0, parked_at)
            self.incidents.moved(None, outcome, event, now, self.applied(event))

    def _record(self, outcome, event, now, queued, parked_at) -> None:
        status = outcome.status
        self.statuses[status.value] += 1
        self._interval_counts["outcomes"] += 1
        key = outcome.message_id or ""
        if status is Status.POSTED:
            if parked_at is not None:
                self._unpark(key)
            self._apply(outcome, event, now, queued, parked_at)
        elif status is Status.HELD or status is Status.REJECTED:
            parked = self._parked.setdefault(key, [event, now, 0, status])
            parked[3] = status
            if parked_at is None:  # a delivery the core parked, not a parked one moving on
                parked[2] += 1
            if status is Status.REJECTED:
                code = outcome.code.value if outcome.code else "UNKNOWN"
                self.rejections[code] += 1
                self._interval_counts["dead_letters"] += 1
                self._interval_codes[code] += 1

    def _unpark(self, key: str) -> None:
        parked = self._parked[key]
        parked[2] -= 1
        if parked[2] <= 0:
            del self._parked[key]

    def _apply(self, outcome, event, now, queued, parked_at) -> None:
        index = event.id - 1
        self._applied[index] += 1
        if outcome.late:
            self.late_postings += 1
        if self._applied[index] > 1:
            return
        self.incidents.applied(event, now)
        if parked_at is None and self._deliveries[index] <= 1:
            self.first_pass += 1
        total = max(0.0, now - event.occurred_at)
        report = max(0.0, min(total, event.sent_at - event.occurred_at))
        hold = max(0.0, now - parked_at) if parked_at is not None else 0.0
        transport = max(0.0, total - report - queued - hold)
        if event.occurred_at < self.warmup_s:
            return  # warm-up deletion: applied and counted, but not in the latency statistics
        self._latencies(event.workflow, total, (report, transport, queued, hold))

    def _latencies(self, workflow: str, total: float, parts: tuple[float, ...]) -> None:
        """One applied event's latency and its `PARTS`, in seconds: kept until the next read,
        the close of the sample interval or a full batch (`_record_pending`)."""
        self._pending.append((workflow, total, *parts))
        if len(self._pending) >= BATCH:
            self._record_pending()

    def _record_pending(self) -> None:
        """Record the pending latencies into the histograms, each distinct value of a histogram
        once with its count: the same counts as one `record_value` per value, in far fewer
        calls (a histogram's counts do not depend on the order values came in)."""
        if not self._pending:
            return
        by_workflow: dict[str, list[tuple]] = {}
        for row in self._pending:
            by_workflow.setdefault(row[0], []).append(row)
        self._pending.clear()
        totals: Counter[int] = Counter()
        for workflow, rows in by_workflow.items():
            if workflow not in self.latency:
                self.latency[workflow] = _histogram()
                self.parts[workflow] = {part: _histogram() for part in PARTS}
            columns = list(zip(*rows, strict=True))
            total = Counter(map(_millis, columns[1]))
            _record(self.latency[workflow], total)
            totals.update(total)
            for part, seconds in zip(PARTS, columns[2:], strict=True):
                _record(self.parts[workflow][part], Counter(map(_millis, seconds)))
        _record(self.interval_latency, totals)

    # --- series and the end ------------------------------------------------------------------
    def sample_books(
        self,
        now: float,
        queue_depth: int,
        truth: dict[StockKey, Decimal],
        catalogue: Catalogue,
        books: dict[StockKey, Decimal],
    ) -> None:
        """A sample of drift: the `truth` of now against the target's `books`, valued at the
        catalogue's standard costs (`sim.run.pipelined.DeferredMeasures` takes the same call
        and applies it once the books come back)."""
        value, exceptions = drift(truth, books, catalogue.standard_cost)
        self.sample(now, queue_depth, value, exceptions)

    def sample(self, now: float, queue_depth: int, drift_value: Decimal, exceptions: int) -> None:
        """Close one interval of the per-interval series (queue depth and drift measured now)."""
        if self.trace is not None:
            self.trace.sample(now, queue_depth, drift_value, exceptions)
        self.max_drift = max(self.max_drift, drift_value)
        self.incidents.sampled(exceptions)
        self._record_pending()
        p99 = (
            self.interval_latency.get_value_at_percentile(99)
            if self.interval_latency.get_total_count()
            else 0
        )
        self.series.append(
            {
                "t_s": round(now, 3),
                "arrivals": self._interval_counts["arrivals"],
                "throughput": self._interval_counts["outcomes"],
                "dead_letters": self._interval_counts["dead_letters"],
                "dead_letters_by_code": dict(sorted(self._interval_codes.items())),
                "queue_depth": queue_depth,
                "p99_ms": p99,
                "drift_value": str(drift_value),
                "drift_exceptions": exceptions,
            }
        )
        self._interval_counts.clear()
        self._interval_codes.clear()
        self.interval_latency.reset()

    def duplicates(self) -> dict[str, int]:
        delivered = sum(max(0, n - 1) for n in self._deliveries)
        posted = sum(max(0, n - 1) for n in self._applied)
        detected = self.statuses[Status.DUPLICATE.value] + sum(
            self.rejections[code] for code in ("IDEMPOTENCY_CONFLICT", "SEQUENCE_STALE")
        )
        return {"delivered": delivered, "detected": detected, "posted": posted}

    def applied(self, event: PhysicalEvent) -> int:
        return self._applied[event.id - 1]

    def applied_events(self) -> int:
        """Physical events applied at least once."""
        return sum(1 for times in self._applied if times)

    def held(self) -> int:
        """Messages whose last answer is HELD: still waiting in the core."""
        return sum(parked[3] is Status.HELD for parked in self._parked.values())

    def unanswered(self) -> list[PhysicalEvent]:
        """Events reported whose messages the core has not answered (not one copy): at the end
        of the heal phase, those it never received, their effects missing from the books."""
        return list(self._unanswered.values())

    def parked_event(self, message_id: str | None) -> PhysicalEvent | None:
        parked = self._parked.get(message_id or "")
        return parked[0] if parked else None

    def encoded_histograms(self) -> dict[str, dict[str, str]]:
        """Every latency histogram, HdrHistogram-encoded (for plots and later analysis)."""
        self._record_pending()
        return {
            workflow: {
                "total": self.latency[workflow].encode().decode(),
                **{part: h.encode().decode() for part, h in self.parts[workflow].items()},
            }
            for workflow in sorted(self.latency)
        }

    def latency_summary(self) -> dict[str, Any]:
        self._record_pending()
        summary = {}
        for workflow in sorted(self.latency):
            figures = _summary(self.latency[workflow])
            figures["parts"] = {part: _summary(self.parts[workflow][part]) for part in PARTS}
            summary[workflow] = figures
        return summary
