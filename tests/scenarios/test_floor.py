"""Each modelled shop-floor behaviour happens, and does not happen when switched off
(docs/architecture.md, Faults): shift-change bursts, partial completions, ECOs during open
orders, backflush shortages, lot substitutions, subcontracting, period close with late events,
breakdowns."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from integration import OperationCompleted, Status
from sim.run.session import run_scenario
from tests.scenarios import harness
from tests.scenarios.harness import HOUR

# --- shift-change bursts -------------------------------------------------------------------

BATCHABLE = {"OperationCompleted", "ByProductReported", "FinishedGoodsReceived"}
SHIFT = 8 * HOUR
BOUNDARIES = (SHIFT, 2 * SHIFT)  # 14:00 and 22:00; the third (06:00) is the horizon
MID_SHIFTS = (
    (SHIFT + 2 * HOUR, 2 * SHIFT - 2 * HOUR),
    (2 * SHIFT + 2 * HOUR, 3 * SHIFT - 2 * HOUR),
)


def _busy_floor(small_document, reporting: str, share: float, spread: str):
    doc = small_document
    doc["plants"][0]["work_centres"] = [
        {"id": "CUT", "capacity": 6}, {"id": "WELD", "capacity": 6}, {"id": "PACK", "capacity": 4},
    ]  # fmt: skip
    doc["demand"]["orders_per_day"] = 150
    doc["calendar"] = {"shifts_per_day": 3, "shift_hours": 8}
    doc["mes"] = {"reporting": reporting, "batched_share": share, "burst_spread": spread}
    return doc


def _per_minute(times: list[float], windows) -> float:
    seconds = sum(end - begin for begin, end in windows)
    return 60 * sum(1 for t in times if any(begin <= t < end for begin, end in windows)) / seconds


def _rates(tmp_path: Path, doc, window: float) -> tuple[float, float, dict]:
    path = harness.write_scenario(tmp_path / "burst.yaml", doc)
    outcome = run_scenario(path, out_dir=tmp_path / "run", progress=False)
    records = harness.read_trace(tmp_path / "run" / "trace.jsonl.gz")
    sent = [r["t"] for r in records if r["kind"] == "message" and r["type"] in BATCHABLE]
    after = _per_minute(sent, [(b, b + window) for b in BOUNDARIES])
    mid = _per_minute(sent, MID_SHIFTS)
    return after, mid, outcome.summary


def test_batched_reporting_bursts_at_shift_changes_by_the_configured_factor(
    tmp_path, small_document
):
    share, spread = 0.8, 5 * 60.0
    doc = _busy_floor(small_document, "batched", share, "5m")
    after, mid, summary = _rates(tmp_path, doc, spread)
    # Held back for a shift and sent within the spread: the burst outruns the trickle of
    # unbatched confirmations by share/(1-share) x shift/spread.
    factor = share / (1 - share) * SHIFT / spread
    assert mid > 0
    assert after / mid >= max(5.0, factor / 2), (after, mid, factor)
    assert after / mid <= factor * 2, (after, mid, factor)
    assert summary["coverage"]["shift_change_burst"] >= len(BOUNDARIES)


def test_immediate_reporting_has_no_burst(tmp_path, small_document):
    doc = _busy_floor(small_document, "immediate", 0.8, "5m")
    after, mid, summary = _rates(tmp_path, doc, 30 * 60.0)
    assert mid > 0
    assert 0.5 < after / mid < 2.0, (after, mid)
    assert summary["coverage"]["shift_change_burst"] == 0


# --- partial completions -------------------------------------------------------------------


def _confirmations(target) -> Counter:
    """Posted confirmations per (work order, operation)."""
    return Counter(
        (env.message.work_order, env.message.operation_seq)
        for _at, env, outcome in target.submitted
        if isinstance(env.message, OperationCompleted) and outcome.status is Status.POSTED
    )


def test_partial_completions_confirm_an_operation_in_several_parts():
    run, target, _trace = harness.recorded(
        ["edge_cases.partial_completion_rate=1", "edge_cases.max_parts=3"]
    )
    parts = _confirmations(target)
    assert run.summary["coverage"]["partial_completion"] > 0
    assert parts and max(parts.values()) >= 2
    several = sum(1 for n in parts.values() if n >= 2)
    assert several >= len(parts) * 0.8  # all but operations cut off by the horizon
    assert max(parts.values()) <= 3
    flagged = [
        env.message.partial
        for _at, env, _o in target.submitted
        if isinstance(env.message, OperationCompleted)
    ]
    assert all(flagged)


def test_without_partial_completions_each_operation_is_confirmed_once():
    run, target, _trace = harness.recorded(["edge_cases.partial_completion_rate=0"])
    parts = _confirmations(target)
    assert parts and set(parts.values()) == {1}
    assert run.summary["coverage"]["partial_completion"] == 0


# --- ECOs during open orders ---------------------------------------------------------------


def test_an_eco_lands_while_orders_are_open_and_the_lagging_mes_reports_the_old_revision():
    summary = harness.summary("edge_cases.ecos_per_week=20", "edge_cases.eco_adoption_lag=4h")
    assert summary["coverage"]["eco_open_order"] > 0
    assert summary["coverage"]["stale_revision"] > 0
    assert summary["dead_letters"]["by_code"].get("REVISION_MISMATCH", 0) > 0
    assert summary["latency_ms"]["eco"]["count"] > 0
    # Stale-revision confirmations are dead letters that explain the drift they leave.
    assert summary["drift"]["final_unexplained_value"] == "0.00"


def test_an_mes_that_adopts_ecos_at_once_reports_no_stale_revision():
    summary = harness.summary("edge_cases.ecos_per_week=20", "edge_cases.eco_adoption_lag=0s")
    assert summary["coverage"]["eco_open_order"] > 0
    assert summary["coverage"].get("stale_revision", 0) == 0
    assert "REVISION_MISMATCH" not in summary["dead_letters"]["by_code"]
    assert summary["drift"]["final_value"] == "0.00"


# --- backflush shortages and lot substitution ----------------------------------------------

# Scarce stock whose receipts the WMS posts hours after the parts arrive: the floor backflushes
# parts the books do not hold yet.
SCARCE = (
    "edge_cases.cover_days=0.2",
    "edge_cases.supplier_interval=2d",
    "edge_cases.receipt_posting_delay={kind: exponential, mean: 2h}",
)


def test_backflush_shortage_is_dead_lettered_under_block():
    summary = harness.summary("integration.negative_stock=block", *SCARCE)
    assert summary["coverage"]["backflush_shortage"] > 0  # dead-lettered as BACKFLUSH_SHORTAGE
    assert summary["dead_letters"]["total"] >= summary["coverage"]["backflush_shortage"]
    # once the receipts post, the shortages replay: nothing is left open
    assert summary["dead_letters"]["by_code"].get("BACKFLUSH_SHORTAGE", 0) == 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert summary["ledger"]["balanced"] is True


def test_backflush_shortage_posts_with_a_negative_stock_exception_under_allow():
    summary = harness.summary("integration.negative_stock=allow", *SCARCE)
    assert "BACKFLUSH_SHORTAGE" not in summary["dead_letters"]["by_code"]
    assert summary["negative_stock_events"] > 0


def test_ample_stock_has_no_backflush_shortage():
    summary = harness.summary("integration.negative_stock=block", "edge_cases.cover_days=5")
    assert summary["coverage"]["backflush_shortage"] == 0


def test_a_lot_controlled_alternate_is_used_when_the_primary_is_short():
    overrides = [
        "products.alternates_share=1",
        "edge_cases.cover_days=0.3",
        "edge_cases.supplier_interval=6h",
        "edge_cases.supplier_miss_rate=0.7",
    ]
    run, target, _trace = harness.recorded(overrides)
    assert run.summary["coverage"]["lot_substitution"] > 0
    # The core accepted confirmations whose lots name an item other than a primary component.
    catalogue_alternates = set()
    for _at, env, _o in target.submitted:
        if env.message.type == "BomReleased":
            for line in env.message.bom.lines:
                catalogue_alternates.update(alt.item for alt in line.alternates)
    used = {
        item
        for _at, env, outcome in target.submitted
        if isinstance(env.message, OperationCompleted) and outcome.status is Status.POSTED
        for item in env.message.component_lots
    }
    assert used & catalogue_alternates


def test_without_alternates_there_is_no_substitution():
    summary = harness.summary(
        "products.alternates_share=0",
        "edge_cases.cover_days=0.3",
        "edge_cases.supplier_interval=1d",
    )
    assert summary["coverage"]["lot_substitution"] == 0


# --- subcontracting ------------------------------------------------------------------------


def test_subcontractors_ship_components_and_return_assemblies():
    run, target, _trace = harness.recorded(
        ["products.subcontracted=1", "edge_cases.subcontract_interval=4h"]
    )
    posted = Counter(
        env.message.type for _at, env, o in target.submitted if o.status is Status.POSTED
    )
    assert run.summary["coverage"]["subcontract_receipt"] > 0
    assert posted["SubcontractShipped"] > 0
    assert posted["SubcontractReceived"] == run.summary["coverage"]["subcontract_receipt"]
    assert run.summary["drift"]["final_unexplained_value"] == "0.00"


def test_no_subcontracted_parts_means_no_subcontracting():
    summary = harness.summary("products.subcontracted=0", "edge_cases.subcontract_interval=4h")
    assert summary["coverage"]["subcontract_receipt"] == 0
    assert "subcontract_ship" not in summary["latency_ms"]


# --- period close with late events ---------------------------------------------------------


def test_events_of_a_closed_month_post_late_into_the_next(tmp_path, small_document):
    small_document["start"] = "2026-11-30T06:00:00+00:00"
    small_document["mes"] = {"reporting": "batched"}
    path = harness.write_scenario(tmp_path / "month_end.yaml", small_document)
    outcome = run_scenario(path, out_dir=tmp_path / "run", progress=False)
    summary = outcome.summary
    assert summary["coverage"]["period_close"] == 1
    assert summary["late_postings"] > 0
    assert summary["coverage"]["late_posting"] == summary["late_postings"]
    with sqlite3.connect(tmp_path / "run" / "ledger.db") as db:
        late = db.execute(
            "SELECT DISTINCT period, original_period FROM journal_entry WHERE late = 1"
        ).fetchall()
        late_messages = db.execute(
            "SELECT COUNT(DISTINCT inbox_id) FROM journal_entry WHERE late = 1"
        ).fetchone()[0]
        into_closed = db.execute(
            "SELECT COUNT(*) FROM journal_entry"
            " WHERE period = '2026-11' AND posted_at >= '2026-12-01T02:00'"
        ).fetchone()[0]
    assert late == [("2026-12", "2026-11")]
    assert late_messages == summary["late_postings"]
    assert into_closed == 0


def test_no_month_end_no_period_close():
    summary = harness.summary("mes.reporting=batched")
    assert summary["coverage"].get("period_close", 0) == 0
    assert summary["late_postings"] == 0


# --- breakdowns ----------------------------------------------------------------------------


def test_machines_break_down_and_are_repaired():
    run, target, _trace = harness.recorded(
        ["plants.0.work_centres.0.mtbf=3h", "plants.0.work_centres.0.mttr=30m"]
    )
    breakdowns = run.summary["coverage"]["breakdown"]
    states = Counter(
        env.message.state for _at, env, o in target.submitted
        if env.message.type == "MachineEvent" and o.status is Status.POSTED
    )  # fmt: skip
    assert breakdowns >= 2
    assert states["DOWN"] == breakdowns
    assert states["UP"] in (breakdowns - 1, breakdowns)  # the last repair may outlast the horizon


def test_machines_without_an_mtbf_never_break_down():
    summary = harness.summary()
    assert summary["coverage"].get("breakdown", 0) == 0
    assert "machine" not in summary["latency_ms"]
