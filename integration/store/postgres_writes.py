"""PostgreSQL's specialisation of the shared SQL writes: a journal entry with its lines, stock
moves and stock exceptions in one statement (data-modifying CTEs), so a posting costs one round
trip to the server for its entry instead of one per table.

The lines, moves and exceptions go as one JSON array of rows each (`json.dumps` is C; psycopg's
array adaptation costs far more in Python), unpacked by `json_array_elements`: the same rows a
batch sends (`_posting_rows`), their entry id taken from the statement. The foreign keys
from them to their entry are checked at the end of the statement, when the entry row exists;
an empty array inserts nothing.

Inside a batch (`_deferred` set), the inbox records, entries and stream positions go to the
batch's `DeferredBatch` instead, which sends them together (see postgres_batch.py).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from integration.store.base import EntryWrite, Identity, InboxStatus, InboxWrite
from integration.store.postgres_batch import DeferredBatch, json_fields
from integration.store.sql_writes import (
    ENTRY_COLUMNS,
    EXCEPTION_COLUMNS,
    LINE_COLUMNS,
    MOVE_COLUMNS,
    SqlWrites,
    exception_rows,
    line_rows,
    move_rows,
)

__all__ = ["PostgresWrites"]

_POSTING_TABLES = ("journal_line", "stock_move", "stock_exception")


_WRITE_ENTRY = f"""
WITH entry AS (
    INSERT INTO journal_entry ({ENTRY_COLUMNS}) VALUES ({", ".join(["%s"] * 11)})
    RETURNING entry_id
), lines AS (
    INSERT INTO journal_line ({LINE_COLUMNS})
    SELECT entry.entry_id,
        {json_fields("integer", "text", "text", "text", "bigint", "text", "text", start=1)}
    FROM entry, json_array_elements(%s::json) AS r
), moves AS (
    INSERT INTO stock_move ({MOVE_COLUMNS})
    SELECT entry.entry_id,
        {json_fields("text", "text", "text", "text", "numeric", "bigint", "text", start=1)}
    FROM entry, json_array_elements(%s::json) AS r
), exceptions AS (
    INSERT INTO stock_exception ({EXCEPTION_COLUMNS})
    SELECT entry.entry_id, {json_fields("text", "text", "text", "text", "numeric", start=1)}
    FROM entry, json_array_elements(%s::json) AS r
)
SELECT entry_id FROM entry
"""


def _posting_rows(entry_id: int, entry: EntryWrite) -> tuple[list, list, list]:
    """An entry's journal_line, stock_move and stock_exception rows (`_POSTING_TABLES`)."""
    lines, moves, exceptions = entry.posting
    return (
        line_rows(entry_id, lines),
        move_rows(entry_id, entry.currency, moves),
        exception_rows(entry_id, exceptions),
    )


class PostgresWrites(SqlWrites):
    """`SqlWrites` with each journal entry written in one statement (`_db_execute` runs a
    statement in psycopg's `%s` style and returns its cursor), and a batch's rows deferred."""

    _deferred: DeferredBatch | None

    def _db_execute(self, sql: str, params: tuple | list) -> Any:
        raise NotImplementedError

    def _write_inbox(self, row: InboxWrite) -> tuple[int, int | None]:
        batch = self._deferred
        if batch is None:
            return super()._write_inbox(row)
        posted = row.status is InboxStatus.POSTED
        if row.inbox_id is not None:
            return batch.update_inbox(self._inbox_outcome(row), row.inbox_id, posted)
        if row.unique:
            batch.claim(
                Identity(row.source_system, row.message_id, row.message_type, row.idempotency_key)
            )
        return batch.add_inbox(self._inbox_values(row), posted)

    def _write_streams(self, streams: Mapping[str, int]) -> None:
        if self._deferred is None:
            super()._write_streams(streams)
        else:
            self._deferred.add_streams(streams)

    def _write_entry(self, inbox_id: int, inbox: InboxWrite, entry: EntryWrite) -> int:
        batch = self._deferred
        if batch is None:
            return self._write_entry_now(inbox_id, inbox, entry)
        entry_id = batch.add_entry(self._entry_values(inbox_id, inbox, entry))
        for table, rows in zip(_POSTING_TABLES, _posting_rows(entry_id, entry), strict=True):
            batch.add_rows(table, rows)
        return entry_id

    def _write_entry_now(self, inbox_id: int, inbox: InboxWrite, entry: EntryWrite) -> int:
        # The statement gives the rows their entry's id: the 0 in front of each is skipped.
        rows = _posting_rows(0, entry)
        params = (*self._entry_values(inbox_id, inbox, entry), *map(json.dumps, rows))
        return self._db_execute(_WRITE_ENTRY, params).fetchone()[0]
