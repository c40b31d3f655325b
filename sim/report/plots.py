"""The run report's plots (PNG bytes) from a run's series, latency histograms and scenario.

Drawn with matplotlib's object API on the Agg canvas (pyplot is never imported, so no global
figure state and no GUI backend), under the default style whatever the user's matplotlibrc
says, at a fixed size and dpi, and saved without a `Software` tag: the same inputs give the
same bytes. Time axes are virtual time since the scenario start; nothing reads the wall clock.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Callable
from typing import Any

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # never switch a backend someone's pyplot is using
    matplotlib.use("Agg")

import matplotlib.style
import numpy
from hdrh.histogram import HdrHistogram
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from sim.model.calendar import ShiftCalendar
from sim.report.figures import (
    MIN_CDF_SAMPLES,
    PLOTS,
    format_millis,
    format_money,
    plant_currencies,
)
from sim.scenario.document import Scenario

__all__ = ["PLOTS", "latency_cdf_points", "render_plots", "shift_boundaries"]

_DPI = 100
_SIZE = (10.0, 5.0)
_TALL = (10.0, 6.5)
_MAX_SHIFT_LINES = 400  # beyond that, lines would only grey the plot out
# latency ticks (ms) at round values of the report's units (ms, s, min, h); the fine ones when
# fewer than three coarse ones fall in the range
_COARSE_TICKS = (1, 10, 100, 1e3, 1e4, 6e4, 6e5, 3.6e6, 3.6e7, 3.6e8)
_FINE_TICKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 3e4, 6e4, 1.2e5,
               3e5, 6e5, 1.2e6, 1.8e6, 3.6e6, 7.2e6, 1.8e7, 3.6e7, 7.2e7, 1.8e8, 3.6e8)  # fmt: skip


def shift_boundaries(scenario: Scenario, until: float) -> list[float]:
    """Shift ends (seconds since the start) in (0, until]."""
    calendar = ShiftCalendar(scenario.calendar, scenario.start)
    ends: list[float] = []
    at = 0.0
    try:
        while len(ends) <= _MAX_SHIFT_LINES:
            at = calendar.next_change(at)
            if at > until:
                break
            ends.append(at)
    except ValueError:  # no working time at all
        return []
    return ends if len(ends) <= _MAX_SHIFT_LINES else []


def latency_cdf_points(encoded: str) -> tuple[list[float], list[float]]:
    """(latency in milliseconds, cumulative fraction) at every recorded value of an encoded
    HdrHistogram (values are milliseconds, at least 1); the last fraction is 1."""
    histogram = HdrHistogram.decode(encoded)
    total = histogram.get_total_count()
    if not total:
        return [], []
    counts = numpy.ctypeslib.as_array(histogram.counts)[: histogram.counts_len]
    indices = numpy.flatnonzero(counts)  # the recorded iterator walks every bucket: slow
    xs = [
        float(histogram.get_highest_equivalent_value(histogram.get_value_from_index(int(i))))
        for i in indices
    ]
    ys = (numpy.cumsum(counts[indices], dtype=numpy.float64) / total).tolist()
    return xs, ys


class _Time:
    """The time axis: hours, or days for long horizons; the horizon and the heal phase."""

    def __init__(self, scenario: Scenario, series: list[dict[str, Any]]) -> None:
        self.horizon = scenario.horizon.total_seconds()
        self.heal_end = self.horizon + scenario.measures.heal.total_seconds()
        self.interval = scenario.measures.sample_interval.total_seconds()
        self.end = max([self.heal_end, *(row["t_s"] for row in series)])
        self.scale, self.unit = (86400.0, "d") if self.horizon > 4 * 86400 else (3600.0, "h")
        # interval edges for per-interval counts: each sample closes the interval before it
        ends = [row["t_s"] for row in series]
        self.edges = [self.x(t) for t in [max(0.0, ends[0] - self.interval), *ends]] if ends else []
        self.shifts = [t / self.scale for t in shift_boundaries(scenario, self.end)]

    def x(self, seconds: float) -> float:
        return seconds / self.scale

    def decorate(self, ax: Axes, heal: bool = True, shifts: bool = True) -> None:
        """Shift ends as dotted lines, the heal phase shaded, the axis labelled."""
        for n, at in enumerate(self.shifts if shifts else []):
            ax.axvline(at, color="0.55", linestyle=":", linewidth=0.9,
                       label="shift end" if n == 0 else None)  # fmt: skip
        if heal:
            ax.axvspan(self.x(self.horizon), self.x(self.heal_end), color="tab:green",
                       alpha=0.12, label="heal phase (from the horizon)")  # fmt: skip
        ax.set_xlim(0, self.x(self.end) * 1.015)
        ax.set_xlabel(f"virtual time since start ({self.unit})")
        ax.grid(True, axis="y", alpha=0.3)


def _figure(
    size: tuple[float, float] = _SIZE, rows: int = 1, right: float = 0.98
) -> tuple[Figure, list[Axes]]:
    """Fixed margins (a layout engine would measure every text twice: slow)."""
    figure = Figure(figsize=size, dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    figure.subplots_adjust(left=0.09, right=right, top=0.93, bottom=0.1, hspace=0.12)
    return figure, list(axes)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _counts(ax: Axes) -> None:
    """An axis of whole numbers from 0 (at least 0..1, so all-zero data is not 0..0.05)."""
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(1.0, ax.get_ylim()[1]))


def _legend(ax: Axes, **kwargs: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _latency_axis(axis) -> None:
    """A log axis of milliseconds labelled like the report's tables (`100 ms`, `1 min`)."""
    low, high = axis.get_view_interval()
    ticks = [tick for tick in _COARSE_TICKS if low <= tick <= high]
    if len(ticks) < 3:
        ticks = [tick for tick in _FINE_TICKS if low <= tick <= high]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda ms, _pos: _round_millis(ms)))


