"""Hostile values for every field of every message type, with the fields read from the models.

`sample(message_type, n)` is a JSON-ready envelope about the test network (unique ids from
`n`) that the core would accept unchanged for the message types that move quantities;
`leaves(message_type)` lists every field of it (envelope fields, message fields, nested models,
tuple elements, dict keys and values) with its kind. `hostile(leaf)` gives the hostile classes
for one field, each a strategy of values: the bytes of a JSON token to splice in, and whether
the documented rules must refuse it (README, Messages: text, bounds and strict forms).
"""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo

from integration.envelope import Envelope
from integration.messages import Message
from integration.settings import DEFAULT_AUTHORISATION
from tests.builders import START

__all__ = ["KEY", "Leaf", "Hostile", "MODELS", "source_of", "sample", "leaves", "hostile", "body"]

KEY = "<key>"  # a path step naming a dict's (only) key rather than its value
SENTINEL = "@@hostile@@"
MODELS: dict[str, type[BaseModel]] = {
    model.model_fields["type"].default: model for model in get_args(get_args(Message)[0])
}

# Values of the test network by field name, so that a sample refers to what exists.
_NAMES = {
    "plant": "P1",
    "plants": "P1",
    "item": "RAW-A",
    "component": "RAW-A",
    "replacement": "RAW-B",
    "id": "RAW-A",
    "location": "STORES",
    "from_location": "STORES",
    "to_location": "LINE",
    "backflush_location": "LINE",
    "subcontractor_location": "SUB",
    "uom": "EA",
    "base_uom": "EA",
    "from_uom": "BOX",
    "to_uom": "EA",
    "supplier": "SUP-1",
    "purchase_order": "PO-1",
    "work_order": "WO-1",
    "bom_revision": "A",
    "revision": "A",
    "from_revision": "A",
    "to_revision": "B",
    "lot": "L1",
    "work_centre": "CUT",
    "state": "RUN",
    "eco": "ECO-1",
    "asn": "ASN-1",
    "period": "2000-01",
    "operation_seq": 10,
    "seq": 10,
}
# Per message type, where the generic sample would collide with the others' effects: a
# released order of its own, no hold on the lot confirmations backflush, no closed WO-1.
_OVERRIDES = {
    "WorkOrderReleased": {"item": "FG-1"},
    "FinishedGoodsReceived": {"location": "FG"},
    "ByProductReported": {"item": "BY-1"},
    "SubcontractShipped": {"to_location": "SUB"},
    "SubcontractReceived": {"item": "SEMI-S"},
    "QualityHold": {"item": "RAW-C", "lot": "LQ"},
    "WorkOrderClosed": {"work_order": "WO-NEVER"},
    "OperationCompleted": {"lot": "L1"},
}
_DICT_KEYS = {"standard_costs": "P1", "new_standard_costs": "P1", "component_lots": "RAW-L"}


@dataclass(frozen=True)
class Leaf:
    """One field of a sample: where it is, what kind of value it holds, its length bound."""

    path: tuple[str | int, ...]
    kind: str  # text | decimal | int | datetime | bool | choice
    max_length: int | None = None

    @property
    def name(self) -> str:
        steps = [step for step in self.path if isinstance(step, str) and step != KEY]
        return steps[-1]

    @property
    def is_quantity(self) -> bool:
        """A quantity the ledger moves (not an amount or a ratio such as qty_per)."""
        return self.name in ("qty", "good_qty", "scrap_qty") or self.name.endswith("_hours")


@dataclass(frozen=True)
class Hostile:
    """A value for one field: the JSON token's bytes, and whether it must be refused."""

    token: bytes
    must_refuse: bool
    label: str


def source_of(message_type: str) -> str:
    """The first source system allowed to send `message_type`."""
    return next(s.value for s, owned in DEFAULT_AUTHORISATION.items() if message_type in owned)


def _unwrapped(annotation: Any) -> tuple[Any, list[Any]]:
    """The type inside Annotated and Optional (a union's first member), and the metadata."""
    metadata: list[Any] = []
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extra = get_args(annotation)
            metadata += extra
        elif origin in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation, metadata


def _max_length(metadata: list[Any]) -> int | None:
    for entry in metadata:
        if isinstance(entry, annotated_types.MaxLen):
            return entry.max_length
        if isinstance(entry, FieldInfo) and (found := _max_length(entry.metadata)) is not None:
            return found
    return None


