"""Negative controls (docs/architecture.md, Negative controls): switch a safeguard off and the
harness must see the damage; switch it back on and the same faults do no harm."""

from __future__ import annotations

from tests.scenarios import harness

# With idempotency off, the stream sequence still refuses a repeated work-order message
# (SEQUENCE_STALE); what posts twice are the messages outside any stream, goods receipts most of
# all. A supplier every two hours gives enough of them to make the control bite.
DUPLICATES = (
    "faults.duplicate_rate=0.2",
    "faults.crash_after_commit_rate=0.05",
    "edge_cases.supplier_interval=2h",
)
RENUMBERED = ("faults.renumbered_resend_rate=0.1", harness.REORDERING)
ALL_FAULTS = (*DUPLICATES, *RENUMBERED)


def _open_codes(summary) -> set[str]:
    return set(summary["dead_letters"]["by_code"])


def test_without_idempotency_duplicate_deliveries_post_twice():
    summary = harness.summary("integration.idempotency=false", *DUPLICATES)
    assert summary["duplicates"]["delivered"] > 0
    assert summary["duplicates"]["posted"] > 0
    assert summary["drift"]["final_unexplained_value"] != "0.00"
    # The books still balance: double postings are wrong, not unbalanced.
    assert summary["ledger"]["balanced"] is True


def test_without_sequencing_renumbered_resends_and_reordering_show_damage():
    healthy = harness.summary(*RENUMBERED)
    broken = harness.summary("integration.sequencing=false", *RENUMBERED)
    assert broken["coverage"]["renumbered_resend"] > 0
    assert broken["coverage"]["reorder"] > 0
    damage = (
        broken["duplicates"]["posted"] > 0
        or broken["drift"]["final_unexplained_value"] != "0.00"
        or bool(_open_codes(broken) - _open_codes(healthy))
    )
    assert damage, broken
    # With idempotency on, a resend under a new id and a new key is invisible to the inbox:
    # nothing but the stream sequence would have caught it.
    assert broken["duplicates"]["detected"] == 0


def test_with_both_safeguards_the_same_faults_do_no_harm():
    summary = harness.summary(*ALL_FAULTS)
    coverage = summary["coverage"]
    assert coverage["duplicate_delivered"] > 0
    assert coverage["renumbered_resend"] > 0
    assert coverage["crash"] > 0
    assert coverage["reorder"] > 0
    assert summary["duplicates"]["delivered"] > 0
    assert summary["duplicates"]["detected"] == summary["duplicates"]["delivered"]
    assert summary["duplicates"]["posted"] == 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert summary["ledger"]["balanced"] is True
    assert summary["ledger"]["reconciled"] is True
    assert summary["ledger"]["findings"] == []


def test_the_controls_differ_only_by_the_switch():
    """Common random numbers: the physical events are the same with a safeguard on or off, so
    any difference in the books is the safeguard's doing."""
    on = harness.summary(*ALL_FAULTS)
    off = harness.summary(
        "integration.idempotency=false", "integration.sequencing=false", *ALL_FAULTS
    )
    assert on["events"]["truth"] == off["events"]["truth"]
    assert off["duplicates"]["posted"] > 0
    assert off["drift"]["final_unexplained_value"] != "0.00"
