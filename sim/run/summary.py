"""The summary of a run (its contract: docs/architecture.md, Run outputs), as a pure function of
what was measured, the truth, and the target's books at the end: the same whether the run just
finished or is rebuilt from its trace."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from sim.model.measures import Measures, drift
from sim.model.target import Books
from sim.model.truth import PhysicalEvent, StockKey
from sim.run.governance import governance
from sim.scenario.assertions import evaluate
from sim.scenario.document import Scenario

__all__ = ["summarise"]

Cost = Callable[[str, str], Decimal]  # (item, plant) -> standard cost


def _effects(
    events: Iterable[PhysicalEvent], book: dict[StockKey, Decimal] | None = None
) -> dict[StockKey, Decimal]:
    """The stock effects of `events` summed per key, added to `book` when one is given (the
    books as if those events had posted)."""
    effects = dict(book or {})
    for event in events:
        for key, qty in event.deltas.items():
            effects[key] = effects.get(key, Decimal(0)) + qty
    return effects


def _held_back(measures: Measures, open_dead_letters) -> list[PhysicalEvent]:
    """Events that never applied because a named dead letter holds them."""
    held_back: dict[int, PhysicalEvent] = {}
    for message_id, _code in open_dead_letters:
        event = measures.parked_event(message_id)
        if event is not None and measures.applied(event) == 0:
            held_back[event.id] = event
    return list(held_back.values())


def _value(quantities: dict[StockKey, Decimal], cost: Cost) -> Decimal:
    total = sum((abs(qty) * cost(key[1], key[0]) for key, qty in quantities.items()), Decimal(0))
    return total.quantize(Decimal("0.01"))


def _drift(measures, truth, cost, books) -> dict[str, Any]:
    """Final drift, and what of it open dead letters explain, what messages the heal phase
    never delivered leave out, and what is left unexplained once both are added to the books."""
    final_value, final_exceptions = drift(truth, books.stock, cost)
    held_back = _held_back(measures, books.open_dead_letters)
    unanswered = measures.unanswered()
    unexplained, _ = drift(truth, _effects([*held_back, *unanswered], books.stock), cost)
    return {
        "max_value": str(max(measures.max_drift, final_value)),
        "final_value": str(final_value),
        "final_explained_value": str(_value(_effects(held_back), cost)),
        "final_undelivered_value": str(_value(_effects(unanswered), cost)),
        "final_undelivered_messages": len(unanswered),
        "final_unexplained_value": str(unexplained),
        "final_exceptions": final_exceptions,
    }


def summarise(
    scenario: Scenario,
    measures: Measures,
    truth: dict[StockKey, Decimal],
    cost: Cost,
    books: Books,
) -> dict[str, Any]:
    """Everything but `run` (wall time and memory, which the caller adds)."""
    by_code = Counter(code for _id, code in books.open_dead_letters)
    coverage = dict(measures.coverage)
    coverage["late_posting"] = measures.late_postings
    coverage["backflush_shortage"] = (
        books.negative_stock_events + measures.rejections["BACKFLUSH_SHORTAGE"]
    )
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "seed": scenario.seed,
        "events": {
            "truth": measures.truth_events,
            "messages": measures.messages,
            "held_at_end": measures.held(),  # still waiting in the core: in no other figure
            "by_type": dict(sorted(measures.message_types.items())),
        },
        "latency_ms": measures.latency_summary(),
        "duplicates": measures.duplicates(),
        "drift": _drift(measures, truth, cost, books),
        "dead_letters": {
            "total": books.dead_letters_total,
            "by_code": dict(sorted(by_code.items())),
            "by_first_code": dict(sorted(books.dead_letters_by_first_code.items())),
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
        "coverage": dict(sorted(coverage.items())),
        # messages the heal phase could not deliver: their effects are missing from the books
        # through no fault of the core; a longer `measures.heal` drains them
        "heal": dict(measures.left_over),
    }
    exceptions = summary["drift"]["final_exceptions"]
    horizon = scenario.horizon.total_seconds()
    summary["governance"] = governance(measures, books, horizon, exceptions)
    summary["assertions"] = [r.to_dict() for r in evaluate(scenario.assertions, summary)]
    return summary
