"""Posting rules of work orders: release, issue, confirmation with backflush, scrap, by-products,
finished goods and close (standard costing; the WIP account carries each order's actuals)."""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import NamedTuple

from integration.bom import ResolvedLine, resolve_plant_bom
from integration.envelope import Envelope
from integration.errors import ErrorCode, MessageRejected
from integration.ledger import Account, inventory_account
from integration.messages import (
    ByProductReported,
    FinishedGoodsReceived,
    MaterialIssued,
    OperationCompleted,
    ScrapDeclared,
    WorkOrderClosed,
    WorkOrderReleased,
)
from integration.money import ZERO, quantity
from integration.rules.entry import Decision, EntryBuilder
from integration.state import BookState, WorkOrderState
from integration.validation import Checks

__all__ = [
    "work_order_released",
    "material_issued",
    "operation_completed",
    "scrap_declared",
    "by_product_reported",
    "finished_goods_received",
    "work_order_closed",
    "resolve_for_plant",
    "standard_cost_to_operation",
]


def resolve_for_plant(
    checks: Checks, item: str, revision: str, plant: str, envelope: Envelope, field: str
) -> tuple[ResolvedLine, ...] | None:
    """The plant BOM of a usable revision, every component known and costed in the plant."""
    state = checks.state
    moment = envelope.occurred_at
    bom = checks.usable_revision(item, revision, plant, moment, field)
    if bom is None:
        return None
    try:
        lines = resolve_plant_bom(
            bom, plant, lambda phantom: state.released_bom(phantom, moment), state.item_type
        )
    except MessageRejected as rejected:
        checks.problems.extend(rejected.problems)
        return None
    for line in lines:
        component = checks.item(line.component, f"{field}.{line.component}", plant=plant)
        uom_field = f"{field}.{line.component}.uom"
        checks.base_qty(component, line.qty_per, line.uom, uom_field, ratio=True)
    return state.shared(lines)


def work_order_released(state: BookState, envelope: Envelope) -> Decision:
    msg: WorkOrderReleased = envelope.message
    checks = Checks(state)
    if state.knows_order(msg.work_order):
        checks.fail(ErrorCode.WORK_ORDER_EXISTS, f"{msg.work_order} exists", "work_order")
    known_plant = checks.plant(msg.plant)
    item = checks.item(msg.item, plant=msg.plant if known_plant else None)
    qty = checks.base_qty(item, msg.qty, msg.uom)
    lines = routing = None
    if known_plant and item is not None:
        lines = resolve_for_plant(
            checks, msg.item, msg.bom_revision, msg.plant, envelope, "bom_revision"
        )
        routing = state.routings.get((msg.item, msg.bom_revision))
        if lines is not None and routing is None:
            checks.fail(ErrorCode.REVISION_UNKNOWN, "no routing for the revision", "bom_revision")
    checks.raise_if_any()
    # Names every order repeats are interned: tens of thousands of orders share one copy.
    order = WorkOrderState(
        msg.work_order,
        sys.intern(msg.plant),
        sys.intern(msg.item),
        quantity(qty),
        sys.intern(msg.bom_revision),
        lines,
        routing,
    )
    return Decision(msg.plant, (), lambda s: s.work_orders.__setitem__(order.id, order))


def _order_and_builder(checks: Checks, work_order: str) -> tuple[WorkOrderState, EntryBuilder]:
    order = checks.work_order(work_order)
    checks.raise_if_any()
    return order, EntryBuilder(checks.state, order.plant)


def material_issued(state: BookState, envelope: Envelope) -> Decision:
    msg: MaterialIssued = envelope.message
    checks = Checks(state)
    order, entry = _order_and_builder(checks, msg.work_order)
    item = checks.item(msg.component, "component", plant=order.plant)
    location = checks.location(order.plant, msg.location)
    if not order.allows(msg.component):
        checks.fail(
            ErrorCode.COMPONENT_NOT_ON_BOM,
            f"{msg.component} is not on {order.id}'s BOM or an allowed alternate",
            "component",
        )
    qty = quantity(checks.base_qty(item, msg.qty, msg.uom))
    lot = checks.lot(item, msg.lot, order.plant)
    checks.raise_if_any()
    account = inventory_account(item.type, location.kind)
    value = entry.consume(msg.component, msg.location, lot, qty, account)
    entry.line(Account.WIP, value, work_order=order.id)
    return Decision.of(entry, _consumed(order.id, {msg.component: qty}))


def _consumed(work_order: str, quantities: dict[str, Decimal]):
    def change(state: BookState) -> None:
        consumed = state.work_orders[work_order].consumed
        for item, qty in quantities.items():
            consumed[item] = consumed.get(item, ZERO) + qty

    return change


