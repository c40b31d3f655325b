"""The expressions of `assert:` lines (`sim.scenario.assertions`): read without eval by a small
recursive-descent parser, then decided on the values of the summary keys they name."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sim.scenario.values import parse_duration

__all__ = ["Line", "Unusable", "holds", "parse_line"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le,
    ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}  # fmt: skip
_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_TOKEN = re.compile(
    r"\s*(?:(?P<compare>==|!=|<=|>=|<|>)|(?P<arith>[-+*/])"
    r"|(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z]*)"
    r"|(?P<key>[A-Za-z_][\w-]*(?:\.[\w-]+)*))"
)
_EXAMPLE = "e.g. `duplicates.posted == 0` or `duplicates.detected >= 0.95 * duplicates.delivered`"
_ALIASES = {
    "drift.final_unexplained": "drift.final_unexplained_value",
    "drift.final_undelivered": "drift.final_undelivered_value",
    "drift.final_explained": "drift.final_explained_value",
    "drift.final": "drift.final_value",
    "drift.max": "drift.max_value",
}


# --- reading a line ----------------------------------------------------------------------------
# A value is a tree of tuples: ("number", Decimal), ("duration", seconds), ("key", path),
# ("bool", flag), ("neg", value) or (OP, left, right) for OP in + - * /.


@dataclass(frozen=True)
class Line:
    """A read line: its sides (values), the comparisons between neighbours, the keys it reads."""

    sides: tuple[tuple, ...]
    ops: tuple[str, ...]
    keys: tuple[str, ...]  # every key read, in order of appearance


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens, at = [], 0
    while expr[at:].strip():
        match = _TOKEN.match(expr, at)
        if match is None:
            bad = expr[at:].strip()[0]
            raise ValueError(f"unexpected {bad!r}: expected VALUE OP VALUE, {_EXAMPLE}")
        kind = match.lastgroup or ""
        tokens.append((kind, match[kind]))
        at = match.end()
    return tokens


class _Parser:
    """line := value (OP value)+; value := product (+|- product)*; product := unary (*|/
    unary)*; unary := - unary | number | duration | key | true | false."""

    def __init__(self, expr: str) -> None:
        self.tokens = _tokens(expr)
        self.at = 0
        self.keys: list[str] = []

    def _peek(self, kind: str, texts: str = "") -> str | None:
        if self.at < len(self.tokens):
            found, text = self.tokens[self.at]
            if found == kind and (not texts or text in texts.split()):
                self.at += 1
                return text
        return None

    def line(self) -> Line:
        sides, ops = [self._sum()], []
        while (op := self._peek("compare")) is not None:
            ops.append(op)
            sides.append(self._sum())
        if self.at < len(self.tokens):
            text = self.tokens[self.at][1]
            raise ValueError(f"unexpected {text!r}: expected VALUE OP VALUE, {_EXAMPLE}")
        if not ops:
            raise ValueError(f"no comparison: expected VALUE OP VALUE, {_EXAMPLE}")
        return Line(tuple(sides), tuple(ops), tuple(dict.fromkeys(self.keys)))

    def _sum(self) -> tuple:
        value = self._product()
        while (op := self._peek("arith", "+ -")) is not None:
            value = (op, value, self._product())
        return value

    def _product(self) -> tuple:
        value = self._unary()
        while (op := self._peek("arith", "* /")) is not None:
            value = (op, value, self._unary())
        return value

    def _unary(self) -> tuple:
        sign = self._peek("arith", "+ -")
        if sign is not None:
            value = self._unary()
            return ("neg", value) if sign == "-" else value
        if (text := self._peek("number")) is not None:
            return _literal(text)
        if (text := self._peek("key")) is not None:
            if text.lower() in ("true", "false"):
                return ("bool", text.lower() == "true")
            path = _resolve(text)
            self.keys.append(path)
            return ("key", path)
        found = repr(self.tokens[self.at][1]) if self.at < len(self.tokens) else "the end"
        raise ValueError(f"expected a number, a duration or a key, not {found}")


def _literal(text: str) -> tuple:
    try:
        return ("number", Decimal(text))
    except InvalidOperation:
        pass
    try:
        return ("duration", _seconds(parse_duration(text)))
    except ValueError:
        raise ValueError(f"{text!r} is not a number or a duration like 250ms or 15m") from None


def _resolve(path: str) -> str:
    if path.startswith("latency."):
        path = "latency_ms." + path.removeprefix("latency.")
    return _ALIASES.get(path, path)


def _seconds(value: timedelta) -> Decimal:
    return Decimal(value.days * 86400 + value.seconds) + Decimal(value.microseconds) / 10**6


def _check_booleans(line: Line) -> None:
    """`true`/`false` only as a whole side, next to `==`/`!=` and a key standing alone."""
    for index, side in enumerate(line.sides):
        if side[0] != "bool":
            if _contains_bool(side):
                raise ValueError("true/false cannot take part in arithmetic")
            continue
        neighbours = [i for i in (index - 1, index + 1) if 0 <= i < len(line.sides)]
        for other in neighbours:
            op = line.ops[min(index, other)]
            if op not in ("==", "!="):
                raise ValueError(f"{op} cannot compare with a boolean")
            if line.sides[other][0] != "key":
                raise ValueError("true/false can only be compared with a key")


def _contains_bool(value: tuple) -> bool:
    return value[0] == "bool" or any(isinstance(p, tuple) and _contains_bool(p) for p in value)


def _scaled(value: tuple, unit: Decimal) -> tuple:
    """The value with each duration (in seconds) as a number of `unit`s: ms or s."""
    if value[0] == "duration":
        return ("number", value[1] * unit)
    if value[0] in ("number", "key", "bool"):
        return value
    return (value[0], *(_scaled(part, unit) for part in value[1:]))


def _durations(line: Line) -> Line:
    """Durations in milliseconds for a line on latency keys, in seconds otherwise."""
    latency = {key.startswith("latency_ms.") for key in line.keys}
    if len(latency) > 1 and any(_has_duration(side) for side in line.sides):
        raise ValueError(
            "a duration is ambiguous beside latency_ms keys (milliseconds) and other keys "
            "(seconds): write it as a number"
        )
    unit = Decimal(1000) if latency == {True} else Decimal(1)
    return Line(tuple(_scaled(side, unit) for side in line.sides), line.ops, line.keys)


def _has_duration(value: tuple) -> bool:
    return value[0] == "duration" or any(isinstance(p, tuple) and _has_duration(p) for p in value)


def parse_line(expr: str) -> Line:
    """The line read; ValueError says what is wrong with it."""
    line = _Parser(expr).line()
    if not line.keys:
        raise ValueError(f"names no summary key, {_EXAMPLE}")
    _check_booleans(line)
    return _durations(line)


# --- checking a line ---------------------------------------------------------------------------
class Unusable(Exception):
    """A line that cannot be decided on this summary (a value of the wrong kind, a zero divisor)."""


def _number(value: Any) -> Decimal:
    """A summary value as a Decimal (floats via repr, so 0.3 stays 0.3); bools are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidOperation
    number = Decimal(repr(value) if isinstance(value, float) else value)
    if number.is_nan():
        raise InvalidOperation
    return number


