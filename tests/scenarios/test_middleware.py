"""The pipes between floor and ERP (docs/architecture.md, Faults): outages, rate
limits, crashes before and after commit, loss with redelivery, the synchronous pattern with
timeouts, a full buffer. Each happens, and none of them costs exactly-once."""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import datetime

import pytest

from integration import ConfigurationError
from tests.scenarios import harness


def _max_latency(summary) -> int:
    return max(figures["max"] for figures in summary["latency_ms"].values())


def _safe(summary) -> None:
    assert summary["duplicates"]["posted"] == 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert summary["ledger"]["balanced"] is True
    assert summary["ledger"]["reconciled"] is True


def test_an_outage_delays_postings_until_the_erp_is_back():
    calm = harness.summary()
    down = harness.summary("faults.outages=[{at: 4h, duration: 1h}]")
    assert down["coverage"]["outage"] > 0
    assert calm["coverage"].get("outage", 0) == 0
    # Confirmations that arrived in the outage waited for its end.
    assert down["latency_ms"]["confirmation"]["max"] >= 30 * 60 * 1000
    assert down["latency_ms"]["confirmation"]["p99"] > calm["latency_ms"]["confirmation"]["p99"]
    assert _max_latency(down) > _max_latency(calm)
    assert down["outcomes"]["POSTED"] == calm["outcomes"]["POSTED"]
    _safe(down)


def test_a_rate_limited_erp_answers_429_and_the_sender_retries():
    summary = harness.summary("integration.rate_limit=0.5")
    assert summary["coverage"]["rate_limited"] > 0
    assert summary["outcomes"]["POSTED"] == harness.summary()["outcomes"]["POSTED"]
    _safe(summary)


def _submission_times(limit: str) -> list[float]:
    overrides = [
        f"integration.rate_limit={limit}",
        "integration.service_time={kind: constant, mean: 0s}",
    ]
    run, target, _trace = harness.recorded(overrides)
    start = harness.scenario(overrides).start
    assert run.summary["coverage"]["rate_limited"] > 0  # the limit was reached
    return sorted((at - start).total_seconds() for at, _env, _outcome in target.submitted)


def test_the_erp_never_takes_more_calls_than_its_rate_limit():
    times = _submission_times("2")
    window = 10.0
    # a fixed window may let one extra second in
    assert harness.busiest(times, window) <= 2 * window + 2


def test_a_rate_limit_below_one_call_per_second_is_honoured():
    times = _submission_times("0.5")
    window = 10.0
    assert harness.busiest(times, window) <= math.ceil(0.5 * window) + 1


def test_a_consumer_crash_before_commit_is_redelivered_without_a_duplicate():
    calm = harness.summary()
    summary = harness.summary("faults.crash_before_commit_rate=0.1")
    assert summary["coverage"]["crash"] > 0
    assert summary["duplicates"]["delivered"] == 0  # never committed, so never seen twice
    assert summary["outcomes"]["POSTED"] == calm["outcomes"]["POSTED"]
    _safe(summary)


def test_a_consumer_crash_after_commit_redelivers_a_duplicate_the_core_refuses():
    summary = harness.summary("faults.crash_after_commit_rate=0.1")
    assert summary["coverage"]["crash"] > 0
    assert summary["duplicates"]["delivered"] > 0
    assert summary["duplicates"]["detected"] == summary["duplicates"]["delivered"]
    assert summary["outcomes"]["DUPLICATE"] == summary["duplicates"]["delivered"]
    _safe(summary)


def test_a_lost_message_is_redelivered_and_nothing_is_lost():
    calm = harness.summary()
    summary = harness.summary("faults.loss_rate=0.2", "faults.redelivery_after=30s")
    assert summary["coverage"]["loss"] > 0
    assert summary["outcomes"]["POSTED"] == calm["outcomes"]["POSTED"]
    assert summary["dead_letters"]["remaining"] == calm["dead_letters"]["remaining"]
    assert _max_latency(summary) >= 30 * 1000  # a lost copy arrives after the redelivery delay
    _safe(summary)


SYNC = (
    "integration.pattern=sync",
    "integration.consumers=2",
    "integration.timeout=1s",
    "integration.service_time={kind: exponential, mean: 500ms}",
)


def test_sync_timeouts_after_commit_are_duplicates_the_core_detects():
    summary = harness.summary(*SYNC)
    assert summary["coverage"]["timeout"] > 0
    assert summary["duplicates"]["delivered"] > 0
    assert summary["duplicates"]["detected"] == summary["duplicates"]["delivered"]
    # Some retries carry a new message id with the same key: more messages than events.
    assert summary["events"]["messages"] > summary["events"]["truth"]
    _safe(summary)


