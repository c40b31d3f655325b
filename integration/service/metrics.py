"""Prometheus metrics of the service, in a registry of its own (one per app)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from integration.outcome import Outcome, Status
from integration.validation import Sender

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServiceMetrics:
    """Success rate (`messages_total` by status), latency by workflow, dead letters by code,
    replays, refused duplicates, group commits (size, mixed senders), 429 refusals and
    reconciliation exceptions."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple, Any] = {}
        self.messages = Counter(
            "mfg_twin_messages",
            "Messages submitted, by outcome and message type",
            ("status", "message_type"),
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "mfg_twin_dead_letters",
            "Messages dead-lettered, by error code",
            ("code",),
            registry=self.registry,
        )
        self.duplicates = Counter(
            "mfg_twin_duplicates_refused",
            "Duplicate deliveries answered without effect",
            registry=self.registry,
        )
        self.replays = Counter(
            "mfg_twin_replays",
            "Dead letters replayed, by outcome",
            ("status",),
            registry=self.registry,
        )
        self.latency = Histogram(
            "mfg_twin_submit_seconds",
            "Time to process one message, by workflow (message type)",
            ("workflow",),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.group_size = Histogram(
            "mfg_twin_group_messages",
            "Single submissions committed together, per group (the count is the groups)",
            buckets=_GROUP_BUCKETS,
            registry=self.registry,
        )
        self.mixed_groups = Counter(
            "mfg_twin_groups_mixed_senders",
            "Groups of single submissions holding messages of more than one sender",
            registry=self.registry,
        )
        self.refused = Counter(
            "mfg_twin_refused",
            "Submissions refused with 429 before the core saw them, by code",
            ("code",),
            registry=self.registry,
        )
        self.reconciliation_exceptions = Gauge(
            "mfg_twin_reconciliation_exceptions",
            "Findings of the last reconciliation (GET /v1/reconciliation, or an alert round)",
            registry=self.registry,
        )
        self.alert_firing = Gauge(
            "mfg_twin_alert_firing",
            "1 while an alert rule fires (an open incident), else 0",
            ("rule",),
            registry=self.registry,
        )
        self.alert_value = Gauge(
            "mfg_twin_alert_value",
            "The value an alert rule last compared (count, age in seconds or percentage)",
            ("rule",),
            registry=self.registry,
        )
        self.alert_notices = Counter(
            "mfg_twin_alert_notices",
            "Alert notices raised, by rule and state (firing, resolved)",
            ("rule", "state"),
            registry=self.registry,
        )
        self.alert_rounds = Counter(
            "mfg_twin_alert_rounds",
            "Alert evaluation rounds, by result (ok, failed)",
            ("result",),
            registry=self.registry,
        )
        self.webhook_deliveries = Counter(
            "mfg_twin_webhook_deliveries",
            "Alert notices POSTed to the webhook, by result (delivered, failed, dropped)",
            ("result",),
            registry=self.registry,
        )

    def observe(self, outcome: Outcome, message_type: str, seconds: float | None = None) -> None:
        """One message's outcome (and those it released), with its latency when known."""
        self._child(self.messages, outcome.status.value, message_type).inc()
        if outcome.status is Status.DUPLICATE:
            self.duplicates.inc()
        if outcome.status is Status.REJECTED and outcome.code is not None:
            self._child(self.dead_letters, outcome.code.value).inc()
        if seconds is not None:
            self._child(self.latency, message_type).observe(seconds)
        for released in outcome.released:
            self.observe(released, "released")

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """`metric.labels(*labels)`, kept: prometheus_client checks and locks on every call
        (1.9 µs, two of them a message), and a message's metrics are on every answer's path."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_group(self, senders: list[Sender]) -> None:
        """A group of single submissions about to be committed, by its messages' senders."""
        self.group_size.observe(len(senders))
        if len(set(senders)) > 1:
            self.mixed_groups.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def latency_p95(self) -> dict[str, float]:
        """Per workflow, the 95th percentile of `mfg_twin_submit_seconds` interpolated within
        its bucket, as Prometheus's `histogram_quantile` does."""
        buckets: dict[str, list[tuple[float, float]]] = {}
        for family in self.latency.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    buckets.setdefault(sample.labels["workflow"], []).append((bound, sample.value))
        return {
            workflow: _quantile(0.95, sorted(counts))
            for workflow, counts in sorted(buckets.items())
            if counts[-1][1] > 0
        }


def _quantile(q: float, cumulative: list[tuple[float, float]]) -> float:
    """`histogram_quantile(q)` over (upper bound, cumulative count) pairs, +Inf last; a rank
    in the +Inf bucket answers the highest finite bound."""
    rank = q * cumulative[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower
