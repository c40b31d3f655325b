"""A sweep's results: per variant and metric, the mean and a 95 % confidence interval (Student t,
n - 1 degrees of freedom) over its replications, written as sweep.csv, sweep.md and a
self-contained sweep.html (plots from `sim.sweep.plots` embedded), and each replication's
summary under replications/<variant>/seed<N>.json. Nothing here reads the wall clock.
"""

from __future__ import annotations

import base64
import csv
import functools
import html
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.report.html import _CSP, _CSS, _table
from sim.sweep.grid import SweepResult, failures_text, value_text

__all__ = [
    "Estimate",
    "estimate",
    "estimates",
    "metric_value",
    "render_html",
    "render_markdown",
    "t_quantile",
    "write_report",
]


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 1000):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        for numerator in (even, odd):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return result


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(log_front + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):  # where the fraction converges quickly
        return front * _beta_fraction(a, b, x) / a
    return 1 - front * _beta_fraction(b, a, 1 - x) / b


@functools.cache
def t_quantile(df: int) -> float:
    """The two-sided 95 % Student t quantile, t(0.975, df): the t whose two tails hold 5 %,
    P(|T| > t) = I_{df/(df+t²)}(df/2, 1/2) = 0.05, found by bisection on x = df/(df+t²)."""
    if df < 1:
        raise ValueError("a confidence interval needs at least two values")
    low, high = 0.0, 1.0  # the tails grow with x
    for _ in range(200):
        middle = (low + high) / 2
        if _incomplete_beta(df / 2, 0.5, middle) < 0.05:
            low = middle
        else:
            high = middle
    x = (low + high) / 2
    return math.sqrt(df * (1 - x) / x)


@dataclass(frozen=True)
class Estimate:
    """Mean and 95 % CI half-width over n values (half-width None when n < 2)."""

    n: int
    mean: float | None
    half_width: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def text(self) -> str:
        if self.mean is None:
            return "n/a"
        if self.half_width is None:
            return _short(self.mean)
        return f"{_short(self.mean)} ± {_short(self.half_width)}"


def _short(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def estimate(values: list[float]) -> Estimate:
    """Mean and 95 % CI half-width t(0.975, n-1) · s / √n of `values`."""
    if not values:
        return Estimate(0, None, None)
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Estimate(1, mean, None)
    half = t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return Estimate(len(values), mean, half)


def metric_value(summary: dict[str, Any], metric: str, horizon_s: float) -> float | None:
    """A dotted summary key as a number; `throughput.messages_per_h` is messages per hour of
    the horizon (independent of wall time). None when the run has no such key."""
    if metric == "throughput.messages_per_h":
        return summary["events"]["messages"] / (horizon_s / 3600) if horizon_s else None
    node: Any = summary
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    try:
        return float(node)
    except (TypeError, ValueError):
        return None


def estimates(result: SweepResult) -> dict[str, dict[str, Estimate]]:
    """variant name -> metric -> estimate over the replications that finished."""
    table: dict[str, dict[str, Estimate]] = {}
    for variant in result.variants:
        done = [r for r in result.results[variant.name] if r.summary is not None]
        table[variant.name] = {}
        for metric in result.metrics:
            values = [metric_value(r.summary, metric, r.horizon_s) for r in done]
            table[variant.name][metric] = estimate([v for v in values if v is not None])
    return table


def _number(value: float | None) -> str:
    return "" if value is None else repr(round(value, 9))


def _csv(path: Path, result: SweepResult, table) -> None:
    keys = list(dict.fromkeys(k for v in result.variants for k, _ in v.values))
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["variant", *keys, "metric", "n", "mean", "ci95_low", "ci95_high"])
        for variant in result.variants:
            values = dict(variant.values)
            for metric, e in table[variant.name].items():
                row = [variant.name, *(value_text(values.get(k, "")) for k in keys)]
                writer.writerow([*row, metric, e.n, *map(_number, (e.mean, e.low, e.high))])


def _header(result: SweepResult) -> str:
    s = result.scenario
    return (
        f"Scenario `{s.name}`, base seed {s.seed}: {len(result.variants)} variants × "
        f"{result.replications} replications (replication r uses seed {s.seed} + r in every "
        "variant: common random numbers). Mean ± 95 % CI half-width (Student t, n − 1 dof)."
    )


def render_markdown(result: SweepResult, table) -> str:
    """sweep.md: one row per variant, one column per metric."""
    lines = [f"# Sweep: {result.scenario.name}", "", _header(result), ""]
    lines.append("| variant | n | " + " | ".join(result.metrics) + " |")
    lines.append("|---|---:|" + "---:|" * len(result.metrics))
    for variant in result.variants:
        row = table[variant.name]
        n = max((e.n for e in row.values()), default=0)
        cells = " | ".join(row[m].text() for m in result.metrics)
        lines.append(f"| {variant.name} ({variant.label}) | {n} | {cells} |")
    failed = failures_text(result.failures)
    lines += ["", "## Failed replications", ""]
    lines += [f"- {line}" for line in failed] or ["none"]
    return "\n".join(lines) + "\n"


def render_html(result: SweepResult, table, plots: dict[str, tuple[str, bytes]]) -> str:
    """sweep.html: the table, the failures and the plots as data URIs; no script, no link."""
    rows = [
        [v.name, v.label, *(table[v.name][m].text() for m in result.metrics)]
        for v in result.variants
    ]
    numeric = set(range(2, 2 + len(result.metrics)))
    failed = [[line] for line in failures_text(result.failures)]
    figures = "".join(
        f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,'
        f'{base64.b64encode(png).decode()}"><figcaption>{html.escape(caption)}</figcaption>'
        "</figure>"
        for caption, png in plots.values()
    )
    title = html.escape(f"Sweep: {result.scenario.name}")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{title}</title><style>{_CSS}</style></head><body><h1>{title}</h1>"
        f"<p>{html.escape(_header(result))}</p><h2>Variants</h2>"
        + _table(["variant", "values", *result.metrics], rows, numeric)
        + "<h2>Failed replications</h2>"
        + _table(["variant, seed and error"], failed)
        + f"<h2>Plots</h2>{figures}</body></html>\n"
    )


def write_report(out: Path, result: SweepResult) -> dict[str, dict[str, Estimate]]:
    """Write replications/, sweep.csv, sweep.md, sweep.html and plots/*.png into `out`."""
    from sim.sweep.plots import render_sweep_plots  # matplotlib: only when a report is written

    out.mkdir(parents=True, exist_ok=True)
    for variant in result.variants:
        folder = out / "replications" / variant.name
        folder.mkdir(parents=True, exist_ok=True)
        for r in result.results[variant.name]:
            body = r.summary if r.summary is not None else {"seed": r.seed, "error": r.error}
            (folder / f"seed{r.seed}.json").write_text(json.dumps(body, indent=2) + "\n")
    table = estimates(result)
    _csv(out / "sweep.csv", result, table)
    (out / "sweep.md").write_text(render_markdown(result, table), encoding="utf-8")
    plots = render_sweep_plots(result, table)
    (out / "plots").mkdir(exist_ok=True)
    for stem, (_caption, png) in plots.items():
        (out / "plots" / f"{stem}.png").write_bytes(png)
    (out / "sweep.html").write_text(render_html(result, table, plots), encoding="utf-8")
    return table
