"""Plant BOM resolution: overlays on the global template, then phantom explosion."""

from __future__ import annotations

from datetime import timedelta

import pytest

from integration import (
    BomLine,
    BomRevision,
    ErrorCode,
    ItemType,
    MessageRejected,
    OverlayAdd,
    OverlayQuantity,
    OverlayRemove,
    OverlaySubstitute,
    PlantOverlay,
)
from integration.bom import apply_overlay, resolve_plant_bom
from tests.builders import START, D


def bom(item, lines, overlays=()):
    return BomRevision(
        item=item,
        revision="1",
        effective_from=START - timedelta(days=1),
        plants=("P1", "P2"),
        lines=tuple(lines),
        overlays=tuple(overlays),
    )


def line(component, qty="1", **kw):
    return BomLine(component=component, qty_per=D(qty), uom="EA", **kw)


TEMPLATE = bom(
    "TOP",
    [line("A", "2"), line("B", "1"), line("C", "3")],
    [
        PlantOverlay(
            plant="P1",
            changes=(
                OverlaySubstitute(component="A", replacement="A-LOCAL"),
                OverlayQuantity(component="B", qty_per=D(5)),
                OverlayRemove(component="C"),
                OverlayAdd(line=line("D", "7")),
            ),
        ),
    ],
)


def test_an_overlay_changes_only_its_own_plant():
    p1 = [(ln.component, ln.qty_per) for ln in apply_overlay(TEMPLATE, "P1")]
    p2 = [(ln.component, ln.qty_per) for ln in apply_overlay(TEMPLATE, "P2")]
    assert p1 == [("A-LOCAL", D(2)), ("B", D(5)), ("D", D(7))]
    assert p2 == [("A", D(2)), ("B", D(1)), ("C", D(3))]


def test_phantoms_explode_recursively_into_their_leaves():
    boms = {
        "PH": bom("PH", [line("X", "2"), line("PH2", "3", phantom=True)]),
        "PH2": bom("PH2", [line("Y", "4")]),
    }
    top = bom("TOP", [line("PH", "5", phantom=True, operation_seq=30), line("Z")])
    types = {"PH": ItemType.PHANTOM, "PH2": ItemType.RAW}
    resolved = resolve_plant_bom(top, "P1", boms.get, types.get)
    assert [(r.component, r.qty_per, r.operation_seq) for r in resolved] == [
        ("X", D(10), 30),
        ("Y", D(60), 30),
        ("Z", D(1), 10),
    ]


def test_a_phantom_without_a_released_bom_is_refused():
    top = bom("TOP", [line("PH", phantom=True)])
    with pytest.raises(MessageRejected) as rejected:
        resolve_plant_bom(top, "P1", lambda _item: None, lambda _item: None)
    assert rejected.value.code is ErrorCode.REVISION_NOT_RELEASED


def test_a_phantom_cycle_is_cut_off():
    loop = bom("PH", [line("PH", phantom=True)])
    with pytest.raises(MessageRejected):
        resolve_plant_bom(loop, "P1", lambda _item: loop, lambda _item: ItemType.PHANTOM)
