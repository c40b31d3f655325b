"""Closing a dead letter by hand (`Core.discard`): it is `discarded`, never replayed, and its
history says when and why, on SQLite and on PostgreSQL; a blank reason is refused; a ledger
of schema v2 upgrades to take the new status."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta

import pytest

from integration import Core, ErrorCode, SqliteStore, Status, open_store
from integration.clock import ManualClock
from integration.errors import IntegrationError
from integration.store.base import DeadLetterFilter
from integration.store.schema import SCHEMA_VERSION
from tests.builders import START, Envelopes, confirm, master_data, settings
from tests.integration.pg import fresh_schema, schema_url
from tests.integration.test_migration_v4 import as_v3

WO_UNKNOWN = DeadLetterFilter(code=ErrorCode.WORK_ORDER_UNKNOWN)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "ledger.db")
        return
    with fresh_schema() as name:
        yield schema_url(name)


def _core(url: str) -> tuple[Core, Envelopes, ManualClock]:
    clock = ManualClock(START)
    core = Core(settings(sequencing=False), open_store(url), clock)
    envelopes = Envelopes()
    for envelope in master_data(envelopes):
        assert core.submit(envelope).status is Status.POSTED
    return core, envelopes, clock


def test_a_discarded_letter_is_closed_with_its_reason_and_time_and_never_replayed(url):
    core, env, clock = _core(url)
    try:
        kept = core.submit(confirm(env, work_order="WO-1"))
        dropped = core.submit(confirm(env, work_order="WO-2"))
        assert kept.code is dropped.code is ErrorCode.WORK_ORDER_UNKNOWN
        clock.advance(timedelta(minutes=5))
        (closed,) = core.discard(DeadLetterFilter(work_order="WO-2"), "  superseded by WO-2-C ")
        assert closed.id == dropped.dead_letter_id and closed.status == "discarded"
        event = closed.history[-1]
        assert event == {
            "at": clock.now().isoformat(),
            "resolution": "discarded",
            "reason": "superseded by WO-2-C",
        }
        assert closed.history[0]["code"] == "WORK_ORDER_UNKNOWN"
        assert closed.updated_at == clock.now()
        # only the other letter is open, and only it is replayed
        assert [letter.id for letter in core.dead_letters(WO_UNKNOWN)] == [kept.dead_letter_id]
        assert [o.message_id for o in core.replay()] == [kept.message_id]
        assert core.discard(DeadLetterFilter(work_order="WO-2"), "again") == []
        found = core.dead_letters(DeadLetterFilter(status="discarded"))
        assert [letter.id for letter in found] == [closed.id]
        assert core.store.dead_letter_counts()["discarded"] == 1
    finally:
        core.close()
    reopened = Core(settings(sequencing=False), open_store(url), ManualClock(START))
    try:  # durable, and the reopened core does not replay it either
        assert dropped.message_id not in {o.message_id for o in reopened.replay(WO_UNKNOWN)}
        (again,) = reopened.dead_letters(DeadLetterFilter(ids=(closed.id,), status=None))
        assert again.status == "discarded" and again.history == closed.history
    finally:
        reopened.close()


def test_a_discard_needs_a_reason_and_writes_nothing_without_one(url):
    core, env, _clock = _core(url)
    try:
        core.submit(confirm(env))
        with pytest.raises(IntegrationError) as refused:
            core.discard(WO_UNKNOWN, " ")
        assert refused.value.code is ErrorCode.SCHEMA_INVALID
        (letter,) = core.dead_letters(WO_UNKNOWN)
        assert letter.status == "open" and len(letter.history) == 1
    finally:
        core.close()


def test_a_v2_ledger_upgrades_and_takes_a_discard(tmp_path):
    """The v3 step builds the dead-letter table again (SQLite cannot alter its CHECK): the
    letters and their waits survive, and the new status is accepted."""
    current, path = tmp_path / "current.db", tmp_path / "v2.db"
    core, env, _clock = _core(str(current))
    core.submit(confirm(env))
    core.close()
    as_v3(current, path)
    with sqlite3.connect(path) as db:  # back to v2: the table as v2 wrote it
        (create,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'dead_letter'"
        ).fetchone()
        db.execute("PRAGMA legacy_alter_table=ON")  # the waits keep referring to the name
        db.execute("ALTER TABLE dead_letter RENAME TO dead_letter_v3")
        db.execute(create.replace(", 'discarded'", ""))
        db.execute("INSERT INTO dead_letter SELECT * FROM dead_letter_v3")
        db.execute("DROP TABLE dead_letter_v3")
        db.execute("CREATE INDEX dead_letter_message ON dead_letter (message_id)")
        db.execute("INSERT INTO dead_letter_wait VALUES (1, 'work_order:WO-1')")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store = SqliteStore(str(path))
    assert (store.upgraded_from, store.schema_version()) == (2, SCHEMA_VERSION)
    assert store.waiting_keys() == ["work_order:WO-1"]
    upgraded = Core(settings(sequencing=False), store, ManualClock(START))
    try:
        (closed,) = upgraded.discard(WO_UNKNOWN, "test")
        assert closed.status == "discarded" and upgraded.store.waiting_keys() == []
    finally:
        upgraded.close()
