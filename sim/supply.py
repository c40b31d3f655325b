"""A plant's stores: opening stock, a supplier that replaces what the floor used each cycle,
and a subcontractor that gets components and sends assemblies back."""

from __future__ import annotations

import math
from decimal import Decimal

from integration import GoodsReceived, SourceSystem, SubcontractReceived, SubcontractShipped
from sim.catalogue import STORES, SUBCONTRACTOR, TwinLine
from sim.truth import PhysicalEvent, quantity
from sim.world import World

__all__ = ["Supply"]

ERP, WMS = SourceSystem.ERP, SourceSystem.WMS


class Supply:
    """Receipts from the supplier and the subcontractor for one plant."""

    def __init__(self, world: World, plant: str) -> None:
        self.world = world
        self.id = plant
        self._used: dict[str, Decimal] = {}
        self._receipts = 0

    def start(self) -> None:
        self.world.env.process(self._replenishment())
        if self.world.catalogue.subassemblies.get(self.id):
            self.world.env.process(self._subcontracting())

    def used(self, item: str, qty: Decimal) -> None:
        """The floor (or a shipment) took `qty` of `item` from the stores."""
        self._used[item] = self._used.get(item, Decimal(0)) + qty

    def _event(self, workflow: str) -> PhysicalEvent:
        return self.world.new_event(workflow, self.id)

    # --- supply ----------------------------------------------------------------------------------
    def _daily_use(self) -> dict[str, Decimal]:
        """Expected component use per day, from demand and the plant BOMs."""
        world = self.world
        demand = world.scenario.demand
        per_product = Decimal(str(demand.orders_per_day / len(world.catalogue.products)))
        lot = Decimal(demand.lot_size_min + demand.lot_size_max) / 2
        use: dict[str, Decimal] = {}
        for product in world.catalogue.products:
            for line in world.catalogue.plant_bom(
                product, world.catalogue.revision[product], self.id
            ):
                for item in filter(None, (line.component, line.alternate)):
                    use[item] = use.get(item, Decimal(0)) + per_product * lot * (line.qty_per + 1)
        for subassembly in world.catalogue.subassemblies.get(self.id, ()):
            for line in world.catalogue.plant_bom(subassembly, "A", self.id):
                use[line.component] = use.get(line.component, Decimal(0)) + 40 * line.qty_per
        return use

    def _replenishment(self):
        """Opening stock, then each cycle the supplier replaces what the floor used."""
        world = self.world
        rng = world.streams[f"plant:{self.id}:supplier"]
        cover = Decimal(str(world.scenario.edge_cases.cover_days))
        for item, daily in sorted(self._daily_use().items()):
            self._receive(item, Decimal(math.ceil(daily * cover)), rng)
        interval = world.scenario.edge_cases.supplier_interval.total_seconds()
        while True:
            yield world.env.timeout(interval)
            if not world.producing:
                return
            used, self._used = self._used, {}
            for item, qty in sorted(used.items()):
                if qty > 0:
                    self._receive(item, Decimal(math.ceil(qty)), rng)

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

    def _subcontracting(self):
        """Ship components for a batch, get the assemblies back half a cycle later."""
        world = self.world
        interval = world.scenario.edge_cases.subcontract_interval.total_seconds()
        batch, cycle = Decimal(20), 0
        while True:
            yield world.env.timeout(interval / 2)
            if not world.producing:
                return
            cycle += 1
            for subassembly in world.catalogue.subassemblies[self.id]:
                lines = world.catalogue.plant_bom(subassembly, "A", self.id)
                order = f"SC-{self.id}-{cycle:05d}"
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
        self.used(item, qty)
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
