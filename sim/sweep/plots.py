"""A sweep's plots (PNG bytes): each metric against each swept parameter with 95 % confidence
bars (one line per combination of the other parameters), and a what-if comparison chart of
every variant. matplotlib's object API on the Agg canvas, default style, fixed size and dpi,
no `Software` tag: the same results give the same bytes."""

from __future__ import annotations

import io
import re
import textwrap
from typing import Any

import matplotlib.style
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import sim.report.plots  # noqa: F401 - selects the Agg backend unless pyplot already chose one
from sim.sweep.grid import SweepResult, Variant, value_text

__all__ = ["render_sweep_plots"]

_DPI = 100


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def _bars(estimates) -> tuple[list[float], list[float]]:
    means = [e.mean if e.mean is not None else float("nan") for e in estimates]
    errors = [e.half_width or 0.0 for e in estimates]
    return means, errors


def _against(result: SweepResult, table, metric: str, key: str, values: list[Any]) -> bytes:
    figure = Figure(figsize=(7.0, 4.2), dpi=_DPI)
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    figure.subplots_adjust(left=0.13, right=0.97, top=0.9, bottom=0.2)
    lines: dict[str, list[Variant]] = {}
    for variant in result.variants:
        others = ", ".join(f"{k}={value_text(v)}" for k, v in variant.values if k != key)
        lines.setdefault(others, []).append(variant)
    positions = {value_text(value): i for i, value in enumerate(values)}
    for others, variants in lines.items():
        xs = [positions[value_text(dict(v.values)[key])] for v in variants]
        means, errors = _bars([table[v.name][metric] for v in variants])
        ax.errorbar(xs, means, yerr=errors, marker="o", capsize=4, label=others or None)
    ax.set_xticks(range(len(values)), [textwrap.fill(value_text(v), 24) for v in values])
    ax.margins(x=0.2)
    ax.set_xlabel(key)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} against {key} (mean, 95 % CI)", fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=8)
    return _png(figure)


def _comparison(result: SweepResult, table) -> bytes:
    rows = len(result.metrics)
    figure = Figure(figsize=(9.0, 1.0 + 2.0 * rows), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    figure.subplots_adjust(left=0.2, right=0.97, top=0.95, bottom=0.08, hspace=0.25)
    names = [variant.name.split("-", 1)[0] for variant in result.variants]
    for ax, metric in zip(axes, result.metrics, strict=True):
        means, errors = _bars([table[v.name][metric] for v in result.variants])
        ax.bar(range(len(names)), means, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_ylabel(metric, fontsize=8, rotation=0, ha="right", va="center")
        ax.grid(True, axis="y", alpha=0.3)
    axes[-1].set_xticks(range(len(names)), names)
    axes[0].set_title("What-if comparison: every variant (mean, 95 % CI)", fontsize=11)
    return _png(figure)


def render_sweep_plots(result: SweepResult, table) -> dict[str, tuple[str, bytes]]:
    """file stem -> (caption, PNG), in report order."""
    swept: dict[str, list[Any]] = {}
    for variant in result.variants:
        for key, value in variant.values:
            if value_text(value) not in map(value_text, swept.setdefault(key, [])):
                swept[key].append(value)
    plots = {}
    with matplotlib.style.context("default"):
        plots["comparison"] = (
            "What-if comparison of every variant (numbers as in the table)",
            _comparison(result, table),
        )
        for key, values in swept.items():
            if len(values) < 2:
                continue
            for metric in result.metrics:
                caption = f"{metric} against {key}, with 95 % confidence bars"
                png = _against(result, table, metric, key, values)
                plots[_stem(f"{metric}_vs_{key}")] = (caption, png)
    return plots
