"""Quality control at receiving: a received lot is put on hold with the probability
`edge_cases.quality_hold_rate`, and released when an operator's `quality` fix asks for it,
or at the heal phase. The lots on hold are `World.held_lots`.

QC inspects what the books have received: a lot is held once its receipt has posted (looked
for every `LOOK` seconds). QC works in the MES, one of the two sources authorised for
`QualityHold` (the WMS posts with the receipt delay, which a release must not wait for). A
lot's hold and release are one stream, so the core applies them in order whatever the pipes
do to them.

The hold is a flag in the systems, not a tag on the pallet: the floor is not told in time and
keeps drawing on the lot, so the truth moves while the core refuses each confirmation naming
it (LOT_ON_HOLD). Drift shows those open dead letters until the release and a replay post
them (README, Operations and governance)."""

from __future__ import annotations

from integration import QualityHold, SourceSystem
from sim.model.truth import PhysicalEvent
from sim.model.world import World

__all__ = ["LOOK", "LotKey", "inspect", "release", "release_all"]

LotKey = tuple[str, str, str]  # (plant, item, lot)
LOOK = 60.0  # seconds between QC's looks at whether a held lot's receipt has posted


def inspect(world: World, receipt: PhysicalEvent, item: str, lot: str | None) -> None:
    """A lot just received: on hold with the scenario's probability, once its receipt has
    posted."""
    rate = world.scenario.edge_cases.quality_hold_rate
    if lot is None or not rate:
        return
    if world.streams[f"plant:{receipt.plant}:quality"].random() < rate:
        world.env.process(_hold(world, receipt, (receipt.plant, item, lot)))


def release(world: World, key: LotKey) -> PhysicalEvent | None:
    """Release a held lot; the release's event (None if the lot was not held)."""
    if key not in world.held_lots:
        return None
    world.held_lots.discard(key)
    return _report(world, key, released=True)


def release_all(world: World) -> None:
    """Quality's review ends (the heal phase): every held lot is released."""
    for key in sorted(world.held_lots):
        release(world, key)


def _hold(world: World, receipt: PhysicalEvent, key: LotKey):
    while world.measures.applied(receipt) == 0:
        if not world.producing:
            return  # never in the books before the horizon: nothing for QC to hold
        yield world.env.timeout(LOOK)
    world.held_lots.add(key)
    world.measures.cover("quality_hold")
    _report(world, key, released=False)


def _report(world: World, key: LotKey, released: bool) -> PhysicalEvent:
    plant, item, lot = key
    event = world.new_event("quality_release" if released else "quality_hold", plant)
    message = QualityHold(plant=plant, item=item, lot=lot, released=released)
    number = f"{'QR' if released else 'QH'}-{plant}-{item}-{lot}"
    world.reporter(plant, SourceSystem.MES).report(event, message, number, f"QC:{plant}:{lot}")
    return event
