"""Incidents, against the truth (docs/architecture.md, Governance): an incident opens at the
first failure (held or dead-lettered) of a message of a physical event not yet applied, and
closes when the event is first applied; it is detected by the first alert that covers it.

`Incidents` is fed by `Measures` (every answer and later outcome) and by the operators (what
they detected and fixed); it also keeps what the twin's monitoring sees of the failures still
open, which the operators' alert rules read (`sim.model.operators`). Times are virtual
seconds."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from integration import Outcome, Status
from sim.model.truth import PhysicalEvent

__all__ = ["Failing", "Incident", "Incidents"]


@dataclass(slots=True)
class Incident:
    event: PhysicalEvent
    code: str
    """the code it first failed with (a hold's reason or a dead letter's code)"""
    opened_at: float
    detected_at: float | None = None
    detected_by: str = ""
    """the alert rule that detected it first"""
    closed_at: float | None = None


@dataclass(slots=True)
class Failing:
    """A message held or in an open dead letter, as the twin's monitoring sees it."""

    event: PhysicalEvent
    at: float
    """when it was held, or dead-lettered"""
    message_type: str
    code: str
    held: bool
    delivery: Any
    """what was delivered (in a run, the envelope the operators correct)"""
    dead_letter: int | None = None
    """the core's dead letter of it, once there is one"""


class Incidents:
    """Every incident of a run, and the failures still open."""

    def __init__(self, trace=None) -> None:
        self.trace = trace
        self.open: dict[int, Incident] = {}
        self.closed: list[Incident] = []
        self.failing: dict[str, Failing] = {}  # message id -> its open failure
        self.failed_messages = 0  # distinct messages ever held or dead-lettered
        self.exceptions = 0  # reconciliation exceptions at the latest drift sample
        self.fixes: Counter[str] = Counter()  # error class -> incidents operators fixed
        self.operator_replays = 0  # dead letters the operators' replays posted
        self.alerts: Counter[str] = Counter()  # rule -> firing episodes
        self._answers: deque[tuple[float, str, bool]] = deque()  # (t, type, first pass)
        self._answers_kept = 0.0  # seconds of answers kept for success-rate rules

    def keep_answers(self, seconds: float) -> None:
        """Keep the last `seconds` of first answers (for success-rate rules)."""
        self._answers_kept = max(self._answers_kept, seconds)

    # --- fed by the measures ---------------------------------------------------------------
    def answered(self, delivery, outcome: Outcome, event: PhysicalEvent, now: float, applied):
        """A delivery's answer; `applied`: how often its event is applied so far."""
        if self._answers_kept and outcome.status is not Status.DUPLICATE:
            self._answer(now, delivery, outcome)
        self.moved(delivery, outcome, event, now, applied)

    def moved(self, delivery, outcome: Outcome, event: PhysicalEvent, now: float, applied):
        """Any outcome of a message of `event` (answered, released, expired, replayed)."""
        key = outcome.message_id or ""
        if outcome.status is Status.POSTED:
            self.failing.pop(key, None)
        elif outcome.status is Status.HELD or outcome.status is Status.REJECTED:
            self._failed(key, delivery, outcome, event, now, applied)

    def _failed(self, key, delivery, outcome, event, now, applied) -> None:
        code = outcome.code.value if outcome.code else "UNKNOWN"
        held = outcome.status is Status.HELD
        known = self.failing.get(key)
        if known is None:
            self.failed_messages += 1
            kind = outcome.message_type or getattr(getattr(delivery, "message", None), "type", "")
            known = self.failing[key] = Failing(event, now, kind or "", code, held, delivery)
        elif known.held != held or known.code != code:  # expired into a dead letter, re-coded
            known.at, known.code, known.held = now, code, held
        known.dead_letter = outcome.dead_letter_id or known.dead_letter
        if applied == 0 and event.id not in self.open:
            self.open[event.id] = Incident(event, code, now)

    def applied(self, event: PhysicalEvent, now: float) -> None:
        """`event` is applied for the first time: its incident, if any, closes."""
        incident = self.open.pop(event.id, None)
        if incident is not None:
            incident.closed_at = now
            self.closed.append(incident)

    def sampled(self, exceptions: int) -> None:
        self.exceptions = exceptions

    def _answer(self, now: float, delivery, outcome: Outcome) -> None:
        kind = outcome.message_type or getattr(getattr(delivery, "message", None), "type", "")
        self._answers.append((now, kind or "", outcome.status is Status.POSTED))
        while self._answers and self._answers[0][0] < now - self._answers_kept:
            self._answers.popleft()

    # --- fed by the operators (and, on a rebuild, by the trace) -----------------------------
    def detect(self, event_id: int, now: float, rule: str) -> bool:
        """A firing `rule` covers the open incident of `event_id`; True the first time."""
        incident = self.open.get(event_id)
        if incident is None or incident.detected_at is not None:
            return False
        incident.detected_at, incident.detected_by = now, rule
        if self.trace is not None:
            self.trace.detected(now, event_id, rule)
        return True

    def fired(self, rule: str, now: float) -> None:
        """An episode of `rule` started firing."""
        self.alerts[rule] += 1
        if self.trace is not None:
            self.trace.alert(now, rule)

    def fixed(self, event_id: int, error_class: str, replayed: int, now: float) -> None:
        """Operators fixed the incident of `event_id` (its class) and replayed dead letters,
        of which `replayed` posted."""
        self.fixes[error_class] += 1
        self.operator_replays += replayed
        if self.trace is not None:
            self.trace.fixed(now, event_id, error_class, replayed)

    def discarded(self, message_id: str) -> None:
        """Operators closed the dead letter of `message_id` by hand: no longer failing."""
        self.failing.pop(message_id, None)

    # --- what the monitoring sees ----------------------------------------------------------
    def open_failures(self) -> list[Failing]:
        """Every message still held or dead-lettered, oldest first (ties by message id)."""
        ordered = sorted(self.failing.items(), key=lambda item: (item[1].at, item[0]))
        return [failure for _message_id, failure in ordered]

    def first_passes(self, since: float, message_type: str | None) -> tuple[int, int]:
        """(first answers at or after `since`, of them POSTED), of `message_type` if given."""
        answers = [
            ok for t, kind, ok in self._answers
            if t >= since and (message_type is None or kind == message_type)
        ]  # fmt: skip
        return len(answers), sum(answers)

    def every(self) -> list[Incident]:
        """Closed incidents, then those still open, each in the order they opened."""
        return [*self.closed, *sorted(self.open.values(), key=lambda i: i.opened_at)]
