"""Accounting periods: calendar months in the plant's time zone."""

from __future__ import annotations

from collections.abc import Container
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

__all__ = ["period_of", "period_end", "next_period", "posting_period"]


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def period_of(moment: datetime, timezone: str) -> str:
    """The period (YYYY-MM) that a business moment falls in, in the plant's time zone."""
    local = moment.astimezone(_zone(timezone))
    return f"{local.year:04d}-{local.month:02d}"


def period_end(period: str, timezone: str) -> datetime | None:
    """The first moment after `period`: midnight starting the next month in the plant's time
    zone. None when that moment is outside the calendar (the year 0000, or 9999-12)."""
    year, month = (int(part) for part in next_period(period).split("-"))
    try:
        return datetime(year, month, 1, tzinfo=_zone(timezone))
    except ValueError:
        return None


def next_period(period: str) -> str:
    year, month = (int(part) for part in period.split("-"))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}"


def posting_period(original: str, closed: Container[str]) -> tuple[str, bool]:
    """The first open period at or after `original`, and whether the posting is late."""
    period = original
    while period in closed:
        period = next_period(period)
    return period, period != original
