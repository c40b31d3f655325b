"""Clocks. The core never reads the wall clock: whoever drives it passes a `Clock`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, timezone-aware."""


class ManualClock:
    """A clock that moves only when told to: virtual time for the twin and for tests."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a clock needs a timezone-aware start")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, moment: datetime) -> None:
        if moment < self._now:
            raise ValueError("a clock does not run backwards")
        self._now = moment


class SystemClock:
    """The wall clock, for a deployed service only."""

    def now(self) -> datetime:
        return datetime.now(UTC)
