"""Canonical master data (ISA-95 / B2MML nouns): items, plants, locations, BOMs and routings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from integration.money import LEDGER_LIMIT

__all__ = [
    "Frozen",
    "Qty",
    "PositiveQty",
    "Money",
    "ItemType",
    "LocationKind",
    "BomStatus",
    "Item",
    "UomConversion",
    "Plant",
    "Location",
    "Alternate",
    "BomLine",
    "OverlaySubstitute",
    "OverlayQuantity",
    "OverlayAdd",
    "OverlayRemove",
    "OverlayChange",
    "PlantOverlay",
    "BomRevision",
    "Operation",
    "Routing",
]

# Quantities and amounts are finite and at most the ledger's range: a larger value is refused
# when the payload is read (AMOUNT_OUT_OF_RANGE), before any arithmetic on it.
Qty = Annotated[Decimal, Field(ge=0, le=LEDGER_LIMIT, allow_inf_nan=False)]
PositiveQty = Annotated[Decimal, Field(gt=0, le=LEDGER_LIMIT, allow_inf_nan=False)]
Money = Annotated[Decimal, Field(ge=0, le=LEDGER_LIMIT, allow_inf_nan=False)]
Code = Annotated[str, Field(min_length=1, max_length=64)]


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown IANA time zone {name!r}") from error
    return name


# A plant's periods are months in its zone: a zone the database does not know is refused when
# the settings are read, not at the first posting.
TimeZoneName = Annotated[str, AfterValidator(_known_zone)]


class Frozen(BaseModel):
    """Base of every canonical model: immutable and strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ItemType(StrEnum):
    RAW = "raw"
    SEMI = "semi"
    FINISHED = "finished"
    BYPRODUCT = "byproduct"
    PHANTOM = "phantom"


class LocationKind(StrEnum):
    STORES = "stores"
    SHOP_FLOOR = "shop_floor"
    SUBCONTRACTOR = "subcontractor"


class BomStatus(StrEnum):
    DRAFT = "draft"
    RELEASED = "released"
    OBSOLETE = "obsolete"


class UomConversion(Frozen):
    """`1 from_uom = factor × to_uom`; item-specific when `item` is set."""

    from_uom: Code
    to_uom: Code
    factor: PositiveQty
    item: Code | None = None


class Item(Frozen):
    id: Code
    description: str = ""
    base_uom: Code
    type: ItemType
    lot_controlled: bool = False
    standard_costs: dict[Code, Money] = Field(default_factory=dict)
    conversions: tuple[UomConversion, ...] = ()


class Plant(Frozen):
    id: Code
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    timezone: TimeZoneName = "UTC"


class Location(Frozen):
    id: Code
    plant: Code
    kind: LocationKind = LocationKind.STORES


class Alternate(Frozen):
    item: Code
    priority: int = Field(ge=1)
    qty_per: PositiveQty | None = None


class BomLine(Frozen):
    component: Code
    qty_per: PositiveQty
    uom: Code
    scrap_factor: Annotated[Decimal, Field(ge=0, lt=1, allow_inf_nan=False)] = Decimal(0)
    phantom: bool = False
    alternates: tuple[Alternate, ...] = ()
    backflush: bool = True
    operation_seq: int = Field(default=10, ge=1)


class OverlaySubstitute(Frozen):
    kind: Literal["substitute"] = "substitute"
    component: Code
    replacement: Code


class OverlayQuantity(Frozen):
    kind: Literal["quantity"] = "quantity"
    component: Code
    qty_per: PositiveQty


class OverlayAdd(Frozen):
    kind: Literal["add"] = "add"
    line: BomLine


class OverlayRemove(Frozen):
    kind: Literal["remove"] = "remove"
    component: Code


OverlayChange = Annotated[
    OverlaySubstitute | OverlayQuantity | OverlayAdd | OverlayRemove, Field(discriminator="kind")
]


class PlantOverlay(Frozen):
    """Local changes one plant makes to the global template."""

    plant: Code
    changes: tuple[OverlayChange, ...]


class BomRevision(Frozen):
    """A global BOM template; `overlays` resolve it to a plant BOM (see `integration.bom`)."""

    item: Code
    revision: Code
    status: BomStatus = BomStatus.RELEASED
    effective_from: AwareDatetime
    effective_to: AwareDatetime | None = None
    plants: tuple[Code, ...]
    lines: tuple[BomLine, ...]
    overlays: tuple[PlantOverlay, ...] = ()

    def effective_at(self, moment: datetime) -> bool:
        return self.effective_from <= moment and (
            self.effective_to is None or moment < self.effective_to
        )


class Operation(Frozen):
    seq: int = Field(ge=1)
    work_centre: Code
    setup_hours: Qty = Decimal(0)
    run_hours_per_unit: Qty = Decimal(0)
    labour_rate: Money = Decimal(0)
    overhead_rate: Money = Decimal(0)
    backflush_point: bool = False


class Routing(Frozen):
    item: Code
    revision: Code
    operations: tuple[Operation, ...] = Field(min_length=1)

    def operation(self, seq: int) -> Operation | None:
        for op in self.operations:
            if op.seq == seq:
                return op
        return None
