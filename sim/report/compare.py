"""Two run directories side by side (`twin compare RUN_A RUN_B`): latency percentiles per
workflow and queue depth, with how far apart they are, and what each ran against.

Made for the queue model against the real broker: `twin run` with `integration.pattern: queue`
set like the consumer, and `twin load --target amqp://…` against `twin consume`, on the same
scenario and seed. Both runs' latencies are in the scenario's virtual time (a load run maps
the wall clock to it by `speed`), from the physical event to its posting, so the same traffic
compares directly; queue depth is the most messages waiting per sample interval (the model's
queue; for a load run what it had sent and not yet had answered). Any two runs compare the same
way (before and after a change, SQLite against PostgreSQL).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from integration import ConfigurationError

__all__ = ["compare_runs", "render_comparison"]

PERCENTILES = ("p50", "p90", "p99", "max")
PART_PERCENTILES = ("p50", "p99")


def _read(run_dir: Path) -> tuple[dict, list[dict], dict]:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        series = json.loads((run_dir / "series.json").read_text())
        scenario = yaml.safe_load((run_dir / "scenario.yaml").read_text())
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"{run_dir} is not a complete run directory: {error}") from error
    return summary, series, scenario


def _ratio(b: float, a: float) -> float | None:
    return round(b / a, 3) if a else None


def _depth(series: list[dict]) -> dict[str, float]:
    """The per-interval peaks: their largest, mean and 90th percentile."""
    peaks = sorted(row["queue_depth"] for row in series) or [0]
    return {
        "max": peaks[-1],
        "mean": round(sum(peaks) / len(peaks), 2),
        "p90": peaks[min(len(peaks) - 1, int(0.9 * len(peaks)))],
    }


def _setup(summary: dict, scenario: dict) -> dict[str, Any]:
    """What the integration layer was: the twin's model, or the live target a load drove."""
    if "load" in summary:
        load = summary["load"]
        return {"kind": "load", "target": load["target"], "speed": load["speed"]}
    integration = scenario.get("integration", {})
    return {
        "kind": "model",
        "pattern": integration.get("pattern"),
        "consumers": integration.get("consumers"),
        "service_time": integration.get("service_time"),
    }


def compare_runs(run_a: str | Path, run_b: str | Path) -> dict[str, Any]:
    """The comparison of two run directories (B against A: ratios are B / A)."""
    (sa, series_a, scenario_a), (sb, series_b, scenario_b) = _read(Path(run_a)), _read(Path(run_b))
    latency = {}
    for workflow in sorted(set(sa["latency_ms"]) & set(sb["latency_ms"])):
        a, b = sa["latency_ms"][workflow], sb["latency_ms"][workflow]
        latency[workflow] = {
            p: {"a": a[p], "b": b[p], "ratio": _ratio(b[p], a[p])} for p in PERCENTILES
        }
        latency[workflow]["count"] = {"a": a["count"], "b": b["count"]}
        parts_a, parts_b = a.get("parts", {}), b.get("parts", {})
        latency[workflow]["parts"] = {
            part: {p: {"a": parts_a[part][p], "b": parts_b[part][p]} for p in PART_PERCENTILES}
            for part in sorted(set(parts_a) & set(parts_b))
        }
    depth_a, depth_b = _depth(series_a), _depth(series_b)
    return {
        "a": {"run": str(run_a), **_setup(sa, scenario_a)},
        "b": {"run": str(run_b), **_setup(sb, scenario_b)},
        "same_traffic": sa["scenario"] == sb["scenario"]
        and sa["seed"] == sb["seed"]
        and sa["events"]["messages"] == sb["events"]["messages"],
        "latency_ms": latency,
        "queue_depth": {
            k: {"a": depth_a[k], "b": depth_b[k], "ratio": _ratio(depth_b[k], depth_a[k])}
            for k in depth_a
        },
        "duplicates_posted": {"a": sa["duplicates"]["posted"], "b": sb["duplicates"]["posted"]},
        "unexplained_drift": {
            "a": sa["drift"]["final_unexplained_value"],
            "b": sb["drift"]["final_unexplained_value"],
        },
    }


def _side(side: dict) -> str:
    if side["kind"] == "load":
        return f"`{side['run']}`: load run against {side['target']} at {side['speed']:g}x"
    return (
        f"`{side['run']}`: the twin's {side['pattern']} model, {side['consumers']} consumers, "
        f"service time {side['service_time']}"
    )


def render_comparison(comparison: dict[str, Any]) -> str:
    """The comparison as Markdown."""
    lines = [
        "# Two runs side by side",
        "",
        f"- A: {_side(comparison['a'])}",
        f"- B: {_side(comparison['b'])}",
        "",
    ]
    if not comparison["same_traffic"]:
        lines += ["**Not the same traffic** (scenario, seed or messages differ).", ""]
    lines += [
        "## Latency (ms, physical event to posting; ratio B / A)",
        "",
        "| workflow | count A | count B | "
        + " | ".join(f"{p} A | {p} B | {p} B/A" for p in PERCENTILES)
        + " |",
        "|---" * (3 + 3 * len(PERCENTILES)) + "|",
    ]
    for workflow, figures in comparison["latency_ms"].items():
        cells = [workflow, str(figures["count"]["a"]), str(figures["count"]["b"])]
        for p in PERCENTILES:
            cell = figures[p]
            cells += [f"{cell['a']:g}", f"{cell['b']:g}", _shown(cell["ratio"])]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Latency parts (ms: A / B)", ""]
    parts = sorted({part for f in comparison["latency_ms"].values() for part in f["parts"]})
    heads = [f"{part} {p}" for part in parts for p in PART_PERCENTILES]
    lines += ["| workflow | " + " | ".join(heads) + " |", "|---" * (1 + len(heads)) + "|"]
    for workflow, figures in comparison["latency_ms"].items():
        cells = [
            f"{figures['parts'][part][p]['a']:g} / {figures['parts'][part][p]['b']:g}"
            if part in figures["parts"]
            else "—"
            for part in parts
            for p in PART_PERCENTILES
        ]
        lines.append(f"| {workflow} | " + " | ".join(cells) + " |")
    lines += ["", "## Queue depth (most messages waiting per sample interval)", ""]
    lines += ["| | A | B | B/A |", "|---|---|---|---|"]
    for name, cell in comparison["queue_depth"].items():
        lines.append(f"| {name} | {cell['a']:g} | {cell['b']:g} | {_shown(cell['ratio'])} |")
    posted, drift = comparison["duplicates_posted"], comparison["unexplained_drift"]
    lines += [
        "",
        f"Duplicates posted: A {posted['a']}, B {posted['b']}. "
        f"Unexplained drift: A {drift['a']}, B {drift['b']}.",
        "",
    ]
    return "\n".join(lines)


def _shown(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:g}"
