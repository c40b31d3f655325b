"""How a core is set up: the plant network it serves and the policies it applies."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import Field, model_validator

from integration.envelope import SourceSystem
from integration.master import Frozen, Location, Plant, UomConversion
from integration.messages import MESSAGE_TYPES

__all__ = ["NegativeStockPolicy", "CoreSettings", "DEFAULT_AUTHORISATION"]


class NegativeStockPolicy(StrEnum):
    ALLOW = "allow"
    BLOCK = "block"


# Who owns which message. MES reports execution but never posts to the GL directly: the core
# (the ERP's posting logic) turns its events into entries. FINANCE alone closes periods.
DEFAULT_AUTHORISATION: dict[SourceSystem, tuple[str, ...]] = {
    SourceSystem.PLM: ("ItemCreated", "BomReleased", "EcoReleased"),
    SourceSystem.ERP: (
        "WorkOrderReleased",
        "WorkOrderClosed",
        "GoodsReceived",
        "SubcontractShipped",
    ),
    SourceSystem.MES: (
        "MaterialIssued",
        "OperationCompleted",
        "ScrapDeclared",
        "ByProductReported",
        "FinishedGoodsReceived",
        "MachineEvent",
        "QualityHold",
    ),
    SourceSystem.WMS: (
        "GoodsReceived",
        "MaterialIssued",
        "FinishedGoodsReceived",
        "InventoryTransferred",
        "StockAdjusted",
        "SubcontractShipped",
        "SubcontractReceived",
        "QualityHold",
    ),
    SourceSystem.SUPPLIER: ("AsnReceived",),
    SourceSystem.FINANCE: ("PeriodClosed",),
}


class CoreSettings(Frozen):
    """The plant network and policies. `idempotency` and `sequencing` exist to be switched off
    only in negative-control experiments that prove a harness can see the failures they cause."""

    plants: tuple[Plant, ...] = Field(min_length=1)
    locations: tuple[Location, ...] = ()
    uom_conversions: tuple[UomConversion, ...] = ()
    idempotency: bool = True
    sequencing: bool = True
    hold_timeout: timedelta = timedelta(hours=1)
    negative_stock: NegativeStockPolicy = NegativeStockPolicy.ALLOW
    over_completion_tolerance: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] = Decimal(
        "0.05"
    )
    authorisation: dict[SourceSystem, tuple[str, ...]] = Field(
        default_factory=lambda: dict(DEFAULT_AUTHORISATION)
    )

    @model_validator(mode="after")
    def _consistent(self) -> CoreSettings:
        plant_ids = {plant.id for plant in self.plants}
        for location in self.locations:
            if location.plant not in plant_ids:
                raise ValueError(f"location {location.id} names unknown plant {location.plant}")
        for types in self.authorisation.values():
            unknown = sorted(set(types) - set(MESSAGE_TYPES))
            if unknown:
                raise ValueError(f"authorisation names unknown message types {unknown}")
        return self
