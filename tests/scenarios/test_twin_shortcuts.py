"""The twin's own shortcuts behave as the long way round: latencies recorded into the
histograms in batches give the histograms, summary and series of one `record_value` per value;
queue consumers counted instead of run as processes still serve one message each at a time."""

from __future__ import annotations

import pytest
from hdrh.histogram import HdrHistogram

import sim.run.runner
from sim.model import measures as measures_module
from sim.model.measures import MAX_MS, Measures
from sim.scenario.vocabulary import PARTS
from tests.scenarios import harness

FAULTY = (
    harness.REORDERING,
    "faults.duplicate_rate=0.1",
    "faults.crash_after_commit_rate=0.05",
    "edge_cases.missing_lot_rate=0.2",
    "measures.sample_interval=2h",
    "measures.warmup=1h",
)


def _reference() -> HdrHistogram:
    return HdrHistogram(1, MAX_MS, 3)


def _record(histogram: HdrHistogram, seconds: float) -> None:
    histogram.record_value(min(max(1, round(seconds * 1000)), MAX_MS))


class PerValue(Measures):
    """Measures that also keep reference histograms the way they were kept before batching:
    the latency and its parts worked out from `_apply`'s own arguments, one `record_value`
    per value, and the interval histogram read and reset at each sample."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reference: dict[str, dict[str, HdrHistogram]] = {}
        self.reference_interval = _reference()
        self.reference_p99: list[int] = []

    def _apply(self, outcome, event, now, queued, parked_at) -> None:
        first = self._applied[event.id - 1] == 0
        super()._apply(outcome, event, now, queued, parked_at)
        if not first or event.occurred_at < self.warmup_s:
            return
        total = max(0.0, now - event.occurred_at)
        report = max(0.0, min(total, event.sent_at - event.occurred_at))
        hold = max(0.0, now - parked_at) if parked_at is not None else 0.0
        seconds = {"total": total, "report": report, "queue": queued, "hold": hold}
        seconds["transport"] = max(0.0, total - report - queued - hold)
        histograms = self.reference.setdefault(
            event.workflow, {name: _reference() for name in ("total", *PARTS)}
        )
        for name, value in seconds.items():
            _record(histograms[name], value)
        _record(self.reference_interval, total)

    def sample(self, now, queue_depth, drift_value, exceptions) -> None:
        interval = self.reference_interval
        count = interval.get_total_count()
        self.reference_p99.append(interval.get_value_at_percentile(99) if count else 0)
        interval.reset()
        super().sample(now, queue_depth, drift_value, exceptions)


@pytest.mark.parametrize("batch", [7, measures_module.BATCH])
def test_batched_histograms_equal_one_record_per_value(monkeypatch, batch):
    monkeypatch.setattr(sim.run.runner, "Measures", PerValue)
    monkeypatch.setattr(measures_module, "BATCH", batch)  # 7: flushes inside intervals too
    run = sim.run.runner.simulate(harness.scenario(FAULTY))
    measures = run.measures
    assert isinstance(measures, PerValue)
    assert sum(h["total"].get_total_count() for h in measures.reference.values()) > 100
    encoded = measures.encoded_histograms()
    assert sorted(encoded) == sorted(measures.reference)
    for workflow, histograms in measures.reference.items():
        for name, histogram in histograms.items():
            assert encoded[workflow][name] == histogram.encode().decode(), (workflow, name)
    summary = run.summary["latency_ms"]
    for workflow, histograms in measures.reference.items():
        for name, histogram in histograms.items():
            figures = summary[workflow] if name == "total" else summary[workflow]["parts"][name]
            assert figures["count"] == histogram.get_total_count()
            assert figures["p99"] == histogram.get_value_at_percentile(99)
            assert figures["max"] == histogram.get_max_value()
    assert [row["p99_ms"] for row in run.series] == measures.reference_p99
    assert any(measures.reference_p99)


def test_a_wrong_value_shows_in_the_comparison():
    """Negative control: one value more in a reference histogram changes its encoding."""
    batched, per_value = Measures(), _reference()
    batched._latencies("receipt", 1.5, (0.5, 1.0, 0.0, 0.0))
    _record(per_value, 1.5)
    assert batched.encoded_histograms()["receipt"]["total"] == per_value.encode().decode()
    _record(per_value, 1.5)
    assert batched.encoded_histograms()["receipt"]["total"] != per_value.encode().decode()


@pytest.mark.parametrize("consumers", [1, 3])
def test_each_consumer_serves_one_message_at_a_time(consumers):
    service = 30.0
    overrides = [
        f"integration.consumers={consumers}",
        f"integration.service_time={{kind: constant, mean: {service:g}s}}",
    ]
    _run, target, _trace = harness.recorded(overrides)
    start = harness.scenario(overrides).start
    times = sorted((at - start).total_seconds() for at, _envelope, _outcome in target.submitted)
    # A submission ends a service: within less than one service time, each consumer ends
    # at most one, and a busy broker keeps them all busy.
    assert harness.busiest(times, service - 1e-6) == consumers
