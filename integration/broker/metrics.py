"""Prometheus metrics of `twin consume`, in a registry of its own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from integration.outcome import Outcome

__all__ = ["ConsumerMetrics"]

_LAG_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)  # AMQP timestamps are whole seconds
_GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ConsumerMetrics:
    """Queue depth per queue, redeliveries, dead letters published by code, consumer lag,
    groups committed, messages by status and deliveries by queue."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.queue_depth = Gauge(
            "mfg_twin_broker_queue_depth",
            "Messages ready in each queue (inbound and dead), polled",
            ("queue",),
            registry=self.registry,
        )
        self.redeliveries = Counter(
            "mfg_twin_broker_redeliveries",
            "Deliveries the broker flagged as redelivered",
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "mfg_twin_broker_dead_lettered",
            "Messages published to the dead-letter exchange, by error code",
            ("code",),
            registry=self.registry,
        )
        self.lag = Histogram(
            "mfg_twin_broker_lag_seconds",
            "From a message's AMQP timestamp to the commit of its group",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.groups = Histogram(
            "mfg_twin_broker_group_messages",
            "Deliveries committed together, per group (the count is the groups committed)",
            buckets=_GROUP_BUCKETS,
            registry=self.registry,
        )
        self.messages = Counter(
            "mfg_twin_broker_messages",
            "Deliveries answered, by outcome status",
            ("status",),
            registry=self.registry,
        )
        self.queue_deliveries = Counter(
            "mfg_twin_broker_queue_deliveries",
            "Deliveries received from each inbound queue (a queue's active consumer gets them)",
            ("queue",),
            registry=self.registry,
        )
        self.reconnects = Counter(
            "mfg_twin_broker_reconnects",
            "Connections to the broker opened again after one was lost",
            registry=self.registry,
        )

    def observe(self, outcome: Outcome) -> None:
        self.messages.labels(outcome.status.value).inc()

    def serve(self, port: int) -> int:
        """Expose the metrics at http://127.0.0.1:PORT/metrics (0: any free port); the port."""
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        return server.server_port
