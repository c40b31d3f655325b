"""Posting rules of stock outside work orders: purchase receipts, transfers, subcontracting,
stock adjustments."""

from __future__ import annotations

from decimal import Decimal

from integration.envelope import Envelope
from integration.errors import ErrorCode
from integration.ledger import Account, inventory_account
from integration.messages import (
    AdjustmentReason,
    GoodsReceived,
    InventoryTransferred,
    StockAdjusted,
    SubcontractReceived,
    SubcontractShipped,
)
from integration.money import ZERO, quantity
from integration.rules.entry import Decision, EntryBuilder
from integration.rules.production import resolve_for_plant
from integration.state import BookState
from integration.validation import Checks

__all__ = [
    "goods_received",
    "inventory_transferred",
    "subcontract_shipped",
    "subcontract_received",
    "stock_adjusted",
]


def goods_received(state: BookState, envelope: Envelope) -> Decision:
    """Stock at standard cost, GRNI at the PO price, the difference to price variance."""
    msg: GoodsReceived = envelope.message
    checks = Checks(state)
    if not checks.plant(msg.plant):
        checks.raise_if_any()
    item = checks.item(msg.item, plant=msg.plant)
    location = checks.location(msg.plant, msg.location)
    qty = quantity(checks.base_qty(item, msg.qty, msg.uom))
    lot = checks.lot(item, msg.lot, msg.plant)
    checks.raise_if_any()
    entry = EntryBuilder(state, msg.plant)
    account = inventory_account(item.type, location.kind)
    entry.move(msg.item, msg.location, lot, qty, entry.value(msg.item, qty), account)
    entry.line(Account.GRNI, -(msg.qty * msg.unit_price))
    entry.balance_to(Account.PURCHASE_PRICE_VARIANCE)
    return Decision.of(entry)


def _transfer(state: BookState, msg: InventoryTransferred | SubcontractShipped) -> Decision:
    checks = Checks(state)
    if not checks.plant(msg.plant):
        checks.raise_if_any()
    item = checks.item(msg.item, plant=msg.plant)
    source = checks.location(msg.plant, msg.from_location, "from_location")
    target = checks.location(msg.plant, msg.to_location, "to_location")
    qty = quantity(checks.base_qty(item, msg.qty, msg.uom))
    lot = checks.lot(item, msg.lot, msg.plant)
    checks.raise_if_any()
    entry = EntryBuilder(state, msg.plant)
    value = entry.consume(msg.item, source.id, lot, qty, inventory_account(item.type, source.kind))
    entry.move(msg.item, target.id, lot, qty, value, inventory_account(item.type, target.kind))
    return Decision.of(entry)


def inventory_transferred(state: BookState, envelope: Envelope) -> Decision:
    """A move between locations; the GL moves only when the two locations' accounts differ."""
    return _transfer(state, envelope.message)


def subcontract_shipped(state: BookState, envelope: Envelope) -> Decision:
    """Components to a subcontractor: raw materials become inventory at the subcontractor."""
    return _transfer(state, envelope.message)


def subcontract_received(state: BookState, envelope: Envelope) -> Decision:
    """Assemblies at standard; the subcontractor's components (per the plant BOM) and the
    service (GRNI at the PO price) are credited; the difference goes to subcontract variance."""
    msg: SubcontractReceived = envelope.message
    checks = Checks(state)
    if not checks.plant(msg.plant):
        checks.raise_if_any()
    item = checks.item(msg.item, plant=msg.plant)
    location = checks.location(msg.plant, msg.location)
    at_supplier = checks.location(msg.plant, msg.subcontractor_location, "subcontractor_location")
    qty = quantity(checks.base_qty(item, msg.qty, msg.uom))
    lot = checks.lot(item, msg.lot, msg.plant)
    bom = state.released_bom(msg.item, envelope.occurred_at) if item else None
    lines = (
        resolve_for_plant(checks, msg.item, bom.revision, msg.plant, envelope, "item")
        if bom
        else None
    )
    if item is not None and bom is None:
        checks.fail(ErrorCode.REVISION_NOT_EFFECTIVE, f"{msg.item} has no released BOM", "item")
    checks.raise_if_any()
    entry = EntryBuilder(state, msg.plant)
    entry.move(
        msg.item,
        location.id,
        lot,
        qty,
        entry.value(msg.item, qty),
        inventory_account(item.type, location.kind),
    )
    for line in lines:
        component = state.items[line.component]
        need = quantity(
            state.to_base(line.component, line.qty_per, line.uom) * qty * (1 + line.scrap_factor)
        )
        component_lot = checks.lot(
            component,
            msg.component_lots.get(line.component),
            msg.plant,
            f"component_lots.{line.component}",
        )
        entry.consume(
            line.component,
            at_supplier.id,
            component_lot,
            need,
            inventory_account(component.type, at_supplier.kind),
        )
    checks.raise_if_any()
    entry.line(Account.GRNI, -(msg.qty * msg.service_unit_price))
    entry.balance_to(Account.SUBCONTRACT_VARIANCE)
    return Decision.of(entry)


def stock_adjusted(state: BookState, envelope: Envelope) -> Decision:
    """A count or other correction of one stock key: the signed change at standard cost on the
    item's inventory account, against inventory adjustment.

    A write-off beyond the book quantity posts and is recorded as a stock exception, as for
    every consumption a source reports (an issue, a transfer): only an inferred backflush
    obeys `negative_stock`. A count's change was taken against the warehouse's books, so it
    still holds once the messages in flight (a receipt posted late) have arrived."""
    msg: StockAdjusted = envelope.message
    checks = Checks(state)
    if not checks.plant(msg.plant):
        checks.raise_if_any()
    item = checks.item(msg.item, plant=msg.plant)
    location = checks.location(msg.plant, msg.location)
    qty = quantity(checks.base_qty(item, msg.qty, msg.uom))
    lot = checks.lot(item, msg.lot, msg.plant, held_allowed=True)
    _signed_as_reason(checks, msg.reason, qty)
    checks.raise_if_any()
    entry = EntryBuilder(state, msg.plant)
    account = inventory_account(item.type, location.kind)
    if qty > ZERO:
        entry.move(msg.item, location.id, lot, qty, entry.value(msg.item, qty), account)
    else:
        entry.consume(msg.item, location.id, lot, -qty, account)
    entry.balance_to(Account.INVENTORY_ADJUSTMENT)
    return Decision.of(entry)


def _signed_as_reason(checks: Checks, reason: AdjustmentReason, qty: Decimal) -> None:
    """Damage only writes stock off and stock found only adds; a count or a correction may
    go either way."""
    if reason is AdjustmentReason.DAMAGE and qty > ZERO:
        checks.fail(ErrorCode.INVALID_QUANTITY, "damage can only write stock off", "qty")
    if reason is AdjustmentReason.FOUND and qty < ZERO:
        checks.fail(ErrorCode.INVALID_QUANTITY, "stock found can only add stock", "qty")
