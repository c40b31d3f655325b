"""Scenario `assert:` lines, checked against a run's summary (the summary.json keys).

A line compares values: `VALUE OP VALUE`, or a chain such as `0.25 <= VALUE <= 0.35` (each
neighbouring pair must hold). OP is one of `== != < <= > >=`. A VALUE is arithmetic (`+ - * /`,
the usual precedence, no parentheses) over summary keys and literals: a key is dotted
(`duplicates.posted`, `dead_letters.by_code.X`), a literal a number or a duration (`250ms`, `15m`;
milliseconds when the line reads `latency_ms` keys, seconds otherwise). `true`/`false` stand
alone, compared with a key by `==` or `!=`. Keys may hold hyphens, so put spaces around a minus.
`latency.` is short for `latency_ms.`, and `drift.final_unexplained`, `drift.final_undelivered`,
`drift.final_explained`, `drift.final`, `drift.max` for their `_value` keys. Nothing is eval'd:
a small recursive-descent parser reads the line, and `check_syntax` also refuses keys that the
summary never has (`SUMMARY_KEYS`).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integration import MESSAGE_TYPES, ConfigurationError, ErrorCode, Status
from sim.scenario.expressions import Unusable, holds, parse_line
from sim.scenario.vocabulary import EDGE_CASES, PARTS, PERCENTILES

__all__ = [
    "ANY",
    "SUMMARY_KEYS",
    "AssertionResult",
    "check_syntax",
    "evaluate",
    "failure_lines",
    "seen_values",
    "write_junit",
]

# Sections that list only what happened; anything they do not name happened 0 times.
_COUNTED = (
    "events.by_type.",
    "dead_letters.by_code.",
    "dead_letters.by_first_code.",
    "outcomes.",
    "governance.alerts.",
    "governance.fixes.",
)
# The keys a summary has (sim/run/summary.py): a leaf is None, `*` stands for any one name (a
# workflow), `#` for a list index, and ANY for a subtree of its own (the load driver's figures).
ANY = "any"
_FIGURES = dict.fromkeys(("count", *PERCENTILES, "max"))
_CODES = dict.fromkeys(code.value for code in ErrorCode)
_TIMES = dict.fromkeys(("count", "mean_s", "p90_s"))
_INCIDENTS = {"incidents": None, "open_at_end": None, "mttd": _TIMES, "mttr": _TIMES}
SUMMARY_KEYS: dict[str, Any] = {
    "scenario": None,
    "seed": None,
    "events": {
        **dict.fromkeys(("truth", "messages", "held_at_end")),
        "by_type": dict.fromkeys(MESSAGE_TYPES),
    },
    "latency_ms": {"*": {**_FIGURES, "parts": dict.fromkeys(PARTS, _FIGURES)}},
    "duplicates": dict.fromkeys(("delivered", "detected", "posted")),
    "drift": dict.fromkeys(
        (
            "max_value",
            "final_value",
            "final_explained_value",
            "final_undelivered_value",
            "final_undelivered_messages",
            "final_unexplained_value",
            "final_exceptions",
        )
    ),
    "dead_letters": {
        "total": None,
        "by_code": _CODES,
        "by_first_code": _CODES,
        "replayed": None,
        "remaining": None,
    },
    "ledger": dict.fromkeys(("balanced", "reconciled", "entries")),
    "outcomes": dict.fromkeys(status.value for status in Status),
    "first_pass_rate": None,
    "late_postings": None,
    "negative_stock_events": None,
    "coverage": dict.fromkeys(EDGE_CASES),
    "heal": dict.fromkeys(("unsent", "in_flight")),
    "governance": {
        "success_rate": dict.fromkeys(("first_pass", "final")),
        "incidents": dict.fromkeys(
            ("total", "detected_by_alert", "detected_by_heal", "undetected", "closed")
        ),
        "open_incidents": None,
        "mttd": _TIMES,
        "mttr": _TIMES,
        "by_workflow": {"*": _INCIDENTS},
        "by_code": {"*": _INCIDENTS},
        "failed_volume": None,
        "replays": dict.fromkeys(("total", "by_operators")),
        "reconciliation_exceptions": None,
        "alerts": {"*": None},
        "fixes": {"*": None},
    },
    "assertions": {"#": dict.fromkeys(("passed", "value"))},
    "run": dict.fromkeys(("wall_s", "events_per_s", "messages_per_s", "peak_rss_mb", "processes")),
    "load": ANY,
}


@dataclass(frozen=True)
class AssertionResult:
    """One checked line: whether it held, the summary value it saw (of its first key), every
    key's value when it reads more than one (`values`), and why it could not be checked
    (`error`) when that is the reason it failed."""

    expr: str
    passed: bool
    value: Any
    error: str | None = None
    values: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The summary.json form: `{expr, passed, value}`, plus `values` for a line that reads
        several keys and `error` when there is one."""
        out = {"expr": self.expr, "passed": self.passed, "value": self.value}
        if self.values is not None:
            out["values"] = self.values
        if self.error is not None:
            out["error"] = self.error
        return out


