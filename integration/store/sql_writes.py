"""The write side of one commit in portable SQL, shared by the SQL adapters.

An adapter wraps `_write(commit)` in its transaction (or savepoint) and supplies:
`_execute(sql, params)` returning a cursor (`?` placeholders), `_executemany(sql, rows)`,
`_ts(moment)` and `_qty(value)` (how its driver takes timestamps and quantities), and
`_HISTORY_APPEND` (the SQL expression appending one JSON event to a dead letter's history).
It may override `_insert_entry` where its driver knows the new row's id without `RETURNING`.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from integration.errors import StoreError
from integration.ledger import Account
from integration.money import to_minor
from integration.store.base import (
    Commit,
    DeadLetterWrite,
    EntryWrite,
    InboxStatus,
    InboxWrite,
)

__all__ = ["INSERT_ENTRY", "SqlWrites"]

# Posting stamps the record with the next position in the order of effect; a held or rejected
# record has none. MAX + 1 is safe: writers of one ledger are serialised (one SQLite writer;
# PostgreSQL's data_version row lock, taken first in every commit).
_NEXT_APPLIED = "(SELECT COALESCE(MAX(applied_seq), 0) + 1 FROM inbox)"
_UPDATE_INBOX = {
    posted: "UPDATE inbox SET status = ?, code = ?, committed_at = ?, hold_deadline = ?,"
    f" waits_on = ?, late = ?, applied_seq = {_NEXT_APPLIED if posted else 'NULL'}"
    " WHERE inbox_id = ? RETURNING inbox_id, applied_seq"
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
INSERT_ENTRY = (
    "INSERT INTO journal_entry (inbox_id, message_id, plant, currency, period, original_period,"
    " late, event_type, work_order, occurred_at, posted_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RETURNING_ENTRY_ID = INSERT_ENTRY + " RETURNING entry_id"
# Accounts as plain text: drivers bind an exact str without adapting a str subclass.
_ACCOUNT_TEXT = {account: account.value for account in Account}
_INSERT_LINE = "INSERT INTO journal_line VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_MOVE = (
    "INSERT INTO stock_move (entry_id, plant, item, location, lot, qty, value_minor, account)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EXCEPTION = (
    "INSERT INTO stock_exception (entry_id, plant, item, location, lot, qty_after)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letter (message_id, idempotency_key, message_type, source_system, sender,"
    " code, problems, raw, plant, item, work_order, lot, supplier, period, history, created_at,"
    f" updated_at) VALUES ({', '.join('?' * 17)}) RETURNING dead_letter_id"
)
_UPSERT_STREAM = (
    "INSERT INTO stream_position VALUES (?, ?)"
    " ON CONFLICT (stream) DO UPDATE SET next_seq = excluded.next_seq"
)


def _line_rows(entry_id: int, lines) -> list[tuple]:
    text = _ACCOUNT_TEXT
    return [
        (entry_id, n, plant, text[account], currency, to_minor(amount, currency), work_order, item)
        for n, (plant, account, currency, amount, work_order, item) in enumerate(lines, start=1)
    ]


class SqlWrites:
    """Everything one `Commit` writes, as SQL statements on the adapter's connection."""

    _HISTORY_APPEND: str

    def _execute(self, sql: str, params: tuple | list = ()) -> Any:
        raise NotImplementedError

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        raise NotImplementedError

    def _ts(self, moment: datetime | None) -> Any:
        raise NotImplementedError

    def _qty(self, value: Decimal) -> Any:
        raise NotImplementedError

    def _write(self, commit: Commit) -> tuple[int | None, tuple[int, ...], int | None, int | None]:
        """Write the commit; (inbox id, entry ids, dead letter id, applied seq)."""
        inbox, entries = commit.inbox, commit.entries
        inbox_id, applied_seq = self._write_inbox(inbox) if inbox else (None, None)
        entry_ids = tuple([self._write_entry(inbox_id, inbox, entry) for entry in entries])
        dead_letter_id = self._write_dead_letter(commit.dead_letter) if commit.dead_letter else None
        if commit.resolved_dead_letter is not None:
            self._execute(
                "UPDATE dead_letter SET status = ? WHERE dead_letter_id = ?",
                (commit.resolution, commit.resolved_dead_letter),
            )
            self._execute(
                "DELETE FROM dead_letter_wait WHERE dead_letter_id = ?",
                (commit.resolved_dead_letter,),
            )
        if commit.streams:
            self._executemany(_UPSERT_STREAM, sorted(commit.streams.items()))
        return inbox_id, entry_ids, dead_letter_id, applied_seq

    def _write_inbox(self, row: InboxWrite) -> tuple[int, int | None]:
        posted = row.status is InboxStatus.POSTED
        ts = self._ts
        outcome = (
            row.status.value,
            row.code.value if row.code else None,
            ts(row.committed_at),
            ts(row.hold_deadline),
            json.dumps(row.waits_on) if row.waits_on else "[]",
            int(row.late),
        )
        if row.inbox_id is not None:
            found = self._execute(_UPDATE_INBOX[posted], (*outcome, row.inbox_id)).fetchone()
            if found is None:
                raise StoreError(f"no inbox record {row.inbox_id} to update")
            return found
        return self._execute(
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
                *row.ids,
                row.envelope_json,
                ts(row.received_at),
                *outcome,
            ),
        ).fetchone()

    def _insert_entry(self, row: tuple) -> int:
        """Insert one journal_entry row (`INSERT_ENTRY`) and return its id."""
        return self._execute(_RETURNING_ENTRY_ID, row).fetchone()[0]

    def _write_entry(self, inbox_id: int, inbox: InboxWrite, entry: EntryWrite) -> int:
        plant, currency, period, original, late, event_type, work_order, occurred_at, posting = (
            entry
        )
        ts = self._ts
        entry_id = self._insert_entry(
            (
                inbox_id,
                inbox.message_id,
                plant,
                currency,
                period,
                original,
                int(late),
                event_type,
                work_order,
                ts(occurred_at),
                ts(inbox.committed_at),
            )
        )
        lines, moves, exceptions = posting
        if lines:
            self._executemany(_INSERT_LINE, _line_rows(entry_id, lines))
        if moves:
            self._executemany(_INSERT_MOVE, self._move_rows(entry_id, currency, moves))
        if exceptions:
            qty = self._qty
            rows = [
                (entry_id, plant, item, location, lot, qty(after))
                for plant, item, location, lot, after in exceptions
            ]
            self._executemany(_INSERT_EXCEPTION, rows)
        return entry_id

    def _move_rows(self, entry_id: int, currency: str, moves) -> list[tuple]:
        qty, text = self._qty, _ACCOUNT_TEXT
        return [
            (entry_id, plant, item, location, lot, qty(q), to_minor(value, currency), text[account])
            for plant, item, location, lot, q, value, account in moves
        ]

    def _write_dead_letter(self, row: DeadLetterWrite) -> int:
        event = json.dumps({"at": row.at.isoformat(), "code": row.code.value})
        problems = json.dumps([p.to_dict() for p in row.problems])
        at = self._ts(row.at)
        if row.id is not None:
            found = self._execute(
                "UPDATE dead_letter SET attempts = attempts + 1, code = ?, problems = ?,"
                f" history = {self._HISTORY_APPEND}, updated_at = ?, status = 'open'"
                " WHERE dead_letter_id = ? RETURNING dead_letter_id",
                (row.code.value, problems, event, at, row.id),
            ).fetchone()
            if found is None:
                raise StoreError(f"no dead letter {row.id} to update")
            dead_letter_id = row.id
            self._execute("DELETE FROM dead_letter_wait WHERE dead_letter_id = ?", (row.id,))
        else:
            dead_letter_id = self._execute(
                _INSERT_DEAD_LETTER,
                (
                    row.message_id,
                    row.idempotency_key,
                    row.message_type,
                    row.source_system,
                    row.sender,
                    row.code.value,
                    problems,
                    row.raw,
                    *row.ids.as_tuple(),
                    f"[{event}]",
                    at,
                    at,
                ),
            ).fetchone()[0]
        if row.waits_on:
            self._executemany(
                "INSERT INTO dead_letter_wait VALUES (?, ?)",
                [(dead_letter_id, key) for key in row.waits_on],
            )
        return dead_letter_id
