"""The benchmarks' plant network and realistic shop-floor mix, as envelope JSON text.

Used by core_throughput.py (submitted in process) and service_throughput.py (posted over HTTP),
so both measure the same work:

* master data: one plant (P1, EUR) with stores, a shop-floor line location and a finished-goods
  location; a finished good FG-100 on a one-operation routing whose completion backflushes 5
  components, plus one component issued by hand;
* setup (untimed, grouped by sender in this order): the items and the BOM + routing (PLM), the
  purchase receipts that put the stock for the whole run on hand (WMS) and the work-order
  releases (ERP);
* timed (MES): a material issue, an operation completion that backflushes the 5 components and
  a finished-goods receipt, in that rhythm, 48 messages per work order.

Deterministic: the same master data and messages on every run; no seed. Self-contained: it
builds its own plant network rather than importing the test builders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from integration import (
    BomLine,
    BomReleased,
    BomRevision,
    CoreSettings,
    Envelope,
    FinishedGoodsReceived,
    GoodsReceived,
    Item,
    ItemCreated,
    ItemType,
    Location,
    LocationKind,
    MaterialIssued,
    Operation,
    OperationCompleted,
    Plant,
    Routing,
    SourceSystem,
    WorkOrderReleased,
)

D = Decimal
START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
PLANT = "P1"
FINISHED = "FG-100"
REVISION = "A"
BACKFLUSH_OP = 10
CYCLES_PER_WORK_ORDER = 16  # issue + completion + receipt: 48 messages per work order
MIX = ("MaterialIssued", "OperationCompleted", "FinishedGoodsReceived")

# The five backflushed components (item, base UoM, qty per FG, scrap factor, standard cost).
BACKFLUSHED = (
    ("RM-STEEL", "KG", D("0.75"), D("0.02"), D("3.20")),
    ("RM-BOLT", "EA", D("8"), D(0), D("0.05")),
    ("RM-NUT", "EA", D("8"), D(0), D("0.03")),
    ("RM-PAINT", "L", D("0.2"), D("0.05"), D("12.50")),
    ("RM-LABEL", "EA", D("1"), D(0), D("0.10")),
)
# Issued by hand (not backflushed): what the MaterialIssued messages carry.
ISSUED = ("RM-HOUSING", "EA", D("1"), D(0), D("7.40"))
FINISHED_COST = D("40.00")


def build_settings() -> CoreSettings:
    return CoreSettings(
        plants=(Plant(id=PLANT, currency="EUR", timezone="Europe/Berlin"),),
        locations=(
            Location(id="STORES", plant=PLANT),
            Location(id="LINE", plant=PLANT, kind=LocationKind.SHOP_FLOOR),
            Location(id="FG", plant=PLANT),
        ),
    )


class _Envelopes:
    """Envelopes as JSON text, with deterministic ids and a business time moving 1 s each."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, message, source: SourceSystem) -> str:
        self.n += 1
        moment = START + timedelta(seconds=self.n)
        return Envelope(
            message_id=f"msg-{self.n:08d}",
            idempotency_key=f"{source.value}-{self.n:08d}",
            correlation_id=f"bench-{self.n}",
            source_system=source,
            occurred_at=moment,
            sent_at=moment,
            message=message,
        ).model_dump_json()


@dataclass(frozen=True)
class Workload:
    setup: list[tuple[SourceSystem, list[str]]]  # untimed, in order, grouped by sender
    timed: list[str]  # the mix, as JSON text (MES)
    kinds: list[str]  # message type of each timed message
    work_order_of: list[int]  # index of the work order of each timed message
    work_orders: int

    @property
    def setup_messages(self) -> list[str]:
        """The setup envelopes in posting order."""
        return [raw for _source, bodies in self.setup for raw in bodies]

    @property
    def setup_count(self) -> int:
        return sum(len(bodies) for _source, bodies in self.setup)


