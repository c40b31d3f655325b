"""Resolving a global BOM template to a plant BOM: overlays, then phantom explosion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from integration.errors import ErrorCode, MessageRejected, Problem
from integration.master import (
    Alternate,
    BomLine,
    BomRevision,
    ItemType,
    OverlayAdd,
    OverlayQuantity,
    OverlayRemove,
    OverlaySubstitute,
)

__all__ = ["ResolvedLine", "apply_overlay", "bom_components", "resolve_plant_bom"]

MAX_PHANTOM_DEPTH = 8


@dataclass(frozen=True, slots=True)
class ResolvedLine:
    """A leaf component of a plant BOM, per unit of the parent, in the line's UoM."""

    component: str
    qty_per: Decimal
    uom: str
    scrap_factor: Decimal
    alternates: tuple[Alternate, ...]
    backflush: bool
    operation_seq: int


def apply_overlay(bom: BomRevision, plant: str) -> tuple[BomLine, ...]:
    """The template's lines with the plant's overlay changes applied in order."""
    lines = list(bom.lines)
    for overlay in bom.overlays:
        if overlay.plant != plant:
            continue
        for change in overlay.changes:
            lines = _apply_change(lines, change)
    return tuple(lines)


def _apply_change(lines: list[BomLine], change: object) -> list[BomLine]:
    if isinstance(change, OverlayAdd):
        return [*lines, change.line]
    if isinstance(change, OverlayRemove):
        return [line for line in lines if line.component != change.component]
    if isinstance(change, OverlaySubstitute):
        return [
            line.model_copy(update={"component": change.replacement})
            if line.component == change.component
            else line
            for line in lines
        ]
    if isinstance(change, OverlayQuantity):
        return [
            line.model_copy(update={"qty_per": change.qty_per})
            if line.component == change.component
            else line
            for line in lines
        ]
    raise TypeError(f"unknown overlay change {change!r}")


BomLookup = Callable[[str], BomRevision | None]
ItemTypeLookup = Callable[[str], ItemType | None]


def resolve_plant_bom(
    bom: BomRevision,
    plant: str,
    released_bom_of: BomLookup,
    item_type_of: ItemTypeLookup,
) -> tuple[ResolvedLine, ...]:
    """Resolve `bom` for `plant`: overlays applied and phantoms exploded into their components.

    `released_bom_of(item)` returns the released, effective BOM of a phantom component.
    Raises `MessageRejected` when a phantom has no usable BOM or phantoms nest too deep.
    """
    return tuple(_explode(bom, plant, Decimal(1), None, released_bom_of, item_type_of, 0))


def _explode(bom, plant, multiplier, operation_seq, released_bom_of, item_type_of, depth):
    if depth > MAX_PHANTOM_DEPTH:
        raise MessageRejected(
            [
                Problem(
                    ErrorCode.REVISION_UNKNOWN, f"phantom nesting deeper than {MAX_PHANTOM_DEPTH}"
                )
            ]
        )
    for line in apply_overlay(bom, plant):
        seq = operation_seq if operation_seq is not None else line.operation_seq
        qty_per = line.qty_per * multiplier
        if line.phantom or item_type_of(line.component) is ItemType.PHANTOM:
            child = released_bom_of(line.component)
            if child is None:
                raise MessageRejected(
                    [
                        Problem(
                            ErrorCode.REVISION_NOT_RELEASED,
                            f"phantom {line.component} has no released, effective BOM",
                            "bom_revision",
                        )
                    ]
                )
            yield from _explode(
                child, plant, qty_per, seq, released_bom_of, item_type_of, depth + 1
            )
            continue
        yield ResolvedLine(
            component=line.component,
            qty_per=qty_per,
            uom=line.uom,
            scrap_factor=line.scrap_factor,
            alternates=tuple(sorted(line.alternates, key=lambda alt: alt.priority)),
            backflush=line.backflush,
            operation_seq=seq,
        )


def bom_components(bom: BomRevision) -> list[str]:
    """Every item a BOM template or its overlays name, in order of appearance."""
    lines = list(bom.lines)
    names = []
    for overlay in bom.overlays:
        for change in overlay.changes:
            if isinstance(change, OverlayAdd):
                lines.append(change.line)
            elif isinstance(change, OverlaySubstitute):
                names.append(change.replacement)
    for line in lines:
        names += [line.component, *(alt.item for alt in line.alternates)]
    return list(dict.fromkeys(names))
