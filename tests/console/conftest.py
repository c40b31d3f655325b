"""Marks a console test whose call failed, so its `page` fixture saves a screenshot."""

from __future__ import annotations

import pytest

FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report
