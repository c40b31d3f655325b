"""A ledger of the previous schema (v1, frozen in fixtures/) opens, upgrades in place in one
transaction, keeps its books, and takes new postings, on SQLite and on PostgreSQL.

The v1 ledger holds real postings: a core writes a realistic mix into a current ledger, and
its rows are copied into the v1 tables column by column (every v1 column; v2 only adds one),
as the v1 build would have left them.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from integration import Core, MachineEvent, SqliteStore, Status
from integration.clock import ManualClock
from integration.errors import ConfigurationError
from integration.store.base import DeadLetterFilter, LedgerStore
from integration.store.schema import SCHEMA_VERSION
from tests.builders import START, Envelopes, confirm, master_data, receipt, release, settings
from tests.integration.pg import PG_URL, drop_schema, require_pg

FIXTURES = Path(__file__).parent / "fixtures"
# Parents before children (foreign keys); `meta` is the v1 ledger's own.
TABLES = (
    "inbox",
    "journal_entry",
    "journal_line",
    "stock_move",
    "stock_exception",
    "dead_letter",
    "dead_letter_wait",
    "stream_position",
)
IDENTITY_COLUMNS = {
    "inbox": "inbox_id",
    "journal_entry": "entry_id",
    "stock_move": "move_id",
    "stock_exception": "exception_id",
    "dead_letter": "dead_letter_id",
}
# The books in plain SQL, as an auditor reads them (README: Auditing a ledger).
AUDITS = (
    (
        "SELECT plant, account, currency, SUM(amount_minor) FROM journal_line"
        " GROUP BY plant, account, currency ORDER BY plant, account, currency"
    ),
    (
        "SELECT plant, item, location, lot, SUM(qty), SUM(value_minor) FROM stock_move"
        " GROUP BY plant, item, location, lot ORDER BY plant, item, location, lot"
    ),
    (
        "SELECT dead_letter_id, message_id, code, raw, status, attempts FROM dead_letter"
        " ORDER BY dead_letter_id"
    ),
    (
        "SELECT inbox_id, message_id, idempotency_key, source_system, status, code, applied_seq"
        " FROM inbox ORDER BY inbox_id"
    ),
    "SELECT stream, next_seq FROM stream_position ORDER BY stream",
)


def write_traffic(store: LedgerStore, env: Envelopes) -> None:
    """Postings, a held message (seq 3 of a stream at 2), two dead letters (a rule's rejection
    and an unreadable payload)."""
    core = Core(settings(), store, ManualClock(START))
    outcomes = [
        core.submit(message)
        for message in (
            *master_data(env),
            env(receipt("100", location="LINE")),
            env(receipt("7.5", lot="L1", item="RAW-L", location="LINE")),
            release(env),
            confirm(env, "1.25", seq=1),
            confirm(env, "2", seq=3),
            env(receipt("1", item="RAW-L", location="LINE")),  # no lot: LOT_REQUIRED
            b'{"message_id": "broken"',
        )
    ]
    statuses = [outcome.status for outcome in outcomes]
    assert statuses.count(Status.HELD) == 1 and statuses.count(Status.REJECTED) == 2


def store_reads(store: LedgerStore) -> tuple:
    """The books as the store reads them."""
    return (
        store.account_balances(),
        store.stock_balances(),
        store.dead_letters(DeadLetterFilter(status=None)),
        store.held(),
        list(store.posted_after(0)),
        store.stream_positions(),
        store.waiting_keys(),
    )


@dataclass
class Dialect:
    """One dialect's v1 ledger: made from the frozen DDL, filled from a current ledger."""

    name: str
    open_current: Callable[[], LedgerStore]  # a current ledger to write the traffic into
    make_v1: Callable[[LedgerStore], None]  # the v1 ledger, holding that ledger's rows
    open_v1: Callable[[], LedgerStore]  # the current store on the v1 ledger
    audit: Callable[[str], list[tuple]]  # plain SQL on the v1 ledger, and its rows
    shape_of_fresh: Callable[[], object]
    shape: Callable[[], object]


def sqlite_shape(path: Path) -> dict:
    """An SQLite ledger's tables: their columns and indexes, as PRAGMAs report them."""
    with sqlite3.connect(path) as db:
        tables = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        found = {}
        for table in tables:
            indexes = db.execute(f"PRAGMA index_list({table})").fetchall()
            found[table] = (
                db.execute(f"PRAGMA table_info({table})").fetchall(),
                sorted(
                    (name, unique, partial, db.execute(f"PRAGMA index_info({name})").fetchall())
                    for _, name, unique, _, partial in indexes
                ),
            )
    db.close()
    return found


