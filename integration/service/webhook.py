"""Alert notices POSTed to a webhook as JSON, retried with exponential backoff.

Notices wait in a bounded queue and are delivered one at a time, in order, on a task of their
own, so a receiver that is slow or down never delays an alert round. A delivery is retried
after 0.5 s, 1 s, 2 s, ... (at most `max_delay_s` apart) up to `attempts` times; one that still
fails is logged and counted (`mfg_twin_webhook_deliveries_total{result="failed"}`), and a
notice that finds the queue full is dropped and counted the same way (`dropped`). A receiver
may see a notice twice (its answer was lost); `notice_id` is the same on every attempt.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from typing import Any

from integration.alerting import AlertKind, AlertNotice
from integration.service.metrics import ServiceMetrics

__all__ = ["Webhook", "notice_body"]

_log = logging.getLogger("integration.service.webhook")


def notice_body(notice: AlertNotice) -> dict[str, Any]:
    """The JSON a receiver gets: the notice (rule, state, value, since, at, subjects with
    their business and correlation ids), the dead letters it names, and a stable id."""
    dead_letters = notice.rule.kind is AlertKind.DEAD_LETTERS
    return notice.to_dict() | {
        "notice_id": f"{notice.rule.name}/{notice.since.isoformat()}/{notice.state.value}",
        "dead_letter_ids": [int(s.ref) for s in notice.subjects] if dead_letters else [],
    }


class Webhook:
    """Delivers notices to `url` (see the module docstring). `run` is the delivery task."""

    def __init__(
        self,
        url: str,
        metrics: ServiceMetrics,
        *,
        attempts: int = 6,
        first_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        timeout_s: float = 5.0,
        capacity: int = 1000,
    ) -> None:
        self.url, self.metrics = url, metrics
        self.attempts, self.first_delay_s, self.max_delay_s = attempts, first_delay_s, max_delay_s
        self.timeout_s = timeout_s
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(capacity)

    def send(self, notice: AlertNotice) -> None:
        """Queue a notice for delivery; never waits."""
        try:
            self._queue.put_nowait(notice_body(notice))
        except asyncio.QueueFull:
            self.metrics.webhook_deliveries.labels("dropped").inc()
            _log.error("webhook queue full: dropped the %s notice of %s",
                       notice.state.value, notice.rule.name)  # fmt: skip

    async def run(self) -> None:
        """Deliver queued notices, in order, for ever."""
        while True:
            body = await self._queue.get()
            await self._deliver(json.dumps(body).encode(), body["notice_id"])

    async def _deliver(self, payload: bytes, notice_id: str) -> None:
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(min(self.first_delay_s * 2 ** (attempt - 1), self.max_delay_s))
            failure = await asyncio.to_thread(self._post, payload)
            if failure is None:
                self.metrics.webhook_deliveries.labels("delivered").inc()
                return
            _log.warning("webhook attempt %d for %s failed: %s", attempt + 1, notice_id, failure)
        self.metrics.webhook_deliveries.labels("failed").inc()
        _log.error("webhook gave up on %s after %d attempts", notice_id, self.attempts)

    def _post(self, payload: bytes) -> str | None:
        """One POST; None when the receiver answered 2xx, else what went wrong."""
        request = urllib.request.Request(
            self.url,
            data=payload,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "mfg-twin-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                return None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
        except urllib.error.HTTPError as error:
            return f"HTTP {error.code}"
        except (urllib.error.URLError, OSError, ValueError) as error:
            return str(error)
