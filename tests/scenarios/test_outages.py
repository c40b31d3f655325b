"""Outages per system and plant (README, Faults in the pipes): a source that is down keeps its
messages in its outbox, the ERP down also stops its own traffic, the middleware down moves
nothing; an outage without a system is the ERP endpoint's alone, as it always was."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from integration import ConfigurationError
from sim.load.schedule import Schedule, make_schedule
from sim.run.runner import Run, simulate
from tests.scenarios import harness

HOUR = harness.HOUR
DOWN_FROM, DOWN_TO = 4 * HOUR, 6 * HOUR


def _outage(**scope: str) -> str:
    fields = "".join(f", {key}: {value}" for key, value in scope.items())
    return f"faults.outages=[{{at: 4h, duration: 2h{fields}}}]"


def _recorded(*overrides: str, base: dict[str, Any] | None = None):
    trace = harness.RecordingTrace()
    return simulate(harness.scenario(overrides, base), trace=trace), trace


def _arrivals(trace: harness.RecordingTrace) -> dict[tuple[str, str], Counter[int]]:
    """The arrival series: messages handed to the middleware per hour, by (plant, source)."""
    series: dict[tuple[str, str], Counter[int]] = {}
    for now, event_id, envelope in trace.messages:
        key = (trace.truth_events[event_id].plant, envelope.source_system.value)
        series.setdefault(key, Counter())[int(now // HOUR)] += 1
    return series


def _in_window(series: Counter[int]) -> int:
    return sum(n for hour, n in series.items() if DOWN_FROM <= hour * HOUR < DOWN_TO)


def _answered_in_window(trace: harness.RecordingTrace, grace: float = 0.0) -> list[float]:
    """When the core answered inside the window (after `grace` seconds of it)."""
    return [now for now, _event, _outcome in trace.outcomes if DOWN_FROM + grace <= now < DOWN_TO]


def _safe(run: Run) -> None:
    summary = run.summary
    assert summary["duplicates"]["posted"] == 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert summary["ledger"]["reconciled"] is True
    assert summary["heal"] == {"unsent": 0, "in_flight": 0}
    assert summary["outcomes"]["POSTED"] == harness.summary()["outcomes"]["POSTED"]


def test_an_erp_outage_stops_the_erps_traffic_while_mes_confirmations_keep_flowing():
    run, trace = _recorded(_outage(system="ERP"))
    series = _arrivals(trace)
    erp, mes = series["LYON", "ERP"], series["LYON", "MES"]
    assert _in_window(erp) == 0
    assert _in_window(mes) > 0
    assert erp[int(DOWN_TO // HOUR)] > 0  # the ERP's outbox goes out when it is back
    # ... and the ERP, down as a receiver too, answered 503 to what the MES sent meanwhile.
    assert not _answered_in_window(trace)
    assert run.summary["coverage"]["outage"] > 0
    _safe(run)


def test_an_outage_without_a_system_stops_only_the_erp_endpoint_as_before():
    run, trace = _recorded("faults.outages=[{at: 4h, duration: 2h}]")
    assert _in_window(_arrivals(trace)["LYON", "ERP"]) > 0  # the ERP still sends
    assert run.summary["coverage"]["outage"] > 0
    assert run.summary["latency_ms"]["confirmation"]["max"] >= HOUR * 1000
    _safe(run)


def _two_plants() -> dict[str, Any]:
    document = harness.document()
    paris = {**document["plants"][0], "id": "PARIS"}
    document["plants"] = [document["plants"][0], paris]
    return document


def test_a_plant_scoped_mes_outage_stops_only_that_plants_mes():
    run, trace = _recorded(_outage(system="MES", plant="LYON"), base=_two_plants())
    series = _arrivals(trace)
    assert _in_window(series["LYON", "MES"]) == 0
    assert _in_window(series["PARIS", "MES"]) > 0
    assert _in_window(series["LYON", "ERP"]) > 0  # LYON's other systems carry on
    assert series["LYON", "MES"][int(DOWN_TO // HOUR)] > 0  # the outbox drains at the end
    assert run.summary["coverage"]["outage"] > 0  # messages waited in the outbox
    summary = run.summary
    assert summary["duplicates"]["posted"] == 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    calm = simulate(harness.scenario(base=_two_plants())).summary
    assert summary["outcomes"]["POSTED"] == calm["outcomes"]["POSTED"]


def test_a_source_outage_costs_latency_but_no_503():
    run, trace = _recorded(_outage(system="MES"))
    assert _in_window(_arrivals(trace)["LYON", "MES"]) == 0
    assert _answered_in_window(trace)  # the ERP stayed up and answered the others
    latency = run.summary["latency_ms"]["confirmation"]
    assert latency["parts"]["report"]["max"] >= HOUR * 1000  # the wait was in the outbox
    assert latency["parts"]["queue"]["max"] < 60 * 1000  # ... not at a refusing ERP
    _safe(run)


def test_a_middleware_outage_moves_nothing_until_it_is_back():
    run, trace = _recorded(harness.REORDERING, _outage(system="middleware"))
    series = _arrivals(trace)
    assert all(_in_window(counts) == 0 for counts in series.values())
    assert not _answered_in_window(trace)
    # Copies on their way when it went down were refused, not queued: the broker held nothing.
    assert [row["queue_depth"] for row in run.series if DOWN_FROM < row["t_s"] < DOWN_TO] == [0]
    assert sum(counts[int(DOWN_TO // HOUR)] for counts in series.values()) > 0
    assert run.summary["duplicates"]["posted"] == 0
    assert run.summary["drift"]["final_unexplained_value"] == "0.00"
    calm = harness.summary(harness.REORDERING)
    assert run.summary["outcomes"]["POSTED"] == calm["outcomes"]["POSTED"]


def test_a_middleware_outage_keeps_the_brokers_backlog_until_it_is_back():
    service = 4 * 60
    slow = (
        "integration.consumers=1",
        f"integration.service_time={{kind: constant, mean: {service}s}}",
    )
    run, trace = _recorded(*slow, _outage(system="middleware"))
    calm = simulate(harness.scenario(slow))

    def depth(result: Run, hour: int) -> int:  # the most waiting since the sample before
        return next(row["queue_depth"] for row in result.series if row["t_s"] == hour * HOUR)

    # Down: nothing is published into the queue and the one consumer takes at most one more
    # message, so the queue neither fills nor drains; back: what the publishers held arrives.
    assert depth(run, 5) - depth(run, 6) <= 1 and depth(run, 6) > 0
    assert depth(run, 6) < depth(calm, 6) and depth(run, 7) > 2 * depth(calm, 7)
    # The call in progress when it went down ends; then the consumer gets nothing more.
    assert not _answered_in_window(trace, grace=service)
    assert run.summary["duplicates"]["posted"] == 0


@pytest.mark.parametrize("system", ["ERP", "middleware", "MES"])
def test_an_outage_ends_at_the_horizon_so_the_heal_phase_delivers_everything(system):
    crossing = f"faults.outages=[{{at: 22h, duration: 10h, system: {system}}}]"
    run = simulate(harness.scenario([crossing, harness.REORDERING, "measures.heal=2h"]))
    assert run.summary["heal"] == {"unsent": 0, "in_flight": 0}
    assert run.summary["drift"]["final_undelivered_messages"] == 0
    _safe(run)


def test_a_middleware_outage_under_the_sync_pattern_fails_calls_in_flight():
    sync = ("integration.pattern=sync", "integration.timeout=10m", harness.REORDERING)
    run, trace = _recorded(*sync, _outage(system="middleware"))
    assert harness.summary(*sync)["coverage"]["retry"] == 0
    assert run.summary["coverage"]["retry"] > 0  # calls on their way failed, the MES retried
    assert not _answered_in_window(trace)
    assert run.summary["duplicates"]["posted"] == 0
    assert run.summary["drift"]["final_unexplained_value"] == "0.00"
    assert run.summary["outcomes"]["POSTED"] == harness.summary(*sync)["outcomes"]["POSTED"]


def _sent_at(schedule: Schedule, source: str) -> list[float]:
    return [send.at for send in schedule.sends if send.envelope.source_system.value == source]


def test_a_load_schedule_keeps_the_sources_outages_and_leaves_the_middlewares_to_the_target():
    calm = make_schedule(harness.scenario())
    mes_down = make_schedule(harness.scenario([_outage(system="MES")]))
    assert [t for t in _sent_at(calm, "MES") if DOWN_FROM <= t < DOWN_TO]
    assert not [t for t in _sent_at(mes_down, "MES") if DOWN_FROM <= t < DOWN_TO]
    assert mes_down.coverage["outage"] > 0
    middleware_down = make_schedule(harness.scenario([_outage(system="middleware")]))
    assert [s.at for s in middleware_down.sends] == [s.at for s in calm.sends]


@pytest.mark.parametrize(
    ("outage", "problem"),
    [
        ("{at: 1h, duration: 1h, system: ERP, plant: LYON}", "only MES and WMS outages name a"),
        ("{at: 1h, duration: 1h, system: MES, plant: PARIS}", "does not have: ['PARIS']"),
        ("{at: 1h, duration: 1h, system: broker}", "faults.outages.0.system"),
    ],
)
def test_an_outage_names_a_known_system_and_only_a_plant_it_can_be_at(outage, problem):
    with pytest.raises(ConfigurationError, match=re.escape(problem)):
        harness.scenario([f"faults.outages=[{outage}]"])
