"""The read side of the ledger store in portable SQL, shared by the SQL adapters.

An adapter supplies `_rows(sql, params)` (a list of tuples; `?` placeholders) and
`_stream(sql)` (rows one at a time, for reads as large as the ledger).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal

from integration.envelope import BusinessIds
from integration.errors import ErrorCode, Problem
from integration.ledger import Account
from integration.money import ZERO, from_minor
from integration.store.base import (
    DeadLetter,
    DeadLetterFilter,
    EntrySummary,
    FirstPass,
    Identity,
    InboxRecord,
    InboxStatus,
    StockBalance,
)
from integration.text import is_storable

__all__ = ["SqlReads", "correlation_of", "stored_correlation"]

_ID_COLUMNS = ("plant", "item", "work_order", "lot", "supplier", "period")
_INBOX_COLUMNS = (
    "inbox_id, message_id, idempotency_key, payload_hash, message_type, status, code, envelope,"
    " received_at, committed_at, hold_deadline, waits_on, late, applied_seq, source_system"
)


def _dt(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _moment(value: datetime) -> str:
    """A timestamp parameter: ISO text in UTC, which orders as the stored UTC text does in
    SQLite (and which PostgreSQL casts to timestamptz)."""
    return value.astimezone(UTC).isoformat()


def correlation_of(raw: str) -> str:
    """The `correlation_id` of a raw envelope (JSON text), or "" when it has none readable:
    what a dead letter's `correlation_id` column holds (an inbox record's is its envelope's)."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return ""
    found = data.get("correlation_id") if isinstance(data, dict) else None
    return found if isinstance(found, str) else ""


# The longest correlation id an envelope may carry (`Envelope.correlation_id`).
_CORRELATION_LIMIT = 128


def stored_correlation(raw: str) -> str:
    """What the `correlation_id` columns keep of a raw envelope: its correlation id when an
    envelope could carry it (storable text, 128 characters at most), else ""."""
    found = correlation_of(raw)
    return found if len(found) <= _CORRELATION_LIMIT and is_storable(found) else ""


