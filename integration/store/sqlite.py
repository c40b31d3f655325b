"""The embedded SQLite adapter of the `LedgerStore` port (stdlib sqlite3, WAL for files)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from pathlib import Path

from integration.errors import ConfigurationError, StoreError
from integration.ledger import StockMove
from integration.money import to_minor
from integration.store.base import (
    Commit,
    Committed,
    DeadLetterWrite,
    DuplicateDelivery,
    EntryWrite,
    InboxStatus,
    InboxWrite,
)
from integration.store.schema import SCHEMA_VERSION, SQLITE_SCHEMA
from integration.store.sql_reads import SqlReads

__all__ = ["SqliteStore"]


# Posting stamps the record with the next position in the order of effect; a held or
# rejected record has none.
_NEXT_APPLIED = "(SELECT COALESCE(MAX(applied_seq), 0) + 1 FROM inbox)"
_UPDATE_INBOX = {
    posted: "UPDATE inbox SET status=?, code=?, committed_at=?, hold_deadline=?, waits_on=?,"
    f" late=?, applied_seq={_NEXT_APPLIED if posted else 'NULL'} WHERE inbox_id=?"
    " RETURNING inbox_id, applied_seq"
    for posted in (True, False)
}
_INSERT_INBOX = {
    posted: "INSERT INTO inbox (message_id, idempotency_key, unique_ids, payload_hash,"
    " message_type, source_system, stream, source_seq, plant, item, work_order, lot, supplier,"
    " period, envelope, received_at, status, code, committed_at, hold_deadline, waits_on, late,"
    f" applied_seq) VALUES ({', '.join('?' * 22)}, {_NEXT_APPLIED if posted else 'NULL'})"
    " RETURNING inbox_id, applied_seq"
    for posted in (True, False)
}


# (begin, end, undo) of one commit: its own transaction, or a savepoint inside a batch.
_TRANSACTION = ("BEGIN IMMEDIATE", "COMMIT", ("ROLLBACK",))
_SAVEPOINT = ("SAVEPOINT step", "RELEASE step", ("ROLLBACK TO step", "RELEASE step"))


class SqliteStore(SqlReads):
    """A ledger in one SQLite database: `:memory:` for tests and runs, a file (WAL) to keep."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise ConfigurationError(f"cannot open SQLite database {self.path}: {error}") from error
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._in_batch = False
        self._last_moment: datetime | None = None
        self._last_text: str | None = None
        self._migrate()

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for audits in plain SQL (and fault injection in tests)."""
        return self._db

    def _migrate(self) -> None:
        exists = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if exists is None:
            self._db.executescript("BEGIN;" + SQLITE_SCHEMA + "COMMIT;")
            self._db.execute(
                "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            return
        version = int(
            self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        )
        if version != SCHEMA_VERSION:
            raise ConfigurationError(
                f"{self.path} has ledger schema {version}; this build reads {SCHEMA_VERSION}"
            )

    def exclusive(self) -> AbstractContextManager[None]:
        # One process writes an SQLite ledger; `BEGIN IMMEDIATE` guards each commit anyway.
        return nullcontext()

    def data_version(self) -> int:
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def schema_version(self) -> int:
        return int(
            self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        )

    # --- the one write ---------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction around many commits; each commit inside is a savepoint."""
        self._db.execute("BEGIN IMMEDIATE")
        self._in_batch = True
        try:
            yield
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            self._db.execute("ROLLBACK")
            raise StoreError(f"SQLite failure: {error}") from error
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._in_batch = False

    def commit(self, commit: Commit) -> Committed:
        db = self._db
        begin, end, undo = _SAVEPOINT if self._in_batch else _TRANSACTION
        try:
            db.execute(begin)
            inbox_id, applied_seq = (
                self._write_inbox(commit.inbox) if commit.inbox else (None, None)
            )
            entry_ids = tuple(
                self._write_entry(inbox_id, commit.inbox, entry) for entry in commit.entries
            )
            dead_letter_id = (
                self._write_dead_letter(commit.dead_letter) if commit.dead_letter else None
            )
            if commit.resolved_dead_letter is not None:
                db.execute(
                    "UPDATE dead_letter SET status = ? WHERE dead_letter_id = ?",
                    (commit.resolution, commit.resolved_dead_letter),
                )
                db.execute(
                    "DELETE FROM dead_letter_wait WHERE dead_letter_id = ?",
                    (commit.resolved_dead_letter,),
                )
            if commit.streams:
                db.executemany(
                    "INSERT INTO stream_position VALUES (?, ?) ON CONFLICT (stream)"
                    " DO UPDATE SET next_seq = excluded.next_seq",
                    sorted(commit.streams.items()),
                )
            db.execute(end)
            return Committed(inbox_id, entry_ids, dead_letter_id, applied_seq)
        except sqlite3.IntegrityError as error:
            self._undo(undo)
            if "inbox" in str(error):
                raise DuplicateDelivery(f"inbox already holds this message: {error}") from error
            raise StoreError(f"integrity failure: {error}") from error
        except (sqlite3.Error, OverflowError) as error:
            if db.in_transaction:
                self._undo(undo)
            raise StoreError(f"SQLite failure: {error}") from error

    def _undo(self, statements: tuple[str, ...]) -> None:
        for statement in statements:
            self._db.execute(statement)

    def _write_inbox(self, row: InboxWrite) -> tuple[int, int | None]:
        posted = row.status is InboxStatus.POSTED
        outcome = (
            row.status.value,
            row.code.value if row.code else None,
            self._ts(row.committed_at),
            self._ts(row.hold_deadline),
            json.dumps(row.waits_on) if row.waits_on else "[]",
            int(row.late),
        )
        if row.inbox_id is not None:
            return self._db.execute(_UPDATE_INBOX[posted], (*outcome, row.inbox_id)).fetchone()
        ids = row.ids
        cursor = self._db.execute(
            _INSERT_INBOX[posted],
            (
                row.message_id,
                row.idempotency_key,
                int(row.unique),
                row.payload_hash,
                row.message_type,
                row.source_system,
                row.stream,
                row.source_seq,
                ids.plant,
                ids.item,
                ids.work_order,
                ids.lot,
                ids.supplier,
                ids.period,
                row.envelope_json,
                self._ts(row.received_at),
                *outcome,
            ),
        )
        return cursor.fetchone()

    def _ts(self, moment: datetime | None) -> str | None:
        """ISO text of a timestamp; the clock's current moment repeats, so the last is kept."""
        if moment is None:
            return None
        if moment is not self._last_moment:
            self._last_moment, self._last_text = moment, moment.isoformat()
        return self._last_text

    def _write_entry(self, inbox_id: int, inbox: InboxWrite, entry: EntryWrite) -> int:
        cursor = self._db.execute(
            "INSERT INTO journal_entry (inbox_id, message_id, plant, currency, period,"
            " original_period, late, event_type, work_order, occurred_at, posted_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                inbox_id,
                inbox.message_id,
                entry.plant,
                entry.currency,
                entry.period,
                entry.original_period,
                int(entry.late),
                entry.event_type,
                entry.work_order,
                self._ts(entry.occurred_at),
                self._ts(inbox.committed_at),
            ),
        )
        entry_id = cursor.lastrowid
        posting = entry.posting
        self._db.executemany(
            "INSERT INTO journal_line VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    entry_id,
                    n,
                    ln.plant,
                    ln.account,
                    ln.currency,
                    to_minor(ln.amount, ln.currency),
                    ln.work_order,
                    ln.item,
                )
                for n, ln in enumerate(posting.lines, start=1)
            ],
        )
        self._db.executemany(
            "INSERT INTO stock_move (entry_id, plant, item, location, lot, qty, value_minor,"
            " account) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [self._move_row(entry_id, entry.currency, mv) for mv in posting.moves],
        )
        if posting.exceptions:
            self._db.executemany(
                "INSERT INTO stock_exception (entry_id, plant, item, location, lot, qty_after)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (entry_id, ex.plant, ex.item, ex.location, ex.lot, str(ex.qty_after))
                    for ex in posting.exceptions
                ],
            )
        return entry_id

    @staticmethod
    def _move_row(entry_id: int, currency: str, move: StockMove) -> tuple:
        return (
            entry_id,
            move.plant,
            move.item,
            move.location,
            move.lot,
            str(move.qty),
            to_minor(move.value, currency),
            move.account,
        )

    def _write_dead_letter(self, row: DeadLetterWrite) -> int:
        event = json.dumps({"at": row.at.isoformat(), "code": row.code.value})
        problems = json.dumps([p.to_dict() for p in row.problems])
        if row.id is not None:
            self._db.execute(
                "UPDATE dead_letter SET attempts = attempts + 1, code = ?, problems = ?,"
                " history = json_insert(history, '$[#]', json(?)), updated_at = ?,"
                " status = 'open' WHERE dead_letter_id = ?",
                (row.code.value, problems, event, row.at.isoformat(), row.id),
            )
            dead_letter_id = row.id
            self._db.execute("DELETE FROM dead_letter_wait WHERE dead_letter_id = ?", (row.id,))
        else:
            ids = row.ids
            dead_letter_id = self._db.execute(
                "INSERT INTO dead_letter (message_id, idempotency_key, message_type,"
                " source_system, sender, code, problems, raw, plant, item, work_order, lot,"
                " supplier, period, history, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.message_id,
                    row.idempotency_key,
                    row.message_type,
                    row.source_system,
                    row.sender,
                    row.code.value,
                    problems,
                    row.raw,
                    ids.plant,
                    ids.item,
                    ids.work_order,
                    ids.lot,
                    ids.supplier,
                    ids.period,
                    f"[{event}]",
                    row.at.isoformat(),
                    row.at.isoformat(),
                ),
            ).lastrowid
        self._db.executemany(
            "INSERT INTO dead_letter_wait VALUES (?, ?)",
            [(dead_letter_id, key) for key in row.waits_on],
        )
        return dead_letter_id

    # --- the reads' access to the database (see SqlReads) --------------------------------
    def _rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        return self._db.execute(sql, params).fetchall()

    def _stream(self, sql: str) -> Iterator[tuple]:
        yield from self._db.cursor().execute(sql)

    def close(self) -> None:
        self._db.close()
