"""Scenario `assert:` lines, checked against a run's summary (the summary.json keys).

One line is `PATH OP LITERAL`: PATH is dotted (`duplicates.posted`, `dead_letters.by_code.X`), OP
one of `== != < <= > >=`, LITERAL a number, a duration (`250ms`, `15m`; milliseconds under
`latency_ms`, seconds elsewhere) or `true`/`false`. `latency.` is short for `latency_ms.`, and
`drift.final_unexplained`, `drift.final`, `drift.max` for their `_value` keys. Nothing is eval'd.
"""

from __future__ import annotations

import json
import operator
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from integration import ConfigurationError
from sim.scenario.sections import parse_duration

__all__ = ["AssertionResult", "check_syntax", "evaluate", "failure_lines", "write_junit"]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le,
    ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}  # fmt: skip
_LINE = re.compile(r"^\s*([\w-]+(?:\.[\w-]+)*)\s*(==|!=|<=|>=|<|>)\s*(\S+)\s*$")
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
# Sections that list only what happened; anything they do not name happened 0 times.
_COUNTED = ("dead_letters.by_code.", "outcomes.")
_ALIASES = {
    "drift.final_unexplained": "drift.final_unexplained_value",
    "drift.final": "drift.final_value",
    "drift.max": "drift.max_value",
}


@dataclass(frozen=True)
class AssertionResult:
    """One checked line: whether it held, the summary value it saw, and why it could not be
    checked (`error`) when that is the reason it failed."""

    expr: str
    passed: bool
    value: Any
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The summary.json form: `{expr, passed, value}`, plus `error` when there is one."""
        out = {"expr": self.expr, "passed": self.passed, "value": self.value}
        if self.error is not None:
            out["error"] = self.error
        return out


def _seconds(value: timedelta) -> Decimal:
    return Decimal(value.days * 86400 + value.seconds) + Decimal(value.microseconds) / 10**6


def _parse(expr: str) -> tuple[str, str, bool | Decimal]:
    """(resolved path, operator, literal); ValueError says what is wrong with the line."""
    match = _LINE.match(expr)
    if match is None:
        raise ValueError("expected PATH OP LITERAL, e.g. `duplicates.posted == 0`")
    path, op, text = match.groups()
    if path.startswith("latency."):
        path = "latency_ms." + path.removeprefix("latency.")
    path = _ALIASES.get(path, path)
    literal: bool | Decimal
    if text.lower() in ("true", "false"):
        if op not in ("==", "!="):
            raise ValueError(f"{op} cannot compare with a boolean")
        literal = text.lower() == "true"
    elif _NUMBER.match(text):
        literal = Decimal(text)
    else:
        try:
            seconds = _seconds(parse_duration(text))
        except ValueError:
            raise ValueError(f"{text!r} is not a number, a duration or true/false") from None
        literal = seconds * 1000 if path.startswith("latency_ms.") else seconds
    return path, op, literal


def check_syntax(expressions: Iterable[str]) -> None:
    """Raise `ConfigurationError` naming every malformed line (run when a scenario loads)."""
    problems = []
    for number, expr in enumerate(expressions, start=1):
        try:
            _parse(expr)
        except ValueError as error:
            problems.append(f"  assert line {number} {expr!r}: {error}")
    if problems:
        raise ConfigurationError("bad assert lines:\n" + "\n".join(problems))


def _lookup(summary: Any, path: str) -> Any:
    node = summary
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list | tuple) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise KeyError(path)
    return node


def _number(value: Any) -> Decimal:
    """A summary value as a Decimal (floats via repr, so 0.3 stays 0.3); bools are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidOperation
    number = Decimal(repr(value) if isinstance(value, float) else value)
    if number.is_nan():
        raise InvalidOperation
    return number


def _check(expr: str, summary: Mapping[str, Any]) -> AssertionResult:
    try:
        path, op, literal = _parse(expr)
    except ValueError as error:
        return AssertionResult(expr, False, None, str(error))
    try:
        value = _lookup(summary, path)
    except KeyError:
        if not path.startswith(_COUNTED):
            return AssertionResult(expr, False, None, f"no such key {path}")
        value = 0  # a code or edge case that never happened was counted zero times
    if isinstance(literal, bool):
        if not isinstance(value, bool):
            return AssertionResult(expr, False, value, f"{path} is not a boolean")
        return AssertionResult(expr, _OPS[op](value, literal), value)
    try:
        number = _number(value)
    except (InvalidOperation, ValueError, TypeError):
        return AssertionResult(expr, False, value, f"{path} is not a number")
    return AssertionResult(expr, _OPS[op](number, literal), value)


def evaluate(expressions: Iterable[str], summary: Mapping[str, Any]) -> list[AssertionResult]:
    """Check each line against the summary, in order. Never raises: a missing key, a value
    that is not comparable or a malformed line is a failed result with `error` set."""
    return [_check(expr.strip(), summary) for expr in expressions]


def _show(value: Any) -> str:
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def write_junit(path: str | Path, suite_name: str, results: Iterable[AssertionResult]) -> None:
    """Write JUnit XML: one testcase per line, a `<failure message="value was X">` for each
    that did not hold. Same results, same bytes (no timestamps or timings)."""
    results = list(results)
    failures = sum(not result.passed for result in results)
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failures))
    suite = ET.SubElement(
        root, "testsuite", name=suite_name, tests=str(len(results)), failures=str(failures),
        errors="0", skipped="0",
    )  # fmt: skip
    for result in results:
        case = ET.SubElement(suite, "testcase", classname=suite_name, name=result.expr)
        if not result.passed:
            message = f"value was {_show(result.value)}"
            if result.error:
                message += f" ({result.error})"
            failure = ET.SubElement(case, "failure", message=message, type="AssertionFailed")
            failure.text = f"{result.expr}: {message}"
    ET.indent(root)
    ET.ElementTree(root).write(Path(path), encoding="utf-8", xml_declaration=True)


def failure_lines(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """The lines that did not hold, with the value seen: `expr (value v)`, from a summary's
    `assertions`."""
    return [f"{r['expr']} (value {r['value']})" for r in results if not r["passed"]]
