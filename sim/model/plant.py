"""A plant as SimPy processes: demand releases work orders, operations run on work centres in
shifts, machines break down; the stores are kept by `sim.model.supply`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import simpy

from integration import (
    ByProductReported,
    FinishedGoodsReceived,
    MachineEvent,
    OperationCompleted,
    SourceSystem,
    WorkOrderClosed,
    WorkOrderReleased,
)
from sim.model.calendar import DAY
from sim.model.catalogue import BYPRODUCT, FINISHED, STORES, TwinLine
from sim.model.office import Engineering
from sim.model.supply import Supply
from sim.model.truth import PhysicalEvent, quantity
from sim.model.world import World
from sim.scenario.document import PlantSpec

__all__ = ["PlantModel"]

MATERIAL_RECHECK = 1800.0
ERP, MES = SourceSystem.ERP, SourceSystem.MES


@dataclass
class _WorkCentre:
    id: str
    resource: simpy.Resource
    down_until: float = 0.0


class PlantModel:
    """One plant's physical processes; every physical event is reported by its source system."""

    def __init__(self, world: World, spec: PlantSpec, engineering: Engineering) -> None:
        self.world = world
        self.spec = spec
        self.engineering = engineering
        self.id = spec.id
        self.centres = [
            _WorkCentre(wc.id, simpy.Resource(world.env, wc.capacity)) for wc in spec.work_centres
        ]
        self._orders = 0
        self._numbers: dict[str, int] = {}
        self.supply = Supply(world, spec.id)

    def start(self) -> None:
        env = self.world.env
        env.process(self._demand())
        env.process(self._shift_changes())
        self.supply.start()
        for centre, spec in zip(self.centres, self.spec.work_centres, strict=True):
            if spec.mtbf is not None:
                env.process(
                    self._breakdowns(centre, spec.mtbf.total_seconds(), spec.mttr.total_seconds())
                )

    def _number(self, kind: str) -> str:
        """The source's own business number (an MES confirmation number, say): it never
        reveals the truth's event id."""
        self._numbers[kind] = self._numbers.get(kind, 0) + 1
        return f"{kind}-{self.id}-{self._numbers[kind]:08d}"

    def _event(self, workflow: str) -> PhysicalEvent:
        return self.world.new_event(workflow, self.id)

    # --- demand and work orders --------------------------------------------------------------
    def _demand(self):
        world = self.world
        rng = world.streams[f"plant:{self.id}:demand"]
        rate = world.scenario.demand.orders_per_day / DAY
        products = world.catalogue.products
        while True:
            yield world.env.timeout(rng.expovariate(rate))
            if not world.producing:
                return
            product = products[rng.randrange(len(products))]
            qty = rng.randint(
                world.scenario.demand.lot_size_min, world.scenario.demand.lot_size_max
            )
            world.env.process(self._work_order(product, qty))

    def _work_order(self, product: str, qty: int):
        world = self.world
        self._orders += 1
        order = f"WO-{self.id}-{self._orders:07d}"
        revision = world.catalogue.revision[product]
        released = self._event("wo_release")
        world.truth.open_orders[order] = product
        message = WorkOrderReleased(
            work_order=order,
            plant=self.id,
            item=product,
            qty=Decimal(qty),
            uom="EA",
            bom_revision=revision,
        )
        world.reporter(self.id, ERP).report(released, message, f"REL-{order}", f"ERP:{order}")
        good = qty
        for index, operation in enumerate(world.catalogue.routings[product].operations):
            if good == 0:
                break
            centre = self.centres[index % len(self.centres)]
            good = yield from self._operation(order, product, revision, operation.seq, centre, good)
            if not world.producing:
                return
        if good > 0:
            yield from self._receive_finished(order, product, good)

    def _operation(self, order, product, revision, seq, centre, units):
        """Run one operation in one or more parts; returns the good units that came out."""
        world = self.world
        spec = world.scenario.products
        edge = world.scenario.edge_cases
        rng = world.streams[f"plant:{self.id}:wc:{centre.id}"]
        parts = rng.randint(2, edge.max_parts) if rng.random() < edge.partial_completion_rate else 1
        sizes = [units // parts + (1 if n < units % parts else 0) for n in range(parts)]
        good_total = 0
        with centre.resource.request() as request:
            yield request
            yield world.env.timeout(spec.setup_time.total_seconds())
            for size in (s for s in sizes if s > 0):
                yield from self._wait_until_working(centre)
                yield world.env.timeout(spec.run_time_per_unit.total_seconds() * size)
                yield from self._wait_for_material(order, product, revision, seq, size)
                if not world.producing:
                    return good_total
                scrap = 0
                if rng.random() < edge.scrap_rate:
                    scrap = min(size, max(1, round(size * rng.uniform(0.02, 0.1))))
                self._confirm(order, product, revision, seq, size - scrap, scrap, parts > 1, rng)
                good_total += size - scrap
        return good_total

    def _wait_for_material(self, order: str, product: str, revision: str, seq: int, units: int):
        """The floor cannot use parts that are not there: before it books a part it waits (the
        machine blocked) until the stores cover it, checking every half hour. Nothing yields
        between the last check and the backflush, so no other order takes the parts first."""
        world = self.world
        reported = self.engineering.mes_revision(order, product, revision, seq, counted=False)
        lines = self._lines(product, reported, seq)
        waited = False
        while not all(self._can_cover(line, self._need(line, units)) for line in lines):
            if not waited:
                world.measures.cover("material_shortage")
                waited = True
            yield world.env.timeout(MATERIAL_RECHECK)

    def _lines(self, product: str, revision: str, seq: int) -> list[TwinLine]:
        lines = self.world.catalogue.plant_bom(product, revision, self.id)
        return [line for line in lines if line.operation_seq == seq]

    @staticmethod
    def _need(line: TwinLine, units: int) -> Decimal:
        return quantity(line.qty_per * units * (1 + line.scrap_factor))

    def _can_cover(self, line: TwinLine, need: Decimal) -> bool:
        """As `_pick` chooses: a plain part from stock; a lot-controlled one from a single lot
        (one lot per part and confirmation), of the primary or else its alternate."""
        truth = self.world.truth
        if not self.world.catalogue.items[line.component].lot_controlled:
            return truth.on_hand((self.id, line.component, STORES)) >= need
        candidates = filter(None, (line.component, line.alternate))
        return any(truth.fullest_lot((self.id, item, STORES))[1] >= need for item in candidates)

    def _wait_until_working(self, centre: _WorkCentre):
        env = self.world.env
        while True:
            ready = max(env.now, centre.down_until)
            ready = self.world.calendar.next_working(ready)
            if ready <= env.now:
                return
            yield env.timeout(ready - env.now)

    def _confirm(self, order, product, revision, seq, good, scrap, partial, rng) -> None:
        world = self.world
        edge = world.scenario.edge_cases
        event = self._event("confirmation")
        reported_revision = self.engineering.mes_revision(order, product, revision, seq)
        lots = self._backflush(event, self._lines(product, reported_revision, seq), good + scrap)
        self.engineering.confirmed(order, seq)
        if lots and rng.random() < edge.missing_lot_rate:
            lots.pop(min(lots))
            world.measures.cover("missing_lot")
        if partial:
            world.measures.cover("partial_completion")
        if scrap:
            world.measures.cover("scrap")
        message = OperationCompleted(
            work_order=order,
            operation_seq=seq,
            good_qty=Decimal(good),
            scrap_qty=Decimal(scrap),
            uom="EA",
            labour_hours=self._hours(good + scrap),
            partial=partial,
            bom_revision=reported_revision,
            backflush_location=STORES,
            component_lots=lots,
        )
        mes = world.reporter(self.id, MES)
        mes.report(event, message, self._number("CONF"), f"MES:{order}", batchable=True)
        if rng.random() < edge.byproduct_rate:
            by = self._event("byproduct")
            kilos = Decimal(rng.randint(1, 20))
            world.truth.move(by, (self.id, BYPRODUCT, STORES), kilos)
            world.measures.cover("byproduct")
            message = ByProductReported(
                work_order=order, item=BYPRODUCT, qty=kilos, uom="KG", location=STORES
            )
            mes.report(by, message, self._number("BYP"), f"MES:{order}", batchable=True)

    def _hours(self, units: int) -> Decimal:
        hours = self.world.scenario.products.run_time_per_unit.total_seconds() / 3600 * units
        return Decimal(str(round(hours, 4)))

    def _backflush(self, event: PhysicalEvent, lines: list[TwinLine], units: int) -> dict[str, str]:
        """Take the operation's components from stores; lot-controlled parts from the fullest
        lot, an allowed alternate when the primary's lot cannot cover it. Returns the lots."""
        truth, lots = self.world.truth, {}
        if any(line.overlaid for line in lines):
            self.world.measures.cover("plant_overlay")
        for line in lines:
            need = self._need(line, units)
            item, lot = self._pick(line, need)
            truth.move(event, (self.id, item, STORES), -need, lot)
            if lot is not None:
                lots[item] = lot
        return lots

    def _pick(self, line: TwinLine, need: Decimal) -> tuple[str, str | None]:
        items = self.world.catalogue.items
        if not items[line.component].lot_controlled:
            return line.component, None
        lot, available = self.world.truth.fullest_lot((self.id, line.component, STORES))
        if available >= need or line.alternate is None:
            return line.component, lot or f"NOLOT-{line.component}"
        alt_lot, alt_available = self.world.truth.fullest_lot((self.id, line.alternate, STORES))
        if alt_lot is not None and alt_available >= need:
            self.world.measures.cover("lot_substitution")
            return line.alternate, alt_lot
        return line.component, lot or f"NOLOT-{line.component}"

    def _receive_finished(self, order: str, product: str, good: int):
        world = self.world
        event = self._event("fg_receipt")
        world.truth.move(event, (self.id, product, FINISHED), Decimal(good))
        message = FinishedGoodsReceived(
            work_order=order, qty=Decimal(good), uom="EA", location=FINISHED
        )
        world.reporter(self.id, MES).report(
            event, message, f"FGR-{order}", f"MES:{order}", batchable=True
        )
        yield world.env.timeout(world.scenario.demand.close_delay.total_seconds())
        if not world.producing:
            return
        closed = self._event("close")
        del world.truth.open_orders[order]
        self.engineering.closed(order)
        world.reporter(self.id, ERP).report(
            closed, WorkOrderClosed(work_order=order), f"CLO-{order}", f"ERP:{order}"
        )

    # --- shifts and machines -------------------------------------------------------------------
    def _shift_changes(self):
        world = self.world
        while world.producing:
            change = world.calendar.next_change(world.env.now)
            yield world.env.timeout(change - world.env.now)
            if world.reporter(self.id, MES).flush():
                world.measures.cover("shift_change_burst")

    def _breakdowns(self, centre: _WorkCentre, mtbf: float, mttr: float):
        world = self.world
        rng = world.streams[f"plant:{self.id}:wc:{centre.id}:breakdowns"]
        mes = world.reporter(self.id, MES)
        while world.producing:
            yield world.env.timeout(rng.expovariate(1 / mtbf))
            if not world.producing:
                return
            repair = rng.expovariate(1 / mttr)
            centre.down_until = world.env.now + repair
            down = self._event("machine")
            mes.report(
                down,
                MachineEvent(plant=self.id, work_centre=centre.id, state="DOWN"),
                self._number("MCH"),
            )
            world.measures.cover("breakdown")
            yield world.env.timeout(repair)
            if not world.producing:
                return
            up = self._event("machine")
            mes.report(
                up,
                MachineEvent(plant=self.id, work_centre=centre.id, state="UP"),
                self._number("MCH"),
            )