@contextmanager
def sqlite_dialect(tmp_path: Path) -> Iterator[Dialect]:
    written, ledger = tmp_path / "written.db", tmp_path / "v1.db"

    def make_v1(source: LedgerStore) -> None:
        source.close()
        with sqlite3.connect(ledger) as db:
            db.executescript((FIXTURES / "schema_v1_sqlite.sql").read_text())
            db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
            db.execute("ATTACH DATABASE ? AS written", (str(written),))
            for table in TABLES:
                columns = ", ".join(
                    row[1] for row in db.execute(f"PRAGMA main.table_info({table})")
                )
                db.execute(
                    f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM written.{table}"
                )
        db.close()

    def audit(sql: str) -> list[tuple]:
        with sqlite3.connect(ledger) as db:
            rows = db.execute(sql).fetchall()
        db.close()
        return rows

    def fresh() -> object:
        SqliteStore(tmp_path / "fresh.db").close()
        return sqlite_shape(tmp_path / "fresh.db")

    yield Dialect(
        "sqlite",
        lambda: SqliteStore(written),
        make_v1,
        lambda: SqliteStore(ledger),
        audit,
        fresh,
        lambda: sqlite_shape(ledger),
    )


@contextmanager
def postgres_dialect(tmp_path: Path) -> Iterator[Dialect]:
    import psycopg

    from integration import PostgresStore

    require_pg()
    names = {role: f"test_{role}_{uuid.uuid4().hex[:12]}" for role in ("written", "v1", "fresh")}
    admin = psycopg.connect(PG_URL, autocommit=True)

    def make_v1(source: LedgerStore) -> None:
        source.close()
        written, ledger = names["written"], names["v1"]
        with admin.transaction():
            admin.execute(f"CREATE SCHEMA {ledger}")
            admin.execute(f"SET LOCAL search_path TO {ledger}")
            admin.execute((FIXTURES / "schema_v1_postgres.sql").read_text())
            admin.execute(
                "INSERT INTO meta SELECT key, value FROM " + written + ".meta"
                " WHERE key = 'data_version' UNION ALL SELECT 'schema_version', '1'"
            )
            for table in TABLES:
                columns = ", ".join(
                    row[0]
                    for row in admin.execute(
                        "SELECT column_name FROM information_schema.columns"
                        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                        (ledger, table),
                    )
                )
                admin.execute(
                    f"INSERT INTO {ledger}.{table} ({columns})"
                    f" SELECT {columns} FROM {written}.{table}"
                )
            for table, column in IDENTITY_COLUMNS.items():  # as the v1 build's inserts left them
                admin.execute(
                    f"SELECT setval(pg_get_serial_sequence('{ledger}.{table}', '{column}'),"
                    f" COALESCE(MAX({column}), 0) + 1, false) FROM {ledger}.{table}"
                )

    def audit(sql: str) -> list[tuple]:
        with admin.transaction():
            admin.execute(f"SET LOCAL search_path TO {names['v1']}")
            cursor = admin.execute(sql)
            return cursor.fetchall() if cursor.description else []

    def shape_in(schema: str) -> object:
        columns = admin.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = %s"
            " ORDER BY table_name, ordinal_position",
            (schema,),
        ).fetchall()
        indexes = admin.execute(
            "SELECT indexname, replace(indexdef, %s, '') FROM pg_indexes WHERE schemaname = %s"
            " ORDER BY indexname",
            (f"{schema}.", schema),
        ).fetchall()
        checks = admin.execute(
            "SELECT conrelid::regclass::text, conname, replace(pg_get_constraintdef(oid), %s, '')"
            " FROM pg_constraint WHERE connamespace = %s::regnamespace ORDER BY 2",
            (f"{schema}.", schema),
        ).fetchall()
        return columns, indexes, [(t.removeprefix(f"{schema}."), n, d) for t, n, d in checks]

    def fresh() -> object:
        PostgresStore(PG_URL, schema=names["fresh"]).close()
        return shape_in(names["fresh"])

    try:
        yield Dialect(
            "postgres",
            lambda: PostgresStore(PG_URL, schema=names["written"]),
            make_v1,
            lambda: PostgresStore(PG_URL, schema=names["v1"]),
            audit,
            fresh,
            lambda: shape_in(names["v1"]),
        )
    finally:
        admin.close()
        for name in names.values():
            drop_schema(name)


