"""A run directory: summary.json, the series, a streamed gzip JSON-lines trace, report.md
(and report.html, `sim.report.html`)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from integration import Envelope, Outcome
from sim.model.truth import PhysicalEvent

__all__ = [
    "Trace",
    "read_trace",
    "write_run",
    "write_scenario",
    "render_markdown",
    "format_millis",
]


class Trace:
    """Everything the measures saw, as compressed JSON lines written as it happens (never kept
    in memory): truth events, messages, answers, later resolutions, edge cases, cost changes
    and samples. Replaying it rebuilds the summary (`sim.run.rebuild`). The only place the
    physical event id meets a message id. Times are virtual seconds, exact."""

    def __init__(self, path: Path) -> None:
        self._file = gzip.open(path, "wt", encoding="utf-8", compresslevel=3)  # noqa: SIM115

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":"), default=str))
        self._file.write("\n")

    def truth(self, event: PhysicalEvent) -> None:
        deltas = [[*key, str(qty)] for key, qty in sorted(event.deltas.items())]
        self._write(
            {"kind": "truth", "t": event.occurred_at, "event": event.id,
             "workflow": event.workflow, "plant": event.plant, "deltas": deltas}
        )  # fmt: skip

    def message(self, now: float, event_id: int, envelope: Envelope) -> None:
        self._write(
            {"kind": "message", "t": now, "event": event_id, "message_id": envelope.message_id,
             "key": envelope.idempotency_key, "type": envelope.message.type,
             "stream": envelope.stream, "seq": envelope.source_seq}
        )  # fmt: skip

    def answer(self, now, event_id, envelope: Envelope, outcome: Outcome, queued: float) -> None:
        self._write(
            {**_outcome(now, event_id, outcome), "kind": "answer", "queued": queued,
             "stream": envelope.stream, "seq": envelope.source_seq}
        )  # fmt: skip

    def resolution(self, now: float, event_id: int, outcome: Outcome) -> None:
        self._write({**_outcome(now, event_id, outcome), "kind": "resolution"})

    def cover(self, edge_case: str, times: int) -> None:
        self._write({"kind": "cover", "name": edge_case, "n": times})

    def cost(self, item: str, costs: dict[str, Decimal]) -> None:
        self._write({"kind": "cost", "item": item, "costs": {p: str(c) for p, c in costs.items()}})

    def sample(self, now: float, queue_depth: int, value: Decimal, exceptions: int) -> None:
        self._write(
            {"kind": "sample", "t": now, "queue_depth": queue_depth, "drift_value": str(value),
             "drift_exceptions": exceptions}
        )  # fmt: skip

    def heal_ended(self, unsent: int, in_flight: int) -> None:
        self._write({"kind": "heal_ended", "unsent": unsent, "in_flight": in_flight})

    def close(self) -> None:
        self._file.close()


def _outcome(now: float, event_id: int, outcome: Outcome) -> dict[str, Any]:
    return {
        "t": now,
        "event": event_id,
        "message_id": outcome.message_id,
        "status": outcome.status.value,
        "code": outcome.code.value if outcome.code else None,
        "late": outcome.late,
    }


def read_trace(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a trace, in order; a run cut off mid-write ends at its last whole line."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        try:
            for line in lines:
                if line.endswith("\n"):
                    yield json.loads(line)
        except (EOFError, gzip.BadGzipFile):
            return


def write_scenario(out: Path, scenario) -> None:
    """The scenario as run (overrides applied), loadable again with `load_scenario`."""
    document = scenario.model_dump(mode="json", by_alias=True)
    (out / "scenario.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def write_run(
    out: Path, summary: dict[str, Any], series: list[dict[str, Any]], histograms: dict
) -> None:
    """summary.json, series.json, histograms.json (HdrHistogram-encoded latency per workflow
    and part), report.md, and report.html with plots/*.png into the run directory."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "series.json").write_text(json.dumps(series, default=str) + "\n")
    (out / "histograms.json").write_text(json.dumps(histograms, indent=1) + "\n")
    (out / "report.md").write_text(render_markdown(summary))
    from sim.report.html import write_html_report  # matplotlib: only when a report is written

    write_html_report(out)


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
