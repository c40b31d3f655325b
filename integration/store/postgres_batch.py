"""The deferred writes of one PostgreSQL batch.

Written one statement at a time, a batch of postings cost a round trip per statement per
message (savepoint, inbox, entry, stream position, release), and the service spent half its
time waiting on PostgreSQL. Inside a batch, the rows are instead kept (deferred.py: what is
kept, and how a commit is answered without asking) and sent together, one statement (`_FLUSH`,
the rows as jsonb arrays) for every group of `_CHUNK` messages, for what is left
when the batch ends, and before anything else touches the database. A batch expected to be
larger than a group runs in pipeline mode: the server writes one group while the core decides
the next. Every batch's last rows go with its COMMIT, in one round trip, and its opening queries
with the BEGIN, in one script: the writer lock, the data version bump, MAX(applied_seq) and
blocks of ids, and the expected identities present.

Inbox and journal entry ids are drawn from their identity sequences in blocks, as many as the
batch has messages (then, in a batch that writes more, twice as many each time, up to
`_MAX_REFILL`), with one `nextval` and one `setval` a block. Ids a block does not use are
skipped, as PostgreSQL skips the ids of rolled-back inserts: ids are unique and increase in
commit order, with gaps.

A failure surfaces when rows are sent or at the next answer waited for (the server checks the
rows itself: `_FLUSH` fails when an outcome's record is missing), so it cannot be pinned on one
commit: it marks the batch broken, every later commit and the batch's end raise, and the
transaction rolls back.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from integration.store.base import Identity
from integration.store.deferred import DeferredRows
from integration.store.identity_filter import KnownIdentities
from integration.store.sql_writes import (
    ENTRY_COLUMNS,
    EXCEPTION_COLUMNS,
    INBOX_COLUMNS,
    LINE_COLUMNS,
    MOVE_COLUMNS,
)

if TYPE_CHECKING:
    import psycopg

__all__ = ["DeferredBatch", "json_fields", "json_text"]


def json_text(rows: Any) -> str:
    """Rows of text, integers and nulls as JSON text for a `::jsonb` parameter (orjson: a
    fifth of `json.dumps`'s time on a batch's rows, the same values). An integer beyond 64
    bits, which orjson refuses, goes as `json.dumps` writes it, for PostgreSQL to refuse as
    out of its column's range: a store error, as any other value the store cannot hold."""
    try:
        return orjson.dumps(rows).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows)


def json_fields(*types: str, start: int = 0) -> str:
    """Each JSON row's fields, by position from `start`, as columns of these SQL types."""
    return ", ".join(f"(r->>{n})::{name}" for n, name in enumerate(types, start))


