"""One run of a scenario: the fault phase for the horizon, the heal phase, the final
reconciliation, and the summary (DESIGN §5–6)."""

from __future__ import annotations

import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import simpy

from sim.assertions import evaluate
from sim.calendar import ShiftCalendar
from sim.catalogue import Catalogue
from sim.measures import Measures, drift
from sim.middleware import Middleware
from sim.office import Engineering, Finance
from sim.plant import PlantModel
from sim.scenario import Scenario
from sim.streams import Streams
from sim.targets import InProcessTarget, Target
from sim.truth import StockKey, Truth
from sim.world import World

__all__ = ["Run", "simulate"]

Progress = Callable[[float, int], None]  # (virtual seconds done, messages so far)


@dataclass
class Run:
    """What a finished run leaves: the summary and the series."""

    summary: dict[str, Any]
    series: list[dict[str, Any]]


def _store_url(scenario: Scenario, out: Path | None) -> str:
    if scenario.store.url != "run":
        return scenario.store.url
    return str(out / "ledger.db") if out is not None else ":memory:"


def simulate(
    scenario: Scenario,
    out: Path | None = None,
    target: Target | None = None,
    trace=None,
    progress: Progress | None = None,
) -> Run:
    """Run `scenario` against `target` (the in-process core by default, its ledger in `out`)."""
    started = time.perf_counter()
    streams = Streams(scenario.seed)
    catalogue = Catalogue.generate(scenario, streams)
    if target is None:
        target = InProcessTarget(
            catalogue.core_settings(), _store_url(scenario, out), scenario.start
        )
    measures = Measures(trace)
    env = simpy.Environment()
    world = World(
        env,
        scenario,
        streams,
        catalogue,
        Truth(),
        measures,
        ShiftCalendar(scenario.calendar, scenario.start),
    )
    middleware = Middleware(world, target)
    Engineering(world).start()
    Finance(world).start()
    for spec in scenario.plants:
        PlantModel(world, spec).start()
    try:
        sampler = _Sampler(world, middleware, target)
        env.process(sampler.run())
        horizon = scenario.horizon.total_seconds()
        _advance(env, horizon, measures, progress)
        _heal(world, middleware, target)
        summary = _summarise(world, target, sampler)
    finally:
        target.close()
    summary["run"] = {
        "wall_s": round(time.perf_counter() - started, 3),
        "events_per_s": round(measures.truth_events / max(time.perf_counter() - started, 1e-9), 1),
        "messages_per_s": round(measures.messages / max(time.perf_counter() - started, 1e-9), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    return Run(summary, measures.series)


def _advance(env: simpy.Environment, until: float, measures: Measures, progress) -> None:
    step = max(until / 200, 60.0)
    while env.now < until:
        env.run(until=min(until, env.now + step))
        if progress is not None:
            progress(env.now, measures.messages)


def _heal(world: World, middleware: Middleware, target: Target) -> None:
    """Faults off, the floor stopped: flush what the MES held back, resend what it parked, let
    the pipes drain, then expire holds and replay dead letters."""
    env, scenario = world.env, world.scenario
    world.producing = False
    world.faults_on = False
    for reporter in world.reporters.values():
        reporter.flush()
    middleware.resend_parked()
    heal_end = env.now + scenario.measures.heal.total_seconds()
    while env.now < heal_end and (middleware.in_flight or world.unsent):
        env.run(until=min(heal_end, env.now + 60))
        middleware.resend_parked()
    at = world.at(env.now + scenario.integration.hold_timeout.total_seconds() + 1)
    world.measures.healed(*target.heal(at), env.now)


class _Sampler:
    """Samples drift and the series every interval, and keeps the worst drift seen."""

    def __init__(self, world: World, middleware: Middleware, target: Target) -> None:
        self.world = world
        self.middleware = middleware
        self.target = target
        self.max_value = Decimal(0)

    def drift_now(self) -> tuple[Decimal, int]:
        return drift(
            dict(self.world.truth.stock), self.target.stock(), self.world.catalogue.standard_cost
        )

    def run(self):
        env = self.world.env
        interval = self.world.scenario.measures.sample_interval.total_seconds()
        while True:
            yield env.timeout(interval)
            value, exceptions = self.drift_now()
            self.max_value = max(self.max_value, value)
            depth = self.middleware.queue_depth()
            self.world.measures.sample(env.now, depth, value, exceptions)


def _explained(world: World, open_dead_letters) -> dict[StockKey, Decimal]:
    """Stock effects of events that never applied because a named dead letter holds them."""
    explained: dict[StockKey, Decimal] = {}
    seen: set[int] = set()
    for message_id, _code in open_dead_letters:
        event = world.measures.parked_event(message_id)
        if event is None or event.id in seen or world.measures.applied(event) > 0:
            continue
        seen.add(event.id)
        for key, qty in event.deltas.items():
            explained[key] = explained.get(key, Decimal(0)) + qty
    return explained


def _summarise(world: World, target: Target, sampler: _Sampler) -> dict[str, Any]:
    measures, scenario = world.measures, world.scenario
    books = target.books()
    truth = dict(world.truth.stock)
    final_value, final_exceptions = drift(truth, books.stock, world.catalogue.standard_cost)
    explained = _explained(world, books.open_dead_letters)
    book_plus_explained = dict(books.stock)
    for key, qty in explained.items():
        book_plus_explained[key] = book_plus_explained.get(key, Decimal(0)) + qty
    unexplained, _ = drift(truth, book_plus_explained, world.catalogue.standard_cost)
    by_code = dict(sorted(Counter(code for _id, code in books.open_dead_letters).items()))
    latency = measures.latency_summary()
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "events": {"truth": measures.truth_events, "messages": measures.messages},
        "latency_ms": latency,
        "duplicates": measures.duplicates(),
        "drift": {
            "max_value": str(max(sampler.max_value, final_value)),
            "final_value": str(final_value),
            "final_explained_value": str(_value(explained, world)),
            "final_unexplained_value": str(unexplained),
            "final_exceptions": final_exceptions,
        },
        "dead_letters": {
            "total": books.dead_letters_total,
            "by_code": by_code,
            "replayed": books.dead_letters_replayed,
            "remaining": len(books.open_dead_letters),
        },
        "ledger": {
            "balanced": books.balanced,
            "reconciled": books.reconciled,
            "entries": books.entries,
            "findings": books.findings,
        },
        "outcomes": dict(sorted(measures.statuses.items())),
        "first_pass_rate": round(measures.first_pass / max(measures.truth_events, 1), 4),
        "late_postings": measures.late_postings,
        "negative_stock_events": books.negative_stock_events,
        "coverage": dict(sorted(measures.coverage.items())),
    }
    summary["coverage"]["late_posting"] = measures.late_postings
    summary["coverage"]["backflush_shortage"] = (
        books.negative_stock_events + measures.rejections["BACKFLUSH_SHORTAGE"]
    )
    summary["assertions"] = [result.to_dict() for result in evaluate(scenario.assertions, summary)]
    return summary


def _value(quantities: dict[StockKey, Decimal], world: World) -> Decimal:
    total = sum(
        (
            abs(qty) * world.catalogue.standard_cost(key[1], key[0])
            for key, qty in quantities.items()
        ),
        Decimal(0),
    )
    return total.quantize(Decimal("0.01"))
