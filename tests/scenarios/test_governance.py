"""Operators and the governance figures (README, Operations and governance): MTTD and MTTR
equal the arithmetic of a constructed scenario; with alerting off nothing is detected before
the heal phase; the figures reach the report and serve as sweep metrics; a rebuild from the
trace gives the same section."""

from __future__ import annotations

import csv
import math
from decimal import Decimal
from pathlib import Path

import pytest

from integration import DeadLetterFilter, Status, open_store
from sim.model.operators import Operators
from sim.run.rebuild import rebuild
from sim.run.runner import simulate
from sim.run.session import run_scenario
from sim.scenario.document import load_scenario
from sim.sweep.session import sweep_scenario
from tests.scenarios import harness

INTERVAL_S, RESPONSE_S, FIX_S = 7 * 60.0, 10 * 60.0, 20 * 60.0
STALE = "REVISION_MISMATCH"
# One failure class: ECOs the MES adopts late (stale revisions, master_data); no transit or
# service time, so a corrected confirmation posts the moment it is sent; operators enough
# that nobody waits for one.
CONSTRUCTED = (
    "edge_cases.ecos_per_week=20",
    "faults.network_delay={kind: constant, mean: 0s}",
    "integration.service_time={kind: constant, mean: 0s}",
    "operations.interval=7m",
    "operations.staffing=50",
    "operations.alerts=[{name: stale-revisions, kind: dead_letters, code: REVISION_MISMATCH}]",
    "operations.response.master_data={kind: constant, mean: 10m}",
    "operations.fix.master_data={kind: constant, mean: 20m}",
)
ALERTING = ("operations.enabled=true", *CONSTRUCTED)
SILENT = ("operations.enabled=false", *CONSTRUCTED)


def _openings(overrides) -> tuple[dict, float, list[float]]:
    """The summary, the horizon and, from the harness's own record of the core's answers,
    when each event whose first failure was a stale revision failed."""
    run, _target, trace = harness.recorded(overrides)
    first: dict[int, tuple[float, str]] = {}
    applied: set[int] = set()
    for now, event, outcome in trace.outcomes:
        if outcome.status is Status.POSTED:
            applied.add(event)
        elif outcome.status in (Status.HELD, Status.REJECTED) and event not in applied:
            first.setdefault(event, (now, outcome.code.value))
    horizon = harness.scenario(overrides).horizon.total_seconds()
    return run.summary, horizon, [t for t, code in first.values() if code == STALE]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def test_mttd_and_mttr_equal_the_arithmetic_of_interval_response_and_fix():
    summary, horizon, openings = _openings(ALERTING)
    assert len(openings) >= 5
    # detected at the first evaluation after the failure (the heal phase at the horizon)
    detected = [min(math.ceil(t / INTERVAL_S) * INTERVAL_S, horizon) for t in openings]
    recovered = [d + RESPONSE_S + FIX_S for d in detected]
    closed = [(t, r) for t, r in zip(openings, recovered, strict=True) if r < horizon]
    stale = summary["governance"]["by_code"][STALE]
    assert stale["incidents"] == len(openings)
    assert stale["mttd"]["count"] == len(openings)
    assert stale["mttd"]["mean_s"] == pytest.approx(
        _mean([d - t for d, t in zip(detected, openings, strict=True)]), abs=1e-3
    )
    assert stale["mttr"]["count"] == len(closed) > 0
    assert stale["mttr"]["mean_s"] == pytest.approx(_mean([r - t for t, r in closed]), abs=1e-3)
    assert stale["open_at_end"] == len(openings) - len(closed)
    governance = summary["governance"]
    # an episode ends once every stale letter is corrected and the superseded one discarded
    assert set(governance["alerts"]) == {"stale-revisions"}
    assert 1 <= governance["alerts"]["stale-revisions"] <= len(openings)
    assert governance["fixes"]["master_data"] == len(closed)