# The identities asked for come as one JSON array of [source, id, type, key] (dumping four text
# arrays took psycopg three times as long). Two indexed lookups per identity, in a lateral
# subquery that cannot be flattened: an `= ANY` or `OR` condition let the planner of a young
# table (no statistics: `unique_ids = 1` taken for a rare value) scan the whole partial index
# for every batch instead.
_FOUND = "SELECT source_system, message_id, message_type, idempotency_key FROM inbox"
_PRESENT = (
    "SELECT ARRAY[found.source_system, found.message_id, found.message_type,"
    " found.idempotency_key]"
    " FROM (SELECT r->>0 AS source_system, r->>1 AS message_id, r->>2 AS message_type,"
    " r->>3 AS idempotency_key FROM jsonb_array_elements(%(asked)s::jsonb) AS r) AS asked,"
    f" LATERAL ({_FOUND} WHERE unique_ids = 1"
    " AND source_system = asked.source_system AND message_id = asked.message_id"
    f" UNION ALL {_FOUND} WHERE unique_ids = 1"
    " AND message_type = asked.message_type AND idempotency_key = asked.idempotency_key) AS found"
)
_ALL_PRESENT = f"SELECT ARRAY({_PRESENT})"
_IDENTITIES = f"{_FOUND} WHERE unique_ids = 1"  # every identity the inbox keeps unique
_IDENTITY_COUNT = "SELECT count(*) FROM inbox WHERE unique_ids = 1"
# A block of ids from a sequence in two calls, not one a row: its last id, drawn with the data
# version's row lock held, which every writer takes before it inserts, so no other writer's
# `nextval` comes between the two.
_BLOCK = (
    "setval(pg_get_serial_sequence('{0}', '{1}'),"
    " nextval(pg_get_serial_sequence('{0}', '{1}')) + %(n)s::bigint - 1)"
)
_ID_COLUMNS = {"inbox": "inbox_id", "journal_entry": "entry_id"}  # the ids a batch assigns
# The batch's opening, one script in one round trip: BEGIN, the writer lock, the data version
# bump (the row lock that orders every writer's commits), then a statement of its own, so that
# it sees the commits made before the lock was granted: MAX(applied_seq) and blocks of ids.
BUMP_VERSION = (
    "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'data_version' RETURNING value"
)
_APPLIED_AND_IDS = "SELECT (SELECT COALESCE(MAX(applied_seq), 0) FROM inbox), " + ", ".join(
    _BLOCK.format(table, column) for table, column in _ID_COLUMNS.items()
)
_OPENING = f"BEGIN; SELECT pg_advisory_xact_lock(%(lock)s); {BUMP_VERSION}; {_APPLIED_AND_IDS}"
_CHUNK = 25  # messages whose rows are sent at a time
# A batch that writes more than it was told of (`Core.transaction()` is told of nothing) draws
# blocks twice as large each time, up to this: a round trip for ids every message would cost
# more than the ids it skips.
_MAX_REFILL = 1024
_TEXT6 = ("text",) * 6
_INBOX_TYPES = (
    "bigint", "text", "text", "smallint", "text", "text", "text", "text", "bigint", *_TEXT6, "text",
    "text", "timestamptz", "text", "text", "timestamptz", "timestamptz", "text", "smallint",
    "bigint",
)  # fmt: skip
_OUTCOME_TYPES = ("text", "text", "timestamptz", "timestamptz", "text", "smallint", "bigint")
_OUTCOME_COLUMNS = "status, code, committed_at, hold_deadline, waits_on, late, applied_seq"
_ENTRY_TYPES = (
    "bigint", "bigint", "text", "text", "text", "text", "text", "smallint", "text", "text",
    "timestamptz", "timestamptz",
)  # fmt: skip
_FLUSH = f"""
WITH new_inbox AS (
    INSERT INTO inbox (inbox_id, {INBOX_COLUMNS}, applied_seq)
    SELECT {json_fields(*_INBOX_TYPES)} FROM jsonb_array_elements(%s::jsonb) AS r
), outcomes AS (
    UPDATE inbox SET ({_OUTCOME_COLUMNS}) = ({json_fields(*_OUTCOME_TYPES)})
    FROM jsonb_array_elements(%s::jsonb) AS r WHERE inbox.inbox_id = (r->>7)::bigint
    RETURNING inbox.inbox_id
), entries AS (
    INSERT INTO journal_entry (entry_id, {ENTRY_COLUMNS})
    SELECT {json_fields(*_ENTRY_TYPES)} FROM jsonb_array_elements(%s::jsonb) AS r
), lines AS (
    INSERT INTO journal_line ({LINE_COLUMNS})
    SELECT {json_fields("bigint", "integer", *("text",) * 3, "bigint", "text", "text")}
    FROM jsonb_array_elements(%s::jsonb) AS r
), moves AS (
    INSERT INTO stock_move ({MOVE_COLUMNS})
    SELECT {json_fields("bigint", *("text",) * 4, "numeric", "bigint", "text")}
    FROM jsonb_array_elements(%s::jsonb) AS r
), exceptions AS (
    INSERT INTO stock_exception ({EXCEPTION_COLUMNS})
    SELECT {json_fields("bigint", *("text",) * 4, "numeric")}
    FROM jsonb_array_elements(%s::jsonb) AS r
), streams AS (
    INSERT INTO stream_position SELECT {json_fields("text", "bigint")}
    FROM jsonb_array_elements(%s::jsonb) AS r
    ON CONFLICT (stream) DO UPDATE SET next_seq = excluded.next_seq
)
SELECT CASE WHEN missing = 0 THEN 0
    ELSE ('inbox records to update are missing: ' || missing)::integer END
FROM (SELECT %s - count(*) AS missing FROM outcomes) AS checked
"""
# `DeferredRows.pending()`'s tables, in `_FLUSH`'s parameter order
_FLUSH_ARRAYS = (
    "inbox", "outcomes", "journal_entry", "journal_line", "stock_move", "stock_exception",
    "stream_position",
)  # fmt: skip


