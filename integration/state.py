"""The book state the rules read: master data, work orders, stock and periods.

It is a projection of the posted messages, rebuilt from the store by re-applying them in the
order they took effect, so it never needs tables of its own. Rules read it; only `apply` writes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import ClassVar, NamedTuple

from integration.bom import ResolvedLine
from integration.ledger import Account, Posting, inventory_account
from integration.master import BomRevision, BomStatus, Item, ItemType, Location, Plant, Routing
from integration.money import ZERO
from integration.periods import period_of
from integration.settings import CoreSettings

__all__ = ["WorkOrderState", "ClosedOrder", "OrderFigures", "BookState"]


@dataclass(slots=True)
class WorkOrderState:
    """An open work order: its BOM and routing snapshot and what has been reported so far."""

    closed: ClassVar[bool] = False
    id: str
    plant: str
    item: str
    qty: Decimal
    bom_revision: str
    lines: tuple[ResolvedLine, ...]
    routing: Routing
    # ECO switches: (first operation seq it applies from, revision, lines), oldest first.
    switches: list[tuple[int, str, tuple[ResolvedLine, ...]]] = field(default_factory=list)
    good_by_op: dict[int, Decimal] = field(default_factory=dict)
    scrap_by_op: dict[int, Decimal] = field(default_factory=dict)
    received: Decimal = ZERO
    wip: Decimal = ZERO
    consumed: dict[str, Decimal] = field(default_factory=dict)
    last_completed_op: int = 0

    def lines_for(self, operation_seq: int) -> tuple[ResolvedLine, ...]:
        """The BOM lines in force for an operation: the release snapshot or a later ECO switch."""
        lines = self.lines
        for from_seq, _revision, switched in self.switches:
            if operation_seq >= from_seq:
                lines = switched
        return lines

    def revision_for(self, operation_seq: int) -> str:
        revision = self.bom_revision
        for from_seq, switched_revision, _lines in self.switches:
            if operation_seq >= from_seq:
                revision = switched_revision
        return revision

    def allows(self, item: str) -> bool:
        """Whether `item` is on the order's BOM (the release snapshot or a later ECO switch),
        as a component or an allowed alternate."""
        for lines in (self.lines, *(switched for _seq, _revision, switched in self.switches)):
            for line in lines:
                if line.component == item:
                    return True
                if line.alternates and any(alt.item == item for alt in line.alternates):
                    return True
        return False


class OrderFigures(NamedTuple):
    """A closed order's quantities and residual WIP; operations as sorted (seq, qty) pairs."""

    qty: Decimal
    received: Decimal
    wip: Decimal
    good_by_op: tuple[tuple[int, Decimal], ...]
    scrap_by_op: tuple[tuple[int, Decimal], ...]


@dataclass(frozen=True, slots=True)
class ClosedOrder:
    """A closed work order, kept small: enough to refuse its late messages, show its status
    and reconcile its WIP. Its BOM snapshot and working state are dropped, and its figures are
    shared with every closed order that has the same, so a long horizon adds little more than
    an id per order."""

    closed: ClassVar[bool] = True
    id: str
    plant: str
    item: str
    figures: OrderFigures

    qty = property(lambda self: self.figures.qty)
    received = property(lambda self: self.figures.received)
    wip = property(lambda self: self.figures.wip)
    good_by_op = property(lambda self: self.figures.good_by_op)
    scrap_by_op = property(lambda self: self.figures.scrap_by_op)