class SqlReads:
    """Inbox, dead-letter and ledger reads of the `LedgerStore` port."""

    def _rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        raise NotImplementedError

    def _stream(self, sql: str) -> Iterator[tuple]:
        raise NotImplementedError

    # --- inbox reads -----------------------------------------------------------------------
    def _inbox(self, where: str, params: tuple) -> list[InboxRecord]:
        rows = self._rows(f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE {where}", params)
        return [self._inbox_record(row) for row in rows]

    def _inbox_record(self, row: tuple) -> InboxRecord:
        entry_ids = tuple(
            r[0]
            for r in self._rows(
                "SELECT entry_id FROM journal_entry WHERE inbox_id = ? ORDER BY entry_id", (row[0],)
            )
        )
        return InboxRecord(
            inbox_id=row[0],
            message_id=row[1],
            idempotency_key=row[2],
            payload_hash=row[3],
            message_type=row[4],
            source_system=row[14],
            status=InboxStatus(row[5]),
            code=ErrorCode(row[6]) if row[6] else None,
            entry_ids=entry_ids,
            envelope_json=row[7],
            received_at=_dt(row[8]),
            committed_at=_dt(row[9]),
            hold_deadline=_dt(row[10]),
            waits_on=tuple(json.loads(row[11])),
            late=bool(row[12]),
            applied_seq=row[13],
        )

    def find_inbox(self, identity: Identity) -> InboxRecord | None:
        source, message_id, message_type, key = identity
        found = self._inbox(
            "inbox_id IN (SELECT inbox_id FROM inbox WHERE unique_ids = 1"
            " AND source_system = ? AND message_id = ?"
            " UNION ALL SELECT inbox_id FROM inbox WHERE unique_ids = 1"
            " AND message_type = ? AND idempotency_key = ?)"
            " ORDER BY (source_system != ? OR message_id != ?)",
            (source, message_id, message_type, key, source, message_id),
        )
        return found[0] if found else None

    def inbox_record(self, message_id: str, source_system: str | None = None) -> InboxRecord | None:
        # Each half is one partial index's (see the schema): the records with unique ids, and
        # those without.
        source = "" if source_system is None else " AND source_system = ?"
        params = (message_id,) if source_system is None else (message_id, source_system)
        found = self._inbox(
            "inbox_id IN (SELECT inbox_id FROM inbox WHERE unique_ids = 1 AND message_id = ?"
            f"{source} UNION ALL SELECT inbox_id FROM inbox WHERE unique_ids = 0"
            f" AND message_id = ?{source}) ORDER BY inbox_id LIMIT 1",
            params * 2,
        )
        return found[0] if found else None

    def held(self) -> list[InboxRecord]:
        return self._inbox("status = 'HELD' ORDER BY inbox_id", ())

    def posted_after(self, applied_seq: int) -> Iterator[InboxRecord]:
        sql = (
            f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE status = 'POSTED'"
            f" AND applied_seq > {int(applied_seq)} ORDER BY applied_seq"
        )
        for row in self._stream(sql):
            yield InboxRecord(
                inbox_id=row[0],
                message_id=row[1],
                idempotency_key=row[2],
                payload_hash=row[3],
                message_type=row[4],
                source_system=row[14],
                status=InboxStatus.POSTED,
                code=None,
                entry_ids=(),
                envelope_json=row[7],
                received_at=_dt(row[8]),
                committed_at=_dt(row[9]),
                hold_deadline=None,
                waits_on=(),
                late=bool(row[12]),
                applied_seq=row[13],
            )

    def stream_positions(self) -> dict[str, int]:
        return dict(self._rows("SELECT stream, next_seq FROM stream_position"))

    # --- dead letters ----------------------------------------------------------------------
    def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        where, params = ["1 = 1"], []
        if selection.ids:
            where.append(f"dead_letter_id IN ({', '.join('?' * len(selection.ids))})")
            params += list(selection.ids)
        for column in ("code", "status", *_ID_COLUMNS, "correlation_id"):
            value = getattr(selection, column)
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value.value if isinstance(value, ErrorCode) else value)
        if selection.waits_on is not None:
            where.append(
                "dead_letter_id IN (SELECT dead_letter_id FROM dead_letter_wait"
                " WHERE dependency = ?)"
            )
            params.append(selection.waits_on)
        rows = self._rows(
            "SELECT dead_letter_id, message_id, idempotency_key, message_type, source_system,"
            " sender, code, problems, raw, plant, item, work_order, lot, supplier, period,"
            " attempts, history, status, created_at, updated_at, raw_encoding, correlation_id"
            f" FROM dead_letter WHERE {' AND '.join(where)}"
            " ORDER BY dead_letter_id",
            params,
        )
        return [self._dead_letter(row) for row in rows]

    def dead_letter_counts(self) -> dict[str, int]:
        return dict(self._rows("SELECT status, COUNT(*) FROM dead_letter GROUP BY status"))

    def waiting_keys(self) -> list[str]:
        rows = self._rows("SELECT DISTINCT dependency FROM dead_letter_wait ORDER BY dependency")
        return [row[0] for row in rows]

    def _dead_letter(self, row: tuple) -> DeadLetter:
        waits = tuple(
            r[0]
            for r in self._rows(
                "SELECT dependency FROM dead_letter_wait WHERE dead_letter_id = ?"
                " ORDER BY dependency",
                (row[0],),
            )
        )
        return DeadLetter(
            id=row[0],
            message_id=row[1],
            idempotency_key=row[2],
            message_type=row[3],
            source_system=row[4],
            sender=row[5],
            code=ErrorCode(row[6]),
            problems=tuple(Problem.from_dict(p) for p in json.loads(row[7])),
            raw=row[8],
            ids=BusinessIds(**dict(zip(_ID_COLUMNS, row[9:15], strict=True))),
            attempts=row[15],
            history=tuple(json.loads(row[16])),
            status=row[17],
            waits_on=waits,
            created_at=_dt(row[18]),
            updated_at=_dt(row[19]),
            raw_encoding=row[20],
            correlation_id=row[21],
        )

    # --- a correlation id's story, and governance counts ------------------------------------
    def correlated(self, correlation_id: str) -> list[InboxRecord]:
        return self._inbox("correlation_id = ? ORDER BY inbox_id", (correlation_id,))

    def entry_summaries(self, inbox_ids: Iterable[int]) -> list[EntrySummary]:
        chosen = list(inbox_ids)
        if not chosen:
            return []
        rows = self._rows(
            "SELECT e.entry_id, e.inbox_id, e.plant, e.currency, e.period, e.event_type,"
            " e.work_order, e.posted_at,"
            " SUM(CASE WHEN l.amount_minor > 0 THEN l.amount_minor ELSE 0 END)"
            " FROM journal_entry e JOIN journal_line l ON l.entry_id = e.entry_id"
            f" WHERE e.inbox_id IN ({', '.join('?' * len(chosen))})"
            " GROUP BY e.entry_id, e.inbox_id, e.plant, e.currency, e.period, e.event_type,"
            " e.work_order, e.posted_at ORDER BY e.entry_id",
            chosen,
        )
        return [
            EntrySummary(*row[:7], _dt(row[7]), from_minor(int(row[8]), row[3])) for row in rows
        ]

    def first_pass(self, since: datetime | None, message_type: str | None = None) -> FirstPass:
        # First pass: posted, and never dead-lettered under its source's message id. A hold
        # that its missing predecessor released counts as first pass (no one had to act).
        where, params = ["1 = 1"], []
        if since is not None:
            where.append("i.received_at >= ?")
            params.append(_moment(since))
        if message_type is not None:
            where.append("i.message_type = ?")
            params.append(message_type)
        received, first, posted = self._rows(
            "SELECT COUNT(*),"
            " SUM(CASE WHEN i.status = 'POSTED' AND NOT EXISTS (SELECT 1 FROM dead_letter d"
            " WHERE d.message_id = i.message_id AND d.source_system = i.source_system)"
            " THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN i.status = 'POSTED' THEN 1 ELSE 0 END)"
            f" FROM inbox i WHERE {' AND '.join(where)}",
            params,
        )[0]
        return FirstPass(int(received), int(first or 0), int(posted or 0))

    # --- ledger reads ----------------------------------------------------------------------
    def account_balances(self) -> dict[tuple[str, str, str], Decimal]:
        rows = self._rows(
            "SELECT plant, account, currency, SUM(amount_minor) FROM journal_line"
            " GROUP BY plant, account, currency ORDER BY plant, account, currency"
        )
        return {(p, a, c): from_minor(total, c) for p, a, c, total in rows}

    def stock_balances(self) -> dict[tuple[str, str, str, str], StockBalance]:
        # SQLite keeps quantities as exact text, which SQL cannot sum exactly: the database
        # groups the moves by key and quantity, and Decimal sums the groups as they stream by
        # (a long ledger has millions of moves, and many distinct quantities).
        qty: dict[tuple[str, str, str, str], Decimal] = defaultdict(lambda: ZERO)
        value: dict[tuple[str, str, str, str], int] = defaultdict(int)
        currency = dict(self._rows("SELECT DISTINCT plant, currency FROM journal_entry"))
        for plant, item, location, lot, q, moves, v in self._stream(
            "SELECT plant, item, location, lot, qty, COUNT(*), SUM(value_minor) FROM stock_move"
            " GROUP BY plant, item, location, lot, qty"
        ):
            key = (plant, item, location, lot)
            qty[key] += Decimal(q) * moves
            value[key] += v
        return {
            key: StockBalance(qty[key], from_minor(value[key], currency[key[0]]))
            for key in sorted(qty)
        }

    def stock_value_by_account(self) -> dict[tuple[str, str], Decimal]:
        rows = self._rows(
            "SELECT m.plant, m.account, e.currency, SUM(m.value_minor) FROM stock_move m"
            " JOIN journal_entry e USING (entry_id) GROUP BY m.plant, m.account, e.currency"
        )
        return {(p, a): from_minor(total, c) for p, a, c, total in rows}

    def wip_by_work_order(self, nonzero: bool = False) -> dict[str, Decimal]:
        having = " HAVING SUM(amount_minor) != 0" if nonzero else ""
        rows = self._rows(
            "SELECT work_order, currency, SUM(amount_minor) FROM journal_line"
            f" WHERE account = ? GROUP BY work_order, currency{having} ORDER BY work_order",
            (Account.WIP.value,),
        )
        return {wo: from_minor(total, c) for wo, c, total in rows}

    def unbalanced_entries(self) -> list[tuple[int, str, str, Decimal]]:
        rows = self._rows(
            "SELECT entry_id, plant, currency, SUM(amount_minor) FROM journal_line"
            " GROUP BY entry_id, plant, currency HAVING SUM(amount_minor) != 0 ORDER BY entry_id"
        )
        return [(e, p, c, from_minor(total, c)) for e, p, c, total in rows]

    def entry_count(self) -> int:
        return self._rows("SELECT COUNT(*) FROM journal_entry")[0][0]

    def stock_exception_count(self) -> int:
        return self._rows("SELECT COUNT(*) FROM stock_exception")[0][0]

    def late_entry_count(self) -> int:
        return self._rows("SELECT COUNT(*) FROM journal_entry WHERE late = 1")[0][0]
