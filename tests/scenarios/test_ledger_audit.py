"""A run directory can be audited with plain tools (docs/architecture.md, Stores and Run outputs):
the SQLite ledger with sqlite3, the truth with gzip + json, and both agree with the summary."""

from __future__ import annotations

import sqlite3
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from sim.run.session import run_scenario
from tests.scenarios import harness

FAULTS = (
    "faults.duplicate_rate=0.05",
    "faults.crash_after_commit_rate=0.02",
    "faults.loss_rate=0.02",
    "faults.renumbered_resend_rate=0.02",
    "faults.network_delay={kind: lognormal, mean: 2s, sd: 4s}",
    "edge_cases.ecos_per_week=0",  # no stale revisions: nothing is left in dead letters
)


def _run(tmp_path: Path, small_document, overrides) -> tuple[dict, sqlite3.Connection, Path]:
    """Run into tmp_path/run; the ledger opened read-only (closed at the test's end)."""
    path = harness.write_scenario(tmp_path / "audit.yaml", small_document)
    outcome = run_scenario(path, overrides, out_dir=tmp_path / "run", progress=False)
    db = sqlite3.connect(f"file:{tmp_path / 'run' / 'ledger.db'}?mode=ro", uri=True)
    _OPEN.append(db)
    return outcome.summary, db, tmp_path / "run"


_OPEN: list[sqlite3.Connection] = []


def _count(db: sqlite3.Connection, sql: str) -> int:
    return db.execute(sql).fetchone()[0]


@pytest.fixture(autouse=True)
def _close_ledgers():
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def audited(tmp_path, small_document):
    return _run(tmp_path, small_document, FAULTS)


def test_journal_entries_in_the_ledger_match_the_summary(audited):
    summary, db, _out = audited
    entries = _count(db, "SELECT COUNT(*) FROM journal_entry")
    assert entries == summary["ledger"]["entries"] > 0
    posted = _count(db, "SELECT COUNT(*) FROM inbox WHERE status = 'POSTED'")
    assert posted == summary["outcomes"]["POSTED"]


def test_every_entry_balances_in_plain_sql(audited):
    _summary, db, _out = audited
    unbalanced = db.execute(
        "SELECT entry_id, plant, currency FROM journal_line GROUP BY entry_id, plant, currency "
        "HAVING SUM(amount_minor) != 0"
    ).fetchall()
    assert unbalanced == []
    lines = _count(db, "SELECT COUNT(*) FROM journal_line")
    assert lines > 0


def test_the_truth_in_the_trace_equals_the_stock_in_the_ledger(audited):
    """Physical stock from the trace's truth records, book stock from the stock moves: after
    healing, with nothing left in dead letters, they are the same."""
    summary, db, out = audited
    assert summary["drift"]["final_value"] == "0.00"
    assert summary["duplicates"]["delivered"] > 0  # the faults were there
    truth: Counter = Counter()
    for record in harness.read_trace(out / "trace.jsonl.gz"):
        if record["kind"] == "truth":
            for plant, item, location, qty in record["deltas"]:
                truth[(plant, item, location)] += Decimal(qty)
    book: Counter = Counter()
    for plant, item, location, qty in db.execute(
        "SELECT plant, item, location, qty FROM stock_move"
    ):
        book[(plant, item, location)] += Decimal(qty)
    assert truth
    assert {k: v for k, v in truth.items() if v} == {k: v for k, v in book.items() if v}


def test_open_dead_letters_in_the_ledger_match_the_summary(tmp_path, small_document):
    summary, db, _out = _run(tmp_path, small_document, ("edge_cases.ecos_per_week=20",))
    by_code = dict(
        db.execute("SELECT code, COUNT(*) FROM dead_letter WHERE status = 'open' GROUP BY code")
    )
    rows = _count(db, "SELECT COUNT(*) FROM dead_letter")
    assert by_code == summary["dead_letters"]["by_code"]
    assert sum(by_code.values()) == summary["dead_letters"]["remaining"] > 0
    assert rows == summary["dead_letters"]["total"]


def test_dead_letters_from_expired_holds_are_counted(tmp_path, small_document):
    # A lost message comes back ten minutes later; what follows it in its work order's stream
    # is held meanwhile, and a one-minute hold timeout expires those holds.
    overrides = (
        "faults.loss_rate=0.1",
        "faults.redelivery_after=10m",
        "integration.hold_timeout=1m",
    )
    summary, db, _out = _run(tmp_path, small_document, overrides)
    gaps = _count(db, "SELECT COUNT(*) FROM dead_letter WHERE code = 'SEQUENCE_GAP'")
    rows = _count(db, "SELECT COUNT(*) FROM dead_letter")
    assert gaps > 0
    assert summary["dead_letters"]["total"] == rows


def test_dead_letters_released_during_the_run_count_as_replayed(tmp_path, small_document):
    summary, db, _out = _run(
        tmp_path, small_document, ("integration.sequencing=false", harness.REORDERING)
    )
    replayed = _count(db, "SELECT COUNT(*) FROM dead_letter WHERE status = 'replayed'")
    assert replayed > 0
    assert summary["dead_letters"]["replayed"] == replayed
