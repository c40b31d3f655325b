"""A run directory: summary.json, the series, the histograms, report.md and report.html (the
trace is streamed by `sim.report.trace` while the run goes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from sim.report.figures import plant_currencies
from sim.report.markdown import render_markdown
from sim.scenario.document import load_scenario

__all__ = ["write_run", "write_scenario"]


def write_scenario(out: Path, scenario) -> None:
    """The scenario as run (overrides applied), loadable again with `load_scenario`."""
    document = scenario.model_dump(mode="json", by_alias=True)
    (out / "scenario.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def write_run(
    out: Path, summary: dict[str, Any], series: list[dict[str, Any]], histograms: dict
) -> None:
    """summary.json, series.json, histograms.json (HdrHistogram-encoded latency per workflow
    and part), report.md, and report.html with plots/*.png into the run directory (where
    `write_scenario` has put scenario.yaml: the reports read the plants' currencies there)."""
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    (out / "series.json").write_text(json.dumps(series, default=str) + "\n")
    (out / "histograms.json").write_text(json.dumps(histograms, indent=1) + "\n")
    currencies = plant_currencies(load_scenario(out / "scenario.yaml"))
    (out / "report.md").write_text(render_markdown(summary, currencies, series))
    from sim.report.html import write_html_report  # matplotlib: only when a report is written

    write_html_report(out)
