"""Fixtures shared by the integration tests: `store`, one of every `LedgerStore` adapter."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from integration import SqliteStore
from integration.store.base import LedgerStore


def _sqlite_memory(tmp_path) -> LedgerStore:
    return SqliteStore(":memory:")


def _sqlite_file(tmp_path) -> LedgerStore:
    return SqliteStore(tmp_path / "ledger.db")


def _postgres(tmp_path) -> LedgerStore:
    from tests.integration.pg import ScratchPostgresStore

    return ScratchPostgresStore()  # a schema of its own, dropped on close


STORE_FACTORIES: dict[str, Callable] = {
    "sqlite-memory": _sqlite_memory,
    "sqlite-file": _sqlite_file,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def store(request, tmp_path):
    made = STORE_FACTORIES[request.param](tmp_path)
    yield made
    made.close()
