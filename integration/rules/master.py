"""Rules of master data and period control: items, BOM releases, ECOs (with standard-cost
revaluation), period close, quality holds, and events with no financial effect."""

from __future__ import annotations

from decimal import Decimal

from integration.bom import bom_components
from integration.envelope import Envelope
from integration.errors import ErrorCode
from integration.ledger import Account, Posting
from integration.messages import (
    AsnReceived,
    BomReleased,
    EcoReleased,
    ItemCreated,
    MachineEvent,
    OpenOrderPolicy,
    PeriodClosed,
    QualityHold,
)
from integration.periods import period_end
from integration.rules.entry import Decision, EntryBuilder
from integration.rules.production import resolve_for_plant
from integration.state import BookState
from integration.validation import Checks

__all__ = [
    "item_created",
    "bom_released",
    "eco_released",
    "period_closed",
    "quality_hold",
    "no_financial_effect",
]


def item_created(state: BookState, envelope: Envelope) -> Decision:
    msg: ItemCreated = envelope.message
    checks = Checks(state)
    if msg.item.id in state.items:
        checks.fail(ErrorCode.ITEM_EXISTS, f"item {msg.item.id} exists", "item.id")
    for plant in msg.item.standard_costs:
        checks.plant(plant, f"item.standard_costs.{plant}")
    checks.raise_if_any()
    return Decision(None, (), lambda s: s.items.__setitem__(msg.item.id, msg.item))


def bom_released(state: BookState, envelope: Envelope) -> Decision:
    msg: BomReleased = envelope.message
    checks = Checks(state)
    checks.item(msg.bom.item, "bom.item")
    for component in bom_components(msg.bom):
        checks.item(component, f"bom.lines.{component}")
    for plant in msg.bom.plants:
        checks.plant(plant, "bom.plants")
    if (msg.routing.item, msg.routing.revision) != (msg.bom.item, msg.bom.revision):
        checks.fail(
            ErrorCode.SCHEMA_INVALID, "the routing is for another item or revision", "routing"
        )
    checks.raise_if_any()

    def change(s: BookState) -> None:
        s.boms[msg.bom.item][msg.bom.revision] = msg.bom
        s.routings[(msg.bom.item, msg.bom.revision)] = msg.routing

    return Decision(None, (), change)


def _revaluation(state: BookState, item: str, plant: str, new_cost: Decimal) -> Posting:
    """Revalue on-hand stock and open WIP of `item` in `plant` to `new_cost`."""
    entry = EntryBuilder(state, plant)
    delta = new_cost - state.standard_cost(item, plant)
    for key in sorted(k for k, qty in state.stock.items() if k[:2] == (plant, item) and qty):
        entry.move(
            item, key[2], key[3], Decimal(0), state.stock[key] * delta, state.stock_account(key)
        )
    for order_id in sorted(state.work_orders):
        order = state.work_orders[order_id]
        consumed = order.consumed.get(item)
        if order.plant == plant and consumed:
            entry.line(Account.WIP, consumed * delta, work_order=order_id)
    entry.balance_to(Account.REVISION_VARIANCE)
    return entry.build()


def eco_released(state: BookState, envelope: Envelope) -> Decision:
    msg: EcoReleased = envelope.message
    checks = Checks(state)
    item = checks.item(msg.item)
    if item is not None:
        for revision in (msg.from_revision, msg.to_revision):
            if state.bom(msg.item, revision) is None:
                checks.fail(
                    ErrorCode.REVISION_UNKNOWN,
                    f"{msg.item} has no revision {revision}",
                    "to_revision" if revision == msg.to_revision else "from_revision",
                )
    for plant in msg.new_standard_costs:
        if checks.plant(plant, f"new_standard_costs.{plant}") and item is not None:
            checks.item(msg.item, f"new_standard_costs.{plant}", plant=plant)
    checks.raise_if_any()
    switches = _switches(checks, state, msg, envelope)
    checks.raise_if_any()
    entries = tuple(
        (plant, posting)
        for plant in sorted(msg.new_standard_costs)
        if not (
            posting := _revaluation(state, msg.item, plant, msg.new_standard_costs[plant])
        ).is_empty
    )

    def change(s: BookState) -> None:
        costs = {**s.items[msg.item].standard_costs, **msg.new_standard_costs}
        s.items[msg.item] = s.items[msg.item].model_copy(update={"standard_costs": costs})
        for order_id, from_seq, lines in switches:
            s.work_orders[order_id].switches.append((from_seq, msg.to_revision, lines))

    return Decision(None, entries, change)


def _switches(checks, state, msg, envelope):
    """Open orders of the item that adopt the new revision from their next operation."""
    if msg.open_order_policy is not OpenOrderPolicy.SWITCH_AT_NEXT_OPERATION:
        return []
    switches = []
    for order_id in sorted(state.work_orders):
        order = state.work_orders[order_id]
        if order.item != msg.item:
            continue
        lines = resolve_for_plant(
            checks, msg.item, msg.to_revision, order.plant, envelope, "to_revision"
        )
        if lines is not None:
            switches.append((order_id, order.last_completed_op + 1, lines))
    return switches


def period_closed(state: BookState, envelope: Envelope) -> Decision:
    msg: PeriodClosed = envelope.message
    checks = Checks(state)
    end = None
    if checks.plant(msg.plant):
        end = period_end(msg.period, state.plants[msg.plant].timezone)
        if end is None:
            checks.fail(ErrorCode.SCHEMA_INVALID, f"{msg.period} is outside the calendar", "period")
    if msg.period in state.closed_periods.get(msg.plant, ()):
        checks.fail(ErrorCode.PERIOD_ALREADY_CLOSED, f"{msg.period} is closed", "period")
    checks.raise_if_any()
    return Decision(
        msg.plant, (), lambda s: s.closed_periods[msg.plant].add(msg.period), period_end=end
    )


def quality_hold(state: BookState, envelope: Envelope) -> Decision:
    msg: QualityHold = envelope.message
    checks = Checks(state)
    checks.plant(msg.plant)
    checks.item(msg.item)
    checks.raise_if_any()
    key = (msg.plant, msg.item, msg.lot)

    def change(s: BookState) -> None:
        if msg.released:
            s.lots_on_hold.discard(key)
        else:
            s.lots_on_hold.add(key)

    return Decision(msg.plant, (), change)


def no_financial_effect(state: BookState, envelope: Envelope) -> Decision:
    """Machine events and ASNs: checked against master data, recorded, never posted."""
    msg: MachineEvent | AsnReceived = envelope.message
    checks = Checks(state)
    checks.plant(msg.plant)
    for line in getattr(msg, "lines", ()):
        checks.item(line.item, f"lines.{line.item}")
    checks.raise_if_any()
    return Decision(msg.plant)
