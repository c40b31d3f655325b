"""The plant network's master data, made up with seeded faker: items, BOMs with plant overlays,
routings, and the twin's own resolution of a plant BOM (independent of the core's)."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from faker import Faker

from integration import (
    Alternate,
    BomLine,
    BomRevision,
    CoreSettings,
    Item,
    ItemType,
    Location,
    LocationKind,
    Operation,
    OverlayQuantity,
    Plant,
    PlantOverlay,
    Routing,
)
from sim.model.streams import Streams
from sim.scenario.document import Scenario

__all__ = ["Catalogue", "TwinLine", "STORES", "FINISHED", "SUBCONTRACTOR", "BYPRODUCT"]

STORES, FINISHED, SUBCONTRACTOR = "STORES", "FG", "SUBCON"
BYPRODUCT = "BY-SWARF"
CENTS = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class TwinLine:
    """A resolved plant BOM line as the shop floor uses it."""

    component: str
    qty_per: Decimal
    scrap_factor: Decimal
    operation_seq: int
    alternate: str | None
    overlaid: bool = False  # the plant's overlay changed this line


@dataclass
class Catalogue:
    scenario: Scenario
    items: dict[str, Item] = field(default_factory=dict)
    boms: dict[tuple[str, str], BomRevision] = field(default_factory=dict)
    routings: dict[str, Routing] = field(default_factory=dict)
    revision: dict[str, str] = field(default_factory=dict)  # the released revision per product
    products: list[str] = field(default_factory=list)
    subassemblies: dict[str, list[str]] = field(default_factory=dict)  # per plant
    components: list[str] = field(default_factory=list)
    # Resolved once per (item, revision, plant): a revision never changes once made.
    _plant_boms: dict[tuple[str, str, str], tuple[TwinLine, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    @classmethod
    def generate(cls, scenario: Scenario, streams: Streams) -> Catalogue:
        """The same scenario and seed make the same catalogue."""
        rng = streams["catalogue"]
        fake = Faker()
        fake.seed_instance(rng.getrandbits(32))
        catalogue = cls(scenario)
        catalogue._make_components(rng, fake)
        catalogue._make_products(rng, fake)
        catalogue._make_subassemblies(rng, fake)
        byproduct = Item(id=BYPRODUCT, description="swarf", base_uom="KG", type=ItemType.BYPRODUCT)
        catalogue.items[BYPRODUCT] = byproduct.model_copy(
            update={"standard_costs": catalogue._per_plant(Decimal("0.40"))}
        )
        return catalogue

    # --- generation ------------------------------------------------------------------------
    @property
    def plant_ids(self) -> list[str]:
        return [plant.id for plant in self.scenario.plants]

    def _per_plant(self, cost: Decimal) -> dict[str, Decimal]:
        return {plant: cost for plant in self.plant_ids}

    def _code(self, prefix: str, words: str) -> str:
        slug = re.sub(r"[^A-Z0-9]+", "-", words.upper()).strip("-")[:20]
        return f"{prefix}-{len(self.items) + 1:03d}-{slug}"

    def _make_components(self, rng: random.Random, fake: Faker) -> None:
        spec = self.scenario.products
        for _ in range(spec.count + spec.components + 2):
            words = fake.word()
            cost = Decimal(rng.randint(50, 5000)) / 100
            item = Item(
                id=self._code("RM", words),
                description=f"{words} ({fake.company()})",
                base_uom="EA",
                type=ItemType.RAW,
                standard_costs=self._per_plant(cost),
            )
            self.items[item.id] = item
            self.components.append(item.id)

    def _lot_controlled(self, item_id: str) -> None:
        self.items[item_id] = self.items[item_id].model_copy(update={"lot_controlled": True})

    def _bom_lines(
        self, rng: random.Random, with_alternate: bool, operations: int
    ) -> list[BomLine]:
        picked = rng.sample(self.components, self.scenario.products.components)
        lines = []
        for index, component in enumerate(picked):
            alternates: tuple[Alternate, ...] = ()
            if index == 0 and with_alternate:
                spare = next(c for c in self.components if c not in picked)
                alternates = (Alternate(item=spare, priority=1),)
                self._lot_controlled(component)
                self._lot_controlled(spare)
            lines.append(
                BomLine(
                    component=component,
                    qty_per=Decimal(rng.randint(1, 4)),
                    uom="EA",
                    scrap_factor=rng.choice((Decimal(0), Decimal("0.02"), Decimal("0.05"))),
                    alternates=alternates,
                    operation_seq=10 * (index % operations + 1),
                )
            )
        return lines

    def _routing(self, item_id: str, revision: str, operations: int) -> Routing:
        centres = self.scenario.plants[0].work_centres
        run_hours = Decimal(str(self.scenario.products.run_time_per_unit.total_seconds() / 3600))
        return Routing(
            item=item_id,
            revision=revision,
            operations=tuple(
                Operation(
                    seq=10 * (n + 1),
                    work_centre=centres[n % len(centres)].id,
                    run_hours_per_unit=run_hours.quantize(Decimal("0.0001")),
                    labour_rate=Decimal(35),
                    overhead_rate=Decimal(20),
                    backflush_point=True,
                )
                for n in range(operations)
            ),
        )

    def _make_products(self, rng: random.Random, fake: Faker) -> None:
        spec = self.scenario.products
        for _ in range(spec.count):
            words = fake.catch_phrase()
            item_id = self._code("FG", words)
            lines = self._bom_lines(rng, rng.random() < spec.alternates_share, spec.operations)
            overlays: tuple[PlantOverlay, ...] = ()
            if len(self.plant_ids) > 1 and rng.random() < spec.overlay_share:
                line = rng.choice(lines)
                overlays = (
                    PlantOverlay(
                        plant=self.plant_ids[-1],
                        changes=(
                            OverlayQuantity(component=line.component, qty_per=line.qty_per + 1),
                        ),
                    ),
                )
            self._add_product(item_id, words, lines, overlays, ItemType.FINISHED, spec.operations)
            self.products.append(item_id)

    def _make_subassemblies(self, rng: random.Random, fake: Faker) -> None:
        for plant in self.plant_ids:
            self.subassemblies[plant] = []
            for _ in range(self.scenario.products.subcontracted):
                words = fake.word()
                item_id = self._code("SA", words)
                plain = [c for c in self.components if not self.items[c].lot_controlled]
                picked = rng.sample(plain, 2)
                lines = [BomLine(component=c, qty_per=Decimal(2), uom="EA") for c in picked]
                self._add_product(item_id, words, lines, (), ItemType.SEMI, 1, plants=(plant,))
                self.subassemblies[plant].append(item_id)

    def _add_product(self, item_id, words, lines, overlays, kind, operations, plants=None) -> None:
        routing = self._routing(item_id, "A", operations)
        bom = BomRevision(
            item=item_id,
            revision="A",
            effective_from=self.scenario.start - timedelta(days=365),
            plants=plants or tuple(self.plant_ids),
            lines=tuple(lines),
            overlays=overlays,
        )
        self.boms[(item_id, "A")] = bom
        self.routings[item_id] = routing
        self.revision[item_id] = "A"
        self.items[item_id] = Item(id=item_id, description=words, base_uom="EA", type=kind)
        costs = {plant: self._rolled_cost(item_id, "A", plant) for plant in bom.plants}
        self.items[item_id] = self.items[item_id].model_copy(update={"standard_costs": costs})

    def _rolled_cost(self, item_id: str, revision: str, plant: str) -> Decimal:
        material = sum(
            (
                line.qty_per * (1 + line.scrap_factor) * self.standard_cost(line.component, plant)
                for line in self.plant_bom(item_id, revision, plant)
            ),
            Decimal(0),
        )
        labour = sum(
            (
                op.run_hours_per_unit * (op.labour_rate + op.overhead_rate)
                for op in self.routings[item_id].operations
            ),
            Decimal(0),
        )
        return (material + labour).quantize(CENTS)

    # --- engineering change ----------------------------------------------------------------
    def revise(self, item_id: str, rng: random.Random, effective_from: datetime) -> BomRevision:
        """A new revision of a product: one line needs one more of its component."""
        current = self.boms[(item_id, self.revision[item_id])]
        new_revision = _next_revision(current.revision)
        changed = rng.randrange(len(current.lines))
        lines = tuple(
            line.model_copy(update={"qty_per": line.qty_per + 1}) if n == changed else line
            for n, line in enumerate(current.lines)
        )
        bom = current.model_copy(
            update={"revision": new_revision, "lines": lines, "effective_from": effective_from}
        )
        self.boms[(item_id, new_revision)] = bom
        self.routings[item_id] = self.routings[item_id].model_copy(
            update={"revision": new_revision}
        )
        self.revision[item_id] = new_revision
        return bom

    def new_standard_costs(self, item_id: str) -> dict[str, Decimal]:
        revision = self.revision[item_id]
        bom = self.boms[(item_id, revision)]
        costs = {plant: self._rolled_cost(item_id, revision, plant) for plant in bom.plants}
        self.set_standard_costs(item_id, costs)
        return costs

    def set_standard_costs(self, item_id: str, costs: dict[str, Decimal]) -> None:
        item = self.items[item_id]
        self.items[item_id] = item.model_copy(update={"standard_costs": costs})

    # --- reads -----------------------------------------------------------------------------
    def standard_cost(self, item_id: str, plant: str) -> Decimal:
        return self.items[item_id].standard_costs.get(plant, Decimal(0))

    def plant_bom(self, item_id: str, revision: str, plant: str) -> tuple[TwinLine, ...]:
        key = (item_id, revision, plant)
        if key not in self._plant_boms:
            self._plant_boms[key] = self._resolve_plant_bom(*key)
        return self._plant_boms[key]

    def _resolve_plant_bom(self, item_id: str, revision: str, plant: str) -> tuple[TwinLine, ...]:
        bom = self.boms[(item_id, revision)]
        quantity = {
            change.component: change.qty_per
            for overlay in bom.overlays
            if overlay.plant == plant
            for change in overlay.changes
            if isinstance(change, OverlayQuantity)
        }
        return tuple(
            TwinLine(
                component=line.component,
                qty_per=quantity.get(line.component, line.qty_per),
                scrap_factor=line.scrap_factor,
                operation_seq=line.operation_seq,
                alternate=line.alternates[0].item if line.alternates else None,
                overlaid=line.component in quantity,
            )
            for line in bom.lines
        )

    def core_settings(self) -> CoreSettings:
        integration = self.scenario.integration
        plants = tuple(
            Plant(id=spec.id, currency=spec.currency, timezone=spec.timezone)
            for spec in self.scenario.plants
        )
        kinds = {
            STORES: LocationKind.STORES,
            FINISHED: LocationKind.STORES,
            SUBCONTRACTOR: LocationKind.SUBCONTRACTOR,
        }
        return CoreSettings(
            plants=plants,
            locations=tuple(
                Location(id=name, plant=plant.id, kind=kind)
                for plant in plants
                for name, kind in kinds.items()
            ),
            idempotency=integration.idempotency,
            sequencing=integration.sequencing,
            hold_timeout=integration.hold_timeout,
            negative_stock=integration.negative_stock,
        )


def _next_revision(revision: str) -> str:
    """A, B, ... Z, AA, AB, ...: revisions never repeat."""
    head, last = revision[:-1], revision[-1]
    if last != "Z":
        return head + chr(ord(last) + 1)
    return (_next_revision(head) if head else "A") + "A"
