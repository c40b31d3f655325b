"""The offices around the floor: engineering (PLM master data, ECOs that the MES adopts with a
lag) and finance (month-end period close)."""

from __future__ import annotations

from datetime import datetime

from integration import BomReleased, EcoReleased, ItemCreated, PeriodClosed, SourceSystem
from sim.model.calendar import DAY
from sim.model.world import World

__all__ = ["Engineering", "Finance"]

HQ = "HQ"  # PLM and finance report for the whole network
WEEK = 7 * DAY


class Engineering:
    """Releases the catalogue at the start, then ECOs; remembers when the MES adopts each."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._adopted_at: dict[tuple[str, str], float] = {}
        self._previous: dict[tuple[str, str], str] = {}
        self._eco_count = 0

    def start(self) -> None:
        self._release_catalogue()
        if self.world.scenario.edge_cases.ecos_per_week > 0:
            self.world.env.process(self._ecos())

    def _release_catalogue(self) -> None:
        world = self.world
        plm = world.reporter(HQ, SourceSystem.PLM)
        for item_id in sorted(world.catalogue.items):
            event = self._event("item")
            plm.report(event, ItemCreated(item=world.catalogue.items[item_id]), f"ITM-{item_id}")
        for (item_id, revision), bom in sorted(world.catalogue.boms.items()):
            event = self._event("bom_release")
            message = BomReleased(bom=bom, routing=world.catalogue.routings[item_id])
            plm.report(event, message, f"BOM-{item_id}-{revision}", f"PLM:{item_id}")

    def _event(self, workflow: str):
        return self.world.new_event(workflow, HQ)

    def _ecos(self):
        world = self.world
        rng = world.streams["plm:eco"]
        rate = world.scenario.edge_cases.ecos_per_week / WEEK
        lag = world.scenario.edge_cases.eco_adoption_lag.total_seconds()
        products = world.catalogue.products
        plm = world.reporter(HQ, SourceSystem.PLM)
        while True:
            yield world.env.timeout(rng.expovariate(rate))
            if not world.producing:
                return
            product = products[rng.randrange(len(products))]
            old = world.catalogue.revision[product]
            bom = world.catalogue.revise(product, rng, world.at(world.env.now))
            self._adopted_at[(product, bom.revision)] = world.env.now + lag
            self._previous[(product, bom.revision)] = old
            open_orders = sum(1 for p in world.truth.open_orders.values() if p == product)
            world.measures.cover("eco_open_order", open_orders)
            released = self._event("bom_release")
            message = BomReleased(bom=bom, routing=world.catalogue.routings[product])
            plm.report(released, message, f"BOM-{product}-{bom.revision}", f"PLM:{product}")
            eco = self._event("eco")
            costs = world.catalogue.new_standard_costs(product)
            world.measures.costed(product, costs)
            self._eco_count += 1
            number = f"ECO-{self._eco_count:06d}"
            message = EcoReleased(
                eco=number,
                item=product,
                from_revision=old,
                to_revision=bom.revision,
                effective_from=world.at(world.env.now),
                new_standard_costs=costs,
            )
            plm.report(eco, message, number, f"PLM:{product}")

    def mes_revision(self, product: str, order_revision: str, counted: bool = True) -> str:
        """The revision the MES reports for an order: the order's own once the MES has adopted
        it, the one before it during the adoption lag (a stale-revision backflush)."""
        key = (product, order_revision)
        if self.world.env.now >= self._adopted_at.get(key, 0.0):
            return order_revision
        if counted:
            self.world.measures.cover("stale_revision")
        return self._previous[key]


class Finance:
    """Closes each plant's month shortly after midnight on the first; events of the old month
    that arrive later post late."""

    def __init__(self, world: World) -> None:
        self.world = world

    def start(self) -> None:
        if self.world.scenario.edge_cases.period_close:
            self.world.env.process(self._closes())

    def _closes(self):
        world = self.world
        lag = world.scenario.edge_cases.close_lag.total_seconds()
        finance = world.reporter(HQ, SourceSystem.FINANCE)
        for boundary in _month_starts(world.scenario.start, world.scenario.horizon.total_seconds()):
            at = (boundary - world.scenario.start).total_seconds() + lag
            yield world.env.timeout(max(0.0, at - world.env.now))
            if not world.producing:  # the close would fall after the horizon
                return
            period = _previous_month(boundary)
            for plant in world.catalogue.plant_ids:
                event = world.new_event("period_close", plant)
                message = PeriodClosed(plant=plant, period=period)
                finance.report(event, message, f"CLOSE-{plant}-{period}")
            world.measures.cover("period_close")


def _month_starts(start: datetime, horizon_s: float) -> list[datetime]:
    starts, year, month = [], start.year, start.month
    while True:
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        boundary = start.replace(
            year=year, month=month, day=1, hour=0, minute=0, second=0, microsecond=0
        )
        if (boundary - start).total_seconds() >= horizon_s:
            return starts
        starts.append(boundary)


def _previous_month(boundary: datetime) -> str:
    year, month = (
        (boundary.year - 1, 12) if boundary.month == 1 else (boundary.year, boundary.month - 1)
    )
    return f"{year:04d}-{month:02d}"