def _scalar(kind_type: Any, name: str, names: dict[str, Any]) -> tuple[Any, str]:
    if get_origin(kind_type) is Literal:
        return get_args(kind_type)[0], "choice"
    if isinstance(kind_type, type) and issubclass(kind_type, Enum):
        return next(iter(kind_type)).value, "choice"
    if kind_type is bool:
        return False, "bool"
    if kind_type is int:
        return names.get(name, 1), "int"
    if kind_type is Decimal:
        return {"scrap_factor": "0.1", "scrap_qty": "0"}.get(name, "1"), "decimal"
    if kind_type in (datetime, AwareDatetime):
        return (START - timedelta(days=30)).isoformat(), "datetime"
    if kind_type is str:
        return names.get(name, f"{name.upper()}-1"), "text"
    raise TypeError(f"no sample for {kind_type!r} ({name})")


def _value(annotation, metadata, name, path, names) -> tuple[Any, list[Leaf]]:
    kind_type, more = _unwrapped(annotation)
    metadata = [*metadata, *more]
    if isinstance(kind_type, type) and issubclass(kind_type, BaseModel):
        return _model(kind_type, path, names)
    origin = get_origin(kind_type)
    if origin is tuple:
        return _listed(get_args(kind_type)[0], name, path, names)
    if origin is dict:
        key_type, value_type = get_args(kind_type)
        key = _DICT_KEYS.get(name, "K-1")
        _, key_leaves = _value(key_type, [], name, (*path, KEY), names)
        value, value_leaves = _value(value_type, [], name, (*path, key), names)
        return {key: value}, key_leaves + value_leaves
    value, kind = _scalar(kind_type, name, names)
    return value, [Leaf(path, kind, _max_length(metadata))]


def _listed(element, name, path, names) -> tuple[list[Any], list[Leaf]]:
    value, found = _value(element, [], name, (*path, 0), names)
    return [value], found


def _model(model: type[BaseModel], path, names) -> tuple[dict[str, Any], list[Leaf]]:
    data, found = {}, []
    for name, field in model.model_fields.items():
        data[name], more = _value(field.annotation, field.metadata, name, (*path, name), names)
        found += more
    return data, found


def sample(message_type: str, n: int) -> dict[str, Any]:
    """A JSON-ready envelope of `message_type`, every optional field set; ids unique by `n`."""
    names = {**_NAMES, **_OVERRIDES.get(message_type, {})}
    if message_type == "WorkOrderReleased":
        names["work_order"] = f"WO-H{n}"
    message, _ = _model(MODELS[message_type], ("message",), names)
    return {
        "message_id": f"h-{n}",
        "idempotency_key": f"hk-{n}",
        "correlation_id": f"c-{n}",
        "source_system": source_of(message_type),
        "stream": f"H:{n}",
        "source_seq": 1,
        "occurred_at": START.isoformat(),
        "sent_at": START.isoformat(),
        "schema_version": 1,
        "message": message,
    }


def leaves(message_type: str) -> list[Leaf]:
    """Every field of `sample(message_type, n)`: the envelope's and the message's."""
    envelope_leaves = [
        leaf
        for name, field in Envelope.model_fields.items()
        if name != "message"
        for leaf in _value(field.annotation, field.metadata, name, (name,), _NAMES)[1]
    ]
    _, message_leaves = _model(MODELS[message_type], ("message",), _NAMES)
    return envelope_leaves + message_leaves


def body(data: dict[str, Any], leaf: Leaf, token: bytes) -> bytes:
    """The JSON bytes of `data` with `leaf`'s value (or dict key) replaced by `token`."""
    edited = json.loads(json.dumps(data))
    *parents, last = leaf.path
    holder = edited
    for step in parents:
        holder = holder[step]
    if last == KEY:
        (key,) = holder
        holder[SENTINEL] = holder.pop(key)
    else:
        holder[last] = SENTINEL
    text = json.dumps(edited).encode()
    return text.replace(json.dumps(SENTINEL).encode(), token, 1)


# --- the hostile classes -------------------------------------------------------------------

_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"


def _json(value: Any, must_refuse: bool, label: str) -> Hostile:
    return Hostile(json.dumps(value).encode(), must_refuse, label)


_plain = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)

_escaped_unstorable = st.one_of(
    st.tuples(_plain, _plain).map(lambda p: _json(f"{p[0]}\x00{p[1]}", True, "NUL")),
    st.tuples(_plain, st.integers(0xD800, 0xDFFF), _plain).map(
        lambda p: _json(f"{p[0]}{chr(p[1])}{p[2]}", True, "lone surrogate")
    ),
)
# Bytes no JSON text holds: in a batch they make the whole body unreadable, so batches skip them.
_raw_unstorable = st.one_of(
    st.binary(min_size=1, max_size=4).map(
        lambda b: Hostile(b'"A' + b"\xff" + b + b'"', True, "invalid UTF-8")
    ),
    st.just(Hostile(b'"A\x00B"', True, "raw NUL")),
)


