"""A run directory: summary.json, the series, a streamed gzip JSON-lines trace, report.md."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from integration import Envelope, Outcome
from sim.truth import PhysicalEvent

__all__ = ["Trace", "write_run", "render_markdown"]


class Trace:
    """Truth events, messages and outcomes as compressed JSON lines, written as they happen
    (never kept in memory). The only place the physical event id meets a message id."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = gzip.open(path, "wt", encoding="utf-8", compresslevel=3)

    def _write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, separators=(",", ":"), default=str))
        self._file.write("\n")

    def truth(self, event: PhysicalEvent) -> None:
        deltas = [[*key, str(qty)] for key, qty in sorted(event.deltas.items())]
        self._write(
            {
                "kind": "truth",
                "t": round(event.occurred_at, 3),
                "event": event.id,
                "workflow": event.workflow,
                "plant": event.plant,
                "deltas": deltas,
            }
        )

    def message(self, now: float, event_id: int, envelope: Envelope) -> None:
        self._write(
            {
                "kind": "message",
                "t": round(now, 3),
                "event": event_id,
                "message_id": envelope.message_id,
                "key": envelope.idempotency_key,
                "type": envelope.message.type,
                "stream": envelope.stream,
                "seq": envelope.source_seq,
            }
        )

    def outcome(self, now: float, event_id: int, outcome: Outcome) -> None:
        self._write(
            {
                "kind": "outcome",
                "t": round(now, 3),
                "event": event_id,
                "message_id": outcome.message_id,
                "status": outcome.status.value,
                "code": outcome.code.value if outcome.code else None,
                "late": outcome.late,
            }
        )

    def close(self) -> None:
        self._file.close()


def write_run(out: Path, summary: dict[str, Any], series: list[dict[str, Any]]) -> None:
    """summary.json, series.json and report.md into the run directory."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "series.json").write_text(json.dumps(series, default=str) + "\n")
    (out / "report.md").write_text(render_markdown(summary))


def _latency_table(latency: dict[str, Any]) -> list[str]:
    rows = ["| workflow | count | p50 | p95 | p99 | max |", "|---|---:|---:|---:|---:|---:|"]
    for workflow, figures in latency.items():
        cells = [_ms(figures[name]) for name in ("p50", "p95", "p99", "max")]
        rows.append(f"| {workflow} | {figures['count']} | " + " | ".join(cells) + " |")
    return rows


def _ms(millis: int) -> str:
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
        f"{dead['remaining']} remaining {dead['by_code'] or ''}",
        f"- late postings: {summary['late_postings']}; "
        f"negative-stock events: {summary['negative_stock_events']}",
        "",
        "## Latency (occurred → committed, virtual time)",
        "",
        *_latency_table(summary["latency_ms"]),
        "",
        "## Edge cases exercised",
        "",
        ", ".join(f"{name} {count}" for name, count in summary["coverage"].items()) or "none",
        "",
    ]
    if summary["assertions"]:
        lines += ["## Assertions", ""]
        for result in summary["assertions"]:
            mark = "PASS" if result["passed"] else "FAIL"
            lines.append(f"- {mark} `{result['expr']}` (value {result['value']})")
        lines.append("")
    return "\n".join(lines)