def build_workload(messages: int) -> Workload:
    envelope = _Envelopes()  # numbers every envelope in the order they are built
    cycles = -(-messages // len(MIX))
    work_orders = -(-cycles // CYCLES_PER_WORK_ORDER)
    plm = [envelope(message, SourceSystem.PLM) for message in _master_data()]
    # stock for the whole run, received up front: the backflush never goes negative
    wms = [envelope(receipt, SourceSystem.WMS) for receipt in _stock_for(cycles)]
    erp = [envelope(_release(w), SourceSystem.ERP) for w in range(work_orders)]
    timed, kinds, owners = [], [], []
    for n in range(messages):
        w = n // len(MIX) // CYCLES_PER_WORK_ORDER
        kind = MIX[n % len(MIX)]
        timed.append(envelope(_timed_message(kind, _wo(w)), SourceSystem.MES))
        kinds.append(kind)
        owners.append(w)
    setup = [(SourceSystem.PLM, plm), (SourceSystem.WMS, wms), (SourceSystem.ERP, erp)]
    return Workload(setup, timed, kinds, owners, work_orders)


def build_receipts(messages: int, senders: list[SourceSystem]) -> Workload:
    """Purchase receipts of the issued item into stores as the timed part (setup: the master
    data), message `n` sent by `senders[n]` (the WMS and the ERP may both send receipts).
    Each receipt is its own "work order", so the in-flight slots take them round robin."""
    envelope = _Envelopes()
    plm = [envelope(message, SourceSystem.PLM) for message in _master_data()]
    item, uom, _q, _s, price = ISSUED
    timed = [
        envelope(
            GoodsReceived(
                plant=PLANT,
                item=item,
                qty=D(1),
                uom=uom,
                location="STORES",
                purchase_order=f"PO-R{n}",
                supplier="SUP-2",
                unit_price=price,
            ),
            senders[n],
        )
        for n in range(messages)
    ]
    kinds = ["GoodsReceived"] * messages
    return Workload([(SourceSystem.PLM, plm)], timed, kinds, list(range(messages)), messages)


def mix_shape(workload: Workload) -> dict:
    """The figures of the mix both benchmarks report (after their own `by_type`)."""
    return {
        "backflushed_components": len(BACKFLUSHED),
        "work_orders": workload.work_orders,
        "messages_per_work_order": CYCLES_PER_WORK_ORDER * len(MIX),
        "setup_messages_untimed": workload.setup_count,
    }


def _master_data() -> list:
    """The items, then the BOM and routing of the finished good."""
    items = [
        Item(
            id=FINISHED,
            base_uom="EA",
            type=ItemType.FINISHED,
            standard_costs={PLANT: FINISHED_COST},
        ),
        *(
            Item(id=i, base_uom=u, type=ItemType.RAW, standard_costs={PLANT: c})
            for i, u, _q, _s, c in (*BACKFLUSHED, ISSUED)
        ),
    ]
    lines = (
        *(
            BomLine(component=i, qty_per=q, uom=u, scrap_factor=s, operation_seq=BACKFLUSH_OP)
            for i, u, q, s, _c in BACKFLUSHED
        ),
        BomLine(
            component=ISSUED[0],
            qty_per=ISSUED[2],
            uom=ISSUED[1],
            backflush=False,
            operation_seq=BACKFLUSH_OP,
        ),
    )
    bom = BomRevision(
        item=FINISHED,
        revision=REVISION,
        effective_from=START - timedelta(days=30),
        plants=(PLANT,),
        lines=lines,
    )
    routing = Routing(
        item=FINISHED,
        revision=REVISION,
        operations=(
            Operation(
                seq=BACKFLUSH_OP,
                work_centre="ASSY",
                run_hours_per_unit=D("0.1"),
                labour_rate=D(30),
                overhead_rate=D(20),
                backflush_point=True,
            ),
        ),
    )
    return [*(ItemCreated(item=it) for it in items), BomReleased(bom=bom, routing=routing)]


def _stock_for(units: int) -> list[GoodsReceived]:
    """Purchase receipts for `units` finished units: the backflushed components on the line,
    the issued one in stores."""

    def receipt(item, uom, qty, location, order, supplier, price) -> GoodsReceived:
        return GoodsReceived(
            plant=PLANT,
            item=item,
            qty=qty,
            uom=uom,
            location=location,
            purchase_order=order,
            supplier=supplier,
            unit_price=price,
        )

    receipts = [
        receipt(i, u, (q * units * (1 + s)).quantize(D(1)) + 1, "LINE", "PO-1", "SUP-1", c)
        for i, u, q, s, c in BACKFLUSHED
    ]
    item, uom, _q, _s, price = ISSUED
    receipts.append(receipt(item, uom, D(units + 1), "STORES", "PO-2", "SUP-2", price))
    return receipts


def _release(w: int) -> WorkOrderReleased:
    return WorkOrderReleased(
        work_order=_wo(w),
        plant=PLANT,
        item=FINISHED,
        qty=D(CYCLES_PER_WORK_ORDER),
        uom="EA",
        bom_revision=REVISION,
    )


def _timed_message(kind: str, wo: str):
    if kind == "MaterialIssued":
        return MaterialIssued(
            work_order=wo, component=ISSUED[0], qty=ISSUED[2], uom=ISSUED[1], location="STORES"
        )
    if kind == "OperationCompleted":
        return OperationCompleted(
            work_order=wo,
            operation_seq=BACKFLUSH_OP,
            good_qty=D(1),
            uom="EA",
            labour_hours=D("0.1"),
            machine_hours=D("0.1"),
            partial=True,
            bom_revision=REVISION,
            backflush_location="LINE",
        )
    return FinishedGoodsReceived(work_order=wo, qty=D(1), uom="EA", location="FG")


def _wo(index: int) -> str:
    return f"WO-{index + 1:06d}"
