"""report.md: a short human report of one run, from its summary."""

from __future__ import annotations

from typing import Any

__all__ = ["render_markdown", "format_millis"]

_COLUMNS = ("p50", "p90", "p95", "p99", "p99_9", "max")
_PARTS = ("report", "transport", "queue", "hold")


def _latency_table(latency: dict[str, Any]) -> list[str]:
    rows = [
        "| workflow | count | p50 | p90 | p95 | p99 | p99.9 | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workflow, figures in latency.items():
        cells = [format_millis(figures.get(name)) for name in _COLUMNS]
        rows.append(f"| {workflow} | {figures['count']} | " + " | ".join(cells) + " |")
    return rows


def _parts_table(latency: dict[str, Any]) -> list[str]:
    """p50 / p99 of each latency part per workflow."""
    rows = [
        "| workflow | " + " | ".join(f"{part} p50 / p99" for part in _PARTS) + " |",
        "|---|" + "---:|" * len(_PARTS),
    ]
    for workflow, figures in latency.items():
        parts = figures.get("parts", {})
        cells = [
            f"{format_millis(parts[part]['p50'])} / {format_millis(parts[part]['p99'])}"
            if part in parts
            else "–"
            for part in _PARTS
        ]
        rows.append(f"| {workflow} | " + " | ".join(cells) + " |")
    return rows


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"


def format_millis(millis: int | None) -> str:
    """A latency for people: `850 ms`, `2.50 s`, `4.2 min`, `7.9 h`."""
    if millis is None:
        return "–"
    if millis >= 3_600_000:
        return f"{millis / 3_600_000:.1f} h"
    if millis >= 60_000:
        return f"{millis / 60_000:.1f} min"
    return f"{millis / 1000:.2f} s" if millis >= 1000 else f"{millis} ms"


def render_markdown(summary: dict[str, Any]) -> str:
    """A short human report of one run."""
    duplicates, drift = summary["duplicates"], summary["drift"]
    dead = summary["dead_letters"]
    lines = [
        f"# {summary['scenario']} (seed {summary['seed']})",
        "",
        f"{summary['events']['truth']} physical events, {summary['events']['messages']} messages; "
        f"ledger {'balanced' if summary['ledger']['balanced'] else 'NOT balanced'} "
        f"with {summary['ledger']['entries']} entries.",
        "",
        "## Correctness",
        "",
        f"- duplicates: {duplicates['delivered']} delivered, {duplicates['detected']} detected, "
        f"**{duplicates['posted']} posted**",
        f"- drift after healing: {drift['final_value']} at standard cost "
        f"({drift['final_explained_value']} explained by open dead letters, "
        f"**{drift['final_unexplained_value']} unexplained**); "
        f"worst in flight {drift['max_value']}",
        f"- dead letters: {dead['total']} in all, {dead['replayed']} replayed, "
        f"{dead['remaining']} remaining"
        + (f" ({_counts(dead['by_code'])})" if dead["by_code"] else ""),
        f"- late postings: {summary['late_postings']}; "
        f"negative-stock events: {summary['negative_stock_events']}",
        f"- core answers: {_counts(summary.get('outcomes', {}))}; first-pass success "
        f"{summary.get('first_pass_rate', 0) * 100:.1f} %",
        "",
        "## Latency (occurred → committed, virtual time)",
        "",
        *_latency_table(summary["latency_ms"]),
        "",
        "Its parts (reporting delay, transport, queue wait, hold; 1 ms means none):",
        "",
        *_parts_table(summary["latency_ms"]),
        "",
        "## Edge cases exercised",
        "",
        _counts(summary["coverage"]),
        "",
    ]
    if "load" in summary:
        from sim.load.report import load_lines

        lines += load_lines(summary["load"])
    if summary["assertions"]:
        lines += ["## Assertions", ""]
        for result in summary["assertions"]:
            mark = "PASS" if result["passed"] else "FAIL"
            lines.append(f"- {mark} `{result['expr']}` (value {result['value']})")
        lines.append("")
    return "\n".join(lines)