Classes = list[st.SearchStrategy[Hostile]]


def _text(leaf: Leaf, unstorable: st.SearchStrategy[Hostile]) -> Classes:
    long_refused = leaf.max_length is not None and leaf.max_length < 10_000
    return [
        unstorable,
        st.text(st.sampled_from(_BIDI), min_size=1, max_size=8).map(
            lambda bidi: _json(f"RAW{bidi}A", False, "bidi controls")
        ),
        st.sampled_from("xé€😀").map(lambda c: _json(c * 10_000, long_refused, "10k chars")),
    ]


# As decimal text and as JSON numbers; a JSON number is read as a binary float (README), so
# "1000000000000000.000001" is refused as text only, and tiny numbers stay above 1e-308.
_HUGE = ["1e16", "1e30", "1e999999", "-1e16"]
_HUGE_TEXT = ["1000000000000000.000001", "1" + "0" * 400]
_PADDED = [" 5 ", "5 ", "+5", "05", "5.", ".5", "1_000", "0x10", "5e", "\u0665"]


def _text_and_number(value: str, must_refuse: bool, label: str) -> st.SearchStrategy[Hostile]:
    return st.sampled_from(
        [_json(value, must_refuse, label), Hostile(value.encode(), must_refuse, label)]
    )


def _decimal(leaf: Leaf, unstorable: st.SearchStrategy[Hostile]) -> Classes:
    tiny = st.integers(7, 300).map(lambda places: f"1e-{places}")
    return [
        unstorable,
        st.one_of(
            st.sampled_from(_HUGE).flatmap(lambda v: _text_and_number(v, True, "huge")),
            st.sampled_from(_HUGE_TEXT).map(lambda v: _json(v, True, "huge")),
        ),
        tiny.flatmap(lambda v: _text_and_number(v, leaf.is_quantity, "tiny")),
        st.sampled_from(_PADDED).map(lambda v: _json(v, True, "padded decimal")),
    ]


def _int(_leaf: Leaf, unstorable: st.SearchStrategy[Hostile]) -> Classes:
    beyond = st.one_of(st.integers(2**63, 2**200), st.integers(-(2**200), 0))
    return [
        unstorable,
        beyond.map(lambda v: Hostile(str(v).encode(), True, "int beyond int64 or below 1")),
        st.sampled_from([_json("5", True, "int as text"), Hostile(b"5.0", True, "int as float")]),
    ]


_OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def _outside_window(moment: datetime) -> bool:
    """The documented window: 1900-01-01T00:00:00Z <= t < 9000-01-01T00:00:00Z."""
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 in UTC
        return True
    return not datetime(1900, 1, 1, tzinfo=UTC) <= utc < datetime(9000, 1, 1, tzinfo=UTC)


def _datetime(_leaf: Leaf, unstorable: st.SearchStrategy[Hostile]) -> Classes:
    moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
    edges = st.sampled_from(
        [datetime(9999, 12, 31, 23, 59, 59), datetime(1, 1, 1), datetime(8999, 12, 31, 23)]
    )
    zoned = st.tuples(st.one_of(moments, edges), _OFFSETS).map(lambda p: p[0].replace(tzinfo=p[1]))
    return [
        unstorable,
        zoned.map(lambda m: _json(m.isoformat(), _outside_window(m), "date")),
        st.one_of(
            st.integers(-(2**40), 2**40).map(lambda v: Hostile(str(v).encode(), True, "Unix")),
            st.integers(0, 2**40).map(lambda v: _json(str(v), True, "Unix text")),
            st.just(_json(START.replace(tzinfo=None).isoformat(), True, "naive")),
        ),
    ]


_BY_KIND = {"text": _text, "decimal": _decimal, "int": _int, "datetime": _datetime}


def hostile(leaf: Leaf, framed: bool = False) -> Classes:
    """The hostile classes for `leaf`, one strategy each (a dict key takes text only);
    `framed`: only values that keep the payload JSON (no invalid UTF-8 or raw NUL)."""
    unstorable = _escaped_unstorable if framed else st.one_of(_escaped_unstorable, _raw_unstorable)
    if leaf.path[-1] == KEY:
        return _text(leaf, unstorable)
    return _BY_KIND.get(leaf.kind, lambda _leaf, texts: [texts])(leaf, unstorable)
