"""The ledger schema, versioned. Documented table by table in the README (Auditing a ledger).

Amounts are integers in the currency's minor unit (cents), signed: debit positive, credit
negative, so `SUM(amount_minor)` is exact in plain SQL. Quantities are exact decimal text
(SQLite) or NUMERIC (PostgreSQL). Both dialects have the same tables, columns and index names,
so the shared reads (`sql_reads.py`) run unchanged on either.

A change here bumps `SCHEMA_VERSION` and adds the step that brings a ledger of the version before
to this one, in each dialect (`migrations.py`); a fresh ledger and an upgraded one must end up
alike (tests/integration/test_migration.py compares them).
"""

from __future__ import annotations

__all__ = ["POSTGRES_SCHEMA", "SCHEMA_VERSION", "SQLITE_SCHEMA"]

SCHEMA_VERSION = 4

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
    applied_seq     INTEGER UNIQUE,
    -- last, where the v3 -> v4 migration's ALTER TABLE puts it
    correlation_id  TEXT NOT NULL DEFAULT ''
);
-- A message id is indexed once: unique per source where ids are unique (`inbox_message_id`,
-- message id first, so it also finds an id from any source), and in `inbox_message` only
-- where they are not (idempotency switched off), which a normal ledger leaves empty.
CREATE UNIQUE INDEX inbox_message_id ON inbox (message_id, source_system) WHERE unique_ids = 1;
CREATE UNIQUE INDEX inbox_idempotency_key ON inbox (message_type, idempotency_key)
    WHERE unique_ids = 1;
CREATE INDEX inbox_held ON inbox (status) WHERE status = 'HELD';
CREATE INDEX inbox_message ON inbox (message_id) WHERE unique_ids = 0;
CREATE INDEX inbox_correlation ON inbox (correlation_id);

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
    sender          TEXT,
    code            TEXT NOT NULL,
    problems        TEXT NOT NULL,
    raw             TEXT NOT NULL,
    plant TEXT, item TEXT, work_order TEXT, lot TEXT, supplier TEXT, period TEXT,
    attempts        INTEGER NOT NULL DEFAULT 1,
    history         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'replayed', 'resolved', 'discarded')),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    -- last, where the v1 -> v2 and v3 -> v4 migrations' ALTER TABLE put them
    raw_encoding    TEXT NOT NULL DEFAULT 'text' CHECK (raw_encoding IN ('text', 'base64')),
    correlation_id  TEXT NOT NULL DEFAULT ''  -- the raw JSON object's, if it has one
);
CREATE INDEX dead_letter_message ON dead_letter (message_id);
CREATE INDEX dead_letter_correlation ON dead_letter (correlation_id);

CREATE TABLE dead_letter_wait (
    dead_letter_id INTEGER NOT NULL REFERENCES dead_letter (dead_letter_id),
    dependency     TEXT NOT NULL,
    PRIMARY KEY (dependency, dead_letter_id)
);

