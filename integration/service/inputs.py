"""What the service reads from requests: error answers, the dead-letter selection, the
bodies of batches and hold expiries."""

import json
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.datastructures import QueryParams

from integration.errors import ErrorCode
from integration.master import Text
from integration.store.base import DeadLetterFilter
from integration.text import is_storable, shown

__all__ = [
    "ServiceError",
    "Selection",
    "EXPIRE_BODY",
    "DISCARD_BODY",
    "MAX_REASON",
    "batch_items",
    "discard_request",
    "older_than",
    "refuse_unstorable_text",
]

MAX_OLDER_THAN_S = 1e9  # about 31 years: any hold at all, far inside timedelta's range
MAX_REASON = 500  # characters of a discard's reason
MAX_DISCARD_IDS = 500  # dead letters one discard may name by id


class ServiceError(Exception):
    """An error answer: HTTP status, stable code, a sentence."""

    def __init__(self, status: int, code: str, message: str, problems: list | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.problems = status, code, message, problems


def refuse_unstorable_text(path: Mapping[str, Any], query: QueryParams) -> None:
    """400 SCHEMA_INVALID when a path id or query parameter holds NUL or an unpaired
    surrogate: no store can look such text up, so it is refused before any read."""
    params = [("path", path.items()), ("query", query.items())]
    problems = [
        {
            "code": "SCHEMA_INVALID",
            "message": "text may not hold NUL or an unpaired surrogate",
            "field": f"{where}.{shown(name)}",
        }
        for where, items in params
        for name, value in items
        if not (is_storable(name) and is_storable(str(value)))
    ]
    if problems:
        raise ServiceError(400, "SCHEMA_INVALID", "the request is invalid", problems)


class Selection:
    """Dead-letter filter from query parameters."""

    def __init__(
        self,
        code: Annotated[ErrorCode | None, Query()] = None,
        status: Annotated[str, Query(pattern="^(open|replayed|resolved|discarded|any)$")] = "open",
        plant: str | None = None,
        item: str | None = None,
        work_order: str | None = None,
        lot: str | None = None,
        supplier: str | None = None,
        period: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.code, self.status, self.plant, self.item = code, status, plant, item
        self.work_order, self.lot, self.supplier, self.period = work_order, lot, supplier, period
        self.correlation_id = correlation_id

    def to_filter(self) -> DeadLetterFilter:
        return DeadLetterFilter(
            code=self.code,
            status=None if self.status == "any" else self.status,
            plant=self.plant,
            item=self.item,
            work_order=self.work_order,
            lot=self.lot,
            supplier=self.supplier,
            period=self.period,
            correlation_id=self.correlation_id,
        )


class _ExpireHolds(BaseModel):
    """The body of `POST /v1/holds/expire` (optional): without `older_than_s`, the holds past
    the configured hold timeout expire."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="ExpireHolds")

    older_than_s: float | None = Field(
        default=None,
        ge=0,
        le=MAX_OLDER_THAN_S,
        allow_inf_nan=False,
        strict=True,
        description="Expire every message held at least this many seconds (0: all of them).",
    )


EXPIRE_BODY = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": _ExpireHolds.model_json_schema()}},
    }
}


def batch_items(body: bytes, max_batch: int) -> list[str]:
    """The envelopes of a batch body (a JSON array of at most `max_batch`), each as the JSON
    text it was sent as: the core validates that text and keeps it, so nothing is decoded
    into Python objects only to be encoded again."""
    try:
        items = _array_elements(body.decode("utf-8-sig"))
    except (ValueError, RecursionError) as error:
        raise ServiceError(400, "MALFORMED_PAYLOAD", f"the batch is not JSON: {error}") from error
    if items is None:
        raise ServiceError(400, "MALFORMED_PAYLOAD", "a batch is a JSON array of envelopes")
    if len(items) > max_batch:
        raise ServiceError(413, "PAYLOAD_TOO_LARGE", f"batches are limited to {max_batch} messages")
    return items


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")


def _array_elements(text: str) -> list[str] | None:
    """The texts of a JSON array's elements; None when the text is JSON but not an array.
    Raises ValueError for text that is not JSON, as `json.loads` would."""
    start = _SPACE.match(text).end()
    if not text.startswith("[", start):
        _DECODER.decode(text)  # not JSON at all raises; other JSON is not a batch
        return None
    elements: list[str] = []
    at = _SPACE.match(text, start + 1).end()
    if text.startswith("]", at):
        at += 1
    else:
        while True:
            end = _DECODER.raw_decode(text, at)[1]
            elements.append(text[at:end])
            at = _SPACE.match(text, end).end()
            if text.startswith("]", at):
                at += 1
                break
            if not text.startswith(",", at):
                raise ValueError(f"expected ',' or ']' at character {at}")
            at = _SPACE.match(text, at + 1).end()
    if _SPACE.match(text, at).end() != len(text):
        raise ValueError(f"extra data after the array at character {at}")
    return elements


def older_than(body: bytes) -> timedelta | None:
    """The `older_than_s` of an expiry request's body (empty: none)."""
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise ServiceError(400, "MALFORMED_PAYLOAD", f"the body is not JSON: {error}") from error
    try:
        seconds = _ExpireHolds.model_validate(data).older_than_s
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from error
    return None if seconds is None else timedelta(seconds=seconds)


_Id = Annotated[Text, Field(min_length=1, max_length=128)]


class _Discard(BaseModel):
    """The body of `POST /v1/dead-letters/discard`: which open dead letters (every given field
    must match, at least one given) and why they are closed without a replay."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="DiscardDeadLetters")

    reason: Annotated[Text, Field(min_length=1, max_length=MAX_REASON)] = Field(
        description="Why: kept in each dead letter's history."
    )
    ids: tuple[Annotated[int, Field(ge=1, le=2**63 - 1, strict=True)], ...] = Field(
        default=(), max_length=MAX_DISCARD_IDS
    )
    code: ErrorCode | None = None
    plant: _Id | None = None
    item: _Id | None = None
    work_order: _Id | None = None
    lot: _Id | None = None
    supplier: _Id | None = None
    period: _Id | None = None
    correlation_id: _Id | None = None

    @model_validator(mode="after")
    def _selects_and_says_why(self) -> "_Discard":
        if not self.reason.strip():
            raise ValueError("reason may not be blank")
        if not self.ids and not any(
            getattr(self, name) is not None for name in _SELECTING if name != "ids"
        ):
            raise ValueError("select the dead letters to discard (ids, a code or a business id)")
        return self


_SELECTING = ("ids", "code", "plant", "item", "work_order", "lot", "supplier", "period",
              "correlation_id")  # fmt: skip


def _inlined(schema: Any, definitions: dict[str, Any]) -> Any:
    """`schema` with its local `$defs` references replaced by what they name: an OpenAPI
    document resolves `#/$defs/...` against itself, where they do not exist."""
    if isinstance(schema, list):
        return [_inlined(part, definitions) for part in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _inlined(definitions[schema["$ref"].removeprefix("#/$defs/")], definitions)
    return {key: _inlined(value, definitions) for key, value in schema.items() if key != "$defs"}


_DISCARD_SCHEMA = _Discard.model_json_schema()
DISCARD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _inlined(_DISCARD_SCHEMA, _DISCARD_SCHEMA.get("$defs", {}))
            }
        },
    }
}


def discard_request(body: bytes) -> tuple[DeadLetterFilter, str]:
    """The open dead letters a discard request selects, and its reason."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise ServiceError(400, "MALFORMED_PAYLOAD", f"the body is not JSON: {error}") from error
    try:
        request = _Discard.model_validate(data)
    except ValidationError as error:
        raise RequestValidationError(error.errors()) from error
    fields = {name: getattr(request, name) for name in _SELECTING}
    return DeadLetterFilter(**fields), request.reason.strip()
