"""PostgreSQL's specialisation of the shared SQL writes: a journal entry with its lines, stock
moves and stock exceptions in one statement (data-modifying CTEs), so a posting costs one round
trip to the server for its entry instead of one per table.

The lines, moves and exceptions go as one JSON array of rows each (`json.dumps` is C; psycopg's
array adaptation costs far more in Python), unpacked by `json_array_elements`. The foreign keys
from them to their entry are checked at the end of the statement, when the entry row exists;
an empty array inserts nothing.
"""

from __future__ import annotations

import json
from typing import Any

from integration.money import to_minor
from integration.store.base import EntryWrite, InboxWrite
from integration.store.sql_writes import SqlWrites

__all__ = ["PostgresWrites"]


def _fields(*types: str) -> str:
    """Each JSON row's fields, by position, as columns of these SQL types."""
    return ", ".join(f"(r->>{n})::{name}" for n, name in enumerate(types))


_WRITE_ENTRY = f"""
WITH entry AS (
    INSERT INTO journal_entry (inbox_id, message_id, plant, currency, period, original_period,
        late, event_type, work_order, occurred_at, posted_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    RETURNING entry_id
), lines AS (
    INSERT INTO journal_line (entry_id, line_no, plant, account, currency, amount_minor,
        work_order, item)
    SELECT entry.entry_id, {_fields("integer", "text", "text", "text", "bigint", "text", "text")}
    FROM entry, json_array_elements(%s::json) AS r
), moves AS (
    INSERT INTO stock_move (entry_id, plant, item, location, lot, qty, value_minor, account)
    SELECT entry.entry_id, {_fields("text", "text", "text", "text", "numeric", "bigint", "text")}
    FROM entry, json_array_elements(%s::json) AS r
), exceptions AS (
    INSERT INTO stock_exception (entry_id, plant, item, location, lot, qty_after)
    SELECT entry.entry_id, {_fields("text", "text", "text", "text", "numeric")}
    FROM entry, json_array_elements(%s::json) AS r
)
SELECT entry_id FROM entry
"""


class PostgresWrites(SqlWrites):
    """`SqlWrites` with each journal entry written in one statement (`_db_execute` runs a
    statement in psycopg's `%s` style and returns its cursor)."""

    def _db_execute(self, sql: str, params: tuple | list) -> Any:
        raise NotImplementedError

    def _write_entry(self, inbox_id: int, inbox: InboxWrite, entry: EntryWrite) -> int:
        posting, currency = entry.posting, entry.currency
        lines = [
            (n, ln.plant, ln.account, ln.currency, to_minor(ln.amount, ln.currency))
            + (ln.work_order, ln.item)
            for n, ln in enumerate(posting.lines, start=1)
        ]
        moves = [
            (mv.plant, mv.item, mv.location, mv.lot, str(mv.qty), to_minor(mv.value, currency))
            + (mv.account,)
            for mv in posting.moves
        ]
        exceptions = [
            (ex.plant, ex.item, ex.location, ex.lot, str(ex.qty_after)) for ex in posting.exceptions
        ]
        params = (
            inbox_id,
            inbox.message_id,
            entry.plant,
            currency,
            entry.period,
            entry.original_period,
            int(entry.late),
            entry.event_type,
            entry.work_order,
            entry.occurred_at,
            inbox.committed_at,
            json.dumps(lines),
            json.dumps(moves),
            json.dumps(exceptions),
        )
        return self._db_execute(_WRITE_ENTRY, params).fetchone()[0]
