"""Per-stream ordering and dependency waits, as pure decisions over small state.

A stream (a source's messages for one work order) is applied in `source_seq` order: message n
only after n-1 has reached a terminal outcome (posted or rejected). A message that names a work
order or item the core has not seen yet waits for it rather than failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from integration.bom import bom_components
from integration.envelope import Envelope
from integration.state import BookState

__all__ = [
    "Order",
    "order_of",
    "missing_dependencies",
    "provided_dependencies",
    "stream_waiting_key",
    "is_satisfied",
]


class Order(StrEnum):
    NEXT = "next"  # the expected message: apply it
    EARLY = "early"  # a later message: hold it until the gap fills
    STALE = "stale"  # a sequence number already used by another message


def stream_waiting_key(stream: str, seq: int) -> str:
    """The key a message waits on until `stream` expects its `seq`."""
    return f"stream:{stream}@{seq}"


def order_of(source_seq: int, next_expected: int) -> Order:
    if source_seq == next_expected:
        return Order.NEXT
    return Order.EARLY if source_seq > next_expected else Order.STALE


def _referenced_items(envelope: Envelope) -> list[str]:
    msg = envelope.message
    names: list[str] = []
    match msg.type:
        case "BomReleased":  # alternates and overlay items too: the release checks them all
            names.append(msg.bom.item)
            names.extend(bom_components(msg.bom))
        case "MaterialIssued":
            names.append(msg.component)
        case (
            "WorkOrderReleased"
            | "EcoReleased"
            | "GoodsReceived"
            | "InventoryTransferred"
            | "StockAdjusted"
            | "SubcontractShipped"
            | "SubcontractReceived"
            | "ByProductReported"
            | "QualityHold"
        ):
            names.append(msg.item)
        case "AsnReceived":
            names.extend(line.item for line in msg.lines)
    return names


def missing_dependencies(state: BookState, envelope: Envelope) -> tuple[str, ...]:
    """Dependency keys (`item:X`, `work_order:W`) this message needs and the core lacks."""
    msg = envelope.message
    missing = [f"item:{name}" for name in _referenced_items(envelope) if name not in state.items]
    order = getattr(msg, "work_order", None)
    if msg.type != "WorkOrderReleased" and order is not None and not state.knows_order(order):
        missing.append(f"work_order:{order}")
    return tuple(dict.fromkeys(missing))


def provided_dependencies(envelope: Envelope) -> tuple[str, ...]:
    """Dependency keys that posting this message satisfies."""
    msg = envelope.message
    if msg.type == "ItemCreated":
        return (f"item:{msg.item.id}",)
    if msg.type == "WorkOrderReleased":
        return (f"work_order:{msg.work_order}",)
    if msg.type == "BomReleased":
        return (f"bom:{msg.bom.item}",)
    return ()


def is_satisfied(key: str, state: BookState, streams: Mapping[str, int]) -> bool:
    """Whether what `key` waits for has arrived (used to resume after a restart)."""
    kind, _, name = key.partition(":")
    if kind == "stream":
        stream, _, seq = name.rpartition("@")
        return streams.get(stream, 1) >= int(seq)
    if kind == "item":
        return name in state.items
    if kind == "work_order":
        return state.knows_order(name)
    if kind == "bom":
        return bool(state.boms.get(name))
    return False
