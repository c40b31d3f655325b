"""Shift calendars in virtual seconds: when the floor works, and when shifts change."""

from __future__ import annotations

from datetime import datetime

from sim.scenario.document import Calendar

__all__ = ["ShiftCalendar", "DAY"]

DAY = 86400.0
FIRST_SHIFT_HOUR = 6  # the first shift of a day starts at 06:00 (scenario time zone: UTC)


class ShiftCalendar:
    """Shifts of `shift_hours` from 06:00 on working days, as offsets from the scenario start."""

    def __init__(self, calendar: Calendar, start: datetime) -> None:
        self.calendar = calendar
        midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
        self._origin = (start - midnight).total_seconds()  # seconds into the first day
        self._first_weekday = midnight.weekday()
        length = calendar.shift_hours * 3600
        first = FIRST_SHIFT_HOUR * 3600.0
        self._shifts = [
            (first + n * length, first + (n + 1) * length) for n in range(calendar.shifts_per_day)
        ]

    def _day_shifts(self, day: int) -> list[tuple[float, float]]:
        """Shift windows of day `day` (0 = the start's day), in seconds since the start."""
        weekday = (self._first_weekday + day) % 7
        if weekday not in self.calendar.working_days:
            return []
        base = day * DAY - self._origin
        return [(base + begin, base + end) for begin, end in self._shifts]

    def next_working(self, at: float) -> float:
        """`at` if the floor works then, else the start of the next shift."""
        day = int((at + self._origin) // DAY) - 1
        for offset in range(16):
            for begin, end in self._day_shifts(day + offset):
                if at < end:
                    return max(at, begin)
        raise ValueError("the calendar has no working time")

    def next_change(self, after: float) -> float:
        """The next shift boundary (a shift's end) strictly after `after`."""
        day = int((after + self._origin) // DAY) - 1
        for offset in range(16):
            for _begin, end in self._day_shifts(day + offset):
                if end > after:
                    return end
        raise ValueError("the calendar has no working time")
