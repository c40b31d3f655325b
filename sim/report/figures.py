"""What a run report leads with, for report.md and report.html alike: the verdict, the key
figures, and how latencies and money are written. Pure functions of the summary and the plants'
currencies (no matplotlib, so report.md never needs it); keys added to the summary later are
read with `.get`, so the reports of older runs still render.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "KEY_FIGURE_GROUPS",
    "MIN_CDF_SAMPLES",
    "PLOTS",
    "Figure",
    "cdf_notice",
    "counts_text",
    "format_millis",
    "format_money",
    "key_figures",
    "money_note",
    "plant_currencies",
    "too_few_for_cdf",
    "verdict",
    "verdict_line",
]

# A workflow with fewer postings gets no CDF: a handful of steps only looks like a distribution.
MIN_CDF_SAMPLES = 10
_MAIN_WORKFLOWS = 3  # latency tiles: the busiest workflows

# plot file stem -> caption, in report order (drawn by `sim.report.plots`)
PLOTS = {
    "latency_cdf": "Latency CDF per workflow (occurred → committed, virtual time)",
    "p99_over_time": "p99 latency per sample interval, with shift ends",
    "traffic": "Arrivals, throughput and queue depth per sample interval",
    "drift": "Reconciliation drift (value and exceptions); the heal phase is shaded",
    "dead_letters": "Dead letters by code per sample interval",
}


@dataclass(frozen=True)
class Figure:
    """One key figure. `alarm` is True when it breaks a must (shown as a failure), False when
    it holds one, None when it only informs."""

    label: str
    value: str
    note: str = ""
    alarm: bool | None = None


def format_millis(millis: float | None) -> str:
    """A latency for people: `850 ms`, `2.50 s`, `4.2 min`, `7.9 h`."""
    if millis is None:
        return "–"
    if millis >= 3_600_000:
        return f"{millis / 3_600_000:.1f} h"
    if millis >= 60_000:
        return f"{millis / 60_000:.1f} min"
    return f"{millis / 1000:.2f} s" if millis >= 1000 else f"{millis:g} ms"


def format_money(value: Any, currencies: tuple[str, ...] = ()) -> str:
    """A drift value with thousands separators and its currency, its digits kept as they are:
    `EUR 313,363.41`. Drift sums each plant's amounts in that plant's currency, unconverted, so
    with several currencies the figure names them all, `1,200.00 CHF+EUR`, and `money_note`
    says that it is a sum without conversion."""
    try:
        text = f"{Decimal(str(value)):,f}"
    except InvalidOperation:
        return str(value)
    if len(currencies) == 1:
        return f"{currencies[0]} {text}"
    if currencies:
        return f"{text} {'+'.join(currencies)}"
    return text


def money_note(currencies: tuple[str, ...]) -> str:
    """How the drift values are valued, in one sentence."""
    if len(currencies) > 1:
        return (
            f"Drift values are quantity differences at standard cost, each plant's in its own "
            f"currency ({', '.join(currencies)}), summed without conversion: a magnitude, "
            "not an amount."
        )
    return "Drift values are quantity differences at standard cost."


def counts_text(counts: dict[str, int]) -> str:
    """`A 3, B 1`, or `none`."""
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def too_few_for_cdf(latency: dict[str, Any]) -> dict[str, int]:
    """Workflows with postings but fewer than MIN_CDF_SAMPLES: {workflow: count}."""
    return {
        workflow: figures["count"]
        for workflow, figures in sorted(latency.items())
        if 0 < figures["count"] < MIN_CDF_SAMPLES
    }


def verdict(summary: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """(failed, passed) assertion results, each in the scenario's order."""
    results = summary.get("assertions") or []
    return [r for r in results if not r["passed"]], [r for r in results if r["passed"]]


def verdict_line(summary: dict[str, Any]) -> str:
    """`PASSED: all 5 assertions hold`, `FAILED: 2 of 5 assertions fail`, or that there are none."""
    failed, passed = verdict(summary)
    total = len(failed) + len(passed)
    if not total:
        return "NO VERDICT: the scenario asserts nothing"
    if failed:
        return f"FAILED: {len(failed)} of {total} assertions fail"
    return f"PASSED: all {total} assertions hold"


def cdf_notice(latency: dict[str, Any]) -> str:
    """What the latency CDF leaves out for too few samples ('' when nothing)."""
    thin = too_few_for_cdf(latency)
    if not thin:
        return ""
    names = ", ".join(f"{workflow} (n={n})" for workflow, n in thin.items())
    return (
        f"Too few samples to draw a CDF (fewer than {MIN_CDF_SAMPLES} postings), so not "
        f"plotted: {names}; their percentiles are in the latency table."
    )


def plant_currencies(scenario: Any) -> tuple[str, ...]:
    """The currencies of the scenario's plants, the units drift is valued in."""
    return tuple(sorted({plant.currency for plant in scenario.plants}))


def _must_be_zero(label: str, value: Any, shown: str, note: str = "") -> Figure:
    return Figure(f"{label} (must be 0)", shown, note, alarm=Decimal(str(value)) != 0)


