"""A small, hand-checkable plant network and envelope builders shared by the tests.

Plant P1 (EUR). FG-1 is built on a two-operation routing from RAW-A, RAW-B (alternate RAW-B2),
the phantom PH-1 (two RAW-C each) and the lot-controlled RAW-L. Standard costs are round
numbers so every journal line in the tests can be worked out by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count
from typing import Any

from integration import (
    Alternate,
    BomLine,
    BomReleased,
    BomRevision,
    Core,
    CoreSettings,
    Envelope,
    GoodsReceived,
    Item,
    ItemCreated,
    ItemType,
    Location,
    LocationKind,
    ManualClock,
    Operation,
    OperationCompleted,
    OverlayQuantity,
    Plant,
    PlantOverlay,
    Routing,
    SourceSystem,
    StockAdjusted,
    UomConversion,
    WorkOrderReleased,
    open_store,
)

D = Decimal
START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)

SOURCE_OF = {
    "ItemCreated": SourceSystem.PLM,
    "BomReleased": SourceSystem.PLM,
    "EcoReleased": SourceSystem.PLM,
    "WorkOrderReleased": SourceSystem.ERP,
    "WorkOrderClosed": SourceSystem.ERP,
    "GoodsReceived": SourceSystem.WMS,
    "SubcontractShipped": SourceSystem.ERP,
    "SubcontractReceived": SourceSystem.WMS,
    "InventoryTransferred": SourceSystem.WMS,
    "StockAdjusted": SourceSystem.WMS,
    "PeriodClosed": SourceSystem.FINANCE,
    "AsnReceived": SourceSystem.SUPPLIER,
}

PLANTS = (
    Plant(id="P1", currency="EUR", timezone="Europe/Berlin"),
    Plant(id="P2", currency="USD", timezone="America/Chicago"),
)
LOCATIONS = (
    Location(id="STORES", plant="P1"),
    Location(id="LINE", plant="P1", kind=LocationKind.SHOP_FLOOR),
    Location(id="FG", plant="P1"),
    Location(id="SUB", plant="P1", kind=LocationKind.SUBCONTRACTOR),
    Location(id="STORES", plant="P2"),
)


def settings(**overrides: Any) -> CoreSettings:
    base = dict(
        plants=PLANTS,
        locations=LOCATIONS,
        uom_conversions=(UomConversion(from_uom="BOX", to_uom="EA", factor=D(10)),),
    )
    return CoreSettings(**{**base, **overrides})


def item(id: str, type: ItemType, cost: str, uom: str = "EA", **kw: Any) -> Item:
    return Item(id=id, base_uom=uom, type=type, standard_costs={"P1": D(cost)}, **kw)


ITEMS = (
    item("RAW-A", ItemType.RAW, "2.00"),
    item(
        "RAW-B",
        ItemType.RAW,
        "5.00",
        "KG",
        conversions=(UomConversion(from_uom="G", to_uom="KG", factor=D("0.001")),),
    ),
    item("RAW-B2", ItemType.RAW, "5.50", "KG"),
    item("RAW-C", ItemType.RAW, "0.50"),
    item("RAW-L", ItemType.RAW, "1.25", lot_controlled=True),
    item("PH-1", ItemType.PHANTOM, "0"),
    item("FG-1", ItemType.FINISHED, "40.00"),
    item("BY-1", ItemType.BYPRODUCT, "0.10"),
    item("SEMI-S", ItemType.SEMI, "20.00"),
)

FG_BOM = BomRevision(
    item="FG-1",
    revision="A",
    effective_from=START - timedelta(days=30),
    plants=("P1",),
    lines=(
        BomLine(component="RAW-A", qty_per=D(2), uom="EA", operation_seq=10),
        BomLine(component="RAW-L", qty_per=D(1), uom="EA", operation_seq=10),
        BomLine(
            component="RAW-B",
            qty_per=D("0.5"),
            uom="KG",
            scrap_factor=D("0.1"),
            operation_seq=20,
            alternates=(Alternate(item="RAW-B2", priority=1),),
        ),
        BomLine(component="PH-1", qty_per=D(1), uom="EA", phantom=True, operation_seq=20),
    ),
)
FG_ROUTING = Routing(
    item="FG-1",
    revision="A",
    operations=(
        Operation(
            seq=10,
            work_centre="CUT",
            run_hours_per_unit=D("0.1"),
            labour_rate=D(30),
            overhead_rate=D(20),
            backflush_point=True,
        ),
        Operation(
            seq=20,
            work_centre="ASM",
            run_hours_per_unit=D("0.2"),
            labour_rate=D(30),
            overhead_rate=D(40),
            backflush_point=True,
        ),
    ),
)
PHANTOM_BOM = BomRevision(
    item="PH-1",
    revision="1",
    effective_from=START - timedelta(days=30),
    plants=("P1",),
    lines=(BomLine(component="RAW-C", qty_per=D(2), uom="EA"),),
)
PHANTOM_ROUTING = Routing(
    item="PH-1", revision="1", operations=(Operation(seq=10, work_centre="NONE"),)
)
SEMI_BOM = BomRevision(
    item="SEMI-S",
    revision="1",
    effective_from=START - timedelta(days=30),
    plants=("P1",),
    lines=(BomLine(component="RAW-A", qty_per=D(3), uom="EA"),),
    overlays=(
        PlantOverlay(plant="P1", changes=(OverlayQuantity(component="RAW-A", qty_per=D(4)),)),
    ),
)
SEMI_ROUTING = Routing(
    item="SEMI-S", revision="1", operations=(Operation(seq=10, work_centre="SUBCON"),)
)


class Envelopes:
    """Builds envelopes with deterministic ids, the right source and a moving business time."""

    def __init__(self, start: datetime = START) -> None:
        self._ids = count(1)
        self.now = start

    def __call__(
        self,
        message: Any,
        *,
        source: SourceSystem | None = None,
        stream: str | None = None,
        seq: int | None = None,
        occurred_at: datetime | None = None,
        message_id: str | None = None,
        key: str | None = None,
    ) -> Envelope:
        n = next(self._ids)
        source = source or SOURCE_OF.get(message.type, SourceSystem.MES)
        moment = occurred_at or self.now
        return Envelope(
            message_id=message_id or f"m-{n}",
            idempotency_key=key or f"k-{n}",
            source_system=source,
            stream=stream,
            source_seq=seq,
            occurred_at=moment,
            sent_at=moment,
            message=message,
        )


def master_data(envelopes: Envelopes) -> list[Envelope]:
    """Items, BOMs and routings of the test network, in dependency order."""
    return [
        *(envelopes(ItemCreated(item=it)) for it in ITEMS),
        envelopes(BomReleased(bom=PHANTOM_BOM, routing=PHANTOM_ROUTING)),
        envelopes(BomReleased(bom=FG_BOM, routing=FG_ROUTING)),
        envelopes(BomReleased(bom=SEMI_BOM, routing=SEMI_ROUTING)),
    ]


def receipt(qty: str = "5", **fields: Any) -> GoodsReceived:
    """A goods receipt of RAW-A into STORES at P1 on PO-1; `fields` change any of it."""
    return GoodsReceived(
        **{
            "plant": "P1",
            "item": "RAW-A",
            "qty": D(qty),
            "uom": "EA",
            "location": "STORES",
            "purchase_order": "PO-1",
            "supplier": "SUP-1",
            "unit_price": D("2.10"),
            **fields,
        }
    )


def adjustment(qty: str = "-2", **fields: Any) -> StockAdjusted:
    """A count adjustment of RAW-A at STORES in P1 (a write-off of 2 unless `qty` says
    otherwise); `fields` change any of it."""
    return StockAdjusted(
        **{
            "plant": "P1",
            "item": "RAW-A",
            "location": "STORES",
            "qty": D(qty),
            "uom": "EA",
            "reason": "count",
            "count_id": "CNT-1",
            **fields,
        }
    )


def release(envelopes: Envelopes, work_order: str = "WO-1", qty: str = "10") -> Envelope:
    return envelopes(
        WorkOrderReleased(
            work_order=work_order, plant="P1", item="FG-1", qty=D(qty), uom="EA", bom_revision="A"
        )
    )


def confirm(
    envelopes: Envelopes, good: str = "1", seq: int | None = None, work_order: str = "WO-1", **kw
) -> Envelope:
    """An MES confirmation of operation 10 of `work_order`, backflushing lot L1 of RAW-L;
    with `seq`, on the work order's stream."""
    return envelopes(
        OperationCompleted(
            work_order=work_order,
            operation_seq=10,
            good_qty=D(good),
            uom="EA",
            backflush_location="LINE",
            component_lots={"RAW-L": "L1"},
        ),
        stream=f"MES:{work_order}" if seq else None,
        seq=seq,
        **kw,
    )


def new_core(path: str = ":memory:", **overrides: Any) -> tuple[Core, Envelopes, ManualClock]:
    """A core with the test master data posted."""
    clock = ManualClock(START)
    core = Core(settings(**overrides), open_store(path), clock)
    envelopes = Envelopes()
    for envelope in master_data(envelopes):
        outcome = core.submit(envelope)
        assert outcome.status.value == "POSTED", outcome
    return core, envelopes, clock


def book_state(envelopes: list[Envelope], **overrides: Any):
    """The pure book state after applying `envelopes` (no store), as the core rebuilds it."""
    from integration.rules import decide
    from integration.state import BookState

    state = BookState(settings(**overrides))
    for envelope in envelopes:
        decide(state, envelope).apply_to(state)
    return state