def test_sync_with_a_patient_mes_has_no_timeouts():
    summary = harness.summary(*SYNC[:2], "integration.timeout=1m")
    assert summary["coverage"].get("timeout", 0) == 0
    assert summary["duplicates"]["delivered"] == 0


def test_a_full_buffer_refuses_and_the_sender_retries():
    buffer = 2
    run = harness.run(
        f"integration.buffer={buffer}",
        "integration.consumers=1",
        "integration.service_time={kind: constant, mean: 30s}",
    )
    summary = run.summary
    assert summary["coverage"]["buffer_full"] > 0
    assert max(sample["queue_depth"] for sample in run.series) <= buffer
    assert summary["outcomes"]["POSTED"] == harness.summary()["outcomes"]["POSTED"]
    _safe(summary)


def _copies_per_message(*overrides: str) -> Counter[str]:
    """How often the core received each message id."""
    _run, target, _trace = harness.recorded(overrides)
    return Counter(envelope.message_id for _at, envelope, _outcome in target.submitted)


DUPLICATED = "faults.duplicate_rate=0.3"


def test_a_duplicated_message_gets_as_many_copies_as_the_distribution_draws():
    twice = harness.summary(DUPLICATED)
    thrice = harness.summary(DUPLICATED, "faults.duplicate_copies={3: 1}")
    # The same messages are duplicated (their own stream), each now with two extra copies.
    assert thrice["duplicates"]["delivered"] == 2 * twice["duplicates"]["delivered"] > 0
    _safe(thrice)
    mixed = harness.summary(DUPLICATED, "faults.duplicate_copies={2: 0.5, 5: 0.5}")
    _safe(mixed)


def test_the_number_of_copies_is_drawn_apart_from_whether_a_message_is_duplicated():
    default = _copies_per_message(DUPLICATED)
    mixed = _copies_per_message(DUPLICATED, "faults.duplicate_copies={2: 0.5, 5: 0.5}")
    assert sorted(Counter(mixed.values())) == [1, 2, 5]
    duplicated = {message_id for message_id, copies in default.items() if copies > 1}
    assert {message_id for message_id, copies in mixed.items() if copies > 1} == duplicated


@pytest.mark.parametrize(
    ("copies", "problem"),
    [
        ("{1: 1}", "duplicate_copies.1.[key]: Input should be greater than or equal to 2"),
        ("{2: 0}", "duplicate_copies.2: Input should be greater than 0"),
        ("{}", "should have at least 1 item"),
    ],
)
def test_duplicate_copies_are_two_or_more_with_positive_weights(copies, problem):
    with pytest.raises(ConfigurationError, match=re.escape(problem)):
        harness.scenario([f"faults.duplicate_copies={copies}"])


# One consumer and no network spread: without the reorder fault, every stream arrives in order.
IN_ORDER = ("integration.consumers=1", "faults.network_delay={kind: constant, mean: 0s}")


def _overtaken(*overrides: str) -> list[float]:
    """For each message the core received after a later one of its stream: the seconds
    between the two."""
    _run, target, _trace = harness.recorded(overrides)
    latest: dict[str, tuple[int, datetime]] = {}
    gaps = []
    for at, envelope, _outcome in target.submitted:
        if envelope.stream is None:
            continue
        seq, seen_at = latest.get(envelope.stream, (0, at))
        if envelope.source_seq < seq:
            gaps.append((at - seen_at).total_seconds())
        else:
            latest[envelope.stream] = (envelope.source_seq, at)
    return gaps


def test_the_reorder_fault_holds_a_message_back_behind_the_next_one_of_its_stream():
    assert _overtaken(*IN_ORDER) == []
    gaps = _overtaken(*IN_ORDER, "faults.reorder_rate=0.2")
    assert len(gaps) > 10
    assert max(gaps) < 60  # each went out right behind the one that overtook it
    calm = harness.summary(*IN_ORDER)
    summary = harness.summary(*IN_ORDER, "faults.reorder_rate=0.2")
    assert summary["coverage"]["reorder"] > calm["coverage"]["reorder"] == 0
    assert summary["outcomes"]["POSTED"] == calm["outcomes"]["POSTED"]
    assert summary["heal"] == {"unsent": 0, "in_flight": 0}
    _safe(summary)
