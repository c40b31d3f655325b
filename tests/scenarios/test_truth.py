"""The physical truth stays physical: the floor never uses parts that are not in the stores."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sim.model.truth import Truth
from sim.run.runner import simulate
from tests.scenarios import harness

SCARCE = ["edge_cases.cover_days=0.3", "edge_cases.supplier_interval=12h"]


def _lowest_stock(trace: harness.RecordingTrace) -> Decimal:
    """The lowest any (plant, item, location) ever stood, applying events in the order they
    happened."""
    stock: dict[tuple, Decimal] = defaultdict(Decimal)
    lowest = Decimal(0)
    for event_id in sorted(trace.truth_events):
        for key, qty in trace.truth_events[event_id].deltas.items():
            stock[key] += qty
            lowest = min(lowest, stock[key])
    return lowest


def test_scarce_stock_makes_the_floor_wait_never_go_negative():
    trace = harness.RecordingTrace()
    run = simulate(harness.scenario(SCARCE), trace=trace)
    assert run.summary["coverage"]["material_shortage"] > 0
    assert _lowest_stock(trace) == 0
    assert run.summary["drift"]["final_unexplained_value"] == "0.00"


def test_with_ample_stock_nobody_waits():
    run = harness.run()
    assert run.summary["coverage"].get("material_shortage", 0) == 0


def test_the_floor_picks_the_fullest_lot_and_the_first_by_name_among_equals():
    truth = Truth()
    key = ("LYON", "RAW-L", "STORES")
    assert truth.fullest_lot(key) == (None, Decimal(0))
    event = truth.event("receipt", 0.0, "LYON")
    for lot, qty in (("L-3", 4), ("L-2", 9), ("L-1", 9), ("L-4", 2)):
        truth.move(event, key, Decimal(qty), lot)
    assert truth.fullest_lot(key) == ("L-1", Decimal(9))
    truth.move(event, key, Decimal(-9), "L-1")  # an emptied lot is gone
    assert truth.fullest_lot(key) == ("L-2", Decimal(9))
