"""PostgreSQL's specialisation of the shared SQL writes: a journal entry with its lines, stock
moves and stock exceptions in one statement (data-modifying CTEs), so a posting costs one round
trip to the server for its entry instead of one per table.

The lines, moves and exceptions go as one JSON array of rows each (`json_text`, orjson;
psycopg's array adaptation costs far more in Python), unpacked by `json_array_elements`: the
same rows a batch sends (`posting_rows`), their entry id taken from the statement. The foreign
keys from them to their entry are checked at the end of the statement, when the entry row
exists; an empty array inserts nothing.

Inside a batch, the rows go to the batch's `DeferredBatch` instead (see sql_writes.py and
postgres_batch.py).
"""

from __future__ import annotations

from typing import Any

from integration.store.base import EntryWrite, InboxWrite
from integration.store.postgres_batch import json_fields, json_text
from integration.store.sql_writes import (
    ENTRY_COLUMNS,
    EXCEPTION_COLUMNS,
    LINE_COLUMNS,
    MOVE_COLUMNS,
    SqlWrites,
    posting_rows,
)

__all__ = ["PostgresWrites"]


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


class PostgresWrites(SqlWrites):
    """`SqlWrites` with each journal entry outside a batch written in one statement
    (`_db_execute` runs a statement in psycopg's `%s` style and returns its cursor)."""

    def _db_execute(self, sql: str, params: tuple | list) -> Any:
        raise NotImplementedError

    def _write_entry(self, inbox_id: int, inbox: InboxWrite, entry: EntryWrite) -> int:
        if self._deferred is not None:
            return super()._write_entry(inbox_id, inbox, entry)
        # The statement gives the rows their entry's id: the 0 in front of each is skipped.
        rows = posting_rows(0, entry)
        params = (*self._entry_values(inbox_id, inbox, entry), *map(json_text, rows))
        return self._db_execute(_WRITE_ENTRY, params).fetchone()[0]
