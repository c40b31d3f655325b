"""Helpers for whole-run tests: a small scenario, cached in-process runs, a recording trace and
a recording target that sits between the twin's middleware and the real core."""

from __future__ import annotations

import copy
import gzip
import json
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from integration import Envelope, Outcome
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from sim.model.target import Books
from sim.run.runner import Run, simulate
from sim.run.targets import InProcessTarget
from sim.scenario.document import Scenario, load_scenario

HOUR = 3600.0

# One plant, one day from Monday 06:00 UTC (the first shift's start): shift changes at 8 h,
# 16 h and 24 h of virtual time. Big enough to exercise every workflow, small enough to run in
# about half a second.
SMALL: dict[str, Any] = {
    "name": "small",
    "seed": 3,
    "start": "2026-11-02T06:00:00+00:00",
    "horizon": "1d",
    "plants": [
        {
            "id": "LYON",
            "work_centres": [
                {"id": "CUT", "capacity": 3},
                {"id": "WELD", "capacity": 3},
                {"id": "PACK", "capacity": 2},
            ],
        }
    ],
    "products": {"count": 4, "components": 4, "operations": 3},
    "demand": {"orders_per_day": 60, "lot_size_min": 5, "lot_size_max": 20},
}

# Reordering: a network delay with a long tail, far above the gap between two messages of a
# work order, so later messages routinely overtake earlier ones.
REORDERING = "faults.network_delay={kind: lognormal, mean: 30s, sd: 60s}"


def document(base: dict[str, Any] | None = None) -> dict[str, Any]:
    """A fresh copy of a scenario document (the small one by default)."""
    return copy.deepcopy(SMALL if base is None else base)


def scenario(overrides: Iterable[str] = (), base: dict[str, Any] | None = None) -> Scenario:
    return load_scenario(document(base), list(overrides))


@lru_cache(maxsize=64)
def _cached(overrides: tuple[str, ...]) -> Run:
    return simulate(scenario(overrides))


def run(*overrides: str) -> Run:
    """The small scenario with `overrides`, simulated in process on a ":memory:" ledger; runs
    are cached per process, so treat the result as read-only."""
    return _cached(tuple(overrides))


def summary(*overrides: str) -> dict[str, Any]:
    return run(*overrides).summary


def without_run(summary: dict[str, Any]) -> str:
    """The summary outside `run` (wall time, RSS), canonically serialised."""
    return json.dumps({k: v for k, v in summary.items() if k != "run"}, sort_keys=True, default=str)


def busiest(times: list[float], window: float) -> int:
    """The most of `times` (sorted) within any `window` seconds."""
    most, begin = 0, 0
    for end, t in enumerate(times):
        while t - times[begin] >= window:
            begin += 1
        most = max(most, end - begin + 1)
    return most


def write_scenario(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def read_trace(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


class RecordingTrace:
    """A `trace` for `simulate` that keeps records in memory: the harness's own join of
    physical events and the envelopes that report them."""

    def __init__(self) -> None:
        self.truth_events: dict[int, Any] = {}
        self.messages: list[tuple[float, int, Envelope]] = []
        self.outcomes: list[tuple[float, int, Outcome]] = []

    def truth(self, event) -> None:
        self.truth_events[event.id] = event

    def message(self, now: float, event_id: int, envelope: Envelope) -> None:
        self.messages.append((now, event_id, envelope))

    def answer(self, now: float, event_id: int, envelope, outcome: Outcome, queued) -> None:
        self.outcomes.append((now, event_id, outcome))

    def resolution(self, now: float, event_id: int, outcome: Outcome) -> None:
        self.outcomes.append((now, event_id, outcome))

    def cover(self, edge_case: str, times: int) -> None:
        pass

    def cost(self, item: str, costs) -> None:
        pass

    def sample(self, now: float, queue_depth: int, value, exceptions: int) -> None:
        pass

    def heal_ended(self, unsent: int, in_flight: int) -> None:
        pass

    def detected(self, now: float, event_id: int, rule: str) -> None:
        pass

    def alert(self, now: float, rule: str) -> None:
        pass

    def fixed(self, now: float, event_id: int, error_class: str, replayed: int) -> None:
        pass

    def event_of(self) -> dict[str, int]:
        """message id -> physical event id, as only the harness knows it."""
        return {envelope.message_id: event_id for _now, event_id, envelope in self.messages}


class RecordingTarget:
    """The `Target` port, delegating to the in-process core and recording every submission
    exactly as the core received it, with the core's answer."""

    def __init__(self, inner: InProcessTarget) -> None:
        self.inner = inner
        self.submitted: list[tuple[datetime, Envelope, Outcome]] = []

    @classmethod
    def for_scenario(cls, scenario: Scenario) -> RecordingTarget:
        catalogue = Catalogue.generate(scenario, Streams(scenario.seed))
        return cls(InProcessTarget(catalogue.core_settings(), ":memory:", scenario.start))

    def submit(self, envelope: Envelope, at: datetime) -> Outcome:
        outcome = self.inner.submit(envelope, at)
        self.submitted.append((at, envelope, outcome))
        return outcome

    def stock(self) -> dict[tuple[str, str, str], Decimal]:
        return self.inner.stock()

    def heal(self, at: datetime) -> tuple[list[Outcome], list[Outcome]]:
        return self.inner.heal(at)

    def books(self) -> Books:
        return self.inner.books()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # whatever else the port grows, delegated unrecorded


def over_http(chosen: Scenario) -> dict[str, Any]:
    """The summary of `chosen` run against the service's real app (in process, through
    `HttpTarget` and an `operate` key)."""
    from tests.integration.test_http_target import asgi_target

    settings = Catalogue.generate(chosen, Streams(chosen.seed)).core_settings()
    return simulate(chosen, target=asgi_target(settings)).summary


def recorded(overrides: Iterable[str] = ()) -> tuple[Run, RecordingTarget, RecordingTrace]:
    """Simulate the small scenario through a recording target and a recording trace."""
    chosen = scenario(overrides)
    target = RecordingTarget.for_scenario(chosen)
    trace = RecordingTrace()
    return simulate(chosen, target=target, trace=trace), target, trace
