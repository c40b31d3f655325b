"""The PostgreSQL adapter of the `LedgerStore` port (psycopg 3, the `postgres` extra).

One connection in autocommit mode; each `commit` is one explicit transaction. Several processes
may share one ledger (one schema): `exclusive()` is a session-level advisory lock keyed on the
schema, and every transaction first bumps `meta.data_version`, whose row lock orders the commits
of all writers, so `applied_seq` (MAX + 1) follows commit order even without `exclusive()`. A
batch takes the same lock at transaction level and bumps the version once, first: its commits
share that version, and their rows are deferred and sent together (postgres_batch.py).

psycopg is imported when a store is opened, never when this module is imported, so the core
runs without the extra installed.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from itertools import count
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

from integration.errors import ConfigurationError, StoreError
from integration.store.base import (
    Commit,
    Committed,
    DuplicateDelivery,
    Identity,
)
from integration.store.identity_filter import KnownIdentities
from integration.store.migrations import (
    POSTGRES_MIGRATIONS,
    announce_upgrade,
    migration_steps,
    run_step,
)
from integration.store.postgres_batch import BUMP_VERSION, DeferredBatch
from integration.store.postgres_writes import PostgresWrites
from integration.store.schema import POSTGRES_SCHEMA, SCHEMA_VERSION
from integration.store.sql_reads import SqlReads

if TYPE_CHECKING:
    import psycopg

__all__ = ["PostgresStore", "split_schema"]

_INBOX_UNIQUE = frozenset({"inbox_message_id", "inbox_idempotency_key"})
_STREAM_BATCH = 1000
_cursor_ids = count(1)

_DATA_VERSION = "SELECT value FROM meta WHERE key = 'data_version'"


def split_schema(url: str) -> tuple[str, str | None]:
    """Take the `?schema=NAME` query parameter (not a libpq one) out of a PostgreSQL URL."""
    parts = urlsplit(url)
    # Percent-decoding only, both ways: libpq reads '+' as a plus and '%20' as a space.
    pairs = (item.partition("=") for item in parts.query.split("&") if item)
    query = [(unquote(key), unquote(value)) for key, _, value in pairs]
    schemas = [value for key, value in query if key == "schema"]
    if not schemas:
        return url, None
    if len(schemas) > 1 or not schemas[0]:
        raise ConfigurationError(f"one non-empty ?schema= expected in {_redacted(url)}")
    rest = urlencode([(key, value) for key, value in query if key != "schema"], quote_via=quote)
    return urlunsplit(parts._replace(query=rest)), schemas[0]


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _lock_key(purpose: str, schema: str) -> int:
    """A stable signed 64-bit advisory-lock key for one schema's ledger."""
    digest = hashlib.blake2b(f"mfg-twin/{purpose}/{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@lru_cache(maxsize=256)
def _pg_sql(sql: str) -> str:
    """The shared reads' `?` placeholders in psycopg's `%s` style (literal `%` escaped)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresStore(SqlReads, PostgresWrites):
    """A ledger in one PostgreSQL schema: `schema` None uses the connection's current schema;
    a named schema is created if missing and put on the `search_path`."""

    _HISTORY_APPEND = "(history::jsonb || jsonb_build_array(?::jsonb))::text"

    def __init__(self, url: str, schema: str | None = None) -> None:
        try:
            import psycopg
        except ImportError as error:
            raise ConfigurationError(
                "the PostgreSQL store needs psycopg 3: pip install 'mfg-twin[postgres]'"
            ) from error
        self._pg = psycopg
        # What a statement or a flush raises when the server (or adapting a value) fails.
        self._failures: tuple[type[Exception], ...] = (psycopg.Error, OverflowError)
        self.url = _redacted(url)
        # One connection: threads sharing this store take turns (a step under `exclusive()`,
        # a commit's transaction, a read), as processes take turns on the advisory lock.
        self._guard = threading.RLock()
        self._deferred: DeferredBatch | None = None  # the open batch's rows, if any
        self._known = KnownIdentities()  # spares a batch its look-up (identity_filter.py)
        self._version_under_lock: int | None = None  # read with the writer lock, not yet asked
        self.upgraded_from: int | None = None  # the schema version an older ledger had
        try:
            self._db: psycopg.Connection = psycopg.connect(url, autocommit=True)
        except psycopg.Error as error:
            raise ConfigurationError(f"cannot open PostgreSQL {self.url}: {error}") from error
        try:
            self._db.execute("SET TIME ZONE 'UTC'")
            self.schema = self._prepare(schema)
            self._lock = _lock_key("writer", self.schema)
        except BaseException:
            self._db.close()
            raise

    @property
    def connection(self) -> psycopg.Connection:
        """The raw connection (autocommit), for audits in plain SQL and fault injection."""
        return self._db

    # --- schema ----------------------------------------------------------------------------
    def _prepare(self, schema: str | None) -> str:
        """Create (or check) the schema and its tables; returns the schema's name."""
        sql = self._pg.sql
        try:
            if schema is not None:
                with self._db.transaction():
                    self._db.execute(
                        "SELECT pg_advisory_xact_lock(%s)", (_lock_key("create", schema),)
                    )
                    self._db.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
                    )
                self._db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
            current = self._db.execute("SELECT current_schema()").fetchone()[0]
            if current is None:
                raise ConfigurationError(
                    f"{self.url}: the search_path names no existing schema; pass schema="
                )
            with self._db.transaction():
                self._db.execute(
                    "SELECT pg_advisory_xact_lock(%s)", (_lock_key("create", current),)
                )
                exists = self._db.execute(
                    "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = 'meta'",
                    (current,),
                ).fetchone()
                if exists is None:
                    self._db.execute(POSTGRES_SCHEMA)
                    self._db.execute(
                        "INSERT INTO meta VALUES ('schema_version', %s), ('data_version', '0')",
                        (str(SCHEMA_VERSION),),
                    )
                else:
                    self._upgrade(current)
        except (self._pg.Error, StoreError) as error:
            raise ConfigurationError(f"cannot prepare the ledger in {self.url}: {error}") from error
        if self.upgraded_from is not None:
            announce_upgrade(f"schema {current} of {self.url}", self.upgraded_from)
        return current

    def _upgrade(self, schema: str) -> None:
        """Bring an older ledger to this build's schema inside the caller's transaction (which
        holds the schema's create lock, so two processes upgrade it once), with the writer
        lock too, so no commit of an older build interleaves."""
        version = self.schema_version()
        steps = migration_steps(version, POSTGRES_MIGRATIONS, f"schema {schema} of {self.url}")
        if steps:
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key("writer", schema),))
        for step in steps:
            run_step(step, self._migration_sql)
            self.upgraded_from = version

    def _migration_sql(self, sql: str, params: tuple) -> list[tuple]:
        """A migration's statement (`?` placeholders) and its rows, if it has any."""
        cursor = self._db.execute(_pg_sql(sql), params)
        return cursor.fetchall() if cursor.description else []

    def schema_version(self) -> int:
        return int(self._one("SELECT value FROM meta WHERE key = 'schema_version'"))

    # --- concurrency -----------------------------------------------------------------------
    def exclusive(self) -> AbstractContextManager[None]:
        """The schema's writer lock, session-level: a killed process releases it with its
        connection. Re-entrant (advisory locks stack within a session)."""
        return self._exclusive()

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._guard:
            self._lock_and_read_version()
            try:
                yield
            except BaseException:
                self._unlock(quiet=True)
                raise
            finally:
                self._version_under_lock = None  # true only while the lock is held
            self._unlock(quiet=False)

    def _lock_and_read_version(self) -> None:
        """Take the writer lock and read the data version in one round trip (pipelined: two
        statements, so the read's snapshot is taken once the lock is held). The version
        answers the `data_version()` that follows, the first thing a writer asks."""
        try:
            with self._db.pipeline():
                self._db.execute("SELECT pg_advisory_lock(%s)", (self._lock,))
                version = self._db.execute(_DATA_VERSION)
            self._version_under_lock = int(version.fetchone()[0])
        except self._failures as error:
            raise StoreError(f"PostgreSQL failure taking the writer lock: {error}") from error

    def _unlock(self, quiet: bool) -> None:
        try:
            self._db.execute("SELECT pg_advisory_unlock(%s)", (self._lock,))
        except self._pg.Error as error:
            if quiet or self._db.broken or self._db.closed:
                return  # a lost connection has released its session locks with it
            raise StoreError(f"PostgreSQL failure releasing the writer lock: {error}") from error

    def data_version(self) -> int:
        with self._guard:
            known, self._version_under_lock = self._version_under_lock, None
        return known if known is not None else int(self._one(_DATA_VERSION))

    # --- the one write ---------------------------------------------------------------------
    @contextmanager
    def batch(self, expected: Iterable[Identity] = ()) -> Iterator[None]:
        """One transaction around many commits, whose rows are deferred and sent a chunk at a
        time (postgres_batch.py), under the writer lock (transaction-level: COMMIT releases
        it). BEGIN, the lock, the version bump and the batch's opening query go in one round
        trip, the last rows and COMMIT in another (pipelined); in between, a large batch runs
        in pipeline mode."""
        with self._guard:
            try:
                batch = self._deferred = DeferredBatch(self._db, expected, self._known)
                version = batch.open(self._lock, self._pg.ClientCursor)
                self._version_under_lock = version - 1  # what the others had committed
                with self._db.pipeline() if batch.sends_in_chunks else nullcontext():
                    yield
                    with self._db.pipeline():
                        batch.flush()
                        committed = self._db.execute("COMMIT")
                # A failure the batch's code swallowed leaves the transaction aborted, and
                # PostgreSQL answers its COMMIT with a ROLLBACK instead of an error.
                if committed.statusmessage != "COMMIT":
                    raise StoreError("the batch's transaction failed and was rolled back")
                batch.committed()
            except self._failures as error:
                raise StoreError(f"PostgreSQL failure: {error}") from error
            finally:
                self._deferred = self._version_under_lock = None
                self._end_open_transaction()

    def _end_open_transaction(self) -> None:
        """Roll back a batch's transaction left open by a failure (none after its COMMIT)."""
        if self._db.closed or self._db.broken:
            return  # the server rolled it back with the connection
        if self._db.info.transaction_status != self._pg.pq.TransactionStatus.IDLE:
            try:
                self._db.execute("ROLLBACK")
            except self._pg.Error:
                pass  # a connection lost now has rolled it back with it

    def commit(self, commit: Commit) -> Committed:
        with self._guard:
            self._version_under_lock = None
            if self._deferred is not None:
                return self._commit_deferred(commit, self._deferred)
            return self._commit(commit)

    def _commit(self, commit: Commit) -> Committed:
        pg = self._pg
        db = self._db
        try:
            with db.transaction():  # first, the row lock that orders every writer's commits
                version = int(db.execute(BUMP_VERSION).fetchone()[0])
                inbox_id, entry_ids, dead_letter_id, applied_seq = self._write(commit)
        except pg.errors.UniqueViolation as error:
            if error.diag.constraint_name in _INBOX_UNIQUE:
                raise DuplicateDelivery(f"inbox already holds this message: {error}") from error
            raise StoreError(f"integrity failure: {error}") from error
        except pg.errors.IntegrityError as error:
            raise StoreError(f"integrity failure: {error}") from error
        except self._failures as error:
            raise StoreError(f"PostgreSQL failure: {error}") from error
        if commit.inbox is not None and (identity := commit.inbox.claims) is not None:
            self._known.note(identity)
        self._known.committed(version)
        return Committed(inbox_id, entry_ids, dead_letter_id, applied_seq, version)

    def _commit_deferred(self, commit: Commit, batch: DeferredBatch) -> Committed:
        """A commit inside a batch: a clash raises before anything is kept; any other
        failure breaks the whole batch."""
        batch.check()
        try:
            inbox_id, entry_ids, dead_letter_id, applied_seq = self._write(commit)
        except DuplicateDelivery:
            raise  # found before anything of the commit was kept
        except BaseException as error:
            batch.fail(error)  # part of the commit may be kept: none of the batch may be
            if isinstance(error, self._failures):
                raise StoreError(f"PostgreSQL failure: {error}") from error
            raise
        return Committed(inbox_id, entry_ids, dead_letter_id, applied_seq, batch.version)

    def _flush(self) -> None:
        """Send a batch's deferred rows before any other statement reads or writes."""
        if self._deferred is not None:
            self._deferred.flush()

    def _execute(self, sql: str, params: tuple | list = ()) -> Any:
        self._flush()
        return self._db.execute(_pg_sql(sql), params)

    def _db_execute(self, sql: str, params: tuple | list) -> Any:
        return self._db.execute(sql, params)  # outside a batch only

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        self._flush()
        self._db.cursor().executemany(_pg_sql(sql), rows)

    # --- the reads' access to the database (see SqlReads) --------------------------------
    def _one(self, sql: str, params: tuple = ()) -> Any:
        rows = self._rows_pg(sql, params)
        if not rows:
            raise StoreError(f"no row for {sql!r}: is this a ledger schema?")
        return rows[0][0]

    def _rows_pg(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        try:
            with self._guard:
                self._flush()
                return self._db.execute(sql, params).fetchall()
        except self._failures as error:
            raise self._failure(error) from error

    def _failure(self, error: Exception) -> StoreError:
        """A read failed: inside a batch, its transaction is aborted, and so is the batch
        (the failure may be its own rows', surfacing at this read's answer)."""
        if self._deferred is not None:
            self._deferred.fail(error)
        return StoreError(f"PostgreSQL failure: {error}")

    def _rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        return self._rows_pg(_pg_sql(sql), params)

    def _stream(self, sql: str) -> Iterator[tuple]:
        """Rows in batches from a server-side cursor. WITH HOLD lets it outlive its implicit
        transaction (autocommit), so the caller may use the store between rows. In pipeline
        mode (a large batch), where server-side cursors cannot run, all rows at once."""
        if self._db.pgconn.pipeline_status != self._pg.pq.PipelineStatus.OFF:
            yield from self._rows(sql)
            return
        cursor = self._db.cursor(f"ledger_stream_{next(_cursor_ids)}", withhold=True)
        try:
            with self._guard:
                self._flush()
                cursor.execute(_pg_sql(sql), ())
            while True:
                with self._guard:
                    batch = cursor.fetchmany(_STREAM_BATCH)
                if not batch:
                    return
                yield from batch
        except self._failures as error:
            raise self._failure(error) from error
        finally:
            try:
                with self._guard:
                    cursor.close()
            except self._pg.Error:
                pass  # a broken connection has dropped the cursor with it

    def close(self) -> None:
        with self._guard:
            self._db.close()
