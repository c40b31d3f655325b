"""The embedded SQLite adapter of the `LedgerStore` port (stdlib sqlite3, WAL for files).

Each `commit` outside a batch is its own transaction. Inside `batch()`, one transaction holds
the write lock throughout, and the commits' rows are deferred and written together
(sqlite_batch.py); they are written before any other statement runs, so reads inside a batch
see its commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from integration.errors import ConfigurationError, StoreError
from integration.store.base import (
    Commit,
    Committed,
    DuplicateDelivery,
    Identity,
)
from integration.store.deferred import DeferredRows
from integration.store.migrations import (
    SQLITE_MIGRATIONS,
    announce_upgrade,
    migration_steps,
    run_step,
)
from integration.store.schema import SCHEMA_VERSION, SQLITE_SCHEMA
from integration.store.sql_reads import SqlReads
from integration.store.sql_writes import INSERT_ENTRY, SqlWrites
from integration.store.sqlite_batch import SqliteBatch
from integration.store.writer_lock import WriterLock

__all__ = ["SqliteStore"]

_FAILURES = (sqlite3.Error, OverflowError)  # what SQLite (or binding a value) raises


class SqliteStore(SqlReads, SqlWrites):
    """A ledger in one SQLite database: `:memory:` for tests and runs, a file (WAL) to keep."""

    _HISTORY_APPEND = "json_insert(history, '$[#]', json(?))"

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise ConfigurationError(f"cannot open SQLite database {self.path}: {error}") from error
        self._writer: WriterLock | None = None  # a private database has one writer
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._writer = WriterLock(self.path)
            except OSError as error:
                self._db.close()
                message = f"cannot open the writer lock of {self.path}: {error}"
                raise ConfigurationError(message) from error
        self._db.execute("PRAGMA foreign_keys=ON")
        self._deferred: DeferredRows | None = None  # the open batch's rows, if any
        self._migrate()

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for audits in plain SQL (and fault injection in tests). Inside
        a batch, it does not see the rows the batch has not written yet."""
        return self._db

    def _migrate(self) -> None:
        """Create the schema in a new database, or upgrade an older ledger in place (all its
        steps in one transaction); `upgraded_from` keeps the version it had, or None."""
        self.upgraded_from: int | None = None
        self._db.execute("BEGIN IMMEDIATE")
        try:
            exists = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            if exists is None:
                # One statement at a time: `executescript` would commit the transaction.
                for statement in filter(str.strip, SQLITE_SCHEMA.split(";")):
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            else:
                self._upgrade(self.schema_version())
            self._db.execute("COMMIT")
        except sqlite3.Error as error:
            self._rollback()
            raise ConfigurationError(f"cannot prepare the ledger {self.path}: {error}") from error
        except BaseException:
            self._rollback()
            raise
        if self.upgraded_from is not None:
            announce_upgrade(self.path, self.upgraded_from)

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _upgrade(self, version: int) -> None:
        for step in migration_steps(version, SQLITE_MIGRATIONS, self.path):
            run_step(step, lambda sql, params: self._db.execute(sql, params).fetchall())
            self.upgraded_from = version

    def exclusive(self) -> AbstractContextManager[None]:
        """The ledger file's writer lock (`writer_lock.py`), shared with other processes."""
        return nullcontext() if self._writer is None else self._writer.held()

    def data_version(self) -> int:
        if self.path == ":memory:":
            return 0  # a private database: no other connection can commit to it
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def schema_version(self) -> int:
        return int(
            self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
        )

    # --- the one write ---------------------------------------------------------------------
    @contextmanager
    def batch(self, expected: Iterable[Identity] = ()) -> Iterator[None]:
        """One transaction around many commits, whose rows are deferred and written together
        (sqlite_batch.py); `expected` identities are looked up in one query when it begins."""
        with self.exclusive():
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise StoreError(f"SQLite failure: {error}") from error
            try:
                batch = self._deferred = SqliteBatch(self._db, expected)
                yield
                batch.flush()
                self._db.execute("COMMIT")
            except _FAILURES as error:
                self._rollback()
                raise StoreError(f"SQLite failure: {error}") from error
            except BaseException:
                self._rollback()
                raise
            finally:
                self._deferred = None

    def commit(self, commit: Commit) -> Committed:
        if self._deferred is not None:
            return self._commit_deferred(commit, self._deferred)
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            inbox_id, entry_ids, dead_letter_id, applied_seq = self._write(commit)
            db.execute("COMMIT")
            return Committed(inbox_id, entry_ids, dead_letter_id, applied_seq)
        except sqlite3.IntegrityError as error:
            self._rollback()
            if "inbox" in str(error):
                raise DuplicateDelivery(f"inbox already holds this message: {error}") from error
            raise StoreError(f"integrity failure: {error}") from error
        except _FAILURES as error:
            self._rollback()
            raise StoreError(f"SQLite failure: {error}") from error
        except BaseException:  # e.g. a record to update is missing: undo what was written
            self._rollback()
            raise

    def _commit_deferred(self, commit: Commit, batch: DeferredRows) -> Committed:
        """A commit inside a batch: a clash raises before anything is kept; any other
        failure (part of the commit may be kept) breaks the whole batch."""
        batch.check()
        try:
            inbox_id, entry_ids, dead_letter_id, applied_seq = self._write(commit)
        except DuplicateDelivery:
            raise
        except BaseException as error:
            batch.fail(error)
            if isinstance(error, _FAILURES):
                raise StoreError(f"SQLite failure: {error}") from error
            raise
        return Committed(inbox_id, entry_ids, dead_letter_id, applied_seq)

    def _flush(self) -> None:
        """Write a batch's deferred rows before any other statement reads or writes."""
        if self._deferred is not None:
            try:
                self._deferred.flush()
            except _FAILURES as error:
                raise StoreError(f"SQLite failure: {error}") from error

    def _execute(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        self._flush()
        return self._db.execute(sql, params)

    def _executemany(self, sql: str, rows: list[tuple]) -> None:
        self._flush()
        self._db.executemany(sql, rows)

    def _insert_entry(self, row: tuple) -> int:
        return self._db.execute(INSERT_ENTRY, row).lastrowid

    # --- the reads' access to the database (see SqlReads) --------------------------------
    def _rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        self._flush()
        return self._db.execute(sql, params).fetchall()

    def _stream(self, sql: str) -> Iterator[tuple]:
        self._flush()
        yield from self._db.cursor().execute(sql)

    def close(self) -> None:
        self._db.close()
        if self._writer is not None:
            self._writer.close()
