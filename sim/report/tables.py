"""The detail tables of a run report, as data that report.md and report.html both render:
latency with its parts, counts and drift, dead letters, core answers, messages by type, edge
cases. Rows that would only say "nothing happened" are collapsed into the table's note.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sim.report.figures import format_millis, format_money, money_note
from sim.scenario.vocabulary import PARTS, PERCENTILES

__all__ = ["Table", "detail_tables", "edge_case_table", "latency_table", "message_types_table"]

# (summary key, column heading): the percentiles the measures keep, and the max
_PERCENTILES = (*((name, name.replace("_", ".")) for name in PERCENTILES), ("max", "max"))
_FLOOR_MS = 1  # latencies are recorded at 1 ms at least: a part whose max is 1 ms never took time


@dataclass(frozen=True)
class Table:
    """A titled table; `numeric` columns are right-aligned, rows in `parts` are sub-rows of
    the row above them (a workflow's latency parts)."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    numeric: frozenset[int] = frozenset()
    note: str = ""
    parts: frozenset[int] = field(default_factory=frozenset)


def latency_table(latency: dict[str, Any]) -> Table:
    """Per workflow its latency percentiles, then those of its parts that ever took time."""
    rows: list[list[str]] = []
    parts: set[int] = set()
    idle: Counter[str] = Counter()
    for workflow, figures in latency.items():
        rows.append([workflow, f"{figures['count']:,}", *_percentiles(figures)])
        for part in PARTS:
            part_figures = figures.get("parts", {}).get(part)
            if part_figures is None:
                continue
            if part_figures["max"] <= _FLOOR_MS:
                idle[part] += 1
                continue
            parts.add(len(rows))
            rows.append([part, "", *_percentiles(part_figures)])
    note = (
        "Occurred → committed in virtual time; the indented rows are its parts (reporting "
        "delay, transport, queue wait, hold)."
    )
    if idle:
        left_out = ", ".join(f"{part} for {n} workflow(s)" for part, n in sorted(idle.items()))
        note += f" Parts that never took time are left out: {left_out}."
    return Table(
        "Latency per workflow",
        ["workflow / part", "count", *(label for _key, label in _PERCENTILES)],
        rows,
        frozenset(range(1, len(_PERCENTILES) + 2)),
        note if rows else "Nothing was posted.",
        frozenset(parts),
    )


def _percentiles(figures: dict[str, Any]) -> list[str]:
    return [format_millis(figures.get(key)) for key, _label in _PERCENTILES]


def _counts(s: dict[str, Any], currencies: tuple[str, ...]) -> Table:
    drift, dup, events = s["drift"], s["duplicates"], s["events"]

    def money(key: str) -> str:
        return format_money(drift.get(key, "–"), currencies)

    rows = [
        ["physical events", f"{events['truth']:,}"],
        ["messages sent", f"{events['messages']:,}"],
        ["duplicates delivered / detected / posted",
         f"{dup['delivered']:,} / {dup['detected']:,} / {dup['posted']:,}"],
        ["late postings", f"{s['late_postings']:,}"],
        ["negative-stock exceptions", f"{s['negative_stock_events']:,}"],
        ["ledger entries", f"{s['ledger']['entries']:,}"],
        ["drift, worst in flight", money("max_value")],
        ["drift after healing", money("final_value")],
        ["… explained by open dead letters", money("final_explained_value")],
    ]  # fmt: skip
    if "final_undelivered_messages" in drift:
        count = drift["final_undelivered_messages"]
        rows.append([f"… left out by {count:,} undelivered message(s)",
                     money("final_undelivered_value")])  # fmt: skip
    rows += [
        ["… unexplained", money("final_unexplained_value")],
        ["keys that differ after healing", f"{drift['final_exceptions']:,}"],
        *([f"heal phase left {key.replace('_', ' ')}", f"{n:,}"]
          for key, n in (s.get("heal") or {}).items()),
    ]  # fmt: skip
    if "held_at_end" in events:
        rows.append(["held at the end", f"{events['held_at_end']:,}"])
    return Table(
        "Counts and drift", ["figure", "value"], rows, frozenset({1}), money_note(currencies)
    )


def _dead_letters(s: dict[str, Any], series: Sequence[dict[str, Any]]) -> Table:
    dead = s["dead_letters"]
    first = dead.get("by_first_code")
    seen: Counter[str] = Counter()
    for row in series:
        seen.update(row.get("dead_letters_by_code") or {})
    codes = sorted(set(seen) | set(dead["by_code"]) | set(first or {}))
    headers = ["code", "rejected in sampled intervals", "open at the end"]
    rows = [[code, f"{seen.get(code, 0):,}", f"{dead['by_code'].get(code, 0):,}"] for code in codes]
    if first is not None and first != dead["by_code"]:  # replays closed or recoded some
        headers.append("written, by the code they first failed with")
        rows = [[*row, f"{first.get(row[0], 0):,}"] for row in rows]
    note = (
        f"{dead['total']:,} in all, {dead['replayed']:,} replayed, {dead['remaining']:,} remaining."
    )
    return Table("Dead letters by code", headers, rows, frozenset(range(1, len(headers))), note)


def edge_case_table(coverage: dict[str, int]) -> Table:
    """The edge cases that happened; those that never did named in one line of the note."""
    happened = sorted((name, n) for name, n in coverage.items() if n)
    never = sorted(name for name, n in coverage.items() if not n)
    note = f"Never exercised ({len(never)}): {', '.join(never)}." if never else ""
    rows = [[name, f"{n:,}"] for name, n in happened]
    return Table("Edge cases exercised", ["edge case", "times"], rows, frozenset({1}), note)


def message_types_table(types: Mapping[str, int] | None) -> Table:
    """Messages sent by type, busiest first (`types` None: a summary of a build that did not
    count them)."""
    if types is None:
        return Table("Messages by type", ["message type", "sent", "share"], [],
                     note="Not counted in this summary.")  # fmt: skip
    total = sum(types.values())
    ranked = sorted(types.items(), key=lambda item: (-item[1], item[0]))
    rows = [[name, f"{n:,}", f"{n / total * 100:.1f} %"] for name, n in ranked]
    return Table("Messages by type", ["message type", "sent", "share"], rows, frozenset({1, 2}))


def detail_tables(
    summary: dict[str, Any],
    currencies: tuple[str, ...] = (),
    series: Sequence[dict[str, Any]] = (),
) -> list[Table]:
    """The detail tables in report order (dead letters per interval counted from `series`)."""
    outcomes = summary.get("outcomes", {})
    return [
        latency_table(summary["latency_ms"]),
        _counts(summary, currencies),
        _dead_letters(summary, series),
        Table(
            "Core answers",
            ["answer", "count"],
            [[name, f"{n:,}"] for name, n in sorted(outcomes.items())],
            frozenset({1}),
            f"First-pass success {summary.get('first_pass_rate', 0) * 100:.1f} %.",
        ),
        edge_case_table(summary.get("coverage", {})),
        message_types_table(summary["events"].get("by_type")),
    ]
