"""The physical truth the core never sees: what happened on the floor and in the stores.

Each physical event gets an id here and nowhere else; the message that reports it carries only
the source system's message id and idempotency key. Stock is kept per (plant, item, location),
with lots for lot-controlled items so the floor can name the lot it really used.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["PhysicalEvent", "Truth", "StockKey", "quantity"]

StockKey = tuple[str, str, str]  # plant, item, location
SIX_PLACES = Decimal("0.000001")
ZERO = Decimal(0)


def quantity(value: Decimal) -> Decimal:
    """Quantities to six places, as the ledger keeps them."""
    return value.quantize(SIX_PLACES, rounding=ROUND_HALF_EVEN)


@dataclass(slots=True)
class PhysicalEvent:
    """One thing that happened, and what it did to physical stock."""

    id: int
    workflow: str
    occurred_at: float  # virtual seconds since the scenario start
    plant: str
    deltas: dict[StockKey, Decimal] = field(default_factory=dict)
    sent_at: float = -1.0  # when its first message left the source


class Truth:
    """Physical stock and work in progress, advanced by physical events only."""

    def __init__(self) -> None:
        self.stock: dict[StockKey, Decimal] = defaultdict(lambda: ZERO)
        self._lots: dict[StockKey, dict[str, Decimal]] = defaultdict(dict)
        self.open_orders: dict[str, str] = {}  # work order -> product
        self.events = 0

    def event(self, workflow: str, at: float, plant: str) -> PhysicalEvent:
        self.events += 1
        return PhysicalEvent(self.events, workflow, at, plant)

    def move(
        self, event: PhysicalEvent, key: StockKey, qty: Decimal, lot: str | None = None
    ) -> None:
        """Add `qty` (negative to take) at `key`, recorded on the event."""
        qty = quantity(qty)
        self.stock[key] += qty
        event.deltas[key] = event.deltas.get(key, ZERO) + qty
        if lot is not None:
            lots = self._lots[key]
            lots[lot] = lots.get(lot, ZERO) + qty
            if lots[lot] == ZERO:
                del lots[lot]

    def fullest_lot(self, key: StockKey) -> tuple[str | None, Decimal]:
        """The lot with the most stock at `key` (the one the floor picks), and its quantity."""
        lots = self._lots.get(key)
        if not lots:
            return None, ZERO
        lot = min(lots, key=lambda name: (-lots[name], name))  # ties: the first by name
        return lot, lots[lot]

    def on_hand(self, key: StockKey) -> Decimal:
        return self.stock.get(key, ZERO)
