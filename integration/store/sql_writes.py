"""The write side of one commit in portable SQL, shared by the SQL adapters.

An adapter wraps `_write(commit)` in its transaction and supplies:
`_execute(sql, params)` returning a cursor (`?` placeholders), `_executemany(sql, rows)` and
`_HISTORY_APPEND` (the SQL expression appending one JSON event to a dead letter's history).
Timestamps are written as ISO 8601 text and quantities as exact decimal text, which both
SQLite and PostgreSQL (into `timestamptz` and `NUMERIC`) take as they are.
It may override `_insert_entry` where its driver knows the new row's id without `RETURNING`.
Inside a batch (`_deferred` set), new inbox records, their outcomes, journal entries with their
rows and stream positions go to the batch's `DeferredRows` instead (deferred.py), which the
adapter sends together; the rest (dead letters) is written at once, after what is pending.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
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
from integration.store.deferred import DeferredRows
from integration.store.sql_reads import stored_correlation
from integration.text import TEXT

__all__ = [
    "ENTRY_COLUMNS",
    "EXCEPTION_COLUMNS",
    "INBOX_COLUMNS",
    "INBOX_OUTCOME",
    "INSERT_ENTRY",
    "INSERT_EXCEPTION",
    "INSERT_LINE",
    "INSERT_MOVE",
    "LINE_COLUMNS",
    "MOVE_COLUMNS",
    "UPSERT_STREAM",
    "SqlWrites",
    "posting_rows",
]

# Posting stamps the record with the next position in the order of effect; a held or rejected
# record has none. MAX + 1 is safe: writers of one ledger are serialised (one SQLite writer;
# PostgreSQL's data_version row lock, taken first in every commit).
_NEXT_APPLIED = "(SELECT COALESCE(MAX(applied_seq), 0) + 1 FROM inbox)"
INBOX_OUTCOME = "status, code, committed_at, hold_deadline, waits_on, late"
_SET_OUTCOME = ", ".join(f"{column} = ?" for column in INBOX_OUTCOME.split(", "))
_UPDATE_INBOX = {
    posted: f"UPDATE inbox SET {_SET_OUTCOME},"
    f" applied_seq = {_NEXT_APPLIED if posted else 'NULL'}"
    " WHERE inbox_id = ? RETURNING inbox_id, applied_seq"
    for posted in (True, False)
}
# the outcome last: a pending row's outcome is replaced in place (deferred.py)
INBOX_COLUMNS = (
    "message_id, idempotency_key, unique_ids, payload_hash, message_type, source_system,"
    " stream, source_seq, plant, item, work_order, lot, supplier, period, envelope,"
    f" correlation_id, received_at, {INBOX_OUTCOME}"
)
_INSERT_INBOX = {
    posted: f"INSERT INTO inbox ({INBOX_COLUMNS}, applied_seq)"
    f" VALUES ({', '.join('?' * 23)}, {_NEXT_APPLIED if posted else 'NULL'})"
    " RETURNING inbox_id, applied_seq"
    for posted in (True, False)
}
ENTRY_COLUMNS = (
    "inbox_id, message_id, plant, currency, period, original_period, late, event_type,"
    " work_order, occurred_at, posted_at"
)
INSERT_ENTRY = f"INSERT INTO journal_entry ({ENTRY_COLUMNS}) VALUES ({', '.join('?' * 11)})"
_RETURNING_ENTRY_ID = INSERT_ENTRY + " RETURNING entry_id"
# Accounts as plain text: drivers bind an exact str without adapting a str subclass.
_ACCOUNT_TEXT = {account: account.value for account in Account}
LINE_COLUMNS = "entry_id, line_no, plant, account, currency, amount_minor, work_order, item"
INSERT_LINE = f"INSERT INTO journal_line ({LINE_COLUMNS}) VALUES ({', '.join('?' * 8)})"
MOVE_COLUMNS = "entry_id, plant, item, location, lot, qty, value_minor, account"
INSERT_MOVE = f"INSERT INTO stock_move ({MOVE_COLUMNS}) VALUES ({', '.join('?' * 8)})"
EXCEPTION_COLUMNS = "entry_id, plant, item, location, lot, qty_after"
INSERT_EXCEPTION = (
    f"INSERT INTO stock_exception ({EXCEPTION_COLUMNS}) VALUES ({', '.join('?' * 6)})"
)
_INSERT_DEAD_LETTER = (
    "INSERT INTO dead_letter (message_id, idempotency_key, message_type, source_system, sender,"
    " code, problems, raw, plant, item, work_order, lot, supplier, period, history, created_at,"
    " updated_at, raw_encoding, correlation_id)"
    f" VALUES ({', '.join('?' * 19)}) RETURNING dead_letter_id"
)
UPSERT_STREAM = (
    "INSERT INTO stream_position VALUES (?, ?)"
    " ON CONFLICT (stream) DO UPDATE SET next_seq = excluded.next_seq"
)


def line_rows(entry_id: int, lines) -> list[tuple]:
    """journal_line rows (`LINE_COLUMNS`), numbered from 1."""
    text = _ACCOUNT_TEXT
    return [
        (entry_id, n, plant, text[account], currency, to_minor(amount, currency), work_order, item)
        for n, (plant, account, currency, amount, work_order, item) in enumerate(lines, start=1)
    ]


def move_rows(entry_id: int, currency: str, moves) -> list[tuple]:
    """stock_move rows without their ids (`MOVE_COLUMNS`), quantities as exact decimal text."""
    text = _ACCOUNT_TEXT
    return [
        (entry_id, plant, item, location, lot, str(q), to_minor(value, currency), text[account])
        for plant, item, location, lot, q, value, account in moves
    ]


def exception_rows(entry_id: int, exceptions) -> list[tuple]:
    """stock_exception rows without their ids (`EXCEPTION_COLUMNS`)."""
    return [
        (entry_id, plant, item, location, lot, str(after))
        for plant, item, location, lot, after in exceptions
    ]


def posting_rows(entry_id: int, entry: EntryWrite) -> tuple[list, list, list]:
    """An entry's journal_line, stock_move and stock_exception rows (`POSTING_TABLES`)."""
    lines, moves, exceptions = entry.posting
    return (
        line_rows(entry_id, lines),
        move_rows(entry_id, entry.currency, moves),
        exception_rows(entry_id, exceptions),
    )


