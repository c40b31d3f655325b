"""What a live load test sends, and when: the twin's traffic as an open-model schedule.

The twin runs in virtual time as for `twin run`, with its plants, sources and network (delays,
duplicates, losses with redelivery, renumbered resends, clock skew), but the pipes end in a
tap instead of the simulated ERP endpoint: each delivery that would reach the integration
layer is recorded with its virtual arrival time. The target under test *is* that integration
layer, so its queueing, rate limits, outages and crashes are its own, not the twin's; the
sources' outages are the twin's (their outboxes hold), the middleware's are the target's.

Nothing the target answers can change the schedule: the same scenario and seed always give
the same messages at the same virtual times (an open model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

from integration import Envelope
from sim.model.catalogue import Catalogue
from sim.model.measures import Measures
from sim.model.middleware import Delivery, Middleware
from sim.model.streams import Streams
from sim.model.truth import PhysicalEvent, StockKey
from sim.model.world import World
from sim.run.runner import Progress, advance, build_world
from sim.run.targets import NullTarget
from sim.scenario.document import Scenario
from sim.scenario.sections import System

__all__ = ["Send", "Schedule", "make_schedule"]


@dataclass(slots=True)
class Send:
    """One delivery to the target: its virtual arrival time and the JSON body to post."""

    at: float  # virtual seconds since the scenario start
    event: PhysicalEvent
    envelope: Envelope
    body: bytes  # the envelope as JSON, made once, ahead of the timed run


@dataclass
class Schedule:
    """The deliveries in arrival order, the physical events they report, the truth at the
    end, the edge cases the twin's side exercised, and the standard costs it ended with."""

    sends: list[Send]
    events: list[PhysicalEvent]
    truth: dict[StockKey, Decimal]
    coverage: dict[str, int]
    catalogue: Catalogue
    changed_costs: dict[str, dict[str, Decimal]] = field(default_factory=dict)

    def truth_until(self) -> Callable[[float], dict[StockKey, Decimal]]:
        """A function of virtual time (called with times that never decrease) giving the
        physical stock then: the events that occurred by that time, applied in order."""
        stock: dict[StockKey, Decimal] = {}
        ordered = sorted(self.events, key=lambda event: (event.occurred_at, event.id))
        cursor = 0

        def at(now: float) -> dict[StockKey, Decimal]:
            nonlocal cursor
            while cursor < len(ordered) and ordered[cursor].occurred_at <= now:
                for key, qty in ordered[cursor].deltas.items():
                    stock[key] = stock.get(key, Decimal(0)) + qty
                cursor += 1
            return dict(stock)

        return at


class _Recording(Measures):
    """The twin's own measures during generation, keeping every event and cost change."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[PhysicalEvent] = []
        self.changed_costs: dict[str, dict[str, Decimal]] = {}

    def happened(self, event: PhysicalEvent) -> None:
        super().happened(event)
        self.events.append(event)

    def costed(self, item: str, costs: dict[str, Decimal]) -> None:
        self.changed_costs[item] = dict(costs)


class _Tap(Middleware):
    """The twin's network, ending where the integration layer begins."""

    def __init__(self, world: World) -> None:
        super().__init__(world, NullTarget())
        self.sends: list[Send] = []

    def _arrive(self, delivery: Delivery) -> None:
        self.in_flight -= 1
        envelope = delivery.envelope
        self.sends.append(
            Send(
                at=self.world.env.now,
                event=delivery.event,
                envelope=envelope,
                body=envelope.model_dump_json().encode(),
            )
        )


def _twin_side(scenario: Scenario) -> Scenario:
    """`scenario` without middleware outages: the target is the middleware, so those are its
    own. The sources' outages (the ERP's as a sender too) stay: they shape the schedule."""
    faults = scenario.faults
    kept = tuple(o for o in faults.outages if o.system is not System.MIDDLEWARE)
    return scenario.model_copy(update={"faults": faults.model_copy(update={"outages": kept})})


def make_schedule(scenario: Scenario, progress: Progress | None = None) -> Schedule:
    """Simulate `scenario` up to its horizon, then let the sources flush and the network
    drain (as the heal phase of `twin run` does, faults off), recording every delivery."""
    scenario = _twin_side(scenario)
    streams = Streams(scenario.seed)
    catalogue = Catalogue.generate(scenario, streams)
    measures = _Recording()
    world, tap = build_world(scenario, streams, catalogue, measures, _Tap)
    advance(world.env, scenario.horizon.total_seconds(), measures, progress)
    world.producing = False
    world.faults_on = False
    for reporter in world.reporters.values():
        reporter.flush()
    drained_by = world.env.now + scenario.measures.heal.total_seconds()
    while world.env.now < drained_by and (tap.in_flight or world.unsent):
        world.env.run(until=min(drained_by, world.env.now + 60))
    return Schedule(
        sends=tap.sends,
        events=measures.events,
        truth=dict(world.truth.stock),
        coverage={name: n for name, n in sorted(measures.coverage.items()) if n},
        catalogue=catalogue,
        changed_costs=measures.changed_costs,
    )
