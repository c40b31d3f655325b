"""Forward migrations of the ledger schema, one step per version and dialect.

A step upgrades a ledger from version `n` to `n + 1`: its statements run in the caller's one
transaction (a store runs every step due in one transaction, under its lock), the last one sets
`meta.schema_version`. A statement is SQL, or a function of the store's `execute(sql, params)`
(`?` placeholders; the rows, if any) for what plain SQL cannot say in both dialects. A later
schema version adds one step to each tuple below. A ledger newer than this build is refused:
the build cannot know what the newer schema means.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from integration.errors import ConfigurationError
from integration.store.schema import SCHEMA_VERSION, SQLITE_SCHEMA
from integration.store.sql_reads import stored_correlation

__all__ = [
    "POSTGRES_MIGRATIONS",
    "SQLITE_MIGRATIONS",
    "Execute",
    "Statement",
    "announce_upgrade",
    "migration_steps",
    "run_step",
]

Execute = Callable[[str, tuple], list[tuple]]
Statement = str | Callable[[Execute], None]

_log = logging.getLogger("integration.store")

# v1 -> v2: an id is unique per source system, a key per message type (so no source can take
# another's id or key); dead letters say how their raw payload is encoded.
_V2 = (
    "DROP INDEX inbox_message_id",
    "DROP INDEX inbox_idempotency_key",
    (
        "CREATE UNIQUE INDEX inbox_message_id ON inbox (source_system, message_id)"
        " WHERE unique_ids = 1"
    ),
    (
        "CREATE UNIQUE INDEX inbox_idempotency_key ON inbox (message_type, idempotency_key)"
        " WHERE unique_ids = 1"
    ),
    (
        "ALTER TABLE dead_letter ADD COLUMN raw_encoding TEXT NOT NULL DEFAULT 'text'"
        " CHECK (raw_encoding IN ('text', 'base64'))"
    ),
    "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
)


def _sqlite_statement(opening: str) -> str:
    """The statement of the current SQLite schema that begins with `opening`."""
    statements = (s.strip() for s in SQLITE_SCHEMA.split(";"))
    return next(s for s in statements if s.startswith(opening))


# v2 -> v3: a dead letter may be discarded (closed by hand, never replayed). SQLite cannot alter
# a CHECK: the table is built again as schema v3 wrote it (the current one without v4's column),
# its waits (which refer to it) set aside meanwhile, as foreign keys stay on.
_V3_DEAD_LETTER = _sqlite_statement("CREATE TABLE dead_letter (").replace(
    ",\n    correlation_id  TEXT NOT NULL DEFAULT ''  -- the raw JSON object's, if it has one", ""
)
_V3_SQLITE = (
    "CREATE TEMP TABLE dead_letter_wait_v2 AS SELECT * FROM dead_letter_wait",
    "DROP TABLE dead_letter_wait",
    "ALTER TABLE dead_letter RENAME TO dead_letter_v2",
    _V3_DEAD_LETTER,
    "INSERT INTO dead_letter SELECT * FROM dead_letter_v2",
    "DROP TABLE dead_letter_v2",
    _sqlite_statement("CREATE INDEX dead_letter_message"),
    _sqlite_statement("CREATE TABLE dead_letter_wait ("),
    "INSERT INTO dead_letter_wait SELECT * FROM temp.dead_letter_wait_v2",
    "DROP TABLE temp.dead_letter_wait_v2",
    "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
)
_V3_POSTGRES = (
    "ALTER TABLE dead_letter DROP CONSTRAINT dead_letter_status_check",
    (
        "ALTER TABLE dead_letter ADD CONSTRAINT dead_letter_status_check"
        " CHECK (status IN ('open', 'replayed', 'resolved', 'discarded'))"
    ),
    "UPDATE meta SET value = '3' WHERE key = 'schema_version'",
)


# v3 -> v4: a message id is indexed once (the unique index leads with it; the plain one only
# holds records without unique ids), and the correlation id is a column of its own, indexed,
# filled from the stored JSON by the function that fills it on write, so a correlation's story
# is found without scanning text.
_CORRELATED = (  # table, its key, the JSON column, which rows
    ("inbox", "inbox_id", "envelope", ""),
    ("dead_letter", "dead_letter_id", "raw", " AND raw_encoding = 'text'"),
)
_FILL_ROWS = 1000


def _fill_correlation_ids(execute: Execute) -> None:
    """Each inbox record's and text dead letter's correlation id, read from its JSON, a page of
    rows at a time."""
    for table, key, column, which in _CORRELATED:
        last = 0
        while rows := execute(
            f"SELECT {key}, {column} FROM {table} WHERE {key} > ?{which}"
            f" ORDER BY {key} LIMIT {_FILL_ROWS}",
            (last,),
        ):
            for row_id, text in rows:
                if found := stored_correlation(text):
                    execute(
                        f"UPDATE {table} SET correlation_id = ? WHERE {key} = ?", (found, row_id)
                    )
            last = rows[-1][0]


_V4: tuple[Statement, ...] = (
    "DROP INDEX inbox_message",
    "DROP INDEX inbox_message_id",
    (
        "CREATE UNIQUE INDEX inbox_message_id ON inbox (message_id, source_system)"
        " WHERE unique_ids = 1"
    ),
    "CREATE INDEX inbox_message ON inbox (message_id) WHERE unique_ids = 0",
    "ALTER TABLE inbox ADD COLUMN correlation_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE dead_letter ADD COLUMN correlation_id TEXT NOT NULL DEFAULT ''",
    _fill_correlation_ids,
    "CREATE INDEX inbox_correlation ON inbox (correlation_id)",
    "CREATE INDEX dead_letter_correlation ON dead_letter (correlation_id)",
    "UPDATE meta SET value = '4' WHERE key = 'schema_version'",
)

# Step i upgrades version i + 1 to i + 2. The v1 -> v2 and v3 -> v4 steps read the same in both
# dialects.
SQLITE_MIGRATIONS: tuple[tuple[Statement, ...], ...] = (_V2, _V3_SQLITE, _V4)
POSTGRES_MIGRATIONS: tuple[tuple[Statement, ...], ...] = (_V2, _V3_POSTGRES, _V4)


def migration_steps(
    version: int, migrations: tuple[tuple[Statement, ...], ...], ledger: str
) -> tuple[tuple[Statement, ...], ...]:
    """The steps that bring a ledger of `version` to `SCHEMA_VERSION` (none if current).

    Raises ConfigurationError for a ledger newer than this build, or older than any step."""
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"{ledger} has ledger schema {version}, newer than this build's {SCHEMA_VERSION}:"
            " open it with a newer mfg-twin"
        )
    first = SCHEMA_VERSION - len(migrations)
    if version < first:
        raise ConfigurationError(
            f"{ledger} has ledger schema {version}; this build upgrades {first} and later"
        )
    return migrations[version - first :]


def run_step(step: tuple[Statement, ...], execute: Execute) -> None:
    """Run one step's statements through the store's `execute`."""
    for statement in step:
        if callable(statement):
            statement(execute)
        else:
            execute(statement, ())


def announce_upgrade(ledger: str, version: int) -> None:
    """Say on the `integration.store` log (a warning, so it shows with no logging set up)
    that a ledger was upgraded in place."""
    _log.warning("upgraded the ledger %s from schema %d to %d", ledger, version, SCHEMA_VERSION)
