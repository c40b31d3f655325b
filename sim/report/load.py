"""The `load` section of a load run's report.md and report.html: the driver's own figures,
latency corrected and uncorrected, and a warning when the driver fell behind."""

from __future__ import annotations

from typing import Any

__all__ = ["load_lines", "latency_rows", "fell_behind_text", "describe"]

COLUMNS = ("p50", "p99", "max")


def _ms(millis: float) -> str:
    if millis >= 1000:
        return f"{millis / 1000:.2f} s"
    return f"{millis:.2f} ms"


def fell_behind_text(load: dict[str, Any]) -> str | None:
    """The warning a report leads with when the driver could not keep its schedule."""
    if not load["fell_behind"]:
        return None
    sends = load["sends"]
    return (
        f"The driver fell behind its schedule: {sends['late_share'] * 100:.1f} % of sends "
        f"started more than {sends['late_after_ms']:g} ms late. The corrected latency below "
        "includes the driver's own delay; it is not the target's alone."
    )


def describe(load: dict[str, Any]) -> list[str]:
    """What was driven and how the driver kept up, one line each."""
    sends, rate, lag = load["sends"], load["rate_per_s"], load["loop_lag_ms"]

    def counts(figures: dict[str, int]) -> str:
        return ", ".join(f"{name} {n}" for name, n in figures.items()) or "none"

    return [
        f"target {load['target']} at {load['speed']:g}× real time, at most "
        f"{load['max_in_flight']} requests in flight, request timeout {load['timeout_s']:g} s",
        f"sends: {sends['scheduled']} scheduled, {sends['started']} started, "
        f"{sends['answered']} answered, {sends['late']} late "
        f"({sends['late_share'] * 100:.2f} %, more than {sends['late_after_ms']:g} ms)",
        f"rate: {rate['scheduled']}/s scheduled, {rate['achieved']}/s achieved",
        f"retries: {counts(load['retries'])}; refused: {counts(load['refused'])}; "
        f"parked after the last attempt: {load['parked']}",
        f"event-loop lag: p99 {_ms(lag['p99'])}, max {_ms(lag['max'])}",
    ]


def latency_rows(load: dict[str, Any]) -> list[list[str]]:
    """Per workflow: count, then corrected and uncorrected p50 / p99 / max."""
    rows = []
    for workflow, figures in load["latency_ms"].items():
        corrected, uncorrected = figures["corrected"], figures["uncorrected"]
        rows.append(
            [workflow, str(corrected["count"])]
            + [_ms(corrected[c]) for c in COLUMNS]
            + [_ms(uncorrected[c]) for c in COLUMNS]
        )
    return rows


HEADERS = ["workflow", "count", *(f"corrected {c}" for c in COLUMNS)] + [
    f"uncorrected {c}" for c in COLUMNS
]


def load_lines(load: dict[str, Any]) -> list[str]:
    """The Markdown section."""
    lines = ["## Load test of a live target", ""]
    warning = fell_behind_text(load)
    if warning:
        lines += [f"**{warning}**", ""]
    lines += [f"- {line}" for line in describe(load)]
    lines += [
        "",
        "Request latency (wall clock): corrected from each send's scheduled time, uncorrected "
        "from when it actually went out.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|---|" + "---:|" * (len(HEADERS) - 1),
        *("| " + " | ".join(row) + " |" for row in latency_rows(load)),
        "",
    ]
    return lines