CREATE TABLE stream_position (stream TEXT PRIMARY KEY, next_seq INTEGER NOT NULL);
"""

# The same ledger in PostgreSQL. Amounts are BIGINT minor units; quantities NUMERIC (read back
# as Decimal); timestamps timestamptz; JSON columns TEXT, as in SQLite, so `json.loads` reads
# them; flags SMALLINT 0/1 so `late = 1` reads the same. `meta` also keeps `data_version`, a
# counter every commit bumps (and whose row lock orders the commits of all writers).
POSTGRES_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE inbox (
    inbox_id        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    message_id      TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    unique_ids      SMALLINT NOT NULL DEFAULT 1,
    payload_hash    TEXT NOT NULL,
    message_type    TEXT NOT NULL,
    source_system   TEXT NOT NULL,
    stream          TEXT,
    source_seq      BIGINT,
    plant TEXT, item TEXT, work_order TEXT, lot TEXT, supplier TEXT, period TEXT,
    status          TEXT NOT NULL CHECK (status IN ('HELD', 'POSTED', 'REJECTED')),
    code            TEXT,
    envelope        TEXT NOT NULL,
    received_at     TIMESTAMPTZ NOT NULL,
    committed_at    TIMESTAMPTZ,
    hold_deadline   TIMESTAMPTZ,
    waits_on        TEXT NOT NULL DEFAULT '[]',
    late            SMALLINT NOT NULL DEFAULT 0,
    applied_seq     BIGINT UNIQUE,
    -- last, where the v3 -> v4 migration's ALTER TABLE puts it
    correlation_id  TEXT NOT NULL DEFAULT ''
);
-- A message id is indexed once: unique per source where ids are unique (`inbox_message_id`,
-- message id first, so it also finds an id from any source), and in `inbox_message` only
-- where they are not (idempotency switched off), which a normal ledger leaves empty.
CREATE UNIQUE INDEX inbox_message_id ON inbox (message_id, source_system) WHERE unique_ids = 1;
CREATE UNIQUE INDEX inbox_idempotency_key ON inbox (message_type, idempotency_key)
    WHERE unique_ids = 1;
CREATE INDEX inbox_held ON inbox (status) WHERE status = 'HELD';
CREATE INDEX inbox_message ON inbox (message_id) WHERE unique_ids = 0;
CREATE INDEX inbox_correlation ON inbox (correlation_id);

CREATE TABLE journal_entry (
    entry_id        BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    inbox_id        BIGINT NOT NULL REFERENCES inbox (inbox_id),
    message_id      TEXT NOT NULL,
    plant           TEXT NOT NULL,
    currency        TEXT NOT NULL,
    period          TEXT NOT NULL,
    original_period TEXT NOT NULL,
    late            SMALLINT NOT NULL,
    event_type      TEXT NOT NULL,
    work_order      TEXT,
    occurred_at     TIMESTAMPTZ NOT NULL,
    posted_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX journal_entry_inbox ON journal_entry (inbox_id);

CREATE TABLE journal_line (
    entry_id     BIGINT NOT NULL REFERENCES journal_entry (entry_id),
    line_no      INTEGER NOT NULL,
    plant        TEXT NOT NULL,
    account      TEXT NOT NULL,
    currency     TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    work_order   TEXT,
    item         TEXT,
    PRIMARY KEY (entry_id, line_no)
);

CREATE TABLE stock_move (
    move_id     BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    entry_id    BIGINT NOT NULL REFERENCES journal_entry (entry_id),
    plant       TEXT NOT NULL,
    item        TEXT NOT NULL,
    location    TEXT NOT NULL,
    lot         TEXT NOT NULL,
    qty         NUMERIC NOT NULL,
    value_minor BIGINT NOT NULL,
    account     TEXT NOT NULL
);

CREATE TABLE stock_exception (
    exception_id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    entry_id     BIGINT NOT NULL REFERENCES journal_entry (entry_id),
    plant TEXT NOT NULL, item TEXT NOT NULL, location TEXT NOT NULL, lot TEXT NOT NULL,
    qty_after    NUMERIC NOT NULL
);

CREATE TABLE dead_letter (
    dead_letter_id  BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    message_id      TEXT,
    idempotency_key TEXT,
    message_type    TEXT,
    source_system   TEXT,
    sender          TEXT,
    code            TEXT NOT NULL,
    problems        TEXT NOT NULL,
    raw             TEXT NOT NULL,
    plant TEXT, item TEXT, work_order TEXT, lot TEXT, supplier TEXT, period TEXT,
    attempts        INTEGER NOT NULL DEFAULT 1,
    history         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'open'
                    CHECK (status IN ('open', 'replayed', 'resolved', 'discarded')),
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    -- last, where the v1 -> v2 and v3 -> v4 migrations' ALTER TABLE put them
    raw_encoding    TEXT NOT NULL DEFAULT 'text' CHECK (raw_encoding IN ('text', 'base64')),
    correlation_id  TEXT NOT NULL DEFAULT ''  -- the raw JSON object's, if it has one
);
CREATE INDEX dead_letter_message ON dead_letter (message_id);
CREATE INDEX dead_letter_correlation ON dead_letter (correlation_id);

CREATE TABLE dead_letter_wait (
    dead_letter_id BIGINT NOT NULL REFERENCES dead_letter (dead_letter_id),
    dependency     TEXT NOT NULL,
    PRIMARY KEY (dependency, dead_letter_id)
);

CREATE TABLE stream_position (stream TEXT PRIMARY KEY, next_seq BIGINT NOT NULL);
"""