class DeferredBatch(DeferredRows):
    """The rows one batch has written and not yet sent (deferred.py), with PostgreSQL's ids
    (sequence blocks), lookups and sending (`_FLUSH`)."""

    def __init__(
        self, db: psycopg.Connection, expected: Iterable[Identity], known: KnownIdentities
    ) -> None:
        super().__init__(expected)
        self.version = 0
        self._db = db
        self._known = known
        self._block = max(len(self.expected), 1)
        self._ids: dict[str, deque[int]] = {}
        self._refills = dict.fromkeys(_ID_COLUMNS, self._block)

    def open(self, lock: int, client_cursor: type[psycopg.ClientCursor]) -> int:
        """Begin the batch's transaction under the writer lock `lock`, with its opening
        queries and the look-up of the expected identities that `known` cannot rule out; the
        data version it begins at.

        One script of several statements (simple protocol, its parameters bound by the client):
        one round trip, and less of the core's CPU time than the same statements sent as a
        pipeline, each its own turn of psycopg's pipeline loop: a fifth less per batch of one
        message, a tenth per batch of 8 (benchmarks/postgres_groups.py). Each statement takes
        its own snapshot, so the ones after the lock see what the writers before committed.
        The look-up is planned anew each time, as before: the generic plan a prepared statement
        settles on, made on a young table, scans a whole index where it should look up. So it
        is left out whenever `known` says every expected identity is absent (identity_filter.py)
        and, should the version then show another writer, sent on its own after all."""
        maybe, ruled_out = [], []
        for identity in self.expected:
            (maybe if self._known.note(identity) else ruled_out).append(identity)
        script, params = _OPENING, {"lock": lock, "n": self._block}
        if maybe:
            script, params["asked"] = f"{script}; {_ALL_PRESENT}", _asked(maybe)
        cursor = client_cursor(self._db).execute(script, params)
        cursor.nextset()  # past BEGIN
        cursor.nextset()  # past the lock
        self.version = int(cursor.fetchone()[0])
        cursor.nextset()
        self._applied, *last_ids = cursor.fetchone()
        self._ids = {
            table: _ids_up_to(last, self._block)
            for table, last in zip(_ID_COLUMNS, last_ids, strict=True)
        }
        found = cursor.fetchone()[0] if cursor.nextset() else []
        current = self._known.vouches_at(self.version)  # every batch: `_present` relies on it
        if ruled_out and not current:  # another writer came between: ask after all
            found = [*found, *self._look_up(ruled_out)]
        for identity in found:
            self._take(Identity(*identity))
        if self._known.wanted:
            self._load_known()
        return self.version

    def committed(self) -> None:
        """The batch's COMMIT succeeded: what it inserted is known."""
        self._known.committed(self.version)

    def _look_up(self, identities: list[Identity]) -> list[list[str]]:
        asked = {"asked": _asked(identities)}
        return self._db.execute(_ALL_PRESENT, asked, prepare=False).fetchone()[0]

    def _load_known(self) -> None:
        """Fill `known` with every identity the inbox holds before this batch (its lock is
        held: nobody else inserts), read through a server-side cursor; then note the ones
        this batch expects."""
        count = self._db.execute(_IDENTITY_COUNT).fetchone()[0]
        with self._db.cursor(name="known_identities") as rows:
            rows.itersize = 10_000
            rows.execute(_IDENTITIES)
            self._known.load((Identity(*row) for row in rows), count)
        for identity in self.expected:
            self._known.note(identity)

    @property
    def chunk(self) -> int:  # type: ignore[override]
        """New inbox records kept before they are sent (`_CHUNK`, read when asked)."""
        return _CHUNK

    @property
    def sends_in_chunks(self) -> bool:
        """Whether the batch is expected to be large enough to send its rows in chunks (in
        pipeline mode, so that the server writes while the core decides). A small batch
        sends once, at the end, and pipeline mode would only cost it time."""
        return self._block > self.chunk

    def _present(self, identity: Identity) -> bool:
        return self._known.note(identity) and bool(self._look_up([identity]))

    def flush(self) -> None:
        """Send every pending row. The server checks them (`_FLUSH` fails when an outcome's
        record is missing). A failure breaks the batch (see the module docstring); in pipeline
        mode it surfaces at the next answer waited for, at the latest the COMMIT's."""
        self.check()
        rows = self.pending()
        if rows is None:
            return
        # the arrays as JSON text (timestamps and quantities as strings), then the updates
        params = [*(json_text(rows[table]) for table in _FLUSH_ARRAYS), len(rows["outcomes"])]
        try:
            self._db.execute(_FLUSH, params)
        except BaseException as error:
            self.fail(error)
            raise
        self._sent()

    def _next_id(self, table: str) -> int:
        ids = self._ids[table]
        if not ids:
            size = self._refills[table] = min(self._refills[table] * 2, _MAX_REFILL)
            sql = f"SELECT {_BLOCK.format(table, _ID_COLUMNS[table])}"
            block = self._db.execute(sql, {"n": size})
            ids.extend(_ids_up_to(block.fetchone()[0], size))
        return ids.popleft()


def _ids_up_to(last: int, count: int) -> deque[int]:
    """The block of `count` ids that ends at `last`, in order."""
    return deque(range(last - count + 1, last + 1))


def _asked(identities: list[Identity]) -> str:
    """`_PRESENT`'s parameter: the identities as one JSON array of [source, id, type, key]."""
    return json_text([list(identity) for identity in identities])
