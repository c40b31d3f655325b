"""The offices around the floor: engineering (PLM master data, ECOs that the MES adopts with a
lag) and finance (month-end period close)."""

from __future__ import annotations

from datetime import datetime, timedelta

from integration import (
    BomReleased,
    EcoReleased,
    ItemCreated,
    OpenOrderPolicy,
    PeriodClosed,
    SourceSystem,
    period_end,
    period_of,
)
from sim.model.calendar import DAY
from sim.model.world import World

__all__ = ["Engineering", "Finance"]

HQ = "HQ"  # PLM and finance report for the whole network
WEEK = 7 * DAY


class Engineering:
    """Releases the catalogue at the start, then ECOs; remembers when the MES adopts each and,
    under `switch_at_next_operation`, from which operation each open order takes it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._adopted_at: dict[tuple[str, str], float] = {}
        self._previous: dict[tuple[str, str], str] = {}
        self._eco_count = 0
        self._policy = world.scenario.edge_cases.eco_open_order_policy
        self._switching = self._policy is OpenOrderPolicy.SWITCH_AT_NEXT_OPERATION
        self._progress: dict[str, int] = {}  # order -> the highest operation confirmed
        self._switches: dict[str, list[tuple[int, str]]] = {}  # order -> (from seq, revision)

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
            open_orders = [o for o, p in world.truth.open_orders.items() if p == product]
            world.measures.cover("eco_open_order", len(open_orders))
            if self._switching:
                self._switch(open_orders, bom.revision)
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
                open_order_policy=self._policy,
                new_standard_costs=costs,
            )
            plm.report(eco, message, number, f"PLM:{product}")

    def _switch(self, orders: list[str], revision: str) -> None:
        """Open orders take `revision` from the operation after the last one confirmed, as the
        core switches them from the last one it has posted."""
        for order in orders:
            from_seq = self._progress.get(order, 0) + 1
            self._switches.setdefault(order, []).append((from_seq, revision))

    def confirmed(self, order: str, seq: int) -> None:
        """The floor has confirmed (part of) operation `seq` of `order`."""
        if self._switching:
            self._progress[order] = max(self._progress.get(order, 0), seq)

    def closed(self, order: str) -> None:
        """`order` is closed: nothing of it is asked again."""
        self._progress.pop(order, None)
        self._switches.pop(order, None)

    def mes_revision(
        self, order: str, product: str, order_revision: str, seq: int, counted: bool = True
    ) -> str:
        """The revision the MES reports for operation `seq` of `order`: the order's own, or
        the one an ECO switched it to from an earlier operation; during the MES's adoption lag
        of that revision, the one before it (a stale-revision backflush)."""
        revision = order_revision
        for from_seq, switched in self._switches.get(order, ()):
            if seq >= from_seq:
                revision = switched
        key = (product, revision)
        if self.world.env.now >= self._adopted_at.get(key, 0.0):
            return revision
        if counted:
            self.world.measures.cover("stale_revision")
        return self._previous[key]


class Finance:
    """Closes each plant's month at midnight on the first in the plant's time zone, plus the
    close lag: one PeriodClosed per plant and month. Events of the old month that arrive later
    post late."""

    def __init__(self, world: World) -> None:
        self.world = world

    def start(self) -> None:
        if self.world.scenario.edge_cases.period_close:
            for plant in self.world.scenario.plants:
                self.world.env.process(self._closes(plant.id, plant.timezone))

    def _closes(self, plant: str, timezone: str):
        world = self.world
        start = world.scenario.start
        lag = world.scenario.edge_cases.close_lag
        finance = world.reporter(HQ, SourceSystem.FINANCE)
        for period, end in _month_ends(start, world.scenario.horizon, timezone):
            yield world.env.timeout(max(0.0, (end + lag - start).total_seconds() - world.env.now))
            if not world.producing:  # the close would fall after the horizon
                return
            event = world.new_event("period_close", plant)
            message = PeriodClosed(plant=plant, period=period)
            finance.report(event, message, f"CLOSE-{plant}-{period}")
            world.measures.cover("period_close")


def _month_ends(start: datetime, horizon: timedelta, timezone: str) -> list[tuple[str, datetime]]:
    """Each month (YYYY-MM) that ends in the plant's zone within `horizon` of `start`, with its
    end: the local midnight that starts the next month."""
    period, ends = period_of(start, timezone), []
    while (end := period_end(period, timezone)) is not None and end - start < horizon:
        ends.append((period, end))
        period = period_of(end, timezone)
    return ends
