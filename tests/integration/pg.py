"""The PostgreSQL the tests use: `MFG_TWIN_PG_URL`, by default the local server.

Each test gets a schema of its own (`fresh_schema`), dropped afterwards. When the server cannot
be reached the test is skipped with the reason, or fails under `CI=true` (CI must run them).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from urllib.parse import urlsplit, urlunsplit

import pytest

from integration import Core, ManualClock, PostgresStore, open_store
from tests.builders import START, settings

PG_URL = os.environ.get("MFG_TWIN_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@cache
def _unreachable() -> str | None:
    """Why the server cannot be used, or None (checked once per test process)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[postgres]')"
    try:
        psycopg.connect(PG_URL, connect_timeout=5).close()
    except psycopg.Error as error:
        detail = " ".join(str(error).split())
        return f"PostgreSQL unreachable at {_shown(PG_URL)} (set MFG_TWIN_PG_URL): {detail}"
    return None


def _shown(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***", 1)))


def require_pg() -> str:
    """The server's URL; skips the test (fails it under CI=true) when it is unreachable."""
    reason = _unreachable()
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return PG_URL


def drop_schema(name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


def schema_url(schema: str) -> str:
    """The test server's URL with the ledger in `schema`."""
    return f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A unique schema name for one test; the schema (if created) is dropped afterwards."""
    require_pg()
    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        yield name
    finally:
        drop_schema(name)


class ScratchPostgresStore(PostgresStore):
    """A store in a schema of its own that `close()` drops (the contract suite's factory)."""

    def __init__(self) -> None:
        require_pg()
        name = f"test_{uuid.uuid4().hex[:16]}"
        try:
            super().__init__(PG_URL, schema=name)
        except BaseException:
            drop_schema(name)
            raise

    def close(self) -> None:
        super().close()
        drop_schema(self.schema)


class Ledger:
    """One test's PostgreSQL ledger (a fresh schema); every store opened on it is closed at
    the end of the test, failed or not."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.url = schema_url(schema)
        self._opened: list = []

    def store(self) -> PostgresStore:
        """A store of its own connection, opened through `open_store`."""
        return self.track(open_store(self.url))

    def track(self, store):
        self._opened.append(store)
        return store

    def core(self, clock: ManualClock | None = None, **overrides) -> Core:
        """A core on its own connection to the ledger, nothing posted."""
        return Core(settings(**overrides), self.store(), clock or ManualClock(START))

    def close(self) -> None:
        for store in self._opened:
            store.close()


@contextmanager
def postgres_ledger() -> Iterator[Ledger]:
    """A test's `Ledger` in a fresh schema: its stores closed and the schema dropped after."""
    with fresh_schema() as name:
        opened = Ledger(name)
        try:
            yield opened
        finally:
            opened.close()
