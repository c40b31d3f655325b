"""report.md: the run report in Markdown, in the order of report.html: the verdict, the key
figures, the plots (links into plots/), then the detail tables."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sim.report.figures import PLOTS, cdf_notice, key_figures, money_note, verdict, verdict_line
from sim.report.tables import Table, detail_tables
from sim.scenario.assertions import seen_values

__all__ = ["render_markdown"]


def _assertion(result: dict[str, Any]) -> str:
    mark = "PASS" if result["passed"] else "**FAIL**"
    error = f"; {result['error']}" if result.get("error") else ""
    return f"- {mark} `{result['expr']}` (seen {seen_values(result)}{error})"


def _key_figures(summary: dict[str, Any], currencies: tuple[str, ...]) -> list[str]:
    lines = ["## Key figures", ""]
    for title, figures in key_figures(summary, currencies):
        lines += [f"### {title}", ""]
        for figure in figures:
            value = f"**{figure.value}**" if figure.alarm is not None else figure.value
            flag = " — **FAIL**" if figure.alarm else ""
            note = f" ({figure.note})" if figure.note else ""
            lines.append(f"- {figure.label}: {value}{flag}{note}")
        lines.append("")
    return lines + [money_note(currencies), ""]


def _plots(summary: dict[str, Any]) -> list[str]:
    lines = ["## Plots", ""]
    for name, caption in PLOTS.items():
        lines += [f"![{caption}](plots/{name}.png)", ""]
        if name == "latency_cdf" and cdf_notice(summary["latency_ms"]):
            lines += [cdf_notice(summary["latency_ms"]), ""]
    return lines


def _table(table: Table) -> list[str]:
    lines = [f"### {table.title}", ""]
    if table.rows:
        align = ["---:" if i in table.numeric else "---" for i in range(len(table.headers))]
        lines += ["| " + " | ".join(table.headers) + " |", "|" + "|".join(align) + "|"]
        for n, row in enumerate(table.rows):
            cells = [f"↳ {row[0]}" if n in table.parts else row[0], *row[1:]]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    elif not table.note:
        lines += ["none", ""]
    return lines + ([table.note, ""] if table.note else [])


def render_markdown(
    summary: dict[str, Any],
    currencies: tuple[str, ...] = (),
    series: Sequence[dict[str, Any]] = (),
) -> str:
    """The run report; `currencies` are the plants' (drift is valued in them), `series` the
    per-interval samples (dead letters rejected per interval)."""
    failed, passed = verdict(summary)
    lines = [
        f"# {summary['scenario']} (seed {summary['seed']})",
        "",
        "## Verdict",
        "",
        f"**{verdict_line(summary)}**",
        "",
        *(_assertion(result) for result in failed + passed),
        *([""] if failed or passed else []),
    ]
    if "load" in summary:
        from sim.report.load import fell_behind_text

        warning = fell_behind_text(summary["load"])
        lines += [f"**{warning}**", ""] if warning else []
    lines += _key_figures(summary, currencies) + _plots(summary) + ["## Detail", ""]
    for table in detail_tables(summary, currencies, series):
        lines += _table(table)
    if "load" in summary:
        from sim.report.load import load_lines

        lines += load_lines(summary["load"])
    return "\n".join(lines)
