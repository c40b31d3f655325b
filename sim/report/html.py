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
from pathlib import Path
from typing import Any

from sim.report.figures import (
    PLOTS,
    cdf_notice,
    key_figures,
    money_note,
    plant_currencies,
    verdict,
    verdict_line,
)
from sim.report.plots import render_plots
from sim.report.tables import Table, detail_tables
from sim.scenario.assertions import seen_values
from sim.scenario.document import Scenario, format_duration, load_scenario

__all__ = ["METADATA_MARK", "render_html", "run_metadata", "write_html_report"]

METADATA_MARK = ("<!-- run-metadata -->", "<!-- /run-metadata -->")
_TILE_CSS = {True: "alarm", False: "ok", None: "info"}  # by Figure.alarm
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
.grid{display:flex;flex-wrap:wrap;gap:0 2.5rem}.grid>div{max-width:34rem}figure{margin:1rem 0 2rem}
figure img{max-width:100%;height:auto;border:1px solid #e6e9ef}figcaption{color:#5b6472}
code{background:#f3f5f8;padding:0 .25rem;border-radius:3px}
.verdict{border:2px solid #0a7d32;border-radius:6px;padding:.2rem 1rem;background:#f1faf4}
.verdict.failed{border-color:#b3141b;background:#fdf2f2}.verdict.none{border-color:#8a93a2;
 background:#f6f7f9}.verdict .headline{font-size:1.3rem;font-weight:700;margin:.5rem 0}
.verdict table{background:#fff}tr.failed td{background:#fbe3e3}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:.6rem}
.tile{border:1px solid #d8dde6;border-radius:6px;padding:.45rem .7rem}
.tile .label{color:#5b6472;font-size:.9em}.tile .value{font-size:1.35rem;font-weight:600;
 font-variant-numeric:tabular-nums}.tile .note{color:#5b6472;font-size:.85em}
.tile.ok .value{color:#0a7d32}.tile.alarm{border:2px solid #b3141b;background:#fdf2f2}
.tile.alarm .value{color:#b3141b}p.notice{border-left:3px solid #c98a00;padding-left:.6rem}
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


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]  # sim/report/html.py -> the checkout
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


def _verdict(summary: dict[str, Any]) -> str:
    """The headline and every assertion, the failed ones first."""
    failed, passed = verdict(summary)
    css = "failed" if failed else "passed" if passed else "none"
    errors = any(r.get("error") for r in failed + passed)  # an error column only when needed
    rows = "".join(
        f"<tr{' class=failed' if not r['passed'] else ''}>"
        f"<td class={'pass' if r['passed'] else 'fail'}>{'PASS' if r['passed'] else 'FAIL'}"
        f"</td><td><code>{_e(r['expr'])}</code></td><td class=n>{_e(seen_values(r))}</td>"
        + (f"<td>{_e(r.get('error') or '')}</td>" if errors else "")
        + "</tr>"
        for r in failed + passed
    )
    table = (
        "<table><thead><tr><th>result</th><th>assertion</th><th class=n>seen</th>"
        + ("<th>error</th>" if errors else "")
        + f"</tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    load = summary.get("load")
    warning = ""
    if load is not None:
        from sim.report.load import fell_behind_text

        text = fell_behind_text(load)
        warning = f"<p class=fail>{_e(text)}</p>" if text else ""
    return (
        f'<section id="verdict" class="verdict {css}"><p class=headline>'
        f"{_e(verdict_line(summary))}</p>{table}{warning}</section>"
    )


def _tiles(summary: dict[str, Any], currencies: tuple[str, ...]) -> str:
    """The key figures as tiles, by group; a broken must is drawn as an alarm."""
    groups = []
    for title, figures in key_figures(summary, currencies):
        tiles = "".join(
            f'<div class="tile {_TILE_CSS[figure.alarm]}"><div class=label>{_e(figure.label)}'
            f"</div><div class=value>{_e(figure.value)}</div>"
            f"<div class=note>{_e(figure.note)}</div></div>"
            for figure in figures
        )
        groups.append(f"<h3>{_e(title)}</h3><div class=tiles>{tiles}</div>")
    return (
        '<section id="key-figures"><h2>Key figures</h2>'
        + "".join(groups)
        + f"<p class=muted>{_e(money_note(currencies))}</p></section>"
    )


def _plots(plots: dict[str, bytes], latency: dict[str, Any]) -> str:
    figures = []
    for name, png in plots.items():
        notice = cdf_notice(latency) if name == "latency_cdf" else ""
        figures.append(
            f'<figure id="plot-{_e(name)}"><img alt="{_e(PLOTS[name])}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
            f"<figcaption>{_e(PLOTS[name])} (plots/{_e(name)}.png)</figcaption>"
            + (f"<p class=notice>{_e(notice)}</p>" if notice else "")
            + "</figure>"
        )
    return '<section id="plots"><h2>Plots</h2>' + "".join(figures) + "</section>"


def _detail_table(table: Table) -> str:
    """A detail table under its title; a row in `table.parts` is indented under the row above,
    and each top row starts a group."""
    slug = table.title.lower().replace(" ", "-")
    head = "".join(
        f"<th{' class=n' if i in table.numeric else ''}>{_e(h)}</th>"
        for i, h in enumerate(table.headers)
    )
    groups: list[list[str]] = []
    for n, row in enumerate(table.rows):
        cells = "".join(
            f"<td{' class=n' if i in table.numeric else ''}>{_e(c)}</td>" for i, c in enumerate(row)
        )
        if n in table.parts:
            groups[-1].append(f"<tr class=part>{cells}</tr>")
        else:
            groups.append([f"<tr>{cells}</tr>"])
    tbody = "<tbody class=wf>" if table.parts else "<tbody>"
    body = "".join(tbody + "".join(rows) + "</tbody>" for rows in groups)
    if table.rows:
        body = f"<table><thead><tr>{head}</tr></thead>{body}</table>"
    elif not table.note:
        body = "<p class=muted>none</p>"
    note = f"<p class=muted>{_e(table.note)}</p>" if table.note else ""
    return f'<div id="{_e(slug)}"><h3>{_e(table.title)}</h3>{body}{note}</div>'


def _detail(
    summary: dict[str, Any],
    currencies: tuple[str, ...],
    series: list[dict[str, Any]],
) -> str:
    """The latency table across the page, the smaller tables side by side, the load section."""
    latency, *others = detail_tables(summary, currencies, series)
    return (
        '<section id="detail"><h2>Detail</h2>'
        + _detail_table(latency)
        + "<div class=grid>"
        + "".join(_detail_table(table) for table in others)
        + "</div>"
        + _load(summary.get("load"))
        + "</section>"
    )


def _load(load: dict[str, Any] | None) -> str:
    """A load run's driver figures (nothing for a simulated run)."""
    if load is None:
        return ""
    from sim.report.load import HEADERS, describe, fell_behind_text, latency_rows

    warning = fell_behind_text(load)
    items = "".join(f"<li>{_e(line)}</li>" for line in describe(load))
    return (
        "<h3>Load test of a live target</h3>"
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
    metadata: list[tuple[str, str]],
    series: list[dict[str, Any]],
) -> str:
    """The whole page as text: verdict, key figures, plots, then the detail."""
    title = f"{summary['scenario']} (seed {summary['seed']})"
    currencies = plant_currencies(scenario)
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
<p class=muted>{_e(scenario.start.isoformat())} + {_e(format_duration(scenario.horizon))}
virtual time, then a heal phase of up to {_e(format_duration(scenario.measures.heal))};
{_e(len(scenario.plants))} plant(s) in {_e(", ".join(currencies))},
{_e(scenario.integration.pattern.value)} integration.</p>
{_verdict(summary)}
{_tiles(summary, currencies)}
{_plots(plots, summary["latency_ms"])}
{_detail(summary, currencies, series)}
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
    page = render_html(summary, scenario, plots, run_metadata(summary, scenario_text), series)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
