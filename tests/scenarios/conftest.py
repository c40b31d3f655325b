"""Fixtures for whole-run tests (helpers live in `harness`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.scenarios import harness


@pytest.fixture
def small_document() -> dict[str, Any]:
    """A fresh, mutable copy of the small scenario document (one plant, one day)."""
    return harness.document()


@pytest.fixture
def small_file(tmp_path: Path, small_document: dict[str, Any]) -> Path:
    """The small scenario written as a YAML file."""
    return harness.write_scenario(tmp_path / "small.yaml", small_document)
