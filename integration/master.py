"""Canonical master data (ISA-95 / B2MML nouns): items, plants, locations, BOMs and routings."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from integration.money import LEDGER_LIMIT, quantity
from integration.text import PLAIN_PATTERN

__all__ = [
    "Frozen",
    "Text",
    "Code",
    "Seq",
    "Timestamp",
    "EARLIEST",
    "LATEST",
    "INT64_MAX",
    "Qty",
    "PositiveQty",
    "QtyChange",
    "Ratio",
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

# Text is what every store can hold: no NUL, no unpaired surrogate (SCHEMA_INVALID otherwise,
# worded by `integration.text.text_refusal`).
Text = Annotated[str, Field(pattern=PLAIN_PATTERN)]
Code = Annotated[Text, Field(min_length=1, max_length=64)]

# Integers a store's BIGINT holds; JSON integers only (no "5", no 5.0).
INT64_MAX = 2**63 - 1
Seq = Annotated[int, Field(ge=1, le=INT64_MAX, strict=True)]

# Business times: ISO-8601 text with a zone (no Unix numbers), inside a window that stays a
# valid date after conversion to any plant's zone.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_WELL_INSIDE_YEARS = (EARLIEST.year + 1, LATEST.year - 2)


# Validation context for envelopes read back from a ledger: they were judged when they arrived,
# perhaps by an older build with looser reading rules, and rebuilding the books must not refuse
# what the ledger already holds. The strict forms, the time window and the precision floor are
# for what arrives, not for what is stored.
STORED = {"stored": True}


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def _in_window(moment: datetime, info: ValidationInfo) -> datetime:
    if _WELL_INSIDE_YEARS[0] <= moment.year <= _WELL_INSIDE_YEARS[1]:
        return moment  # no zone offset (under a day) takes it out: no aware comparison
    if not _stored(info) and not EARLIEST <= moment < LATEST:
        raise PydanticCustomError(
            "datetime_out_of_range",
            "Input should be at or after 1900-01-01T00:00:00Z and before 9000-01-01T00:00:00Z",
        )
    return moment


# ISO-8601 with a date, a time and a zone; a datetime object (Python callers) passes as it is.
_ISO_MOMENT = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})"
)


def _iso_text(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, str) and _ISO_MOMENT.fullmatch(value) is not None:
        return value
    if not (isinstance(value, datetime) or _stored(info)):
        raise PydanticCustomError(
            "datetime_type", "Input should be ISO-8601 text with a date, a time and a zone"
        )
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_text), AfterValidator(_in_window)]

# Decimal text is a JSON number's form ("12.5", "1e-3"): no padding, sign or other spelling.
# Infinities and NaN get through to `allow_inf_nan`, which refuses them with its own error.
_DECIMAL_TEXT = re.compile(
    r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?|[+-]?(?i:inf|infinity|s?nan)"
)


def _decimal_text(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str) or _DECIMAL_TEXT.fullmatch(value) is not None:
        return value
    if _stored(info):
        return value.strip()
    raise PydanticCustomError(
        "decimal_parsing", "Input should be a number or decimal text without padding"
    )


_SIX_PLACES = Decimal("0.000001")  # a quantity at least this far from zero does not round to 0


def _not_below_precision(value: Decimal, info: ValidationInfo) -> Decimal:
    """A quantity that is not zero but rounds to zero at the ledger's six places would post
    nothing: refused as INVALID_QUANTITY, as zero is where zero is not allowed."""
    near_zero = -_SIX_PLACES < value < _SIX_PLACES
    if near_zero and value and not quantity(value) and not _stored(info):
        raise PydanticCustomError(
            "quantity_below_precision", "Input should not round to 0 at six decimal places"
        )
    return value


_STRICT = BeforeValidator(_decimal_text)  # after the bounds, so they stay decimal constraints
_PRECISION = AfterValidator(_not_below_precision)

# Quantities and amounts are finite and at most the ledger's range: a larger value is refused
# when the payload is read (AMOUNT_OUT_OF_RANGE), before any arithmetic on it.
Qty = Annotated[Decimal, Field(ge=0, le=LEDGER_LIMIT, allow_inf_nan=False), _STRICT, _PRECISION]
PositiveQty = Annotated[
    Decimal, Field(gt=0, le=LEDGER_LIMIT, allow_inf_nan=False), _STRICT, _PRECISION
]


def _not_zero(value: Decimal, info: ValidationInfo) -> Decimal:
    """A change of zero changes nothing: refused as INVALID_QUANTITY."""
    if not value and not _stored(info):
        raise PydanticCustomError("quantity_zero", "Input should not be 0")
    return value


# A signed change of a quantity (a stock adjustment): not zero, within the ledger's range.
QtyChange = Annotated[
    Decimal,
    Field(ge=-LEDGER_LIMIT, le=LEDGER_LIMIT, allow_inf_nan=False),
    _STRICT,
    _PRECISION,
    AfterValidator(_not_zero),
]
# A ratio (quantity per unit, conversion factor) may be finer than the ledger's precision.
Ratio = Annotated[Decimal, Field(gt=0, le=LEDGER_LIMIT, allow_inf_nan=False), _STRICT]
Money = Annotated[Decimal, Field(ge=0, le=LEDGER_LIMIT, allow_inf_nan=False), _STRICT]


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
    factor: Ratio
    item: Code | None = None


class Item(Frozen):
    id: Code
    description: Text = ""
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
    priority: Seq
    qty_per: Ratio | None = None


class BomLine(Frozen):
    component: Code
    qty_per: Ratio
    uom: Code
    scrap_factor: Annotated[Decimal, Field(ge=0, lt=1, allow_inf_nan=False), _STRICT] = Decimal(0)
    phantom: bool = False
    alternates: tuple[Alternate, ...] = ()
    backflush: bool = True
    operation_seq: Seq = 10


class OverlaySubstitute(Frozen):
    kind: Literal["substitute"] = "substitute"
    component: Code
    replacement: Code


class OverlayQuantity(Frozen):
    kind: Literal["quantity"] = "quantity"
    component: Code
    qty_per: Ratio


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
    effective_from: Timestamp
    effective_to: Timestamp | None = None
    plants: tuple[Code, ...]
    lines: tuple[BomLine, ...]
    overlays: tuple[PlantOverlay, ...] = ()

    def effective_at(self, moment: datetime) -> bool:
        return self.effective_from <= moment and (
            self.effective_to is None or moment < self.effective_to
        )


class Operation(Frozen):
    seq: Seq
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
