"""Validation checks shared by the posting rules. Each check records a `Problem` with its code
and returns what it looked up (or None), so a rule reports every problem of a message at once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from integration.envelope import Envelope, SourceSystem
from integration.errors import ErrorCode, MessageRejected, Problem
from integration.master import BomRevision, BomStatus, Item, Location, Operation
from integration.money import QTY_PLACES, quantity
from integration.settings import CoreSettings
from integration.state import BookState, WorkOrderState

__all__ = ["Checks", "Sender", "authorise"]


class Checks:
    """Collects problems while a rule looks things up; `raise_if_any` ends validation."""

    def __init__(self, state: BookState) -> None:
        self.state = state
        self.problems: list[Problem] = []

    def fail(self, code: ErrorCode, message: str, field: str = "") -> None:
        self.problems.append(Problem(code, message, field))

    def raise_if_any(self) -> None:
        if self.problems:
            raise MessageRejected(self.problems)

    def plant(self, plant: str, field: str = "plant") -> bool:
        if plant in self.state.plants:
            return True
        self.fail(ErrorCode.UNKNOWN_PLANT, f"unknown plant {plant}", field)
        return False

    def item(self, item: str, field: str = "item", plant: str | None = None) -> Item | None:
        found = self.state.items.get(item)
        if found is None:
            self.fail(ErrorCode.UNKNOWN_ITEM, f"unknown item {item}", field)
            return None
        if plant is not None and plant not in found.standard_costs:
            self.fail(
                ErrorCode.PLANT_NOT_APPLICABLE,
                f"item {item} has no standard cost in plant {plant}",
                field,
            )
            return None
        return found

    def location(self, plant: str, location: str, field: str = "location") -> Location | None:
        found = self.state.location(plant, location)
        if found is None:
            self.fail(ErrorCode.UNKNOWN_LOCATION, f"unknown location {location} in {plant}", field)
        return found

    def base_qty(
        self, item: Item | None, qty: Decimal, uom: str, field: str = "uom", *, ratio=False
    ) -> Decimal:
        """`qty` in the item's base UoM; zero (and a problem) when it cannot be converted.

        A quantity (not a `ratio` such as a BOM line's quantity per unit) that is not zero
        but converts to less than the ledger's precision is refused: it would post nothing."""
        if item is None:
            return qty
        converted = self.state.to_base(item.id, qty, uom)
        if converted is None:
            self.fail(
                ErrorCode.UOM_NO_CONVERSION,
                f"no conversion from {uom} to {item.base_uom} for {item.id}",
                field,
            )
            return Decimal(0)
        if qty and not ratio and not quantity(converted):
            self.fail(
                ErrorCode.INVALID_QUANTITY,
                f"{qty} {uom} is 0 {item.base_uom} at {QTY_PLACES} decimal places",
                field,
            )
        return converted

    def lot(
        self,
        item: Item | None,
        lot: str | None,
        plant: str,
        field: str = "lot",
        *,
        held_allowed: bool = False,
    ) -> str:
        """The lot key for the stock sub-ledger ('' for items not lot-controlled); a lot on
        quality hold is refused unless `held_allowed` (counting or writing off a held lot)."""
        if item is None:
            return lot or ""
        if item.lot_controlled and not lot:
            self.fail(ErrorCode.LOT_REQUIRED, f"item {item.id} is lot-controlled", field)
        if lot and not held_allowed and (plant, item.id, lot) in self.state.lots_on_hold:
            self.fail(ErrorCode.LOT_ON_HOLD, f"lot {lot} of {item.id} is on quality hold", field)
        return lot or ""

    def work_order(self, work_order: str, field: str = "work_order") -> WorkOrderState | None:
        found = self.state.work_orders.get(work_order)
        if found is not None:
            return found
        if work_order in self.state.closed_orders:
            self.fail(ErrorCode.WORK_ORDER_CLOSED, f"work order {work_order} is closed", field)
        else:
            self.fail(ErrorCode.WORK_ORDER_UNKNOWN, f"unknown work order {work_order}", field)
        return None

    def operation(
        self, order: WorkOrderState, seq: int, field: str = "operation_seq"
    ) -> Operation | None:
        found = order.routing.operation(seq)
        if found is None:
            self.fail(
                ErrorCode.OPERATION_UNKNOWN,
                f"operation {seq} is not on {order.id}'s routing",
                field,
            )
        return found

    def usable_revision(
        self, item: str, revision: str, plant: str, moment: datetime, field: str
    ) -> BomRevision | None:
        """A BOM revision that is released, effective at `moment` and applicable to `plant`."""
        bom = self.state.bom(item, revision)
        if bom is None:
            self.fail(ErrorCode.REVISION_UNKNOWN, f"{item} has no revision {revision}", field)
            return None
        if bom.status is not BomStatus.RELEASED:
            self.fail(
                ErrorCode.REVISION_NOT_RELEASED,
                f"{item} revision {revision} is {bom.status.value}",
                field,
            )
            return None
        if not bom.effective_at(moment):
            self.fail(
                ErrorCode.REVISION_NOT_EFFECTIVE,
                f"{item} revision {revision} is not effective at {moment.isoformat()}",
                field,
            )
            return None
        if plant not in bom.plants:
            self.fail(
                ErrorCode.PLANT_NOT_APPLICABLE,
                f"{item} revision {revision} excludes {plant}",
                field,
            )
            return None
        return bom

    def within_tolerance(self, done: Decimal, ordered: Decimal, what: str, field: str) -> None:
        limit = ordered * (1 + self.state.settings.over_completion_tolerance)
        if done > limit:
            self.fail(
                ErrorCode.OVER_COMPLETION,
                f"{what} {done} exceeds the order quantity {ordered} beyond tolerance",
                field,
            )


@dataclass(frozen=True, slots=True)
class Sender:
    """Who an authenticated channel says is sending: one source system, optionally allowed
    only some of the message types that source owns."""

    source: SourceSystem
    message_types: frozenset[str] | None = None


def authorise(
    settings: CoreSettings, envelope: Envelope, sender: Sender | None = None
) -> list[Problem]:
    """A source may only send the message types it owns (MES never posts to the GL itself),
    and an authenticated sender only as itself."""
    if sender is not None and envelope.source_system is not sender.source:
        return [
            Problem(
                ErrorCode.UNAUTHORISED_SOURCE,
                f"authenticated as {sender.source.value}, not {envelope.source_system.value}",
                "source_system",
            )
        ]
    allowed = settings.authorisation.get(envelope.source_system, ())
    if sender is not None and sender.message_types is not None:
        allowed = tuple(t for t in allowed if t in sender.message_types)
    if envelope.message_type in allowed:
        return []
    return [
        Problem(
            ErrorCode.UNAUTHORISED_SOURCE,
            f"{envelope.source_system.value} may not send {envelope.message_type}",
            "source_system",
        )
    ]
