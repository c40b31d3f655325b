"""Durations as people write them (`250ms`, `30s`, `15m`, `8h`, `2d`, or a number of
seconds), shared by the twin's scenarios and the core's alert rules."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["Duration", "parse_duration", "format_duration"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")


def parse_duration(value: Any) -> timedelta:
    """`90s`, `15m`, `1.5h`, `2d`, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{value!r} is negative; durations are zero or more")
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a duration like 250ms, 30s, 15m, 8h or 2d")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        if seconds >= _UNITS[unit] and (seconds / _UNITS[unit]).is_integer():
            return f"{int(seconds / _UNITS[unit])}{unit}"
    millis = Decimal(value // timedelta(microseconds=1)) / 1000
    return f"{millis.normalize():f}ms"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": ["string", "number"], "pattern": _DURATION.pattern}),
]