def test_a_correction_discards_the_superseded_letter_so_no_replay_sends_it_again(tmp_path):
    """Before discards existed, the heal phase replayed the superseded confirmation after its
    correction had posted, and it came back as OVER_COMPLETION."""
    summary = simulate(harness.scenario(ALERTING), out=tmp_path).summary
    store = open_store(tmp_path / "ledger.db")
    try:
        discarded = store.dead_letters(DeadLetterFilter(status="discarded"))
        still_open = store.dead_letters(DeadLetterFilter())
    finally:
        store.close()
    assert len(discarded) == summary["governance"]["fixes"]["master_data"] > 0
    for letter in discarded:
        assert letter.code.value == STALE and letter.history[-1]["resolution"] == "discarded"
        assert letter.history[-1]["reason"] == (
            f"superseded by the corrected message {letter.message_id}-C"
        )
    assert {letter.code.value for letter in still_open} <= {STALE}
    by_code = summary["dead_letters"]["by_code"]
    assert "OVER_COMPLETION" not in by_code
    assert by_code.get(STALE, 0) == summary["governance"]["by_code"][STALE]["open_at_end"]
    over_http = harness.over_http(harness.scenario(ALERTING))
    assert over_http["dead_letters"] == summary["dead_letters"]
    assert over_http["governance"]["fixes"] == summary["governance"]["fixes"]


def test_with_alerting_off_nothing_is_detected_before_the_heal_phase():
    summary, horizon, openings = _openings(SILENT)
    governance = summary["governance"]
    stale = governance["by_code"][STALE]
    assert len(openings) >= 5 and stale["incidents"] == len(openings)
    assert stale["mttd"]["mean_s"] == pytest.approx(
        _mean([horizon - t for t in openings]), abs=1e-3
    )
    assert governance["incidents"]["detected_by_alert"] == 0
    assert governance["alerts"] == {} and governance["fixes"] == {}
    # the heal phase cannot fix a stale revision: every such incident is still open
    assert stale["open_at_end"] == len(openings) and stale["mttr"]["count"] == 0
    alerting = harness.summary(*ALERTING)["governance"]["by_code"][STALE]
    assert alerting["mttd"]["mean_s"] < INTERVAL_S < stale["mttd"]["mean_s"]
    # switched on without a rule is switched off
    no_rules = harness.summary("operations.enabled=true", *CONSTRUCTED[:-4])["governance"]
    assert no_rules == harness.summary(*SILENT[:-4])["governance"]


def test_the_same_seed_gives_the_same_governance_and_a_rebuild_agrees(tmp_path: Path):
    source = harness.write_scenario(tmp_path / "small.yaml", harness.document())
    done = run_scenario(source, ALERTING, out_dir=tmp_path / "run", progress=False)
    again = simulate(harness.scenario(ALERTING)).summary
    assert harness.without_run(done.summary) == harness.without_run(again)
    assert harness.without_run(rebuild(done.out).summary) == harness.without_run(done.summary)
    report = (done.out / "report.md").read_text(encoding="utf-8")
    assert "Operations and governance" in report
    mttr = done.summary["governance"]["mttr"]["mean_s"]
    assert "mean time to recover" in report and mttr > 0
    html = (done.out / "report.html").read_text(encoding="utf-8")
    assert "mean time to detect" in html


def test_governance_figures_are_sweep_metrics_with_confidence_intervals(tmp_path: Path):
    document = harness.document()
    document.update(horizon="12h", edge_cases={"ecos_per_week": 20})
    document["operations"] = {
        "enabled": True,
        "staffing": 50,
        "alerts": [{"name": "stale-revisions", "kind": "dead_letters", "code": STALE}],
    }
    path = harness.write_scenario(tmp_path / "ops.yaml", document)
    metric = f"governance.by_code.{STALE}.mttd.mean_s"
    outcome = sweep_scenario(
        path, ["operations.interval=5m,1h"], 2, [metric, "governance.mttr.mean_s"],
        out_dir=tmp_path / "sweep", progress=False, workers=1,
    )  # fmt: skip
    assert not outcome.result.failures
    with (tmp_path / "sweep" / "sweep.csv").open(encoding="utf-8") as rows:
        found = {
            row["operations.interval"]: row
            for row in csv.DictReader(rows)
            if row["metric"] == metric
        }
    assert set(found) == {"5m", "1h"}
    assert all(row["n"] == "2" and row["ci95_low"] and row["ci95_high"] for row in found.values())
    # evaluated more often, detected sooner
    assert float(found["5m"]["mean"]) < 5 * 60 < float(found["1h"]["mean"])


