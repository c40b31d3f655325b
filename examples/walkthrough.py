"""A short scripted day at a wheel plant, run through the integration core (`make demo`).

Engineering releases a wheel BOM, the ERP releases a work order, the warehouse receives parts,
and the MES reports an operation — twice, as a retry after a timeout — then a confirmation that
overtakes its predecessor, scrap, and the finished-goods receipt. The ERP closes the order.
Every outcome is printed, then the trial balance and the reconciliation checks. The ledger is
a SQLite file you can open and audit with plain SQL.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from itertools import count
from pathlib import Path

from integration import (
    BomLine,
    BomReleased,
    BomRevision,
    Core,
    CoreSettings,
    Envelope,
    FinishedGoodsReceived,
    GoodsReceived,
    Item,
    ItemCreated,
    ItemType,
    Location,
    ManualClock,
    Operation,
    OperationCompleted,
    Plant,
    Routing,
    ScrapDeclared,
    SourceSystem,
    WorkOrderClosed,
    WorkOrderReleased,
    open_store,
)

START = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
PLANT = Plant(id="LYON", currency="EUR", timezone="Europe/Paris")
SETTINGS = CoreSettings(
    plants=(PLANT,),
    locations=(Location(id="STORES", plant="LYON"), Location(id="DOCK", plant="LYON")),
)
WHEEL = BomRevision(
    item="WHEEL-700C",
    revision="B",
    effective_from=START - timedelta(days=7),
    plants=("LYON",),
    lines=(
        BomLine(component="RIM-700C", qty_per=D(1), uom="EA", operation_seq=10),
        BomLine(
            component="SPOKE-290", qty_per=D(32), uom="EA", scrap_factor=D("0.02"), operation_seq=10
        ),
        BomLine(component="HUB-F", qty_per=D(1), uom="EA", operation_seq=20),
    ),
)
ROUTING = Routing(
    item="WHEEL-700C",
    revision="B",
    operations=(
        Operation(
            seq=10,
            work_centre="LACING",
            run_hours_per_unit=D("0.25"),
            labour_rate=D(32),
            overhead_rate=D(18),
            backflush_point=True,
        ),
        Operation(
            seq=20,
            work_centre="TRUING",
            run_hours_per_unit=D("0.1"),
            labour_rate=D(32),
            overhead_rate=D(25),
            backflush_point=True,
        ),
    ),
)
COSTS = {
    "RIM-700C": ("raw", "18.00"),
    "SPOKE-290": ("raw", "0.15"),
    "HUB-F": ("raw", "24.00"),
    "WHEEL-700C": ("finished", "68.00"),
}


class Messages:
    """Envelopes with ids, sources and an advancing business clock."""

    def __init__(self) -> None:
        self._n = count(1)
        self.at = START

    def __call__(
        self, source: SourceSystem, message, stream=None, seq=None, minutes: int = 5
    ) -> Envelope:
        n = next(self._n)
        self.at += timedelta(minutes=minutes)
        return Envelope(
            message_id=f"msg-{n:03d}",
            idempotency_key=f"{source.value}-{n:03d}",
            source_system=source,
            stream=stream,
            source_seq=seq,
            occurred_at=self.at,
            sent_at=self.at,
            message=message,
        )


def script(m: Messages) -> list[tuple[str, Envelope]]:
    """The day's deliveries in arrival order: (what happens, the envelope delivered)."""
    mes = "MES:WO-4711"

    def confirm(seq: int, op: int, good: str, scrap: str = "0", hours: str = "0") -> Envelope:
        return m(
            SourceSystem.MES,
            OperationCompleted(
                work_order="WO-4711",
                operation_seq=op,
                good_qty=D(good),
                scrap_qty=D(scrap),
                uom="EA",
                labour_hours=D(hours),
                backflush_location="STORES",
            ),
            mes,
            seq,
        )

    day = [
        (
            "PLM creates item",
            m(
                SourceSystem.PLM,
                ItemCreated(
                    item=Item(
                        id=item,
                        base_uom="EA",
                        type=ItemType(kind),
                        standard_costs={"LYON": D(cost)},
                    )
                ),
            ),
        )
        for item, (kind, cost) in COSTS.items()
    ]
    day.append(
        ("PLM releases the wheel BOM", m(SourceSystem.PLM, BomReleased(bom=WHEEL, routing=ROUTING)))
    )
    day.append(
        (
            "ERP releases WO-4711 for 20",
            m(
                SourceSystem.ERP,
                WorkOrderReleased(
                    work_order="WO-4711",
                    plant="LYON",
                    item="WHEEL-700C",
                    qty=D(20),
                    uom="EA",
                    bom_revision="B",
                ),
            ),
        )
    )
    for item, qty, price in (
        ("RIM-700C", 25, "18.40"),
        ("SPOKE-290", 800, "0.14"),
        ("HUB-F", 25, "24.00"),
    ):
        day.append(
            (
                f"WMS receives {item}",
                m(
                    SourceSystem.WMS,
                    GoodsReceived(
                        plant="LYON",
                        item=item,
                        qty=D(qty),
                        uom="EA",
                        location="STORES",
                        purchase_order="PO-88",
                        supplier="ACME",
                        unit_price=D(price),
                    ),
                ),
            )
        )
    lacing = confirm(1, 10, "20", "1", hours="5.5")
    day += [("MES confirms lacing", lacing), ("MES retries it after a timeout", lacing)]
    second, third = confirm(2, 20, "12", hours="1.2"), confirm(3, 20, "8", hours="0.8")
    day += [("MES confirmation #3 overtakes #2", third), ("MES confirmation #2 arrives", second)]
    day.append(
        (
            "MES declares scrap at truing",
            m(
                SourceSystem.MES,
                ScrapDeclared(work_order="WO-4711", operation_seq=20, qty=D(1), uom="EA"),
                mes,
                4,
            ),
        )
    )
    day.append(
        (
            "MES receives 19 wheels",
            m(
                SourceSystem.MES,
                FinishedGoodsReceived(work_order="WO-4711", qty=D(19), uom="EA", location="DOCK"),
                mes,
                5,
            ),
        )
    )
    day.append(("ERP closes WO-4711", m(SourceSystem.ERP, WorkOrderClosed(work_order="WO-4711"))))
    return day


def describe(outcome) -> str:
    text = outcome.status.value
    if outcome.code:
        text += f" {outcome.code.value}"
    if outcome.entry_ids:
        text += f" entries {list(outcome.entry_ids)}"
    if outcome.original:
        text += f" (original: {outcome.original.status.value} {list(outcome.original.entry_ids)})"
    for released in outcome.released:
        text += f"; released {released.message_id}: {released.status.value}"
    return text


def main(ledger: Path) -> int:
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.unlink(missing_ok=True)
    clock = ManualClock(START)
    core = Core(SETTINGS, open_store(ledger), clock)
    messages = Messages()
    for label, envelope in script(messages):
        clock.set(max(clock.now(), envelope.occurred_at))
        print(f"{envelope.message_id}  {label:<36} -> {describe(core.submit(envelope))}")
    print("\nTrial balance (debit +, credit -):")
    for (plant, account, currency), balance in core.account_balances().items():
        print(f"  {plant}  {account:<36} {balance:>12} {currency}")
    result = core.reconcile()
    verdict = "all invariants hold" if result.ok else f"{len(result.findings)} findings"
    print(f"\nReconciliation over {result.entries_checked} entries: {verdict}")
    print(f"Ledger: {ledger}  (sqlite3 {ledger} 'SELECT * FROM journal_line')")
    core.close()
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "reports/walkthrough/ledger.db")))