def _known(path: str) -> None:
    """ValueError unless a summary can have `path` (`SUMMARY_KEYS`)."""
    node: Any = SUMMARY_KEYS
    walked: list[str] = []
    for part in path.split("."):
        if node is ANY:
            return
        if node is None:
            raise ValueError(f"no summary key {path}: {'.'.join(walked)} is a figure")
        if part in node:
            node = node[part]
        elif "*" in node:
            node = node["*"]
        elif "#" in node and part.isdigit():
            node = node["#"]
        else:
            where = ".".join(walked) or "the summary"
            raise ValueError(f"no summary key {path}: {where} has {', '.join(node)}")
        walked.append(part)
    if node is not None:
        raise ValueError(f"{path} is a section, not a figure: it has {', '.join(node)}")


def check_syntax(expressions: Iterable[str]) -> None:
    """Raise `ConfigurationError` naming every malformed line and every key no summary has
    (run when a scenario loads)."""
    problems = []
    for number, expr in enumerate(expressions, start=1):
        try:
            for key in parse_line(expr).keys:
                _known(key)
        except ValueError as error:
            problems.append(f"  assert line {number} {expr!r}: {error}")
    if problems:
        raise ConfigurationError("bad assert lines:\n" + "\n".join(problems))


# --- checking a line ---------------------------------------------------------------------------
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


def _check(expr: str, summary: Mapping[str, Any]) -> AssertionResult:
    try:
        line = parse_line(expr)
    except ValueError as error:
        return AssertionResult(expr, False, None, str(error))
    seen: dict[str, Any] = {}
    missing = None
    for key in line.keys:
        try:
            seen[key] = _lookup(summary, key)
        except KeyError:
            if key.startswith(_COUNTED):
                seen[key] = 0  # a code or status that never happened was counted zero times
            elif missing is None:
                missing = key
    first, values = seen.get(line.keys[0]), (seen if len(line.keys) > 1 else None)
    if missing is not None:
        return AssertionResult(expr, False, first, f"no such key {missing}", values)
    try:
        passed = holds(line, seen)
    except Unusable as error:
        return AssertionResult(expr, False, first, str(error), values)
    return AssertionResult(expr, passed, first, None, values)


def evaluate(expressions: Iterable[str], summary: Mapping[str, Any]) -> list[AssertionResult]:
    """Check each line against the summary, in order. Never raises: a missing key, a value
    that is not comparable or a malformed line is a failed result with `error` set."""
    return [_check(expr.strip(), summary) for expr in expressions]


# --- reporting ---------------------------------------------------------------------------------
def _show(value: Any) -> str:
    return json.dumps(value) if value is None or isinstance(value, bool) else str(value)


def seen_values(result: Mapping[str, Any]) -> str:
    """What a line saw: its value `X`, or for a line on several keys `key X, other Y`."""
    if result.get("values"):
        return ", ".join(f"{key} {_show(seen)}" for key, seen in result["values"].items())
    return _show(result["value"])


def _seen(result: Mapping[str, Any], value: str = "value", values: str = "") -> str:
    """`value X`, or for a line on several keys `key X, other Y` (after `values`)."""
    return f"{values if result.get('values') else value + ' '}{seen_values(result)}"


def write_junit(path: str | Path, suite_name: str, results: Iterable[AssertionResult]) -> None:
    """Write JUnit XML: one testcase per line, a `<failure message="value was X">` (`values
    were key X, other Y` for a line on several keys) for each that did not hold. Same results,
    same bytes (no timestamps or timings)."""
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
            message = _seen(result.to_dict(), "value was", "values were ")
            if result.error:
                message += f" ({result.error})"
            failure = ET.SubElement(case, "failure", message=message, type="AssertionFailed")
            failure.text = f"{result.expr}: {message}"
    ET.indent(root)
    ET.ElementTree(root).write(Path(path), encoding="utf-8", xml_declaration=True)


def failure_lines(results: Iterable[Mapping[str, Any]]) -> list[str]:
    """The lines that did not hold, with what they saw: `expr (value v)`, or `expr (a v, b w)`
    for a line on several keys, from a summary's `assertions`."""
    return [f"{r['expr']} ({_seen(r)})" for r in results if not r["passed"]]
