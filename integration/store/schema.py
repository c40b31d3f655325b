"""The ledger schema, versioned. Documented table by table in the README (Auditing a ledger).

Amounts are integers in the currency's minor unit (cents), signed: debit positive, credit
negative, so `SUM(amount_minor)` is exact in plain SQL. Quantities are exact decimal text.
"""

from __future__ import annotations

__all__ = ["SCHEMA_VERSION", "SQLITE_SCHEMA"]

SCHEMA_VERSION = 1

SQLITE_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE inbox (
    inbox_id        INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    unique_ids      INTEGER NOT NULL DEFAULT 1,
    payload_hash    TEXT NOT NULL,
    message_type    TEXT NOT NULL,
    source_system   TEXT NOT NULL,
    stream          TEXT,
    source_seq      INTEGER,
    plant TEXT, item TEXT, work_order TEXT, lot TEXT, supplier TEXT, period TEXT,
    status          TEXT NOT NULL CHECK (status IN ('HELD', 'POSTED', 'REJECTED')),
    code            TEXT,
    envelope        TEXT NOT NULL,
    received_at     TEXT NOT NULL,
    committed_at    TEXT,
    hold_deadline   TEXT,
    waits_on        TEXT NOT NULL DEFAULT '[]',
    late            INTEGER NOT NULL DEFAULT 0,
    applied_seq     INTEGER UNIQUE
);
CREATE UNIQUE INDEX inbox_message_id ON inbox (message_id) WHERE unique_ids = 1;
CREATE UNIQUE INDEX inbox_idempotency_key ON inbox (idempotency_key) WHERE unique_ids = 1;
CREATE INDEX inbox_held ON inbox (status) WHERE status = 'HELD';

CREATE TABLE journal_entry (
    entry_id        INTEGER PRIMARY KEY,
    inbox_id        INTEGER NOT NULL REFERENCES inbox (inbox_id),
    message_id      TEXT NOT NULL,
    plant           TEXT NOT NULL,
    currency        TEXT NOT NULL,
    period          TEXT NOT NULL,
    original_period TEXT NOT NULL,
    late            INTEGER NOT NULL,
    event_type      TEXT NOT NULL,
    work_order      TEXT,
    occurred_at     TEXT NOT NULL,
    posted_at       TEXT NOT NULL
);
CREATE INDEX journal_entry_inbox ON journal_entry (inbox_id);

CREATE TABLE journal_line (
    entry_id     INTEGER NOT NULL REFERENCES journal_entry (entry_id),
    line_no      INTEGER NOT NULL,
    plant        TEXT NOT NULL,
    account      TEXT NOT NULL,
    currency     TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    work_order   TEXT,
    item         TEXT,
    PRIMARY KEY (entry_id, line_no)
);

CREATE TABLE stock_move (
    move_id     INTEGER PRIMARY KEY,
    entry_id    INTEGER NOT NULL REFERENCES journal_entry (entry_id),
    plant       TEXT NOT NULL,
    item        TEXT NOT NULL,
    location    TEXT NOT NULL,
    lot         TEXT NOT NULL,
    qty         TEXT NOT NULL,
    value_minor INTEGER NOT NULL,
    account     TEXT NOT NULL
);

CREATE TABLE stock_exception (
    exception_id INTEGER PRIMARY KEY,
    entry_id     INTEGER NOT NULL REFERENCES journal_entry (entry_id),
    plant TEXT NOT NULL, item TEXT NOT NULL, location TEXT NOT NULL, lot TEXT NOT NULL,
    qty_after    TEXT NOT NULL
);

CREATE TABLE dead_letter (
    dead_letter_id  INTEGER PRIMARY KEY,
    message_id      TEXT,
    idempotency_key TEXT,
    message_type    TEXT,
    source_system   TEXT,
    code            TEXT NOT NULL,
    problems        TEXT NOT NULL,
    raw             TEXT NOT NULL,
    plant TEXT, item TEXT, work_order TEXT, lot TEXT, supplier TEXT, period TEXT,
    attempts        INTEGER NOT NULL DEFAULT 1,
    history         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'replayed', 'resolved')),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX dead_letter_message ON dead_letter (message_id);

CREATE TABLE dead_letter_wait (
    dead_letter_id INTEGER NOT NULL REFERENCES dead_letter (dead_letter_id),
    dependency     TEXT NOT NULL,
    PRIMARY KEY (dependency, dead_letter_id)
);

CREATE TABLE stream_position (stream TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
"""
