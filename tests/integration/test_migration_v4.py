"""A real v3 SQLite ledger (the frozen v3 DDL, filled with a current ledger's rows) upgrades to
v4: a message id indexed once, and the correlation id a column of its own, filled from the
stored JSON, so that a correlation's story reads the same before and after.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from integration import Core, SqliteStore, Status
from integration.clock import ManualClock
from integration.store.base import DeadLetterFilter
from integration.store.schema import SCHEMA_VERSION
from tests.builders import START, Envelopes, confirm, receipt, settings
from tests.integration.test_migration import (
    AUDITS,
    FIXTURES,
    TABLES,
    sqlite_shape,
    store_reads,
    write_traffic,
)


def as_v3(current: Path, ledger: Path) -> None:
    """Write `ledger` as the v3 build would have left it, holding `current`'s rows (every v3
    column: v4 only adds `correlation_id`)."""
    with sqlite3.connect(ledger) as db:
        db.executescript((FIXTURES / "schema_v3_sqlite.sql").read_text())
        db.execute("INSERT INTO meta VALUES ('schema_version', '3')")
        db.execute("ATTACH DATABASE ? AS written", (str(current),))
        for table in TABLES:
            columns = ", ".join(row[1] for row in db.execute(f"PRAGMA main.table_info({table})"))
            db.execute(
                f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM written.{table}"
            )
    db.close()


def correlated_traffic(core: Core, env: Envelopes) -> None:
    """Under correlation id "c-1": a posting, a rejection, an unreadable JSON payload; and a
    payload that is not text, holding the same characters (its letter has no correlation).
    Unreadable payloads under an id escaped as Python writes it ("c-😀"), under ids no envelope
    could carry (a lone surrogate, too long: none kept)."""
    posted = env(receipt("2", location="LINE")).model_copy(update={"correlation_id": "c-1"})
    rejected = confirm(env, work_order="WO-9").model_copy(update={"correlation_id": "c-1"})
    outcomes = [
        core.submit(posted),
        core.submit(rejected),
        core.submit(b'{"correlation_id": "c-1", "message_id": 7}'),
        core.submit(b'\xff{"correlation_id": "c-1"}'),
        core.submit(json.dumps({"correlation_id": "c-😀", "message_id": 8})),
        core.submit(b'{"correlation_id": "c-\\ud800", "message_id": 9}'),
        core.submit(json.dumps({"correlation_id": "c" * 129, "message_id": 10})),
    ]
    assert [o.status for o in outcomes] == [Status.POSTED] + [Status.REJECTED] * 6


def test_a_v3_ledger_upgrades_to_v4_and_finds_a_correlation_by_its_column(tmp_path):
    written_path, ledger = tmp_path / "written.db", tmp_path / "v3.db"
    env = Envelopes()
    source = SqliteStore(written_path)
    write_traffic(source, env)
    core = Core(settings(sequencing=False), source, ManualClock(START))
    correlated_traffic(core, env)
    written, story = store_reads(source), core.story("c-1")
    source.close()
    as_v3(written_path, ledger)
    with sqlite3.connect(ledger) as db:
        audited = [db.execute(sql).fetchall() for sql in AUDITS]
        v3_indexes = {r[1]: r[4] for r in db.execute("PRAGMA index_list(inbox)")}
    db.close()

    store = SqliteStore(ledger)
    try:
        assert (store.upgraded_from, store.schema_version()) == (3, SCHEMA_VERSION) == (3, 4)
        assert store.connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert [store.connection.execute(sql).fetchall() for sql in AUDITS] == audited
        assert store_reads(store) == written
        indexes = {r[1]: r[4] for r in store.connection.execute("PRAGMA index_list(inbox)")}
        assert (v3_indexes["inbox_message"], indexes["inbox_message"]) == (0, 1)  # now partial
        SqliteStore(tmp_path / "fresh.db").close()
        assert sqlite_shape(ledger) == sqlite_shape(tmp_path / "fresh.db")
        upgraded = Core(settings(sequencing=False), store, ManualClock(START))
        assert upgraded.story("c-1") == story
        assert (len(story.messages), len(story.dead_letters)) == (2, 2)  # negative control
        letters = store.dead_letters(DeadLetterFilter(status=None))
        assert [letter.correlation_id for letter in letters[-4:]] == ["", "c-😀", "", ""]
        assert [d.raw for d in upgraded.story("c-😀").dead_letters] == [letters[-3].raw]
        # the lookups by message id use the reshaped indexes, and new traffic posts on
        assert store.inbox_record(story.messages[0].message_id) == story.messages[0]
        more = env(receipt("1", location="LINE")).model_copy(update={"correlation_id": "c-1"})
        assert upgraded.submit(more).status is Status.POSTED
        assert [m.message_id for m in upgraded.story("c-1").messages][-1] == more.message_id
        assert upgraded.reconcile().ok
    finally:
        store.close()


def test_lookups_by_message_id_and_correlation_use_their_indexes(tmp_path):
    """No scan of the inbox or the dead letters for a message id or a correlation id."""
    store = SqliteStore(tmp_path / "ledger.db")
    try:
        traced: list[str] = []
        store.connection.set_trace_callback(traced.append)
        store.inbox_record("m-1")  # from any source
        store.inbox_record("m-1", "MES")
        store.correlated("c-1")
        store.dead_letters(DeadLetterFilter(status=None, correlation_id="c-1"))
        store.connection.set_trace_callback(None)
        for sql in traced:
            if " FROM inbox WHERE" in sql or "FROM dead_letter WHERE" in sql:
                plan = " ".join(
                    row[3] for row in store.connection.execute(f"EXPLAIN QUERY PLAN {sql}")
                )
                assert "SCAN" not in plan, (sql, plan)
        assert traced, "the trace saw no statement"
    finally:
        store.close()
