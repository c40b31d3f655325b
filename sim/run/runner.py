"""One run of a scenario: the fault phase for the horizon, the heal phase, the final
reconciliation, and the summary (docs/architecture.md, Measures and Run outputs)."""

from __future__ import annotations

import gc
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import simpy

from sim.model import quality
from sim.model.calendar import ShiftCalendar
from sim.model.catalogue import Catalogue
from sim.model.measures import Measures
from sim.model.middleware import Middleware
from sim.model.office import Engineering, Finance
from sim.model.operators import Operators
from sim.model.plant import PlantModel
from sim.model.streams import Streams
from sim.model.target import Target
from sim.model.truth import Truth
from sim.model.world import World
from sim.run.pipelined import DeferredMeasures, PipelinedTarget, pipelined, processes_for
from sim.run.summary import summarise
from sim.run.targets import InProcessTarget
from sim.scenario.document import Scenario

__all__ = ["Run", "simulate", "build_world", "advance", "run_figures"]

Progress = Callable[[float, int], None]  # (virtual seconds done, messages so far)


@dataclass
class Run:
    """What a finished run leaves: the summary (its `run` section says how many processes it
    used), the series and the measures behind them."""

    summary: dict[str, Any]
    series: list[dict[str, Any]]
    measures: Measures


def _store_url(scenario: Scenario, out: Path | None) -> str:
    if scenario.store.url != "run":
        return scenario.store.url
    return str(out / "ledger.db") if out is not None else ":memory:"


@contextmanager
def _young_collections_every(allocations: int) -> Iterator[None]:
    """Collect the young generation every `allocations` net allocations for the block.

    A run allocates millions of short-lived objects (events, envelopes, outcomes) beside a
    long-lived heap that grows with it (books, truth, measures). At CPython's default (700),
    collections took 4 % of a six-day run; at 50,000, 1 %, with the same peak RSS."""
    saved = gc.get_threshold()
    gc.set_threshold(allocations, *saved[1:])
    try:
        yield
    finally:
        gc.set_threshold(*saved)


@_young_collections_every(50_000)
def simulate(
    scenario: Scenario,
    out: Path | None = None,
    target: Target | None = None,
    trace=None,
    progress: Progress | None = None,
    processes: int | None = None,
) -> Run:
    """Run `scenario` against `target` (the in-process core by default, its ledger in `out`,
    in a process of its own when `processes_for(scenario, processes)` says 2)."""
    started = time.perf_counter()
    streams = Streams(scenario.seed)
    catalogue = Catalogue.generate(scenario, streams)
    measures = Measures(trace, scenario.measures.warmup.total_seconds())
    used, seen = 1, measures  # the processes, and the measures the twin feeds
    if target is None:
        used, target, seen = _core(scenario, out, catalogue, measures, processes)
    try:
        world, middleware = build_world(
            scenario, streams, catalogue, seen, lambda world: Middleware(world, target)
        )
        Operators(world, target).start()
        world.env.process(_sampling(world, middleware, target))
        advance(world.env, scenario.horizon.total_seconds(), measures, progress)
        _heal(world, middleware, target)
        books = target.books()  # after every answer (a pipelined run's all came back)
        if isinstance(seen, DeferredMeasures):
            seen.settled()
        summary = summarise(
            scenario, measures, dict(world.truth.stock), catalogue.standard_cost, books
        )
    finally:
        target.close()
    core_rss_kb = target.core_peak_rss_kb if isinstance(target, PipelinedTarget) else 0
    summary["run"] = run_figures(started, measures, used, core_rss_kb)
    return Run(summary, measures.series, measures)


def _core(
    scenario: Scenario,
    out: Path | None,
    catalogue: Catalogue,
    measures: Measures,
    processes: int | None,
) -> tuple[int, Target, Measures | DeferredMeasures]:
    """The in-process core, in this process or (`processes_for`) in one of its own, with the
    measures the twin feeds: (processes, target, measures)."""
    args = (catalogue.core_settings(), _store_url(scenario, out), scenario.start)
    if processes_for(scenario, processes) == 2:
        return 2, *pipelined(*args, measures)
    return 1, InProcessTarget(*args), measures


def run_figures(
    started: float, measures: Measures, processes: int = 1, other_rss_kb: int = 0
) -> dict[str, float]:
    """The `run` section: wall time since `started` (a `time.perf_counter()`), rates, the
    processes, and memory: this process's peak plus `other_rss_kb` (the core's process's)."""
    wall = max(time.perf_counter() - started, 1e-9)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss + other_rss_kb
    return {
        "wall_s": round(wall, 3),
        "events_per_s": round(measures.truth_events / wall, 1),
        "messages_per_s": round(measures.messages / wall, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "processes": processes,
    }


def build_world(
    scenario: Scenario,
    streams: Streams,
    catalogue: Catalogue,
    measures: Measures,
    connect: Callable[[World], Middleware],
) -> tuple[World, Middleware]:
    """The world of `scenario` with its pipes (`connect` makes the middleware), then its
    engineering, finance and plants, started."""
    world = World(
        simpy.Environment(),
        scenario,
        streams,
        catalogue,
        Truth(),
        measures,
        ShiftCalendar(scenario.calendar, scenario.start),
    )
    middleware = connect(world)
    engineering = Engineering(world)
    engineering.start()
    Finance(world).start()
    for spec in scenario.plants:
        PlantModel(world, spec, engineering).start()
    return world, middleware


def advance(env: simpy.Environment, until: float, measures: Measures, progress) -> None:
    """Run the simulation to `until` (virtual seconds), reporting progress on the way."""
    step = max(until / 200, 60.0)
    while env.now < until:
        env.run(until=min(until, env.now + step))
        if progress is not None:
            progress(env.now, measures.messages)


def _heal(world: World, middleware: Middleware, target: Target) -> None:
    """Faults off, the floor stopped: quality releases its held lots, flush what the MES held
    back, resend what it parked, let the pipes drain, then expire holds and replay dead
    letters."""
    env, scenario = world.env, world.scenario
    world.producing = False
    world.faults_on = False
    quality.release_all(world)  # quality's review ends: what it held is released
    for reporter in world.reporters.values():
        reporter.flush()
    middleware.resend_parked()
    heal_end = env.now + scenario.measures.heal.total_seconds()
    while env.now < heal_end and (middleware.in_flight or world.unsent):
        env.run(until=min(heal_end, env.now + 60))
        middleware.resend_parked()
    world.measures.heal_ended(world.unsent, middleware.in_flight)
    healed_at = env.now + scenario.integration.hold_timeout.total_seconds() + 1
    world.measures.healed(*target.heal(world.at(healed_at)), healed_at)
    _sample(world, middleware, target)  # the interval that ends with the heal phase


def _sample(world: World, middleware: Middleware, target: Target) -> None:
    truth, depth, now = dict(world.truth.stock), middleware.queue_depth(), world.env.now
    # a copy of the truth of now: a pipelined run's books as of now come back later
    world.measures.sample_books(now, depth, truth, world.catalogue, target.stock())


def _sampling(world: World, middleware: Middleware, target: Target):
    """Every interval: drift of the books against the truth, and the series."""
    env = world.env
    interval = world.scenario.measures.sample_interval.total_seconds()
    while True:
        yield env.timeout(interval)
        _sample(world, middleware, target)
