"""The envelope every message travels in, and turning raw payloads into envelopes or problems."""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, ValidationError, model_validator

from integration.errors import ErrorCode, Problem
from integration.master import Code, Frozen
from integration.messages import Message

__all__ = [
    "SourceSystem",
    "Envelope",
    "BusinessIds",
    "ParsedPayload",
    "parse_payload",
    "payload_hash",
    "business_ids",
]

SCHEMA_VERSION = 1
Identifier = Annotated[str, Field(min_length=1, max_length=128)]


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
    correlation_id: str = Field(default="", max_length=128)
    source_system: SourceSystem
    stream: Code | None = None
    source_seq: int | None = Field(default=None, ge=1)
    occurred_at: AwareDatetime
    sent_at: AwareDatetime
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


class BusinessIds(Frozen):
    """What a person searches dead letters and logs by."""

    plant: str | None = None
    item: str | None = None
    work_order: str | None = None
    lot: str | None = None
    supplier: str | None = None
    period: str | None = None


class ParsedPayload(Frozen):
    """The result of reading a raw payload: an envelope, or the problems that stopped it."""

    raw: str
    envelope: Envelope | None
    problems: tuple[Problem, ...] = ()


_QUANTITY_ERRORS = {"finite_number", "greater_than", "greater_than_equal"}


def _problem_from_error(error: Any) -> Problem:
    field = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "json_invalid":
        code = ErrorCode.MALFORMED_PAYLOAD
    elif kind == "extra_forbidden":
        code = ErrorCode.UNKNOWN_FIELD
    elif kind in _QUANTITY_ERRORS or (kind.startswith("decimal") and "qty" in field):
        code = ErrorCode.INVALID_QUANTITY
    else:
        code = ErrorCode.SCHEMA_INVALID
    return Problem(code, error["msg"], field)


def _problems_from(error: ValidationError) -> tuple[Problem, ...]:
    return tuple(_problem_from_error(e) for e in error.errors(include_url=False))


def parse_payload(payload: Envelope | bytes | str | dict[str, Any]) -> ParsedPayload:
    """Read an envelope from JSON text, bytes, a dict or an envelope; never raises."""
    if isinstance(payload, Envelope):
        return ParsedPayload(raw=payload.model_dump_json(), envelope=payload)
    try:
        if isinstance(payload, dict):
            raw = json.dumps(payload, default=str, sort_keys=True)
            return ParsedPayload(raw=raw, envelope=Envelope.model_validate(payload))
        raw = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else payload
        return ParsedPayload(raw=raw, envelope=Envelope.model_validate_json(raw))
    except ValidationError as error:
        return ParsedPayload(raw=raw, envelope=None, problems=_problems_from(error))
    except (ValueError, RecursionError) as error:
        problem = Problem(ErrorCode.MALFORMED_PAYLOAD, f"unreadable payload: {error}")
        return ParsedPayload(raw=str(payload)[:100_000], envelope=None, problems=(problem,))


def payload_hash(envelope: Envelope) -> str:
    """A digest of the business content: the message body and its business time.

    Delivery metadata (message id, sent_at, correlation) is left out so that a resend of the
    same business event under a new message id hashes the same.
    """
    body = envelope.message.model_dump_json() + "|" + envelope.occurred_at.isoformat()
    return hashlib.sha256(body.encode()).hexdigest()[:32]


_ID_FIELDS = ("plant", "item", "work_order", "lot", "supplier", "period")


def business_ids(message: Any) -> BusinessIds:
    """Business identifiers carried by a message body (a model or a raw dict), best effort."""
    data = message if isinstance(message, dict) else message.model_dump(mode="json")
    found: dict[str, str] = {}
    for name in _ID_FIELDS:
        value = data.get(name)
        if isinstance(value, str):
            found[name] = value
    nested_item = data.get("item")
    if isinstance(nested_item, dict) and isinstance(nested_item.get("id"), str):
        found["item"] = nested_item["id"]
    component = data.get("component")
    if "item" not in found and isinstance(component, str):
        found["item"] = component
    bom = data.get("bom")
    if isinstance(bom, dict) and isinstance(bom.get("item"), str):
        found["item"] = bom["item"]
    return BusinessIds(**found)
