"""Alerting in the service: the rules of `integration.alerting` evaluated on the ledger.

Every `interval_s` the `AlertMonitor` runs one round on the core's thread (after whatever is
queued there, as every read): it evaluates each rule against `LedgerSignals` and reads the
governance figures the console shows. An **incident** is an episode of a rule firing: it opens
when the rule starts firing and closes when it stops, so each gives exactly one FIRING and one
RESOLVED notice (`AlertBook`). Notices are counted in the Prometheus metrics and handed to the
webhook (`webhook.py`), which delivers them on its own task: a slow or failing receiver never
delays the next round.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from integration.alerting import (
    AlertBook,
    AlertEvaluation,
    AlertNotice,
    AlertRules,
    AlertSubject,
    evaluate_alert,
)
from integration.clock import Clock
from integration.core import Core
from integration.envelope import business_ids
from integration.service.metrics import ServiceMetrics
from integration.service.runner import CoreRunner
from integration.service.webhook import Webhook
from integration.store.base import DeadLetter, DeadLetterFilter, FirstPass, InboxRecord
from integration.store.sql_reads import correlation_of

__all__ = ["DEFAULT_ALERT_INTERVAL_S", "AlertMonitor", "Governance", "LedgerSignals"]

DEFAULT_ALERT_INTERVAL_S = 30.0
_RECENT_NOTICES = 50
_log = logging.getLogger("integration.service.alerts")


@dataclass(frozen=True, slots=True)
class Governance:
    """The ledger's figures at one instant, for the console's tiles."""

    at: datetime
    messages: FirstPass
    dead_letters: dict[str, int]  # by status: open, replayed, resolved
    held: int
    reconciliation_exceptions: int

    @property
    def first_pass_rate(self) -> Decimal | None:
        return _percent(self.messages.first_pass, self.messages.received)

    @property
    def final_rate(self) -> Decimal | None:
        return _percent(self.messages.posted, self.messages.received)

    @property
    def failed_volume(self) -> int:
        """Every dead letter the ledger ever recorded, whatever became of it."""
        return sum(self.dead_letters.values())


def _percent(part: int, whole: int) -> Decimal | None:
    return None if whole == 0 else (Decimal(100 * part) / whole).quantize(Decimal("0.01"))


class LedgerSignals:
    """`AlertSignals` over a core's ledger. Call only on the core's thread; one instance per
    round (the reconciliation is read once and kept)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._findings: int | None = None

    def open_dead_letters(self, received_since: datetime | None) -> list[AlertSubject]:
        letters = self.core.dead_letters(DeadLetterFilter())
        return [
            _dead_letter_subject(letter)
            for letter in letters
            if received_since is None or letter.created_at >= received_since
        ]

    def held_since_before(self, instant: datetime) -> list[AlertSubject]:
        return [_held_subject(record) for record in self.core.store.held()
                if record.received_at < instant]  # fmt: skip

    def reconciliation_exceptions(self) -> int:
        if self._findings is None:
            self._findings = len(self.core.reconcile().findings)
        return self._findings

    def first_pass(self, since: datetime, message_type: str | None) -> tuple[int, int]:
        counts = self.core.store.first_pass(since, message_type)
        return counts.received, counts.first_pass


def _dead_letter_subject(letter: DeadLetter) -> AlertSubject:
    return AlertSubject(
        ref=str(letter.id),
        at=letter.created_at,
        message_type=letter.message_type or "",
        code=letter.code.value,
        correlation_id=letter.correlation_id,
        business_ids=letter.ids,
    )


def _held_subject(record: InboxRecord) -> AlertSubject:
    envelope = json.loads(record.envelope_json)  # a held message was read as an envelope
    return AlertSubject(
        ref=f"{record.source_system}/{record.message_id}",
        at=record.received_at,
        message_type=record.message_type,
        code=record.code.value if record.code else "HELD",
        correlation_id=correlation_of(record.envelope_json),
        business_ids=business_ids(envelope.get("message") or {}),
    )


def evaluate_round(
    core: Core, rules: AlertRules, now: datetime
) -> tuple[list[AlertEvaluation], Governance]:
    """On the core's thread: every rule's evaluation at `now`, and the governance figures."""
    signals = LedgerSignals(core)
    evaluations = [evaluate_alert(rule, signals, now) for rule in rules.rules]
    governance = Governance(
        at=now,
        messages=core.store.first_pass(None),
        dead_letters=core.store.dead_letter_counts(),
        held=core.held_count,
        reconciliation_exceptions=signals.reconciliation_exceptions(),
    )
    return evaluations, governance


@dataclass
class AlertMonitor:
    """Evaluates the rules every `interval_s` (see the module docstring); keeps the latest
    governance figures, the open incidents and the recent notices for the console."""

    runner: CoreRunner
    rules: AlertRules
    clock: Clock
    metrics: ServiceMetrics
    interval_s: float = DEFAULT_ALERT_INTERVAL_S
    webhook: Webhook | None = None
    book: AlertBook = field(default_factory=AlertBook)
    governance: Governance | None = None
    evaluations: Sequence[AlertEvaluation] = ()
    recent: deque[AlertNotice] = field(default_factory=lambda: deque(maxlen=_RECENT_NOTICES))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The rounds, and the webhook's deliveries, as tasks for the life of the block (an
        app's lifespan)."""
        tasks = [asyncio.create_task(self.run())]
        if self.webhook is not None:
            tasks.append(asyncio.create_task(self.webhook.run()))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def run(self) -> None:
        """Rounds for ever, `interval_s` apart; a round that fails is logged and counted."""
        while True:
            try:
                await self.round()
            except Exception:  # noqa: BLE001 - logged and counted; the next round runs
                self.metrics.alert_rounds.labels("failed").inc()
                _log.exception("an alert round failed; the next one runs as planned")
            await asyncio.sleep(self.interval_s)

    async def round(self) -> list[AlertNotice]:
        """One evaluation of every rule; the notices of the rules that changed state."""
        now = self.clock.now()
        evaluations, governance = await self.runner.call(
            evaluate_round, self.runner.core, self.rules, now
        )
        notices = self.book.observe(evaluations, now)
        self.evaluations, self.governance = evaluations, governance
        self.metrics.reconciliation_exceptions.set(governance.reconciliation_exceptions)
        self.metrics.alert_rounds.labels("ok").inc()
        for evaluation in evaluations:
            name = evaluation.rule.name
            self.metrics.alert_firing.labels(name).set(1 if name in self.book.firing else 0)
            self.metrics.alert_value.labels(name).set(float(evaluation.value))
        for notice in notices:
            self.metrics.alert_notices.labels(notice.rule.name, notice.state.value).inc()
            self.recent.appendleft(notice)
            if self.webhook is not None:
                self.webhook.send(notice)
        return notices

    def incidents(self) -> list[AlertNotice]:
        """The open incidents (firing rules), oldest first."""
        return sorted(
            self.book.firing.values(), key=lambda notice: (notice.since, notice.rule.name)
        )
