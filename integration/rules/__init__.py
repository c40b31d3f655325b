"""The posting rules: `decide(state, envelope)` turns one message into a `Decision` — journal
entries, stock moves and a state change — or raises `MessageRejected` with every problem found.
Pure: it reads the book state and does no I/O."""

from __future__ import annotations

from collections.abc import Callable

from integration.envelope import Envelope
from integration.rules import inventory, master, production
from integration.rules.entry import Decision
from integration.state import BookState

__all__ = ["Decision", "decide", "RULES"]

Rule = Callable[[BookState, Envelope], Decision]

RULES: dict[str, Rule] = {
    "ItemCreated": master.item_created,
    "BomReleased": master.bom_released,
    "EcoReleased": master.eco_released,
    "PeriodClosed": master.period_closed,
    "QualityHold": master.quality_hold,
    "MachineEvent": master.no_financial_effect,
    "AsnReceived": master.no_financial_effect,
    "WorkOrderReleased": production.work_order_released,
    "MaterialIssued": production.material_issued,
    "OperationCompleted": production.operation_completed,
    "ScrapDeclared": production.scrap_declared,
    "ByProductReported": production.by_product_reported,
    "FinishedGoodsReceived": production.finished_goods_received,
    "WorkOrderClosed": production.work_order_closed,
    "GoodsReceived": inventory.goods_received,
    "InventoryTransferred": inventory.inventory_transferred,
    "StockAdjusted": inventory.stock_adjusted,
    "SubcontractShipped": inventory.subcontract_shipped,
    "SubcontractReceived": inventory.subcontract_received,
}


def decide(state: BookState, envelope: Envelope) -> Decision:
    """What `envelope` does to the books in `state`; raises `MessageRejected` if it cannot."""
    return RULES[envelope.message.type](state, envelope)
