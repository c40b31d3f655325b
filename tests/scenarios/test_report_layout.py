"""The run report reads top-down for an architect (docs/architecture.md, Run outputs): the verdict
with failed assertions first, key figures, plots, then the detail; zero rows collapsed; money with
separators and the plants' currencies; a CDF notice for workflows with too few samples; summary
keys added later shown when present and not needed when absent."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from sim.report.figures import (
    MIN_CDF_SAMPLES,
    format_money,
    key_figures,
    too_few_for_cdf,
)
from sim.report.html import render_html
from sim.report.markdown import render_markdown
from sim.report.tables import latency_table
from sim.run.session import run_scenario
from sim.scenario.document import load_scenario
from tests.scenarios import harness

FAILING = "duplicates.posted > 0"  # never true for a correct core: the failed assertion
HOLDING = "ledger.balanced == true"
RELATIONAL = "duplicates.detected == duplicates.delivered"  # holds: both sides shown


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """Two plants in two currencies, faults that drift, an assertion that holds listed before
    one that fails."""
    doc = harness.document()
    second = copy.deepcopy(doc["plants"][0]) | {"id": "BASEL", "currency": "CHF"}
    doc["plants"].append(second)
    doc["horizon"] = "12h"
    doc["assert"] = [HOLDING, FAILING, RELATIONAL]
    base = tmp_path_factory.mktemp("layout")
    source = harness.write_scenario(base / "two.yaml", doc)
    overrides = ["faults.loss_rate=0.02", "mes.reporting=batched"]
    return run_scenario(source, overrides, out_dir=base / "run", progress=False).out


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_the_page_leads_with_the_verdict_then_key_figures_then_plots_then_detail(run_dir):
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    marks = ['id="verdict"', 'id="key-figures"', "<figure", 'id="latency-per-workflow"']
    positions = [page.index(mark) for mark in marks]
    assert positions == sorted(positions), dict(zip(marks, positions, strict=True))
    text = (run_dir / "report.md").read_text()
    marks = ["## Verdict", "## Key figures", "![", "### Latency per workflow"]
    positions = [text.index(mark) for mark in marks]
    assert positions == sorted(positions), dict(zip(marks, positions, strict=True))


def test_failed_assertions_come_first_under_a_failed_headline(run_dir):
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    verdict = page[page.index('id="verdict"') : page.index('id="key-figures"')]
    assert "verdict failed" in page and "FAILED: 1 of 3 assertions fail" in verdict
    assert verdict.index(FAILING.replace(">", "&gt;")) < verdict.index(HOLDING)
    text = (run_dir / "report.md").read_text()
    assert "**FAILED: 1 of 3 assertions fail**" in text
    assert text.index(f"**FAIL** `{FAILING}`") < text.index(f"PASS `{HOLDING}`")


def test_a_line_on_two_keys_shows_what_it_saw_of_each(run_dir):
    duplicates = _summary(run_dir)["duplicates"]
    seen = f"duplicates.detected {duplicates['detected']}, "
    seen += f"duplicates.delivered {duplicates['delivered']}"
    assert f"PASS `{RELATIONAL}` (seen {seen})" in (run_dir / "report.md").read_text()
    assert f"<td class=n>{seen}</td>" in (run_dir / "report.html").read_text(encoding="utf-8")


def test_edge_cases_never_exercised_are_one_line_not_a_row_each(run_dir):
    coverage = _summary(run_dir)["coverage"]
    never = sorted(name for name, n in coverage.items() if n == 0)
    happened = sorted(name for name, n in coverage.items() if n > 0)
    assert never and happened
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    section = page[page.index('id="edge-cases-exercised"') :]
    section = section[: section.index("</div>")]
    cells = re.findall(r"<td>([a-z_]+)</td>", section)
    assert cells == happened
    assert f"Never exercised ({len(never)}): {', '.join(never)}." in section
    text = (run_dir / "report.md").read_text()
    assert f"Never exercised ({len(never)}): {', '.join(never)}." in text
    assert not any(f"| {name} | 0 |" in text for name in never)


def test_latency_parts_that_never_took_time_are_left_out():
    idle = {"count": 5, **dict.fromkeys(("p50", "p90", "p95", "p99", "p99_9", "max"), 1)}
    busy = idle | {"p99": 40, "max": 80}
    latency = {"item": idle | {"p50": 9, "max": 90, "parts": {"hold": idle, "queue": busy}}}
    table = latency_table(latency)
    assert [row[0] for row in table.rows] == ["item", "queue"] and table.parts == {1}
    assert "left out: hold for 1 workflow(s)" in table.note


def test_money_has_separators_and_its_currency_and_a_mixed_sum_says_so(run_dir):
    assert format_money("313363.41", ("EUR",)) == "EUR 313,363.41"
    assert format_money("0.00", ("EUR",)) == "EUR 0.00"
    assert format_money("1234567.5", ()) == "1,234,567.5"  # digits as computed, none invented
    assert format_money("2500.00", ("CHF", "EUR")) == "2,500.00 CHF+EUR"
    summary = _summary(run_dir)
    worst = format_money(summary["drift"]["max_value"], ("CHF", "EUR"))
    assert "," in worst  # the run drifts by thousands, so the separator shows
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert worst in page and "(CHF, EUR), summed without conversion" in page
    assert worst in (run_dir / "report.md").read_text()
    assert summary["drift"]["max_value"] not in page.replace(worst, "")  # never bare


def test_the_cdf_names_the_workflows_with_too_few_samples(run_dir):
    latency = _summary(run_dir)["latency_ms"]
    thin = too_few_for_cdf(latency)
    assert thin and all(0 < n < MIN_CDF_SAMPLES for n in thin.values())
    assert all(latency[w]["count"] >= MIN_CDF_SAMPLES for w in latency if w not in thin)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    figure = page[page.index('id="plot-latency_cdf"') :]
    figure = figure[: figure.index("</figure>")]
    assert "Too few samples to draw a CDF" in figure
    for workflow, n in thin.items():
        assert f"{workflow} (n={n})" in figure
    assert "Too few samples to draw a CDF" in (run_dir / "report.md").read_text()


def test_summary_keys_added_later_show_when_present_and_are_not_needed(run_dir):
    summary = _summary(run_dir)
    scenario = load_scenario(run_dir / "scenario.yaml")
    for key in ("final_undelivered_value", "final_undelivered_messages"):
        summary["drift"].pop(key, None)
    summary["events"].pop("held_at_end", None)
    summary["dead_letters"].pop("by_first_code", None)
    summary["events"].pop("by_type")
    older = render_markdown(summary, ("CHF", "EUR"))
    assert "held at the end" not in older and "first failed with" not in older
    assert "Not counted in this summary." in older
    render_html(summary, scenario, {}, [], [])  # renders without them
    newer = copy.deepcopy(summary)
    newer["drift"] |= {"final_undelivered_value": "1234.50", "final_undelivered_messages": 3}
    newer["events"]["held_at_end"] = 2
    newer["dead_letters"]["by_code"] = {"REVISION_MISMATCH": 1}
    newer["dead_letters"]["by_first_code"] = {"SEQUENCE_GAP": 1}
    figures = {f.label: f for _title, group in key_figures(newer, ("EUR",)) for f in group}
    assert figures["messages undelivered after healing"].value == "3"
    assert "EUR 1,234.50" in figures["messages undelivered after healing"].note
    assert figures["messages held at the end"].value == "2"
    assert "first failed with: SEQUENCE_GAP 1" in figures["dead letters remaining"].note
    newer["events"]["by_type"] = {"MaterialIssued": 3, "ScrapDeclared": 1}
    page = render_html(newer, scenario, {}, [], [])
    assert "MaterialIssued" in page and "75.0 %" in page
    assert "written, by the code they first failed with" in page
    assert "1,234.50 CHF+EUR" in page


def test_a_broken_must_is_an_alarm_and_a_kept_one_is_not(run_dir):
    summary = _summary(run_dir)
    summary["duplicates"]["posted"] = 0
    summary["drift"]["final_unexplained_value"] = "12.00"
    figures = {f.label: f for _title, group in key_figures(summary) for f in group}
    assert figures["duplicates posted (must be 0)"].alarm is False
    assert figures["unexplained drift (must be 0)"].alarm is True
    assert figures["dead letters remaining"].alarm is None
