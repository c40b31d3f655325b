"""Canonical messages (past tense, OAGIS-style nouns), one pydantic model each, in one union."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal, get_args

from pydantic import Field

from integration.master import (
    BomRevision,
    Code,
    Frozen,
    Item,
    Money,
    PositiveQty,
    Qty,
    QtyChange,
    Routing,
    Seq,
    Text,
    Timestamp,
)

__all__ = [
    "OpenOrderPolicy",
    "ItemCreated",
    "BomReleased",
    "EcoReleased",
    "WorkOrderReleased",
    "MaterialIssued",
    "OperationCompleted",
    "ScrapDeclared",
    "ByProductReported",
    "FinishedGoodsReceived",
    "WorkOrderClosed",
    "GoodsReceived",
    "AsnLine",
    "AsnReceived",
    "SubcontractShipped",
    "SubcontractReceived",
    "InventoryTransferred",
    "AdjustmentReason",
    "StockAdjusted",
    "PeriodClosed",
    "MachineEvent",
    "QualityHold",
    "Message",
    "MESSAGE_TYPES",
]

Lot = Annotated[Text, Field(min_length=1, max_length=64)]
Period = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]


class OpenOrderPolicy(StrEnum):
    KEEP = "keep"
    SWITCH_AT_NEXT_OPERATION = "switch_at_next_operation"


class ItemCreated(Frozen):
    type: Literal["ItemCreated"] = "ItemCreated"
    item: Item


class BomReleased(Frozen):
    """A BOM revision (global template with plant overlays) and its routing, released by PLM."""

    type: Literal["BomReleased"] = "BomReleased"
    bom: BomRevision
    routing: Routing


class EcoReleased(Frozen):
    type: Literal["EcoReleased"] = "EcoReleased"
    eco: Code
    item: Code
    from_revision: Code
    to_revision: Code
    effective_from: Timestamp
    open_order_policy: OpenOrderPolicy = OpenOrderPolicy.KEEP
    new_standard_costs: dict[Code, Money] = Field(default_factory=dict)


class WorkOrderReleased(Frozen):
    type: Literal["WorkOrderReleased"] = "WorkOrderReleased"
    work_order: Code
    plant: Code
    item: Code
    qty: PositiveQty
    uom: Code
    bom_revision: Code


class MaterialIssued(Frozen):
    type: Literal["MaterialIssued"] = "MaterialIssued"
    work_order: Code
    component: Code
    qty: PositiveQty
    uom: Code
    location: Code
    lot: Lot | None = None


class OperationCompleted(Frozen):
    """A (possibly partial) confirmation of one operation; backflushes at a backflush point."""

    type: Literal["OperationCompleted"] = "OperationCompleted"
    work_order: Code
    operation_seq: Seq
    good_qty: Qty
    scrap_qty: Qty = Decimal(0)
    uom: Code
    labour_hours: Qty = Decimal(0)
    machine_hours: Qty = Decimal(0)
    partial: bool = False
    bom_revision: Code | None = None
    backflush_location: Code
    component_lots: dict[Code, Lot] = Field(default_factory=dict)


class ScrapDeclared(Frozen):
    type: Literal["ScrapDeclared"] = "ScrapDeclared"
    work_order: Code
    operation_seq: Seq
    qty: PositiveQty
    uom: Code
    reason: Text = ""


class ByProductReported(Frozen):
    type: Literal["ByProductReported"] = "ByProductReported"
    work_order: Code
    item: Code
    qty: PositiveQty
    uom: Code
    location: Code
    lot: Lot | None = None


class FinishedGoodsReceived(Frozen):
    type: Literal["FinishedGoodsReceived"] = "FinishedGoodsReceived"
    work_order: Code
    qty: PositiveQty
    uom: Code
    location: Code
    lot: Lot | None = None


class WorkOrderClosed(Frozen):
    type: Literal["WorkOrderClosed"] = "WorkOrderClosed"
    work_order: Code


class GoodsReceived(Frozen):
    """A purchase-order receipt: stock at standard, GRNI at the PO price."""

    type: Literal["GoodsReceived"] = "GoodsReceived"
    plant: Code
    item: Code
    qty: PositiveQty
    uom: Code
    location: Code
    lot: Lot | None = None
    purchase_order: Code
    supplier: Code
    unit_price: Money


class AsnLine(Frozen):
    item: Code
    qty: PositiveQty
    uom: Code


class AsnReceived(Frozen):
    type: Literal["AsnReceived"] = "AsnReceived"
    plant: Code
    supplier: Code
    asn: Code
    expected_at: Timestamp
    lines: tuple[AsnLine, ...] = Field(min_length=1)


class SubcontractShipped(Frozen):
    type: Literal["SubcontractShipped"] = "SubcontractShipped"
    plant: Code
    item: Code
    qty: PositiveQty
    uom: Code
    from_location: Code
    to_location: Code
    lot: Lot | None = None
    purchase_order: Code
    supplier: Code


class SubcontractReceived(Frozen):
    """Assemblies back from a subcontractor: components consumed there per the plant BOM."""

    type: Literal["SubcontractReceived"] = "SubcontractReceived"
    plant: Code
    item: Code
    qty: PositiveQty
    uom: Code
    location: Code
    lot: Lot | None = None
    subcontractor_location: Code
    purchase_order: Code
    supplier: Code
    service_unit_price: Money
    component_lots: dict[Code, Lot] = Field(default_factory=dict)


class InventoryTransferred(Frozen):
    type: Literal["InventoryTransferred"] = "InventoryTransferred"
    plant: Code
    item: Code
    qty: PositiveQty
    uom: Code
    from_location: Code
    to_location: Code
    lot: Lot | None = None


class AdjustmentReason(StrEnum):
    COUNT = "count"
    DAMAGE = "damage"
    FOUND = "found"
    CORRECTION = "correction"


class StockAdjusted(Frozen):
    """A warehouse's correction of one stock key's book quantity (a count, damage, stock found):
    `qty` is the signed change, negative to write stock off; `count_id` names the count or
    adjustment document, for audit."""

    type: Literal["StockAdjusted"] = "StockAdjusted"
    plant: Code
    item: Code
    location: Code
    lot: Lot | None = None
    qty: QtyChange
    uom: Code
    reason: AdjustmentReason
    count_id: Code


class PeriodClosed(Frozen):
    type: Literal["PeriodClosed"] = "PeriodClosed"
    plant: Code
    period: Period


class MachineEvent(Frozen):
    type: Literal["MachineEvent"] = "MachineEvent"
    plant: Code
    work_centre: Code
    state: Code
    reason: Text = ""


class QualityHold(Frozen):
    type: Literal["QualityHold"] = "QualityHold"
    plant: Code
    item: Code
    lot: Lot
    released: bool = False


Message = Annotated[
    ItemCreated
    | BomReleased
    | EcoReleased
    | WorkOrderReleased
    | MaterialIssued
    | OperationCompleted
    | ScrapDeclared
    | ByProductReported
    | FinishedGoodsReceived
    | WorkOrderClosed
    | GoodsReceived
    | AsnReceived
    | SubcontractShipped
    | SubcontractReceived
    | InventoryTransferred
    | StockAdjusted
    | PeriodClosed
    | MachineEvent
    | QualityHold,
    Field(discriminator="type"),
]

MESSAGE_TYPES: tuple[str, ...] = tuple(
    model.model_fields["type"].default for model in get_args(get_args(Message)[0])
)
