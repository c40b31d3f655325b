"""The envelope every message travels in, and turning raw payloads into envelopes or problems."""

from __future__ import annotations

import hashlib
import json
import reprlib
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import Field, ValidationError, model_validator
from pydantic_core import PydanticSerializationError

from integration.errors import ErrorCode, Problem
from integration.master import Code, Frozen, Seq, Text, Timestamp
from integration.messages import Message
from integration.money import LEDGER_LIMIT
from integration.text import TEXT, encode_raw, is_storable, shown, text_refusal

__all__ = [
    "SourceSystem",
    "Envelope",
    "BusinessIds",
    "ParsedPayload",
    "Payload",
    "parse_payload",
    "payload_hash",
    "business_ids",
]

SCHEMA_VERSION = 1
Identifier = Annotated[Text, Field(min_length=1, max_length=128)]


class SourceSystem(StrEnum):
    PLM = "PLM"
    ERP = "ERP"
    MES = "MES"
    WMS = "WMS"
    SUPPLIER = "SUPPLIER"
    FINANCE = "FINANCE"


class Envelope(Frozen):
    """One message and its delivery metadata.

    `message_id` is unique per message and reused by a retry; `idempotency_key` is the stable
    business key from the source (an MES confirmation number), which a resend under a new
    message id keeps. `stream` + `source_seq` order a source's messages for one work order.
    """

    message_id: Identifier
    idempotency_key: Identifier
    correlation_id: Annotated[Text, Field(max_length=128)] = ""
    source_system: SourceSystem
    stream: Code | None = None
    source_seq: Seq | None = None
    occurred_at: Timestamp
    sent_at: Timestamp
    schema_version: Literal[1] = SCHEMA_VERSION
    message: Message

    @model_validator(mode="after")
    def _stream_and_seq_together(self) -> Envelope:
        if (self.stream is None) != (self.source_seq is None):
            raise ValueError("stream and source_seq go together")
        return self

    @property
    def message_type(self) -> str:
        return self.message.type


class BusinessIds(NamedTuple):
    """What a person searches dead letters and logs by (a named tuple: every message has one)."""

    plant: str | None = None
    item: str | None = None
    work_order: str | None = None
    lot: str | None = None
    supplier: str | None = None
    period: str | None = None

    def as_tuple(self) -> tuple[str | None, ...]:
        """(plant, item, work_order, lot, supplier, period): the ledger's column order."""
        return tuple(self)


class ParsedPayload(NamedTuple):
    """The result of reading a raw payload: an envelope, or the problems that stopped it.

    `raw` is the payload as stored: its text, or (`raw_encoding` "base64") the base64 of its
    exact bytes when they are not UTF-8 text without NUL (see `integration.text`). `digest`
    is the envelope's `payload_hash` when reading it gave that for free (an envelope given as
    an object is serialised once, for both), else ""."""

    raw: str
    envelope: Envelope | None
    problems: tuple[Problem, ...] = ()
    raw_encoding: str = TEXT
    digest: str = ""


_QUANTITY_ERRORS = {
    "finite_number",
    "greater_than",
    "greater_than_equal",
    "quantity_below_precision",
    "quantity_zero",
}


def _beyond_ledger_range(kind: str, context: dict[str, Any]) -> bool:
    """Whether a bound refused is the ledger's range (either side, for a signed change)."""
    if kind == "less_than_equal":
        return context.get("le") == LEDGER_LIMIT
    return kind == "greater_than_equal" and context.get("ge") == -LEDGER_LIMIT


def _problem_from_error(error: Any) -> Problem:
    field = shown(".".join(str(part) for part in error["loc"]))
    if refusal := text_refusal(error):
        return Problem(ErrorCode.SCHEMA_INVALID, refusal, field)
    kind = error["type"]
    if kind == "json_invalid":
        code = ErrorCode.MALFORMED_PAYLOAD
    elif kind == "extra_forbidden":
        code = ErrorCode.UNKNOWN_FIELD
    elif _beyond_ledger_range(kind, error.get("ctx", {})):
        code = ErrorCode.AMOUNT_OUT_OF_RANGE
    elif kind in _QUANTITY_ERRORS or (kind.startswith("decimal") and "qty" in field):
        code = ErrorCode.INVALID_QUANTITY
    else:
        code = ErrorCode.SCHEMA_INVALID
    return Problem(code, shown(error["msg"]), field)


def _problems_from(error: ValidationError, text: str) -> tuple[Problem, ...]:
    errors = error.errors(include_url=False)
    if any(e["type"] == "json_invalid" for e in errors):
        unpaired = _unpaired_surrogate(text)
        if unpaired is not None:
            return (unpaired,)
    return tuple(_problem_from_error(e) for e in errors)


def _unpaired_surrogate(text: str) -> Problem | None:
    """The field holding an escaped unpaired surrogate ("\\ud800"), which the JSON reader
    refuses as a whole; None when the text is unreadable for another reason."""
    try:
        data = json.loads(text)
        path = _unstorable_path(data)
    except (ValueError, RecursionError):
        return None
    if path is None:
        return None
    field = shown(".".join(_as_pydantic_names(data, path)))
    return Problem(ErrorCode.SCHEMA_INVALID, "text may not hold an unpaired surrogate", field)


def _as_pydantic_names(data: Any, path: tuple[str, ...]) -> tuple[str, ...]:
    """A path in the message body named as pydantic names it: after the message's type."""
    message = data.get("message") if isinstance(data, dict) else None
    if path[:1] == ("message",) and len(path) > 1 and isinstance(message, dict):
        tag = message.get("type")
        if isinstance(tag, str):
            return ("message", tag, *path[1:])
    return path


