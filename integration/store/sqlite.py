"""The embedded SQLite adapter of the `LedgerStore` port (stdlib sqlite3, WAL for files)."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from integration.envelope import BusinessIds
from integration.errors import ConfigurationError, ErrorCode, Problem, StoreError
from integration.ledger import Account, StockMove
from integration.money import ZERO, from_minor, to_minor
from integration.store.base import (
    Commit,
    Committed,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterWrite,
    DuplicateDelivery,
    EntryWrite,
    InboxRecord,
    InboxStatus,
    InboxWrite,
    StockBalance,
)
from integration.store.schema import SCHEMA_VERSION, SQLITE_SCHEMA

__all__ = ["SqliteStore"]

_ID_COLUMNS = ("plant", "item", "work_order", "lot", "supplier", "period")
_INBOX_COLUMNS = (
    "inbox_id, message_id, idempotency_key, payload_hash, message_type, status, code, envelope,"
    " received_at, committed_at, hold_deadline, waits_on, late"
)


# Posting stamps the record with the next position in the order of effect; a held or
# rejected record has none.
_NEXT_APPLIED = "(SELECT COALESCE(MAX(applied_seq), 0) + 1 FROM inbox)"
_UPDATE_INBOX = {
    posted: "UPDATE inbox SET status=?, code=?, committed_at=?, hold_deadline=?, waits_on=?,"
    f" late=?, applied_seq={_NEXT_APPLIED if posted else 'NULL'} WHERE inbox_id=?"
    for posted in (True, False)
}
_INSERT_INBOX = {
    posted: "INSERT INTO inbox (message_id, idempotency_key, unique_ids, payload_hash,"
    " message_type, source_system, stream, source_seq, plant, item, work_order, lot, supplier,"
    " period, envelope, received_at, status, code, committed_at, hold_deadline, waits_on, late,"
    f" applied_seq) VALUES ({', '.join('?' * 22)}, {_NEXT_APPLIED if posted else 'NULL'})"
    for posted in (True, False)
}


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


class SqliteStore:
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

    def schema_version(self) -> int:
        return int(
            self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        )

    # --- the one write ---------------------------------------------------------------------
    def commit(self, commit: Commit) -> Committed:
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            inbox_id = self._write_inbox(commit.inbox) if commit.inbox else None
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
            db.execute("COMMIT")
            return Committed(inbox_id, entry_ids, dead_letter_id)
        except sqlite3.IntegrityError as error:
            db.execute("ROLLBACK")
            if "inbox" in str(error):
                raise DuplicateDelivery(f"inbox already holds this message: {error}") from error
            raise StoreError(f"integrity failure: {error}") from error
        except sqlite3.Error as error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"SQLite failure: {error}") from error

    def _write_inbox(self, row: InboxWrite) -> int:
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
            self._db.execute(_UPDATE_INBOX[posted], (*outcome, row.inbox_id))
            return row.inbox_id
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
        return cursor.lastrowid

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
                " source_system, code, problems, raw, plant, item, work_order, lot, supplier,"
                " period, history, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.message_id,
                    row.idempotency_key,
                    row.message_type,
                    row.source_system,
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

    # --- inbox reads -----------------------------------------------------------------------
    def _inbox(self, where: str, params: tuple) -> list[InboxRecord]:
        rows = self._db.execute(f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE {where}", params)
        return [self._inbox_record(row) for row in rows.fetchall()]

    def _inbox_record(self, row: tuple) -> InboxRecord:
        entry_ids = tuple(
            r[0]
            for r in self._db.execute(
                "SELECT entry_id FROM journal_entry WHERE inbox_id = ? ORDER BY entry_id", (row[0],)
            )
        )
        return InboxRecord(
            inbox_id=row[0],
            message_id=row[1],
            idempotency_key=row[2],
            payload_hash=row[3],
            message_type=row[4],
            status=InboxStatus(row[5]),
            code=ErrorCode(row[6]) if row[6] else None,
            entry_ids=entry_ids,
            envelope_json=row[7],
            received_at=_dt(row[8]),
            committed_at=_dt(row[9]),
            hold_deadline=_dt(row[10]),
            waits_on=tuple(json.loads(row[11])),
            late=bool(row[12]),
        )

    def find_inbox(self, message_id: str, idempotency_key: str) -> InboxRecord | None:
        found = self._inbox(
            "inbox_id IN (SELECT inbox_id FROM inbox WHERE message_id = ? AND unique_ids = 1"
            " UNION ALL SELECT inbox_id FROM inbox WHERE idempotency_key = ? AND unique_ids = 1)"
            " ORDER BY message_id != ?",
            (message_id, idempotency_key, message_id),
        )
        return found[0] if found else None

    def inbox_record(self, message_id: str) -> InboxRecord | None:
        found = self._inbox("message_id = ? ORDER BY inbox_id", (message_id,))
        return found[0] if found else None

    def held(self) -> list[InboxRecord]:
        return self._inbox("status = 'HELD' ORDER BY inbox_id", ())

    def posted_in_effect_order(self) -> Iterator[InboxRecord]:
        cursor = self._db.cursor()
        cursor.execute(
            f"SELECT {_INBOX_COLUMNS} FROM inbox WHERE status = 'POSTED' ORDER BY applied_seq"
        )
        for row in cursor:
            yield InboxRecord(
                inbox_id=row[0],
                message_id=row[1],
                idempotency_key=row[2],
                payload_hash=row[3],
                message_type=row[4],
                status=InboxStatus.POSTED,
                code=None,
                entry_ids=(),
                envelope_json=row[7],
                received_at=_dt(row[8]),
                committed_at=_dt(row[9]),
                hold_deadline=None,
                waits_on=(),
                late=bool(row[12]),
            )

    def stream_positions(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT stream, next_seq FROM stream_position"))

    # --- dead letters ----------------------------------------------------------------------
    def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]:
        where, params = ["1 = 1"], []
        if selection.ids:
            where.append(f"dead_letter_id IN ({', '.join('?' * len(selection.ids))})")
            params += list(selection.ids)
        for column in ("code", "status", *_ID_COLUMNS):
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
        rows = self._db.execute(
            "SELECT dead_letter_id, message_id, idempotency_key, message_type, source_system,"
            " code, problems, raw, plant, item, work_order, lot, supplier, period, attempts,"
            f" history, status, created_at, updated_at FROM dead_letter WHERE {' AND '.join(where)}"
            " ORDER BY dead_letter_id",
            params,
        ).fetchall()
        return [self._dead_letter(row) for row in rows]

    def waiting_keys(self) -> list[str]:
        rows = self._db.execute(
            "SELECT DISTINCT dependency FROM dead_letter_wait ORDER BY dependency"
        )
        return [row[0] for row in rows]

    def _dead_letter(self, row: tuple) -> DeadLetter:
        waits = tuple(
            r[0]
            for r in self._db.execute(
                "SELECT dependency FROM dead_letter_wait WHERE dead_letter_id = ? ORDER BY dependency",
                (row[0],),
            )
        )
        return DeadLetter(
            id=row[0],
            message_id=row[1],
            idempotency_key=row[2],
            message_type=row[3],
            source_system=row[4],
            code=ErrorCode(row[5]),
            problems=tuple(Problem.from_dict(p) for p in json.loads(row[6])),
            raw=row[7],
            ids=BusinessIds(**dict(zip(_ID_COLUMNS, row[8:14], strict=True))),
            attempts=row[14],
            history=tuple(json.loads(row[15])),
            status=row[16],
            waits_on=waits,
            created_at=_dt(row[17]),
            updated_at=_dt(row[18]),
        )

    # --- ledger reads ----------------------------------------------------------------------
    def account_balances(self) -> dict[tuple[str, str, str], Decimal]:
        rows = self._db.execute(
            "SELECT plant, account, currency, SUM(amount_minor) FROM journal_line"
            " GROUP BY plant, account, currency ORDER BY plant, account, currency"
        )
        return {(p, a, c): from_minor(total, c) for p, a, c, total in rows}

    def stock_balances(self) -> dict[tuple[str, str, str, str], StockBalance]:
        qty: dict[tuple[str, str, str, str], Decimal] = defaultdict(lambda: ZERO)
        value: dict[tuple[str, str, str, str], int] = defaultdict(int)
        currency = dict(self._db.execute("SELECT DISTINCT plant, currency FROM journal_entry"))
        for plant, item, location, lot, q, v in self._db.execute(
            "SELECT plant, item, location, lot, qty, value_minor FROM stock_move ORDER BY move_id"
        ):
            key = (plant, item, location, lot)
            qty[key] += Decimal(q)
            value[key] += v
        return {
            key: StockBalance(qty[key], from_minor(value[key], currency[key[0]]))
            for key in sorted(qty)
        }

    def stock_value_by_account(self) -> dict[tuple[str, str], Decimal]:
        rows = self._db.execute(
            "SELECT m.plant, m.account, e.currency, SUM(m.value_minor) FROM stock_move m"
            " JOIN journal_entry e USING (entry_id) GROUP BY m.plant, m.account, e.currency"
        )
        return {(p, a): from_minor(total, c) for p, a, c, total in rows}

    def wip_by_work_order(self) -> dict[str, Decimal]:
        rows = self._db.execute(
            "SELECT work_order, currency, SUM(amount_minor) FROM journal_line"
            " WHERE account = ? GROUP BY work_order, currency ORDER BY work_order",
            (Account.WIP.value,),
        )
        return {wo: from_minor(total, c) for wo, c, total in rows}

    def unbalanced_entries(self) -> list[tuple[int, str, str, Decimal]]:
        rows = self._db.execute(
            "SELECT entry_id, plant, currency, SUM(amount_minor) FROM journal_line"
            " GROUP BY entry_id, plant, currency HAVING SUM(amount_minor) != 0 ORDER BY entry_id"
        )
        return [(e, p, c, from_minor(total, c)) for e, p, c, total in rows]

    def entry_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM journal_entry").fetchone()[0]

    def stock_exception_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM stock_exception").fetchone()[0]

    def late_entry_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM journal_entry WHERE late = 1").fetchone()[0]

    def close(self) -> None:
        self._db.close()