def _arithmetic(value: tuple, seen: Mapping[str, Any]) -> Decimal:
    kind = value[0]
    if kind == "number":
        return value[1]
    if kind == "key":
        try:
            return _number(seen[value[1]])
        except (InvalidOperation, ValueError, TypeError):
            raise Unusable(f"{value[1]} is not a number") from None
    if kind == "neg":
        return -_arithmetic(value[1], seen)
    left, right = _arithmetic(value[1], seen), _arithmetic(value[2], seen)
    if kind == "/" and right == 0:
        divisor = value[2][1] if value[2][0] == "key" else "the divisor"
        raise Unusable(f"division by zero ({divisor} is 0)")
    return _ARITHMETIC[kind](left, right)


def _flag(side: tuple, seen: Mapping[str, Any]) -> Any:
    """What a side that stands alone holds: a `true`/`false` literal or a key's value."""
    if side[0] == "bool":
        return side[1]
    return seen.get(side[1]) if side[0] == "key" else None


def _pair(op: str, left: tuple, right: tuple, seen: Mapping[str, Any]) -> bool:
    """One comparison: of booleans when a side is `true`/`false` or both are keys holding
    booleans (`==`/`!=` only), else of numbers."""
    flags = [_flag(side, seen) for side in (left, right)]
    if op in ("==", "!=") and all(isinstance(flag, bool) for flag in flags):
        return _OPS[op](*flags)
    for side, other in ((left, right), (right, left)):
        if side[0] == "bool":  # the other side is a key (`_check_booleans`) holding no boolean
            raise Unusable(f"{other[1]} is not a boolean")
    return _OPS[op](_arithmetic(left, seen), _arithmetic(right, seen))


def holds(line: Line, seen: Mapping[str, Any]) -> bool:
    """Whether every comparison of `line` holds, given each key's summary value in `seen`;
    `Unusable` when a value is of the wrong kind or a divisor is zero."""
    pairs = zip(line.sides, line.sides[1:], strict=False)
    return all(
        _pair(op, left, right, seen) for op, (left, right) in zip(line.ops, pairs, strict=True)
    )