def test_operators_count_stock_and_replay_by_filter_in_process_and_over_http():
    """Book shortages (receipts posted hours after the floor used the parts, negative stock
    blocked): the warehouse counts, operators replay the shortages by filter through the
    Target port, and the books end equal to the truth, the same over HTTP."""
    overrides = (
        "horizon=12h",
        "integration.negative_stock=block",
        "edge_cases.receipt_posting_delay={kind: exponential, mean: 6h}",
        "operations.enabled=true",
        "operations.staffing=3",
        "operations.alerts=[{name: shortages, kind: dead_letters, code: BACKFLUSH_SHORTAGE}]",
    )
    scenario = harness.scenario(overrides)
    summary = simulate(scenario).summary
    governance = summary["governance"]
    assert governance["fixes"]["stock"] > 0
    assert 0 < governance["replays"]["by_operators"] <= governance["replays"]["total"]
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert governance["by_code"]["BACKFLUSH_SHORTAGE"]["mttd"]["mean_s"] < 5 * 60
    over_http = harness.over_http(scenario)["governance"]
    assert over_http["replays"] == governance["replays"]
    assert over_http["fixes"] == governance["fixes"]


REORDERED = ("horizon=12h", "faults.reorder_rate=0.05", "faults.reorder_hold=1h")


def test_a_hold_age_rule_detects_a_hold_between_its_age_and_one_interval_later():
    """Messages held back an hour in the pipes leave their successors held in the core."""
    rule = "{name: stuck, kind: hold_age, older_than: 10m}"
    on = ("operations.enabled=true", f"operations.alerts=[{rule}]", "operations.interval=5m")
    governance = harness.summary(*REORDERED, *on)["governance"]
    mttd = governance["mttd"]
    assert governance["alerts"] == {"stuck": 1} and mttd["count"] >= 1
    assert 10 * 60 < mttd["mean_s"] and mttd["p90_s"] <= 15 * 60


def test_success_rate_and_reconciliation_rules_fire_on_the_same_failures():
    rules = (
        "operations.alerts=[{name: degraded, kind: success_rate, message_type: "
        "OperationCompleted, below: 99, window: 2h, min_volume: 5}, "
        "{name: books, kind: reconciliation_exceptions}]"
    )
    governance = harness.summary(*REORDERED, "operations.enabled=true", rules)["governance"]
    assert set(governance["alerts"]) == {"degraded", "books"}
    # a floor of 99 % is never met: the rate rule stays firing from its first episode
    assert governance["alerts"]["degraded"] == 1
    silent = harness.summary(*REORDERED)["governance"]
    assert silent["alerts"] == {} and silent["incidents"]["detected_by_alert"] == 0


def test_a_missing_lot_is_corrected_by_the_lot_the_floor_holds_and_the_books_agree():
    """LOT_REQUIRED (master_data): the confirmation is sent again naming the lots; drift is
    kept per location, so the books end equal to the truth."""
    source = Path(__file__).resolve().parents[2] / "scenarios" / "operations_oncall.yaml"
    overrides = ["seed=9", "edge_cases.missing_lot_rate=0.05"]
    summary = simulate(load_scenario(source, overrides)).summary
    missing = summary["governance"]["by_code"]["LOT_REQUIRED"]
    assert missing["mttr"]["count"] > 0 and summary["governance"]["fixes"]["master_data"] > 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"


def test_a_stale_revision_correction_is_followed_by_a_count_and_the_books_agree(monkeypatch):
    """REVISION_MISMATCH (master_data): the confirmation is sent again on the order's own
    revision, whose quantities differ from what the floor used; the warehouse then counts
    those parts, so no drift is left unexplained. Without the count (the negative control),
    the corrections leave it."""
    source = Path(__file__).resolve().parents[2] / "scenarios" / "operations_oncall.yaml"
    overrides = ["seed=9", "edge_cases.ecos_per_week=40", "edge_cases.eco_adoption_lag=4h"]
    summary = simulate(load_scenario(source, overrides)).summary
    stale = summary["governance"]["by_code"][STALE]
    assert stale["mttr"]["count"] > 0 and summary["governance"]["fixes"]["master_data"] > 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"

    monkeypatch.setattr(Operators, "_count_after_correction", lambda _self, _failing: [])
    uncounted = simulate(load_scenario(source, overrides)).summary
    assert Decimal(uncounted["drift"]["final_unexplained_value"]) > 0
    counts = [s["events"]["by_type"].get("StockAdjusted", 0) for s in (summary, uncounted)]
    assert counts[0] > counts[1], counts