class BookState:
    """Everything the validation and posting rules need to know, held in memory."""

    def __init__(self, settings: CoreSettings) -> None:
        self.settings = settings
        self.plants: dict[str, Plant] = {plant.id: plant for plant in settings.plants}
        self.locations: dict[tuple[str, str], Location] = {
            (loc.plant, loc.id): loc for loc in settings.locations
        }
        self.items: dict[str, Item] = {}
        self.boms: dict[str, dict[str, BomRevision]] = defaultdict(dict)
        self.routings: dict[tuple[str, str], Routing] = {}
        self.work_orders: dict[str, WorkOrderState] = {}  # open orders only
        self.closed_orders: dict[str, ClosedOrder] = {}
        self.stock: dict[tuple[str, str, str, str], Decimal] = defaultdict(lambda: ZERO)
        self.stock_value: dict[tuple[str, str, str, str], Decimal] = defaultdict(lambda: ZERO)
        self.closed_periods: dict[str, set[str]] = defaultdict(set)
        self.lots_on_hold: set[tuple[str, str, str]] = set()
        # Derived values the rules keep between messages (see rules/production.py), and one
        # tuple per distinct resolved BOM, which the orders of one snapshot share.
        self.memo: dict[tuple, tuple] = {}
        self._resolved: dict[tuple[ResolvedLine, ...], tuple[ResolvedLine, ...]] = {}
        self._figures: dict[str, OrderFigures] = {}  # by repr: Decimal('1') != Decimal('1.0')
        self._last_period: tuple[tuple[str, datetime] | None, str] = (None, "")

    # --- lookups -------------------------------------------------------------------------
    def currency(self, plant: str) -> str:
        return self.plants[plant].currency

    def period(self, plant: str, moment: datetime) -> str:
        """The accounting period of `moment` in the plant's time zone (the last answer is kept:
        a message asks for its own period more than once)."""
        key = (plant, moment)
        if key != self._last_period[0]:
            self._last_period = (key, period_of(moment, self.plants[plant].timezone))
        return self._last_period[1]

    def standard_cost(self, item: str, plant: str) -> Decimal:
        return self.items[item].standard_costs[plant]

    def item_type(self, item: str) -> ItemType | None:
        found = self.items.get(item)
        return found.type if found else None

    def bom(self, item: str, revision: str) -> BomRevision | None:
        return self.boms.get(item, {}).get(revision)

    def order(self, work_order: str) -> WorkOrderState | ClosedOrder | None:
        """The work order, open or closed; None when the books have never seen it."""
        return self.work_orders.get(work_order) or self.closed_orders.get(work_order)

    def knows_order(self, work_order: str) -> bool:
        return work_order in self.work_orders or work_order in self.closed_orders

    def released_bom(self, item: str, moment: datetime) -> BomRevision | None:
        """The latest released revision of `item` effective at `moment`."""
        candidates = [
            bom
            for bom in self.boms.get(item, {}).values()
            if bom.status is BomStatus.RELEASED and bom.effective_at(moment)
        ]
        return max(candidates, key=lambda bom: bom.effective_from, default=None)

    def to_base(self, item: str, qty: Decimal, uom: str) -> Decimal | None:
        """`qty` of `uom` in the item's base UoM, or None when no conversion exists."""
        base = self.items[item].base_uom
        if uom == base:
            return qty
        for conversion in (*self.items[item].conversions, *self.settings.uom_conversions):
            if conversion.item not in (None, item):
                continue
            if (conversion.from_uom, conversion.to_uom) == (uom, base):
                return qty * conversion.factor
            if (conversion.from_uom, conversion.to_uom) == (base, uom):
                return qty / conversion.factor
        return None

    def shared(self, lines: tuple[ResolvedLine, ...]) -> tuple[ResolvedLine, ...]:
        """`lines`, or the equal resolved BOM already held: orders of one snapshot share it."""
        return self._resolved.setdefault(lines, lines)

    def location(self, plant: str, location: str) -> Location | None:
        return self.locations.get((plant, location))

    def stock_account(self, key: tuple[str, str, str, str]) -> Account:
        """The inventory account that values one key of the stock sub-ledger."""
        plant, item, location, _lot = key
        return inventory_account(self.items[item].type, self.locations[(plant, location)].kind)

    # --- transitions ---------------------------------------------------------------------
    def apply_posting(self, posting: Posting) -> None:
        """Move stock and work-order WIP by a committed posting."""
        stock, stock_value = self.stock, self.stock_value
        for plant, item, location, lot, qty, value, _account in posting.moves:
            key = (plant, item, location, lot)
            stock[key] += qty
            stock_value[key] += value
        for line in posting.lines:
            if line.account is Account.WIP and line.work_order is not None:
                self.work_orders[line.work_order].wip += line.amount

    def close_order(self, work_order: str) -> None:
        """Move an order from the open orders to the small record of closed ones."""
        order = self.work_orders.pop(work_order)
        figures = OrderFigures(
            order.qty,
            order.received,
            order.wip,
            tuple(sorted(order.good_by_op.items())),
            tuple(sorted(order.scrap_by_op.items())),
        )
        figures = self._figures.setdefault(repr(figures), figures)
        self.closed_orders[work_order] = ClosedOrder(order.id, order.plant, order.item, figures)