def standard_cost_to_operation(state: BookState, order: WorkOrderState, seq: int) -> Decimal:
    """Standard cost per unit of the parent accumulated up to and including operation `seq`."""
    total = ZERO
    for line in order.lines_for(seq):
        if line.operation_seq <= seq:
            per_unit = state.to_base(line.component, line.qty_per, line.uom) or ZERO
            cost = state.standard_cost(line.component, order.plant)
            total += per_unit * (1 + line.scrap_factor) * cost
    for op in order.routing.operations:
        if op.seq <= seq:
            total += op.run_hours_per_unit * (op.labour_rate + op.overhead_rate)
    return total


def _backflush_lines(order: WorkOrderState, seq: int) -> list[ResolvedLine]:
    previous = max(
        (op.seq for op in order.routing.operations if op.backflush_point and op.seq < seq),
        default=0,
    )
    return [
        line
        for line in order.lines_for(seq)
        if line.backflush and previous < line.operation_seq <= seq
    ]


class _Candidate(NamedTuple):
    """A component a backflushed line may consume: its primary, or an alternate."""

    item: str
    per_unit: Decimal  # in the item's base UoM, per unit of the parent
    field: str  # where a problem with it points


def _candidates(state: BookState, line: ResolvedLine) -> tuple[_Candidate, ...]:
    """The line's known components, the primary first, then the alternates by priority."""
    named = [(line.component, line.qty_per)]
    named += [(alt.item, alt.qty_per or line.qty_per) for alt in line.alternates]
    return tuple(
        _Candidate(item, per_unit, f"component_lots.{item}")
        for item, qty_per in named
        if item in state.items and (per_unit := state.to_base(item, qty_per, line.uom)) is not None
    )


def _backflush_plan(state: BookState, order: WorkOrderState, seq: int):
    """The lines operation `seq` backflushes, each with its candidates and scrap multiplier.

    It derives from the BOM snapshot in force and the routing, which the orders of one product
    share, so the books keep it (by their identity: the memo holds them) until new items
    arrive, since an alternate may then become known."""
    lines, routing = order.lines_for(seq), order.routing
    key = ("backflush", id(lines), id(routing), seq)
    kept = state.memo.get(key)
    if kept is None or kept[2] != len(state.items):
        plan = tuple(
            (line, _candidates(state, line), 1 + line.scrap_factor)
            for line in _backflush_lines(order, seq)
        )
        kept = state.memo[key] = (lines, routing, len(state.items), plan)
    return kept[3]


def _choose_component(entry, line, candidates, multiplier, units, location, lots):
    """The primary component, or the first alternate by priority with enough stock, as
    (item, quantity needed, field)."""
    needs = []
    for item, per_unit, field in candidates:
        need = quantity(per_unit * units * multiplier)
        if entry.available(item, location, lots.get(item, "")) >= need:
            return item, need, field
        needs.append((item, need, field))
    return needs[0] if needs else (line.component, ZERO, f"component_lots.{line.component}")


def _backflush(checks, entry, order, msg, units) -> dict[str, Decimal]:
    """Consume the operation's backflushed components; one WIP debit carries their value."""
    consumed: dict[str, Decimal] = {}
    total = ZERO
    lots = msg.component_lots
    location = checks.location(order.plant, msg.backflush_location, "backflush_location")
    for line, candidates, multiplier in _backflush_plan(checks.state, order, msg.operation_seq):
        item_id, need, field = _choose_component(
            entry, line, candidates, multiplier, units, msg.backflush_location, lots
        )
        item = checks.item(item_id, field, plant=order.plant)
        lot = checks.lot(item, lots.get(item_id), order.plant, field)
        if item is None or location is None or need == ZERO:
            continue
        account = inventory_account(item.type, location.kind)
        total += entry.consume(item_id, location.id, lot, need, account, checks.problems, field)
        consumed[item_id] = consumed.get(item_id, ZERO) + need
    entry.line(Account.WIP, total, work_order=order.id)
    return consumed


