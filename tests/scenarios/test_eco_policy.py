"""The ECO open-order policy (README, Engineering changes): every EcoReleased carries the
scenario's `edge_cases.eco_open_order_policy`, and the twin's floor follows it, so under
`switch_at_next_operation` open orders backflush the new revision from their next operation in
the books and on the floor alike. The floor switches when the ECO is released, the core when it
posts it: a confirmation still on its way then is dead-lettered REVISION_MISMATCH (explained
drift), so the exact-agreement test keeps the network fast."""

from __future__ import annotations

from pathlib import Path

from integration import OpenOrderPolicy, Status
from sim.run.runner import Run, simulate
from sim.scenario.document import load_scenario
from tests.scenarios.harness import RecordingTarget

ECO_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "eco_during_open_orders.yaml"
SWITCH = "edge_cases.eco_open_order_policy=switch_at_next_operation"


def _run(*overrides: str) -> tuple[Run, RecordingTarget]:
    scenario = load_scenario(ECO_SCENARIO, list(overrides))
    target = RecordingTarget.for_scenario(scenario)
    return simulate(scenario, target=target), target


def _policies(target: RecordingTarget) -> set[OpenOrderPolicy]:
    return {
        envelope.message.open_order_policy
        for _at, envelope, _outcome in target.submitted
        if envelope.message.type == "EcoReleased"
    }


def _switched_postings(target: RecordingTarget) -> int:
    """Confirmations the core posted that name a revision other than the order's own."""
    released, switched = {}, 0
    for _at, envelope, outcome in target.submitted:
        message = envelope.message
        if message.type == "WorkOrderReleased":
            released[message.work_order] = message.bom_revision
        elif message.type == "OperationCompleted" and outcome.status is Status.POSTED:
            switched += message.bom_revision != released[message.work_order]
    return switched


def _reconciled(run: Run) -> None:
    summary = run.summary
    assert summary["duplicates"]["posted"] == 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert summary["ledger"]["balanced"] is True


def test_open_orders_switch_at_their_next_operation_in_the_books_and_on_the_floor():
    at_once = "edge_cases.eco_adoption_lag=0s"  # the MES adopts each revision at once
    # Operations confirmed in parts: an ECO between two parts keeps the operation on its
    # revision (the switch is from the next operation), in the books as on the floor.
    parts = "edge_cases.partial_completion_rate=1"
    run, target = _run(SWITCH, at_once, parts)
    assert _policies(target) == {OpenOrderPolicy.SWITCH_AT_NEXT_OPERATION}
    assert run.summary["coverage"]["eco_open_order"] > 0
    # The floor backflushed the new revision and said so; the core had switched those orders
    # too, so it posted them instead of dead-lettering a revision mismatch.
    assert _switched_postings(target) > 0
    assert "REVISION_MISMATCH" not in run.summary["dead_letters"]["by_code"]
    assert run.summary["drift"]["final_value"] == "0.00"
    _reconciled(run)
    _kept, kept_target = _run(at_once, parts)
    assert _policies(kept_target) == {OpenOrderPolicy.KEEP}
    assert _switched_postings(kept_target) == 0


def test_switching_with_an_adoption_lag_still_reconciles():
    """During the lag the MES reports the old revision for switched operations: those are
    dead-lettered by name, never posted with the wrong components."""
    run, target = _run(SWITCH)
    assert _policies(target) == {OpenOrderPolicy.SWITCH_AT_NEXT_OPERATION}
    assert run.summary["dead_letters"]["by_code"]["REVISION_MISMATCH"] > 0
    assert all(check["passed"] for check in run.summary["assertions"])
    _reconciled(run)