@pytest.fixture(params=["sqlite", "postgres"])
def dialect(request, tmp_path) -> Iterator[Dialect]:
    with (sqlite_dialect if request.param == "sqlite" else postgres_dialect)(tmp_path) as made:
        yield made


@pytest.fixture
def v1_ledger(dialect) -> tuple[Dialect, tuple, Envelopes]:
    """A v1 ledger holding the traffic; the current store's reads of it as written."""
    env = Envelopes()
    source = dialect.open_current()
    write_traffic(source, env)
    written = store_reads(source)
    dialect.make_v1(source)
    assert dialect.audit("SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    return dialect, written, env


def test_a_v1_ledger_upgrades_in_place_keeps_its_books_and_posts_on(v1_ledger, caplog):
    dialect, written, env = v1_ledger
    audited = [dialect.audit(sql) for sql in AUDITS]
    with caplog.at_level(logging.WARNING, logger="integration.store"):
        store = dialect.open_v1()
    try:
        assert (store.upgraded_from, store.schema_version()) == (1, SCHEMA_VERSION)
        assert f"from schema 1 to {SCHEMA_VERSION}" in caplog.text
        assert [dialect.audit(sql) for sql in AUDITS] == audited  # the books in plain SQL
        assert store_reads(store) == written  # and as the store reads them
        assert {letter.raw_encoding for letter in store.dead_letters(DeadLetterFilter())} == {
            "text"
        }
        assert dialect.shape() == dialect.shape_of_fresh()  # as if created by this build
        core = Core(settings(), store, ManualClock(START))
        assert core.reconcile().ok
        # the held seq 3 goes through once seq 2 arrives; new postings and the v2 identity work
        gap = core.submit(confirm(env, "1", seq=2))
        assert [gap.status, *(r.status for r in gap.released)] == [Status.POSTED] * 2
        blocker = env(MachineEvent(plant="P1", work_centre="CUT", state="UP"), key="GR-9")
        assert core.submit(blocker).status is Status.POSTED
        assert core.submit(env(receipt("3", location="LINE"), key="GR-9")).status is Status.POSTED
        assert core.reconcile().ok and core.store.held() == []
    finally:
        store.close()
    again = dialect.open_v1()  # upgraded once: opened again, nothing more to do
    assert (again.upgraded_from, again.schema_version()) == (None, SCHEMA_VERSION)
    again.close()


def test_a_failing_upgrade_leaves_the_v1_ledger_as_it_was(v1_ledger):
    """The upgrade's last statement fails (the column it adds is there already): everything
    before it in the same transaction is undone, and the v1 build still reads the ledger."""
    dialect, _written, _env = v1_ledger
    dialect.audit("ALTER TABLE dead_letter ADD COLUMN raw_encoding TEXT")
    shape, audited = dialect.shape(), [dialect.audit(sql) for sql in AUDITS]
    with pytest.raises(ConfigurationError, match="raw_encoding"):
        dialect.open_v1()
    assert dialect.audit("SELECT value FROM meta WHERE key = 'schema_version'") == [("1",)]
    assert dialect.shape() == shape and [dialect.audit(sql) for sql in AUDITS] == audited


def test_two_processes_opening_a_v1_postgres_ledger_upgrade_it_once(tmp_path):
    with postgres_dialect(tmp_path) as dialect:
        source = dialect.open_current()
        write_traffic(source, Envelopes())
        dialect.make_v1(source)
        barrier, opened = threading.Barrier(2), []

        def open_it() -> None:
            barrier.wait()
            opened.append(dialect.open_v1())

        threads = [threading.Thread(target=open_it) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        try:
            assert sorted([s.upgraded_from for s in opened], key=str) == [1, None]
            assert {s.schema_version() for s in opened} == {SCHEMA_VERSION}
        finally:
            for store in opened:
                store.close()


def test_a_ledger_of_a_version_before_any_step_is_refused(tmp_path):
    path = tmp_path / "ledger.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    db.close()
    with pytest.raises(ConfigurationError, match="schema 0; this build upgrades 1 and later"):
        SqliteStore(path)


def test_every_schema_version_after_the_first_has_one_step_per_dialect():
    from integration.store.migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS

    for steps in (SQLITE_MIGRATIONS, POSTGRES_MIGRATIONS):
        assert len(steps) == SCHEMA_VERSION - 1
        assert [step[-1] for step in steps] == [
            f"UPDATE meta SET value = '{n}' WHERE key = 'schema_version'"
            for n in range(2, SCHEMA_VERSION + 1)
        ]