def _round_millis(millis: float) -> str:
    """format_millis without the zeros of a round value: `1 s`, `10 min`."""
    number, unit = format_millis(millis).split(" ")
    return f"{float(number):g} {unit}"


def _latency_cdf(histograms: dict[str, dict[str, str]], scenario: Scenario, _s, _t) -> Figure:
    figure, (ax,) = _figure((10.0, 5.5), right=0.72)
    colours = matplotlib.colormaps["tab20"].colors
    drawn, thin = 0, []
    for n, workflow in enumerate(sorted(histograms)):
        encoded = histograms[workflow]["total"]
        count = HdrHistogram.decode(encoded).get_total_count()
        if count < MIN_CDF_SAMPLES:
            thin += [f"{workflow} (n={count})"] if count else []
            continue
        xs, ys = latency_cdf_points(encoded)
        ax.step([xs[0], *xs], [0.0, *ys], where="post", color=colours[(2 * n) % 20 + n // 10 % 2],
                linestyle=("-", "--")[n // 10 % 2], label=f"{workflow} (n={count})")  # fmt: skip
        drawn += 1
    if drawn:
        ax.set_xscale("log")
        _latency_axis(ax.xaxis)
        ax.axhline(0.99, color="0.4", linestyle=":", linewidth=0.9)
        ax.text(1.0, 0.99, " p99", transform=ax.get_yaxis_transform(), va="center", fontsize=8)
        ax.legend(loc="upper left", bbox_to_anchor=(1.06, 1.0), fontsize=8, title="workflow")
    else:
        _empty(ax, "no workflow has enough postings for a CDF" if thin else "no postings")
    if thin:
        figure.text(0.745, 0.1, f"too few samples (< {MIN_CDF_SAMPLES}), not drawn:\n"
                    + "\n".join(thin), fontsize=8, color="0.3", va="bottom")  # fmt: skip
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency, occurred → committed (log scale)")
    ax.set_ylabel("fraction of postings ≤ latency")
    ax.set_title(f"{scenario.name}: latency CDF per workflow")
    ax.grid(True, which="both", alpha=0.3)
    return figure


def _p99_over_time(_h, scenario: Scenario, series, time: _Time) -> Figure:
    figure, (ax,) = _figure()
    points = [(time.x(row["t_s"]), row["p99_ms"]) for row in series if row["p99_ms"] > 0]
    if points:
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", markersize=3, color="tab:blue", label="p99 of the interval")
        ax.set_yscale("log")
        ax.set_ylim(min(ys) / 1.5, max(ys) * 1.5)
        _latency_axis(ax.yaxis)
    else:
        _empty(ax, "no postings sampled")
    time.decorate(ax)
    ax.set_ylabel("p99 latency (log scale)")
    ax.set_title(f"{scenario.name}: p99 latency over time (all workflows, per interval)")
    _legend(ax, loc="best", fontsize=8)
    return figure


def _traffic(_h, scenario: Scenario, series, time: _Time) -> Figure:
    figure, (top, bottom) = _figure(_TALL, rows=2)
    xs = [time.x(row["t_s"]) for row in series]
    per = f"messages per {_interval_text(time.interval)}"
    if series:
        top.stairs([row["arrivals"] for row in series], time.edges, label="arrivals (sent)")
        top.stairs([row["throughput"] for row in series], time.edges, linestyle="--",
                   label="throughput (answers and resolutions)")  # fmt: skip
        bottom.plot(xs, [row["queue_depth"] for row in series], marker="o", markersize=3,
                    color="tab:purple", label="peak queue depth in the interval")  # fmt: skip
    else:
        _empty(top, "no samples")
    for ax in (top, bottom):
        time.decorate(ax)
        _counts(ax)
    top.set_xlabel("")
    top.set_ylabel(per)
    bottom.set_ylabel("messages in the queue")
    top.set_title(f"{scenario.name}: arrivals, throughput and queue depth")
    _legend(top, loc="best", fontsize=8)
    _legend(bottom, loc="best", fontsize=8)
    return figure


def _drift(_h, scenario: Scenario, series, time: _Time, final: dict[str, Any]) -> Figure:
    figure, (top, bottom) = _figure(_TALL, rows=2)
    xs = [time.x(row["t_s"]) for row in series]
    top.plot(xs, [float(row["drift_value"]) for row in series], marker="o", markersize=3,
             color="tab:red", label="value drift at the sample")  # fmt: skip
    bottom.plot(xs, [row["drift_exceptions"] for row in series], marker="o", markersize=3,
                color="tab:orange", label="keys that differ at the sample")  # fmt: skip
    currencies = plant_currencies(scenario)
    if final:
        at = time.x(time.heal_end)
        top.plot([at], [float(final["final_value"])], marker="D", color="black", linestyle="",
                 clip_on=False,
                 label=f"after healing: {format_money(final['final_value'], currencies)} "
                       f"({format_money(final['final_unexplained_value'], currencies)} "
                       "unexplained)")  # fmt: skip
        bottom.plot([at], [final["final_exceptions"]], marker="D", color="black", linestyle="",
                    clip_on=False,
                    label=f"after healing: {final['final_exceptions']}")  # fmt: skip
    for ax in (top, bottom):
        time.decorate(ax)
    top.set_ylim(bottom=0)
    top.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.0f}"))
    _counts(bottom)
    top.set_xlabel("")
    unit = currencies[0] if len(currencies) == 1 else " + ".join(currencies) + ", unconverted"
    top.set_ylabel(f"|truth − book| at standard cost ({unit})")
    bottom.set_ylabel("reconciliation exceptions")
    top.set_title(f"{scenario.name}: reconciliation drift, truth vs book")
    _legend(top, loc="best", fontsize=8)
    _legend(bottom, loc="best", fontsize=8)
    return figure


def _dead_letters(_h, scenario: Scenario, series, time: _Time) -> Figure:
    figure, (ax,) = _figure()
    codes = sorted({code for row in series for code in row["dead_letters_by_code"]})
    colours = matplotlib.colormaps["tab10"].colors
    lefts = [time.x(row["t_s"] - time.interval) for row in series]
    width = time.x(time.interval) * 0.9
    stacked = [0] * len(series)
    for n, code in enumerate(codes):
        counts = [row["dead_letters_by_code"].get(code, 0) for row in series]
        ax.bar(lefts, counts, width=width, bottom=stacked, align="edge",
               color=colours[n % 10], label=code)  # fmt: skip
        stacked = [a + b for a, b in zip(stacked, counts, strict=True)]
    if not codes:
        _empty(ax, "no dead letters")
    time.decorate(ax)
    _counts(ax)
    ax.set_ylabel(f"dead letters per {_interval_text(time.interval)}")
    ax.set_title(f"{scenario.name}: dead letters by code over time")
    _legend(ax, loc="best", fontsize=8, title="code" if codes else None)
    return figure


def _interval_text(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and math.isclose(seconds % size, 0, abs_tol=1e-9):
            return f"{int(seconds // size)} {unit} interval"
    return f"{seconds:g} s interval"


def render_plots(
    scenario: Scenario,
    series: list[dict[str, Any]],
    histograms: dict[str, dict[str, str]],
    drift: dict[str, Any] | None = None,
) -> dict[str, bytes]:
    """{plot name: PNG bytes} for every plot in `PLOTS`; `drift` is the summary's drift
    section (its final figures are drawn at the end of the heal phase)."""
    time = _Time(scenario, series)
    makers: dict[str, Callable[..., Figure]] = {
        "latency_cdf": _latency_cdf,
        "p99_over_time": _p99_over_time,
        "traffic": _traffic,
        "drift": lambda h, sc, se, t: _drift(h, sc, se, t, drift or {}),
        "dead_letters": _dead_letters,
    }
    with matplotlib.style.context("default"):
        return {name: _png(makers[name](histograms, scenario, series, time)) for name in PLOTS}