def _unstorable_path(value: Any, path: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The path of the first string (value or key) in decoded JSON that no store can hold."""
    if isinstance(value, str):
        return None if is_storable(value) else path
    if isinstance(value, dict):
        children = [((key,), key) for key in value] + [((k,), v) for k, v in value.items()]
    elif isinstance(value, list):
        children = [((str(n),), v) for n, v in enumerate(value)]
    else:
        return None
    for step, child in children:
        found = _unstorable_path(child, path + step)
        if found is not None:
            return found
    return None


Payload = Envelope | ParsedPayload | bytes | str | dict[str, Any]


def parse_payload(payload: Payload) -> ParsedPayload:
    """Read an envelope from JSON text, bytes, a dict or an envelope; never raises. A payload
    this function has already read is returned as it is: reading is pure, so a caller may
    read payloads on another thread or process and submit what it read.

    `raw` is what the inbox and dead letters keep: the payload exactly as received (a dict as
    JSON, or as a bounded rendering when it is too deep to be JSON), base64 when its bytes
    are not storable text. Text that is not UTF-8 or holds a NUL character is not JSON an
    envelope can come from (MALFORMED_PAYLOAD); a field holding NUL or an unpaired surrogate
    is refused with its path (SCHEMA_INVALID).
    """
    if isinstance(payload, ParsedPayload):
        return payload
    if isinstance(payload, Envelope):
        text = _envelope_text(payload)
        if text is not None:
            return ParsedPayload(raw=text, envelope=payload, digest=_digest_of_text(payload, text))
        payload = payload.model_dump()  # built unvalidated: read again, to refuse it
    raw, encoding = encode_raw(_dict_text(payload) if isinstance(payload, dict) else payload)
    if encoding != TEXT:
        problem = Problem(
            ErrorCode.MALFORMED_PAYLOAD, "the payload is not UTF-8 text without NUL characters"
        )
        return ParsedPayload(raw, None, (problem,), encoding)
    try:
        envelope = Envelope.__pydantic_validator__.validate_json(raw)  # model_validate_json
    except ValidationError as error:
        return ParsedPayload(raw=raw, envelope=None, problems=_problems_from(error, raw))
    except (ValueError, TypeError, RecursionError) as error:
        problem = Problem(ErrorCode.MALFORMED_PAYLOAD, shown(f"unreadable payload: {error}"))
        return ParsedPayload(raw=raw, envelope=None, problems=(problem,))
    return ParsedPayload(raw=raw, envelope=envelope)


def _envelope_text(envelope: Envelope) -> str | None:
    """An envelope's JSON; None when it holds text no store can hold (NUL, a lone
    surrogate), which only an envelope built without validation can."""
    try:
        text = envelope.model_dump_json()
    except PydanticSerializationError:
        return None
    return None if "\\u0000" in text else text


_BOUNDED_REPR = reprlib.Repr()
_BOUNDED_REPR.maxlevel, _BOUNDED_REPR.maxstring, _BOUNDED_REPR.maxother = 32, 10_000, 1_000
_BOUNDED_REPR.maxdict = _BOUNDED_REPR.maxlist = 1_000


def _dict_text(payload: dict[str, Any]) -> str:
    """JSON of a dict payload; a bounded repr when it cannot be JSON (too deep)."""
    try:
        return json.dumps(payload, default=str, sort_keys=True)
    except (ValueError, TypeError, RecursionError):
        return _BOUNDED_REPR.repr(payload)


def payload_hash(envelope: Envelope) -> str:
    """A digest of the business content: the message body and its business time.

    Delivery metadata (message id, sent_at, correlation) is left out so that a resend of the
    same business event under a new message id hashes the same.
    """
    message = envelope.message
    body = type(message).__pydantic_serializer__.to_json(message)  # model_dump_json(), as bytes
    return _digest(body, envelope)


def _digest(body: bytes, envelope: Envelope) -> str:
    stamp = envelope.occurred_at.isoformat().encode()
    return hashlib.sha256(body + b"|" + stamp).hexdigest()[:32]


# The message is the envelope's last field: its JSON ends `,"message":BODY}`. No string before
# it can hold `,"` (JSON escapes every quote in a string), so the first match is the key.
_MESSAGE_KEY = ',"message":'


def _digest_of_text(envelope: Envelope, text: str) -> str:
    """`payload_hash` of an envelope from its own JSON (`model_dump_json`): the message body
    is there already, serialised as `payload_hash` would serialise it again."""
    at = text.find(_MESSAGE_KEY)
    if at < 0 or not text.endswith("}"):
        return payload_hash(envelope)
    return _digest(text[at + len(_MESSAGE_KEY) : -1].encode(), envelope)


_ID_FIELDS = ("plant", "item", "work_order", "lot", "supplier", "period")


def _field(obj: Any, name: str) -> Any:
    """A field of a raw dict or of a model, read without pydantic's attribute machinery."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, "__dict__", {}).get(name)


def business_ids(message: Any) -> BusinessIds:
    """Business identifiers carried by a message body (a model or a raw dict), best effort."""
    data = message if isinstance(message, dict) else message.__dict__
    plant, item, work_order, lot, supplier, period = [
        value if isinstance(value := data.get(name), str) else None for name in _ID_FIELDS
    ]
    if item is None:
        item = _item_of(data)
    return BusinessIds(plant, item, work_order, lot, supplier, period)


def _item_of(data: dict[str, Any]) -> str | None:
    """The item of a message body without an `item` text: the created item, the issued
    component or the BOM's parent."""
    created = data.get("item")
    if created is not None and isinstance(created_id := _field(created, "id"), str):
        return created_id
    component = data.get("component")
    if isinstance(component, str):
        return component
    bom = data.get("bom")
    if bom is not None and isinstance(parent := _field(bom, "item"), str):
        return parent
    return None
