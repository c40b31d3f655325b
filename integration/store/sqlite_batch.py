"""The deferred writes of one SQLite batch.

A commit inside a batch used to be a savepoint around its own statements: the inbox insert
(counting MAX(applied_seq) and updating five indexes), one statement per journal entry, the
stream position rewritten, and SAVEPOINT/RELEASE, for every message. Instead the rows are kept
(deferred.py: what is kept, and how a commit is answered without writing) and written with one
`executemany` per table for every group of `DeferredRows.chunk` new records, before anything
else touches the database, and when the batch ends. SQLite has one writer, and the batch holds
the write lock from its start (`BEGIN IMMEDIATE`): the ids of inbox records and journal entries
and the order of effect are counted on from the MAX read then, dense and increasing as SQLite
itself would number them, and the identities the batch expects are looked up in one query.

A failure while writing the rows (a record to update is missing, a value SQLite cannot hold)
cannot be pinned on one commit: it marks the batch broken, and the transaction rolls back.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from itertools import count

from integration.errors import StoreError
from integration.store.base import Identity
from integration.store.deferred import DeferredRows
from integration.store.sql_writes import (
    ENTRY_COLUMNS,
    INBOX_COLUMNS,
    INBOX_OUTCOME,
    INSERT_EXCEPTION,
    INSERT_LINE,
    INSERT_MOVE,
    UPSERT_STREAM,
)

__all__ = ["SqliteBatch"]

_OPENING = (
    "SELECT (SELECT COALESCE(MAX(applied_seq), 0) FROM inbox),"
    " (SELECT COALESCE(MAX(inbox_id), 0) FROM inbox),"
    " (SELECT COALESCE(MAX(entry_id), 0) FROM journal_entry)"
)
_FOUND = "SELECT source_system, message_id, message_type, idempotency_key FROM inbox"
# The expected identities ([source, id, type, key] each, as one JSON array) found present: two
# indexed lookups per identity, one per unique index.
_PRESENT_ALL = (
    f"{_FOUND} WHERE unique_ids = 1 AND (message_id, source_system) IN"
    " (SELECT value ->> 1, value ->> 0 FROM json_each(?1))"
    f" UNION {_FOUND} WHERE unique_ids = 1 AND (message_type, idempotency_key) IN"
    " (SELECT value ->> 2, value ->> 3 FROM json_each(?1))"
)
_PRESENT = (
    "SELECT 1 FROM inbox WHERE unique_ids = 1 AND message_id = ? AND source_system = ?"
    " UNION ALL SELECT 1 FROM inbox WHERE unique_ids = 1"
    " AND message_type = ? AND idempotency_key = ? LIMIT 1"
)
_INSERT_INBOX = (
    f"INSERT INTO inbox (inbox_id, {INBOX_COLUMNS}, applied_seq)"
    f" VALUES ({', '.join('?' * (INBOX_COLUMNS.count(',') + 3))})"
)
_UPDATE_OUTCOME = (
    f"UPDATE inbox SET {', '.join(f'{c} = ?' for c in INBOX_OUTCOME.split(', '))},"
    " applied_seq = ? WHERE inbox_id = ?"
)
_INSERT_ENTRY = (
    f"INSERT INTO journal_entry (entry_id, {ENTRY_COLUMNS})"
    f" VALUES ({', '.join('?' * (ENTRY_COLUMNS.count(',') + 2))})"
)
_WRITES = (  # `DeferredRows.pending()`'s tables, in order, and how each is written
    ("inbox", _INSERT_INBOX),
    ("outcomes", _UPDATE_OUTCOME),
    ("journal_entry", _INSERT_ENTRY),
    ("journal_line", INSERT_LINE),
    ("stock_move", INSERT_MOVE),
    ("stock_exception", INSERT_EXCEPTION),
    ("stream_position", UPSERT_STREAM),
)


class SqliteBatch(DeferredRows):
    """The rows one SQLite batch has written and not yet sent (deferred.py). Made once the
    batch's transaction holds the write lock: it reads where the ids and the order of effect
    stand, and which expected identities the inbox holds."""

    chunk = 250

    def __init__(self, db: sqlite3.Connection, expected: Iterable[Identity]) -> None:
        super().__init__(expected)
        self._db = db
        self._applied, inbox_id, entry_id = db.execute(_OPENING).fetchone()
        self._ids = {"inbox": count(inbox_id + 1), "journal_entry": count(entry_id + 1)}
        if self.expected:
            asked = json.dumps([list(identity) for identity in self.expected])
            for found in db.execute(_PRESENT_ALL, (asked,)):
                self._take(Identity(*found))

    def _next_id(self, table: str) -> int:
        return next(self._ids[table])

    def _present(self, identity: Identity) -> bool:
        source, message_id, message_type, key = identity
        found = self._db.execute(_PRESENT, (message_id, source, message_type, key))
        return found.fetchone() is not None

    def flush(self) -> None:
        """Write every pending row, one `executemany` per table. A failure (SQLite's, or a
        record to update that is missing) breaks the batch."""
        self.check()
        rows = self.pending()
        if rows is None:
            return
        try:
            self._write(rows)
        except BaseException as error:
            self.fail(error)
            raise
        self._sent()

    def _write(self, rows: dict[str, list]) -> None:
        for table, sql in _WRITES:
            pending = rows[table]
            if not pending:
                continue
            written = self._db.executemany(sql, pending).rowcount
            if table == "outcomes" and written != len(pending):
                raise StoreError("inbox records to update are missing")