def _correctness(s: dict[str, Any], currencies: tuple[str, ...]) -> list[Figure]:
    drift, ledger, dead = s["drift"], s["ledger"], s["dead_letters"]
    books = "balanced" if ledger["balanced"] else "NOT balanced"
    reconciled = ledger.get("reconciled", True)
    figures = [
        _must_be_zero(
            "duplicates posted",
            s["duplicates"]["posted"],
            str(s["duplicates"]["posted"]),
            f"{s['duplicates']['delivered']} delivered, {s['duplicates']['detected']} detected",
        ),
        _must_be_zero(
            "unexplained drift",
            drift["final_unexplained_value"],
            format_money(drift["final_unexplained_value"], currencies),
            "after healing, less what open dead letters"
            + (" and undelivered messages" if "final_undelivered_messages" in drift else "")
            + " explain",
        ),
        Figure(
            "ledger",
            books + ("" if reconciled else ", NOT reconciled"),
            f"{ledger['entries']:,} entries",
            alarm=not (ledger["balanced"] and reconciled),
        ),
        Figure("dead letters remaining", str(dead["remaining"]), _dead_letter_note(dead)),
    ]
    return figures + _left_over(s, currencies)


def _dead_letter_note(dead: dict[str, Any]) -> str:
    note = f"of {dead['total']} written, {dead['replayed']} replayed"
    if dead["by_code"]:
        note += f"; open: {counts_text(dead['by_code'])}"
    first = dead.get("by_first_code")
    if first and first != dead["by_code"]:
        note += f"; all by the code they first failed with: {counts_text(first)}"
    return note


def _left_over(s: dict[str, Any], currencies: tuple[str, ...]) -> list[Figure]:
    """What the run ended without: messages never delivered, messages still held."""
    drift, heal = s["drift"], s.get("heal") or {}
    figures = []
    label = "messages undelivered after healing"
    if "final_undelivered_messages" in drift:
        value = format_money(drift.get("final_undelivered_value", 0), currencies)
        note = f"worth {value}; a longer measures.heal drains them"
        figures.append(Figure(label, f"{drift['final_undelivered_messages']:,}", note))
    elif heal:
        unsent, in_flight = heal.get("unsent", 0), heal.get("in_flight", 0)
        figures.append(Figure(label, f"{unsent + in_flight:,}",
                              f"{unsent:,} unsent, {in_flight:,} in flight"))  # fmt: skip
    held = s["events"].get("held_at_end")
    if held is not None:
        figures.append(Figure("messages held at the end", f"{held:,}", "still HELD by the core"))
    return figures


def _flow(s: dict[str, Any], currencies: tuple[str, ...]) -> list[Figure]:
    drift = s["drift"]
    explained = drift.get("final_explained_value")
    return [
        Figure(
            "first-pass success",
            f"{s.get('first_pass_rate', 0) * 100:.1f} %",
            "events posted at their first delivery",
        ),
        Figure(
            "messages sent",
            f"{s['events']['messages']:,}",
            f"for {s['events']['truth']:,} physical events",
        ),
        Figure(
            "drift after healing",
            format_money(drift["final_value"], currencies),
            f"{drift['final_exceptions']} keys differ"
            + (
                f"; {format_money(explained, currencies)} explained by open dead letters"
                if explained is not None
                else ""
            ),
        ),
        Figure(
            "worst drift in flight",
            format_money(drift["max_value"], currencies),
            "the largest at any sample, or at the end",
        ),
    ]


def _latency(s: dict[str, Any], _currencies: tuple[str, ...]) -> list[Figure]:
    latency = s["latency_ms"]
    busiest = sorted(latency, key=lambda w: (-latency[w]["count"], w))[:_MAIN_WORKFLOWS]
    return [
        Figure(
            f"p95 {workflow}",
            format_millis(latency[workflow]["p95"]),
            f"{latency[workflow]['count']:,} postings; "
            f"p99 {format_millis(latency[workflow]['p99'])}",
        )
        for workflow in busiest
    ]


def _time(seconds: float | None) -> str:
    return format_millis(None if seconds is None else seconds * 1000)


def _governance(s: dict[str, Any], _currencies: tuple[str, ...]) -> list[Figure]:
    """Success, detection and recovery (a summary written before governance has none)."""
    g = s.get("governance")
    if not g:
        return []
    incidents, mttd, mttr = g["incidents"], g["mttd"], g["mttr"]
    alerted, healed = incidents["detected_by_alert"], incidents["detected_by_heal"]
    return [
        Figure(
            "final success",
            f"{g['success_rate']['final'] * 100:.1f} %",
            f"events in the books at the end; {g['success_rate']['first_pass'] * 100:.1f} % "
            "at the first pass",
        ),
        Figure(
            "incidents",
            f"{incidents['total']:,}",
            f"{g['open_incidents']:,} open at the end; {g['failed_volume']:,} messages failed",
        ),
        Figure(
            "mean time to detect",
            _time(mttd["mean_s"]),
            f"p90 {_time(mttd['p90_s'])}; {alerted:,} by an alert, "
            f"{healed:,} only by the heal phase",
        ),
        Figure(
            "mean time to recover",
            _time(mttr["mean_s"]),
            f"p90 {_time(mttr['p90_s'])}; first failure → effect in the books",
        ),
        Figure(
            "replays",
            f"{g['replays']['total']:,}",
            f"{g['replays']['by_operators']:,} posted by operators; "
            f"{g['reconciliation_exceptions']:,} reconciliation exceptions",
        ),
    ]


# (title, figures): the report's key-figure groups in order; a new group is one more line here
KEY_FIGURE_GROUPS: tuple[tuple[str, Callable[..., list[Figure]]], ...] = (
    ("Correctness", _correctness),
    ("Flow and drift", _flow),
    ("Latency of the busiest workflows (occurred → committed)", _latency),
    ("Operations and governance", _governance),
)


def key_figures(
    summary: dict[str, Any], currencies: tuple[str, ...] = ()
) -> list[tuple[str, list[Figure]]]:
    """The key figures by group, empty groups left out."""
    groups = [(title, make(summary, currencies)) for title, make in KEY_FIGURE_GROUPS]
    return [(title, figures) for title, figures in groups if figures]
