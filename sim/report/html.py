"""report.html: one self-contained page per run directory (docs/architecture.md, Run outputs).

Read from the run directory's files alone (summary.json, series.json, histograms.json,
scenario.yaml, and the trace for messages by type), so `twin report` rebuilds it. Inline CSS,
plots as base64 PNG data URIs (also written to plots/*.png), no script and no external link: a
Content-Security-Policy forbids the page any network access. Every text is escaped. Only the
run-metadata section (between `<!-- run-metadata -->` markers) differs between two runs of the
same scenario, seed and code.
"""

from __future__ import annotations

import base64
import hashlib
import html
import importlib.metadata
import json
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from sim.report.markdown import format_millis
from sim.report.trace import read_trace
from sim.report.plots import PLOTS, render_plots
from sim.scenario.document import Scenario, format_duration, load_scenario

__all__ = ["METADATA_MARK", "message_types", "render_html", "run_metadata", "write_html_report"]

METADATA_MARK = ("<!-- run-metadata -->", "<!-- /run-metadata -->")
_PERCENTILES = (
    ("p50", "p50"),
    ("p90", "p90"),
    ("p95", "p95"),
    ("p99", "p99"),
    ("p99_9", "p99.9"),
    ("max", "max"),
)
_PARTS = ("report", "transport", "queue", "hold")
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"  # no network, no script
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:72rem;
 padding:1rem 2rem;color:#1d2430;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.2rem;margin-top:2rem;
 border-bottom:1px solid #d8dde6;padding-bottom:.2rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;margin:.4rem 0 1rem}th,td{padding:.2rem .7rem;
 border-bottom:1px solid #e6e9ef;text-align:left;vertical-align:top}th{background:#f3f5f8}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr.part td{color:#5b6472;
 font-size:.92em}tr.part td:first-child{padding-left:1.8rem}tbody.wf{border-top:2px solid #cfd5df}
.pass{color:#0a7d32;font-weight:600}.fail{color:#b3141b;font-weight:600}.muted{color:#8a93a2}
.grid{display:flex;flex-wrap:wrap;gap:0 2.5rem}figure{margin:1rem 0 2rem}
figure img{max-width:100%;height:auto;border:1px solid #e6e9ef}figcaption{color:#5b6472}
code{background:#f3f5f8;padding:0 .25rem;border-radius:3px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    """A table; columns in `numeric` are right-aligned. Cells are escaped."""
    numeric = numeric or set()
    head = "".join(
        f"<th{' class=n' if i in numeric else ''}>{_e(h)}</th>" for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=n' if i in numeric else ''}>{_e(c)}</td>" for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    if not rows:
        body = f'<tr><td class=muted colspan="{len(headers)}">none</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def message_types(trace: Path) -> Counter[str] | None:
    """Messages sent, by message type, counted from the run's trace (None without a trace)."""
    if not trace.exists():
        return None
    return Counter(r["type"] for r in read_trace(trace) if r.get("kind") == "message")


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head} (uncommitted changes)" if dirty else head or None


def run_metadata(summary: dict[str, Any], scenario_text: str) -> list[tuple[str, str]]:
    """(label, value) rows: version, git commit, seed, scenario hash, wall time, messages/s."""
    try:
        version = importlib.metadata.version("mfg-twin")
    except importlib.metadata.PackageNotFoundError:
        version = "not installed"
    run = summary.get("run") or {}
    missing = "not recorded (rebuilt run)"

    def figure(key: str, unit: str = "") -> str:
        return f"{run[key]}{unit}" if key in run else missing

    return [
        ("mfg-twin version", version),
        ("git commit", _git_commit() or "unknown (not a git checkout)"),
        ("seed", str(summary["seed"])),
        ("scenario sha256", hashlib.sha256(scenario_text.encode("utf-8")).hexdigest()),
        ("wall time", figure("wall_s", " s")),
        ("messages/s", figure("messages_per_s")),
        ("physical events/s", figure("events_per_s")),
        ("peak RSS", figure("peak_rss_mb", " MB")),
    ]


def _assertions(summary: dict[str, Any]) -> str:
    results = summary.get("assertions", [])
    if not results:
        return "<p class=muted>The scenario asserts nothing.</p>"
    rows = "".join(
        f"<tr><td class={'pass' if r['passed'] else 'fail'}>{'PASS' if r['passed'] else 'FAIL'}"
        f"</td><td><code>{_e(r['expr'])}</code></td><td class=n>{_e(r['value'])}</td>"
        f"<td>{_e(r.get('error') or '')}</td></tr>"
        for r in results
    )
    passed = sum(r["passed"] for r in results)
    return (
        f"<p><b>{passed} of {len(results)}</b> assertions hold.</p><table><thead><tr>"
        f"<th>result</th><th>assertion</th><th class=n>value</th><th>error</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _key_figures(s: dict[str, Any]) -> list[list[Any]]:
    dup, drift, ledger = s["duplicates"], s["drift"], s["ledger"]
    books = "balanced" if ledger["balanced"] else "NOT balanced"
    return [
        ["physical events", s["events"]["truth"]],
        ["messages sent", s["events"]["messages"]],
        ["first-pass success rate", f"{s.get('first_pass_rate', 0) * 100:.1f} %"],
        ["duplicates delivered", dup["delivered"]],
        ["duplicates detected", dup["detected"]],
        ["duplicates posted (must be 0)", dup["posted"]],
        ["late postings", s["late_postings"]],
        ["negative-stock exceptions", s["negative_stock_events"]],
        ["ledger", f"{books}, {ledger['entries']} entries"],
        ["drift, worst in flight", drift["max_value"]],
        ["drift after healing", f"{drift['final_value']} ({drift['final_exceptions']} keys)"],
        ["… explained by open dead letters", drift.get("final_explained_value", "–")],
        ["… unexplained (must be 0)", drift["final_unexplained_value"]],
    ]


def _summary_tables(s: dict[str, Any], series, types: Counter[str] | None) -> str:
    dead = s["dead_letters"]
    key = _table(["figure", "value"], _key_figures(s), {1})
    by_type = "<p class=muted>No trace in the run directory.</p>"
    if types is not None:
        total = sum(types.values())
        ranked = sorted(types.items(), key=lambda item: (-item[1], item[0]))
        rows = [[name, n, f"{n / total * 100:.1f} %"] for name, n in ranked]
        by_type = _table(["message type", "sent", "share"], rows, {1, 2})
    outcomes = _table(["core answer", "count"], sorted(s.get("outcomes", {}).items()), {1})
    seen: Counter[str] = Counter()
    for row in series:
        seen.update(row["dead_letters_by_code"])
    codes = sorted(set(seen) | set(dead["by_code"]))
    dead_rows = [[c, seen.get(c, 0), dead["by_code"].get(c, 0)] for c in codes]
    dead_html = (
        f"<p>{dead['total']} in all, {dead['replayed']} replayed, "
        f"{dead['remaining']} remaining.</p>"
        + _table(["code", "rejected in sampled intervals", "open at the end"], dead_rows, {1, 2})
    )
    coverage = _table(["edge case", "times"], sorted(s.get("coverage", {}).items()), {1})
    cell = "<div><h3>{}</h3>{}</div>"
    return (
        "<div class=grid>"
        + cell.format("Key figures", key)
        + cell.format("Messages by type", by_type)
        + cell.format("Outcomes", outcomes)
        + cell.format("Dead letters by code", dead_html)
        + cell.format("Edge cases exercised", coverage)
        + "</div>"
    )


def _latency(latency: dict[str, Any]) -> str:
    head = "".join(f"<th class=n>{_e(label)}</th>" for _key, label in _PERCENTILES)
    bodies = []
    for workflow, figures in latency.items():

        def row(name: str, f: dict[str, Any], css: str = "") -> str:
            cells = "".join(
                f"<td class=n>{_e(format_millis(f.get(k)))}</td>" for k, _ in _PERCENTILES
            )
            return f"<tr{css}><td>{_e(name)}</td><td class=n>{_e(f['count'])}</td>{cells}</tr>"

        parts = figures.get("parts", {})
        rows = [row(workflow, figures)]
        rows += [row(part, parts[part], " class=part") for part in _PARTS if part in parts]
        bodies.append("<tbody class=wf>" + "".join(rows) + "</tbody>")
    if not bodies:
        return "<p class=muted>Nothing was posted.</p>"
    return (
        f"<table><thead><tr><th>workflow / part</th><th class=n>count</th>{head}</tr></thead>"
        + "".join(bodies)
        + "</table><p class=muted>Occurred → committed in virtual time; "
        "indented rows are its parts (reporting delay, transport, queue wait, hold). Values "
        "are recorded at ≥ 1 ms, so 1 ms means none.</p>"
    )


def _load(load: dict[str, Any] | None) -> str:
    """A load run's driver figures (nothing for a simulated run)."""
    if load is None:
        return ""
    from sim.load.report import HEADERS, describe, fell_behind_text, latency_rows

    warning = fell_behind_text(load)
    items = "".join(f"<li>{_e(line)}</li>" for line in describe(load))
    return (
        "<h2>Load test of a live target</h2>"
        + (f"<p class=fail>{_e(warning)}</p>" if warning else "")
        + f"<ul>{items}</ul>"
        + _table(HEADERS, latency_rows(load), numeric=set(range(1, len(HEADERS))))
        + "<p class=muted>Request latency (wall clock): corrected from each send's scheduled "
        "time, uncorrected from when it actually went out.</p>"
    )


def render_html(
    summary: dict[str, Any],
    scenario: Scenario,
    plots: dict[str, bytes],
    types: Counter[str] | None,
    metadata: list[tuple[str, str]],
    series: list[dict[str, Any]],
) -> str:
    """The whole page as text."""
    figures = "".join(
        f'<figure id="plot-{_e(name)}"><img alt="{_e(PLOTS[name])}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode("ascii")}"><figcaption>{_e(PLOTS[name])} '
        f"(plots/{_e(name)}.png)</figcaption></figure>"
        for name, png in plots.items()
    )
    title = f"{summary['scenario']} (seed {summary['seed']})"
    failed = [r for r in summary.get("assertions", []) if not r["passed"]]
    verdict = (
        f"<span class=fail>{len(failed)} assertion(s) failed</span>"
        if failed
        else "<span class=pass>all assertions hold</span>"
    )
    meta = _table(["field", "value"], [list(pair) for pair in metadata])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)} · mfg-twin run report</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p>{_e(scenario.description)}</p>
<p>{_e(scenario.start.isoformat())} + {_e(format_duration(scenario.horizon))} virtual time,
then a heal phase of up to {_e(format_duration(scenario.measures.heal))};
{_e(len(scenario.plants))} plant(s),
{_e(scenario.integration.pattern.value)} integration. Verdict: {verdict}.</p>
<h2>Assertions</h2>
{_assertions(summary)}
<h2>Summary</h2>
{_summary_tables(summary, series, types)}
<h2>Latency per workflow</h2>
{_latency(summary["latency_ms"])}
{_load(summary.get("load"))}
<h2>Plots</h2>
{figures}
<h2>Run</h2>
{METADATA_MARK[0]}{meta}{METADATA_MARK[1]}
</body>
</html>
"""


def write_html_report(out: Path) -> Path:
    """Write out/report.html and out/plots/*.png from the run directory's files."""
    out = Path(out)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    series = json.loads((out / "series.json").read_text(encoding="utf-8"))
    histograms = json.loads((out / "histograms.json").read_text(encoding="utf-8"))
    scenario_text = (out / "scenario.yaml").read_text(encoding="utf-8")
    scenario = load_scenario(out / "scenario.yaml")
    plots = render_plots(scenario, series, histograms, summary.get("drift"))
    (out / "plots").mkdir(exist_ok=True)
    for name, png in plots.items():
        (out / "plots" / f"{name}.png").write_bytes(png)
    types = message_types(out / "trace.jsonl.gz")
    page = render_html(
        summary, scenario, plots, types, run_metadata(summary, scenario_text), series
    )
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