def operation_completed(state: BookState, envelope: Envelope) -> Decision:
    msg: OperationCompleted = envelope.message
    checks = Checks(state)
    order, entry = _order_and_builder(checks, msg.work_order)
    parent = state.items[order.item]
    good = quantity(checks.base_qty(parent, msg.good_qty, msg.uom))
    scrap = quantity(checks.base_qty(parent, msg.scrap_qty, msg.uom))
    seq = msg.operation_seq
    op = checks.operation(order, seq)
    if op is None:
        checks.raise_if_any()
    checks.within_tolerance(order.good_by_op.get(seq, ZERO) + good, order.qty, "good", "good_qty")
    expected = order.revision_for(seq)
    if msg.bom_revision is not None and msg.bom_revision != expected:
        checks.fail(
            ErrorCode.REVISION_MISMATCH,
            f"confirmation references revision {msg.bom_revision}; {order.id} runs {expected}",
            "bom_revision",
        )
    _absorb(entry, order.id, msg.labour_hours * op.labour_rate, Account.LABOUR_ABSORBED)
    _absorb(entry, order.id, msg.machine_hours * op.overhead_rate, Account.OVERHEAD_ABSORBED)
    consumed = _backflush(checks, entry, order, msg, good + scrap) if op.backflush_point else {}
    checks.raise_if_any()
    _scrap_lines(entry, order, seq, scrap)

    def change(s: BookState) -> None:
        wo = s.work_orders[order.id]
        wo.good_by_op[seq] = wo.good_by_op.get(seq, ZERO) + good
        wo.scrap_by_op[seq] = wo.scrap_by_op.get(seq, ZERO) + scrap
        wo.last_completed_op = max(wo.last_completed_op, seq)
        _consumed(order.id, consumed)(s)

    return Decision.of(entry, change)


def _absorb(entry: EntryBuilder, work_order: str, value: Decimal, account: Account) -> None:
    """Charge reported hours at the operation's rate to WIP, crediting the absorption account."""
    if value:
        entry.line(Account.WIP, value, work_order=work_order)
        entry.line(account, -value)


def _scrap_lines(entry: EntryBuilder, order: WorkOrderState, seq: int, scrap: Decimal) -> None:
    if not scrap:
        return
    value = scrap * standard_cost_to_operation(entry.state, order, seq)
    entry.line(Account.SCRAP_EXPENSE, value, work_order=None)
    entry.line(Account.WIP, -value, work_order=order.id)


def scrap_declared(state: BookState, envelope: Envelope) -> Decision:
    msg: ScrapDeclared = envelope.message
    checks = Checks(state)
    order, entry = _order_and_builder(checks, msg.work_order)
    qty = quantity(checks.base_qty(state.items[order.item], msg.qty, msg.uom))
    checks.operation(order, msg.operation_seq)
    checks.raise_if_any()
    _scrap_lines(entry, order, msg.operation_seq, qty)

    def change(s: BookState) -> None:
        wo = s.work_orders[order.id]
        wo.scrap_by_op[msg.operation_seq] = wo.scrap_by_op.get(msg.operation_seq, ZERO) + qty

    return Decision.of(entry, change)


def by_product_reported(state: BookState, envelope: Envelope) -> Decision:
    msg: ByProductReported = envelope.message
    checks = Checks(state)
    order, entry = _order_and_builder(checks, msg.work_order)
    item = checks.item(msg.item, plant=order.plant)
    location = checks.location(order.plant, msg.location)
    qty = quantity(checks.base_qty(item, msg.qty, msg.uom))
    lot = checks.lot(item, msg.lot, order.plant)
    checks.raise_if_any()
    value = entry.value(msg.item, qty)
    entry.move(msg.item, msg.location, lot, qty, value, inventory_account(item.type, location.kind))
    entry.line(Account.WIP, -value, work_order=order.id)
    return Decision.of(entry)


def finished_goods_received(state: BookState, envelope: Envelope) -> Decision:
    msg: FinishedGoodsReceived = envelope.message
    checks = Checks(state)
    order, entry = _order_and_builder(checks, msg.work_order)
    item = state.items[order.item]
    location = checks.location(order.plant, msg.location)
    qty = quantity(checks.base_qty(item, msg.qty, msg.uom))
    lot = checks.lot(item, msg.lot, order.plant)
    checks.within_tolerance(order.received + qty, order.qty, "received", "qty")
    checks.raise_if_any()
    value = entry.value(order.item, qty)
    entry.move(
        order.item, msg.location, lot, qty, value, inventory_account(item.type, location.kind)
    )
    entry.line(Account.WIP, -value, work_order=order.id)

    def change(s: BookState) -> None:
        s.work_orders[order.id].received += qty

    return Decision.of(entry, change)


def work_order_closed(state: BookState, envelope: Envelope) -> Decision:
    msg: WorkOrderClosed = envelope.message
    checks = Checks(state)
    order, entry = _order_and_builder(checks, msg.work_order)
    entry.line(Account.WIP, -order.wip, work_order=order.id)
    entry.balance_to(Account.PRODUCTION_VARIANCE)

    def change(s: BookState) -> None:
        s.close_order(order.id)

    return Decision.of(entry, change)
