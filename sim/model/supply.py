"""A plant's stores: a supplier that tops each part up to its cover every cycle (the opening
stock is the first top-up), and a subcontractor that gets components and sends assemblies
back."""

from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal

from integration import GoodsReceived, SourceSystem, SubcontractReceived, SubcontractShipped
from sim.model import quality
from sim.model.calendar import DAY
from sim.model.catalogue import STORES, SUBCONTRACTOR, TwinLine
from sim.model.truth import PhysicalEvent, quantity
from sim.model.world import World

__all__ = ["Supply"]

ERP, WMS = SourceSystem.ERP, SourceSystem.WMS
SUBCONTRACT_BATCH = Decimal(20)


class Supply:
    """Receipts from the supplier and the subcontractor for one plant."""

    def __init__(self, world: World, plant: str) -> None:
        self.world = world
        self.id = plant
        self._receipts = 0

    def start(self) -> None:
        self.world.env.process(self._replenishment())
        if self.world.catalogue.subassemblies.get(self.id):
            self.world.env.process(self._subcontracting())

    def _event(self, workflow: str) -> PhysicalEvent:
        return self.world.new_event(workflow, self.id)

    # --- supply ----------------------------------------------------------------------------------
    def _levels(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Per part: (the order-up-to level, the most one confirmation or shipment takes),
        from demand and the plant BOMs now in force."""
        world = self.world
        demand, catalogue = world.scenario.demand, world.catalogue
        per_product = Decimal(str(demand.orders_per_day / len(catalogue.products)))
        lot = Decimal(demand.lot_size_min + demand.lot_size_max) / 2
        daily: dict[str, Decimal] = defaultdict(Decimal)
        largest: dict[str, Decimal] = defaultdict(Decimal)
        for product in catalogue.products:
            for line in catalogue.plant_bom(product, catalogue.revision[product], self.id):
                per_unit = line.qty_per * (1 + line.scrap_factor)
                for item in filter(None, (line.component, line.alternate)):
                    daily[item] += per_product * lot * per_unit
                    largest[item] = max(largest[item], per_unit * demand.lot_size_max)
        cycle = world.scenario.edge_cases.subcontract_interval.total_seconds()
        shipments_a_day = Decimal(str(DAY / (cycle / 2)))  # a batch ships every half cycle
        for subassembly in catalogue.subassemblies.get(self.id, ()):
            for line in catalogue.plant_bom(subassembly, "A", self.id):
                daily[line.component] += shipments_a_day * SUBCONTRACT_BATCH * line.qty_per
                largest[line.component] = max(
                    largest[line.component], SUBCONTRACT_BATCH * line.qty_per
                )
        cover = Decimal(str(world.scenario.edge_cases.cover_days))
        return {item: (max(daily[item] * cover, largest[item]), largest[item]) for item in daily}

    def _replenishment(self):
        """Every cycle (the first at the start) each part is topped up to its level; a
        lot-controlled part gets a lot at least as large as one confirmation takes, since
        the floor draws each part of a confirmation from a single lot."""
        world = self.world
        rng = world.streams[f"plant:{self.id}:supplier"]
        interval = world.scenario.edge_cases.supplier_interval.total_seconds()
        while world.producing:
            for item, (level, largest) in sorted(self._levels().items()):
                key = (self.id, item, STORES)
                short = level - world.truth.on_hand(key)
                if world.catalogue.items[item].lot_controlled:
                    short = max(short, largest - world.truth.fullest_lot(key)[1])
                missed = rng.random() < world.scenario.edge_cases.supplier_miss_rate
                if short > 0 and not missed:
                    self._receive(item, Decimal(math.ceil(short)), rng)
            yield world.env.timeout(interval)

    def _receive(self, item: str, qty: Decimal, rng) -> None:
        world = self.world
        event = self._event("receipt")
        self._receipts += 1
        lot = (
            f"L-{self.id}-{self._receipts:06d}"
            if world.catalogue.items[item].lot_controlled
            else None
        )
        world.truth.move(event, (self.id, item, STORES), qty, lot)
        price = world.catalogue.standard_cost(item, self.id) * Decimal(
            str(round(rng.uniform(0.95, 1.05), 2))
        )
        message = GoodsReceived(
            plant=self.id,
            item=item,
            qty=qty,
            uom="EA",
            location=STORES,
            lot=lot,
            purchase_order=f"PO-{self.id}-{self._receipts:06d}",
            supplier="SUP-1",
            unit_price=price.quantize(Decimal("0.01")),
        )
        world.reporter(self.id, WMS).report(event, message, f"GRN-{self.id}-{self._receipts}")
        quality.inspect(world, event, item, lot)

    def _subcontracting(self):
        """Every half cycle, ship components for a batch of each assembly; each batch comes
        back half a cycle after it left."""
        world = self.world
        interval = world.scenario.edge_cases.subcontract_interval.total_seconds()
        batch, cycle = SUBCONTRACT_BATCH, 0
        while True:
            yield world.env.timeout(interval / 2)
            if not world.producing:
                return
            cycle += 1
            for n, subassembly in enumerate(world.catalogue.subassemblies[self.id], start=1):
                lines = world.catalogue.plant_bom(subassembly, "A", self.id)
                order = f"SC-{self.id}-{cycle:05d}-{n}"  # one subcontract order per assembly
                needs = [(line.component, quantity(line.qty_per * batch)) for line in lines]
                if any(world.truth.on_hand((self.id, c, STORES)) < q for c, q in needs):
                    world.measures.cover("subcontract_skipped")  # nothing to ship this cycle
                    continue
                for line in lines:
                    self._ship(line.component, quantity(line.qty_per * batch), order)
                world.after(
                    interval / 2,
                    lambda s=subassembly, ls=lines, o=order: self._receive_assemblies(
                        s, ls, batch, o
                    ),
                )

    def _ship(self, item: str, qty: Decimal, order: str) -> None:
        event = self._event("subcontract_ship")
        self.world.truth.move(event, (self.id, item, STORES), -qty)
        self.world.truth.move(event, (self.id, item, SUBCONTRACTOR), qty)
        message = SubcontractShipped(
            plant=self.id,
            item=item,
            qty=qty,
            uom="EA",
            from_location=STORES,
            to_location=SUBCONTRACTOR,
            purchase_order=order,
            supplier="SUB-1",
        )
        self.world.reporter(self.id, ERP).report(event, message, f"SHP-{order}-{item}")

    def _receive_assemblies(
        self, subassembly: str, lines: list[TwinLine], batch: Decimal, order: str
    ) -> None:
        if not self.world.producing:
            return
        event = self._event("subcontract_receipt")
        for line in lines:
            self.world.truth.move(
                event, (self.id, line.component, SUBCONTRACTOR), -quantity(line.qty_per * batch)
            )
        self.world.truth.move(event, (self.id, subassembly, STORES), batch)
        self.world.measures.cover("subcontract_receipt")
        message = SubcontractReceived(
            plant=self.id,
            item=subassembly,
            qty=batch,
            uom="EA",
            location=STORES,
            subcontractor_location=SUBCONTRACTOR,
            purchase_order=order,
            supplier="SUB-1",
            service_unit_price=Decimal("4.50"),
        )
        self.world.reporter(self.id, WMS).report(event, message, f"SCR-{order}-{subassembly}")
