"""The summary of a run (its contract: docs/architecture.md, Run outputs), as a pure function of
what was measured, the truth, and the target's books at the end: the same whether the run just
finished or is rebuilt from its trace."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sim.model.truth import StockKey
from sim.run.measures import Measures, drift
from sim.run.targets import Books
from sim.scenario.assertions import evaluate
from sim.scenario.document import Scenario

__all__ = ["summarise"]

Cost = Callable[[str, str], Decimal]  # (item, plant) -> standard cost


def _explained(measures: Measures, open_dead_letters) -> dict[StockKey, Decimal]:
    """Stock effects of events that never applied because a named dead letter holds them."""
    explained: dict[StockKey, Decimal] = {}
    seen: set[int] = set()
    for message_id, _code in open_dead_letters:
        event = measures.parked_event(message_id)
        if event is None or event.id in seen or measures.applied(event) > 0:
            continue
        seen.add(event.id)
        for key, qty in event.deltas.items():
            explained[key] = explained.get(key, Decimal(0)) + qty
    return explained


def _value(quantities: dict[StockKey, Decimal], cost: Cost) -> Decimal:
    total = sum((abs(qty) * cost(key[1], key[0]) for key, qty in quantities.items()), Decimal(0))
    return total.quantize(Decimal("0.01"))


def _drift(measures, truth, cost, books) -> dict[str, Any]:
    final_value, final_exceptions = drift(truth, books.stock, cost)
    explained = _explained(measures, books.open_dead_letters)
    book_plus_explained = dict(books.stock)
    for key, qty in explained.items():
        book_plus_explained[key] = book_plus_explained.get(key, Decimal(0)) + qty
    unexplained, _ = drift(truth, book_plus_explained, cost)
    return {
        "max_value": str(max(measures.max_drift, final_value)),
        "final_value": str(final_value),
        "final_explained_value": str(_value(explained, cost)),
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
        "events": {"truth": measures.truth_events, "messages": measures.messages},
        "latency_ms": measures.latency_summary(),
        "duplicates": measures.duplicates(),
        "drift": _drift(measures, truth, cost, books),
        "dead_letters": {
            "total": books.dead_letters_total,
            "by_code": dict(sorted(by_code.items())),
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
    summary["assertions"] = [r.to_dict() for r in evaluate(scenario.assertions, summary)]
    return summary
