"""Accounting periods are calendar months in the plant's time zone: where a moment falls, and
when a period ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from integration import period_end, period_of


@pytest.mark.parametrize(
    ("period", "zone", "end_utc"),
    [
        ("2026-11", "America/Monterrey", datetime(2026, 12, 1, 6, tzinfo=UTC)),  # UTC-6
        ("2026-03", "America/Chicago", datetime(2026, 4, 1, 5, tzinfo=UTC)),  # CDT, UTC-5
        ("2026-11", "Europe/Paris", datetime(2026, 11, 30, 23, tzinfo=UTC)),  # CET, UTC+1
        ("2026-12", "Asia/Kolkata", datetime(2026, 12, 31, 18, 30, tzinfo=UTC)),  # UTC+5:30
        ("2026-12", "UTC", datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_a_period_ends_at_local_midnight_on_the_first_of_the_next_month(period, zone, end_utc):
    end = period_end(period, zone)
    assert end == end_utc
    assert (end.hour, end.minute, end.day) == (0, 0, 1)  # local midnight on the first
    assert period_of(end - timedelta(microseconds=1), zone) == period
    assert period_of(end, zone) != period


@pytest.mark.parametrize("period", ["9999-12", "0000-01"])
def test_a_period_that_ends_outside_the_calendar_has_no_end(period):
    assert period_end(period, "UTC") is None