class SqlWrites:
    """Everything one `Commit` writes, as SQL statements on the adapter's connection."""

    _HISTORY_APPEND: str
    _deferred: DeferredRows | None = None  # the open batch's pending rows, if any

    def _execute(self, sql: str, params: tuple | list = ()) -> Any:
        raise NotImplementedError

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        raise NotImplementedError

    # The two timestamps last written, with their text: the clock's current moment and a
    # message's business time alternate within one commit. Replaced, never changed in place.
    _recent: tuple[tuple[datetime | None, str | None], ...] = ((None, None), (None, None))

    def _ts(self, moment: datetime | None) -> str | None:
        """ISO text of a timestamp (the last two are kept, the last used first)."""
        if moment is None:
            return None
        last, before = self._recent
        if moment is last[0]:
            return last[1]
        if moment is before[0]:
            self._recent = (before, last)
            return before[1]
        text = moment.isoformat()
        self._recent = ((moment, text), last)
        return text

    def _write(self, commit: Commit) -> tuple[int | None, tuple[int, ...], int | None, int | None]:
        """Write the commit; (inbox id, entry ids, dead letter id, applied seq)."""
        inbox, entries = commit.inbox, commit.entries
        inbox_id, applied_seq = self._write_inbox(inbox) if inbox else (None, None)
        entry_ids = tuple([self._write_entry(inbox_id, inbox, entry) for entry in entries])
        dead_letter_id = self._write_dead_letter(commit.dead_letter) if commit.dead_letter else None
        if commit.resolved_dead_letter is not None:
            self._resolve_dead_letter(commit)
        if commit.streams:
            self._write_streams(commit.streams)
        return inbox_id, entry_ids, dead_letter_id, applied_seq

    def _resolve_dead_letter(self, commit: Commit) -> None:
        """Settle the dead letter; one resolved by hand (`resolved_at`) says when and why in
        its history."""
        dead_letter = commit.resolved_dead_letter
        if commit.resolved_at is None:
            self._execute(
                "UPDATE dead_letter SET status = ? WHERE dead_letter_id = ?",
                (commit.resolution, dead_letter),
            )
        else:
            at = commit.resolved_at
            event = {"at": at.isoformat(), "resolution": commit.resolution, "reason": commit.reason}
            self._execute(
                f"UPDATE dead_letter SET status = ?, history = {self._HISTORY_APPEND},"
                " updated_at = ? WHERE dead_letter_id = ?",
                (commit.resolution, json.dumps(event), self._ts(at), dead_letter),
            )
        self._execute("DELETE FROM dead_letter_wait WHERE dead_letter_id = ?", (dead_letter,))

    def _write_streams(self, streams: Mapping[str, int]) -> None:
        if self._deferred is None:
            self._executemany(UPSERT_STREAM, sorted(streams.items()))
        else:
            self._deferred.add_streams(streams)

    def _write_inbox(self, row: InboxWrite) -> tuple[int, int | None]:
        posted = row.status is InboxStatus.POSTED
        batch = self._deferred
        if batch is not None:
            if row.inbox_id is not None:
                return batch.update_inbox(self._inbox_outcome(row), row.inbox_id, posted)
            if (identity := row.claims) is not None:
                batch.claim(identity)
            return batch.add_inbox(self._inbox_values(row), posted)
        if row.inbox_id is not None:
            found = self._execute(
                _UPDATE_INBOX[posted], (*self._inbox_outcome(row), row.inbox_id)
            ).fetchone()
            if found is None:
                raise StoreError(f"no inbox record {row.inbox_id} to update")
            return found
        return self._execute(_INSERT_INBOX[posted], self._inbox_values(row)).fetchone()

    def _inbox_values(self, row: InboxWrite) -> tuple:
        """A new inbox record's columns, `message_id` to `late` (`INBOX_COLUMNS`)."""
        return (
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
            row.correlation_id,
            self._ts(row.received_at),
            *self._inbox_outcome(row),
        )

    def _inbox_outcome(self, row: InboxWrite) -> tuple:
        """The columns a record's outcome sets: `status` to `late`."""
        ts = self._ts
        return (
            row.status.value,
            row.code.value if row.code else None,
            ts(row.committed_at),
            ts(row.hold_deadline),
            json.dumps(row.waits_on) if row.waits_on else "[]",
            int(row.late),
        )

    def _insert_entry(self, row: tuple) -> int:
        """Insert one journal_entry row (`INSERT_ENTRY`) and return its id."""
        return self._execute(_RETURNING_ENTRY_ID, row).fetchone()[0]

    def _write_entry(self, inbox_id: int, inbox: InboxWrite, entry: EntryWrite) -> int:
        batch = self._deferred
        if batch is not None:
            entry_id = batch.add_entry(self._entry_values(inbox_id, inbox, entry))
            batch.add_posting(posting_rows(entry_id, entry))
            return entry_id
        entry_id = self._insert_entry(self._entry_values(inbox_id, inbox, entry))
        lines, moves, exceptions = posting_rows(entry_id, entry)
        if lines:
            self._executemany(INSERT_LINE, lines)
        if moves:
            self._executemany(INSERT_MOVE, moves)
        if exceptions:
            self._executemany(INSERT_EXCEPTION, exceptions)
        return entry_id

    def _entry_values(self, inbox_id: int, inbox: InboxWrite, entry: EntryWrite) -> tuple:
        """A journal entry's columns (`INSERT_ENTRY`), without its id."""
        ts = self._ts
        return (
            inbox_id,
            inbox.message_id,
            entry.plant,
            entry.currency,
            entry.period,
            entry.original_period,
            int(entry.late),
            entry.event_type,
            entry.work_order,
            ts(entry.occurred_at),
            ts(inbox.committed_at),
        )

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
                    row.raw_encoding,
                    stored_correlation(row.raw) if row.raw_encoding == TEXT else "",
                ),
            ).fetchone()[0]
        if row.waits_on:
            self._executemany(
                "INSERT INTO dead_letter_wait VALUES (?, ?)",
                [(dead_letter_id, key) for key in row.waits_on],
            )
        return dead_letter_id
