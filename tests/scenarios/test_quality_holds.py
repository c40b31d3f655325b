"""The `quality` error class (README, Operations and governance): QC holds received lots
(`edge_cases.quality_hold_rate`), the floor still draws on them and the core refuses those
backflushes LOT_ON_HOLD. Operators have quality release the lot and replay its letters by
code and lot; MTTD and MTTR equal the arithmetic of the alert interval and the response and
fix times. Without operators, the heal phase releases and replays, and the books still end
equal to the truth. Runs are deterministic and a rebuild from the trace agrees."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import pytest

from integration import Status
from sim.model.operators import POLL
from sim.run.rebuild import rebuild
from sim.run.runner import simulate
from sim.run.session import run_scenario
from tests.scenarios import harness

INTERVAL_S, RESPONSE_S, FIX_S = 7 * 60.0, 10 * 60.0, 20 * 60.0
HELD = "LOT_ON_HOLD"
# One failure class: every received lot is held (products all have a lot-controlled line), no
# ECOs or missing lots; no reporting, transit, service or posting time, so a release posts when
# it is sent.
CONSTRUCTED = (
    "products.alternates_share=1",
    "edge_cases.ecos_per_week=0",
    "edge_cases.missing_lot_rate=0",
    "edge_cases.quality_hold_rate=1",
    "edge_cases.receipt_posting_delay={kind: constant, mean: 0s}",
    "mes.report_delay={kind: constant, mean: 0s}",
    "faults.network_delay={kind: constant, mean: 0s}",
    "integration.service_time={kind: constant, mean: 0s}",
    "operations.interval=7m",
    "operations.staffing=50",
    "operations.alerts=[{name: held-lots, kind: dead_letters, code: LOT_ON_HOLD}]",
    "operations.response.quality={kind: constant, mean: 10m}",
    "operations.fix.quality={kind: constant, mean: 20m}",
)
ALERTING = ("operations.enabled=true", *CONSTRUCTED)
SILENT = ("operations.enabled=false", *CONSTRUCTED)


def _openings(overrides) -> tuple[dict, float, dict[str, list[float]]]:
    """The summary, the horizon and, from the harness's own record of the core's answers, when
    each event whose first failure was a held lot failed, grouped by that lot."""
    run, _target, trace = harness.recorded(overrides)
    envelopes = {envelope.message_id: envelope for _t, _event, envelope in trace.messages}
    first: dict[int, tuple[float, str, str]] = {}
    applied: set[int] = set()
    for now, event, outcome in trace.outcomes:
        if outcome.status is Status.POSTED:
            applied.add(event)
        elif outcome.status in (Status.HELD, Status.REJECTED) and event not in applied:
            problem = outcome.problems[0]
            lots = getattr(envelopes[outcome.message_id].message, "component_lots", {})
            lot = lots.get(problem.field.removeprefix("component_lots."), "")
            first.setdefault(event, (now, problem.code.value, lot))
    by_lot: dict[str, list[float]] = defaultdict(list)
    for t, code, lot in first.values():
        if code == HELD:
            by_lot[lot].append(t)
    horizon = harness.scenario(overrides).horizon.total_seconds()
    return run.summary, horizon, dict(by_lot)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_mttd_and_mttr_of_held_lots_equal_the_arithmetic_of_interval_response_and_fix():
    summary, horizon, by_lot = _openings(ALERTING)
    detections, repairs = [], []
    for openings in by_lot.values():
        # the lot's first failure is detected at the next evaluation; its operator has quality
        # release the lot and replays every letter of it (once the release posted, a poll on)
        first_detected = math.ceil(min(openings) / INTERVAL_S) * INTERVAL_S
        released = first_detected + RESPONSE_S + FIX_S + POLL
        assert released < horizon  # the arithmetic holds for incidents closed before it
        for t in openings:
            detected = math.ceil(t / INTERVAL_S) * INTERVAL_S
            if detected < released:  # else it closed before an evaluation saw it
                detections.append(detected - t)
            repairs.append(released - t)
    held = summary["governance"]["by_code"][HELD]
    assert len(by_lot) >= 3 and held["incidents"] == len(repairs) > len(by_lot)
    assert held["mttd"]["count"] == len(detections)
    assert held["mttd"]["mean_s"] == pytest.approx(_mean(detections), abs=1e-3)
    assert held["mttr"]["count"] == len(repairs)
    assert held["mttr"]["mean_s"] == pytest.approx(_mean(repairs), abs=1e-3)
    assert held["open_at_end"] == 0
    governance = summary["governance"]
    assert governance["fixes"] == {"quality": len(by_lot)}  # one release per lot
    assert governance["replays"]["by_operators"] == len(repairs)
    assert summary["coverage"]["quality_hold"] >= len(by_lot)
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert summary["dead_letters"]["remaining"] == 0


def test_with_operations_off_held_lots_are_found_and_released_only_at_the_heal_phase():
    summary, horizon, by_lot = _openings(SILENT)
    governance = summary["governance"]
    held = governance["by_code"][HELD]
    openings = [t for times in by_lot.values() for t in times]
    assert len(openings) >= 5 and held["incidents"] == len(openings)
    assert held["mttd"]["mean_s"] == pytest.approx(_mean([horizon - t for t in openings]), abs=1e-3)
    assert governance["incidents"]["detected_by_alert"] == 0
    assert governance["alerts"] == {} and governance["fixes"] == {}
    # the heal phase releases every held lot and replays: all closed, after the horizon
    assert held["open_at_end"] == 0 and held["mttr"]["count"] == len(openings)
    assert held["mttr"]["mean_s"] > _mean([horizon - t for t in openings])
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert summary["dead_letters"]["remaining"] == 0
    alerting = harness.summary(*ALERTING)["governance"]["by_code"][HELD]
    assert alerting["mttr"]["mean_s"] < INTERVAL_S + RESPONSE_S + FIX_S + POLL
    assert held["mttr"]["mean_s"] > 10 * alerting["mttr"]["mean_s"]


def test_the_quality_fix_runs_the_same_over_http():
    in_process = harness.summary(*ALERTING)
    over_http = harness.over_http(harness.scenario(ALERTING))
    assert over_http["governance"]["fixes"] == in_process["governance"]["fixes"]
    assert over_http["governance"]["replays"] == in_process["governance"]["replays"]
    assert over_http["drift"]["final_unexplained_value"] == "0.00"


def test_the_same_seed_gives_the_same_figures_and_a_rebuild_agrees(tmp_path: Path):
    source = harness.write_scenario(tmp_path / "small.yaml", harness.document())
    done = run_scenario(source, ALERTING, out_dir=tmp_path / "run", progress=False)
    assert done.summary["governance"]["fixes"]["quality"] > 0
    again = simulate(harness.scenario(ALERTING)).summary
    assert harness.without_run(done.summary) == harness.without_run(again)
    assert harness.without_run(rebuild(done.out).summary) == harness.without_run(done.summary)
