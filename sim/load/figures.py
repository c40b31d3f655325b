"""What a load run measures about itself, apart from the business measures of `sim.model.measures`:
latency from the intended send time (corrected for coordinated omission) and from the actual
send (uncorrected), late sends, retries, refusals, achieved rate and event-loop lag."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

__all__ = ["LoadFigures"]

MAX_US = 3_600 * 1_000_000  # an hour, in microseconds
PERCENTILES = {"p50": 50, "p90": 90, "p99": 99, "p99_9": 99.9}
LATE_SHARE_LIMIT = 0.01  # more late sends than this and the driver fell behind


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, MAX_US, 3)


def _micros(seconds: float) -> int:
    return min(max(1, round(seconds * 1_000_000)), MAX_US)


def _millis(histogram: HdrHistogram) -> dict[str, Any]:
    count = histogram.get_total_count()
    figures: dict[str, Any] = {"count": count}
    for name, percentile in PERCENTILES.items():
        value = histogram.get_value_at_percentile(percentile) if count else 0
        figures[name] = round(value / 1000, 3)
    figures["max"] = round(histogram.get_max_value() / 1000, 3) if count else 0
    return figures


class LoadFigures:
    """Fed by the driver with wall-clock seconds (the event loop's monotonic clock)."""

    def __init__(self, late_after_s: float) -> None:
        self.late_after_s = late_after_s
        self.corrected: dict[str, HdrHistogram] = {}
        self.uncorrected: dict[str, HdrHistogram] = {}
        self.loop_lag = _histogram()
        self.scheduled = 0
        self.started = 0
        self.late = 0
        self.answered = 0
        self.retries: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.parked = 0
        self.first_intended: float | None = None
        self.last_intended = 0.0
        self.first_start: float | None = None
        self.last_start = 0.0

    def start(self, intended: float, actual: float) -> None:
        """A delivery's first attempt began at `actual`; it was due at `intended`."""
        self.started += 1
        if actual - intended > self.late_after_s:
            self.late += 1
        if self.first_start is None:
            self.first_start = actual
        self.last_start = max(self.last_start, actual)

    def schedule(self, intended: float) -> None:
        self.scheduled += 1
        if self.first_intended is None:
            self.first_intended = intended
        self.last_intended = max(self.last_intended, intended)

    def answer(self, workflow: str, intended: float, started: float, now: float) -> None:
        """An answer came at `now` for a delivery due at `intended` and first sent at `started`."""
        self.answered += 1
        if workflow not in self.corrected:
            self.corrected[workflow] = _histogram()
            self.uncorrected[workflow] = _histogram()
        self.corrected[workflow].record_value(_micros(now - intended))
        self.uncorrected[workflow].record_value(_micros(now - started))

    def lag(self, seconds: float) -> None:
        self.loop_lag.record_value(_micros(max(seconds, 0.0)))

    def _rate(self, count: int, first: float | None, last: float) -> float:
        span = last - first if first is not None else 0.0
        return round(count / span, 1) if span > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        late_share = self.late / self.started if self.started else 0.0
        return {
            "sends": {
                "scheduled": self.scheduled,
                "started": self.started,
                "answered": self.answered,
                "late": self.late,
                "late_share": round(late_share, 5),
                "late_after_ms": round(self.late_after_s * 1000, 3),
            },
            "rate_per_s": {
                "scheduled": self._rate(self.scheduled, self.first_intended, self.last_intended),
                "achieved": self._rate(self.started, self.first_start, self.last_start),
            },
            "fell_behind": late_share > LATE_SHARE_LIMIT,
            "retries": dict(sorted(self.retries.items())),
            "refused": dict(sorted(self.refused.items())),
            "parked": self.parked,
            "loop_lag_ms": _millis(self.loop_lag),
            "latency_ms": {
                workflow: {
                    "corrected": _millis(self.corrected[workflow]),
                    "uncorrected": _millis(self.uncorrected[workflow]),
                }
                for workflow in sorted(self.corrected)
            },
        }
