"""Every stable error code of the core, and the one exception tree.

Rejections are values (`Problem`, carried by an `Outcome`); exceptions are for callers that
misuse the API or for a store that cannot do its job. Both carry an `ErrorCode`, whose string
values are a public contract: clients, dead-letter filters and dashboards match on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "ErrorCode",
    "Problem",
    "IntegrationError",
    "MessageRejected",
    "StoreError",
    "ConfigurationError",
    "NotFound",
]


class ErrorCode(StrEnum):
    """The machine-readable reason of a rejection, hold or failure. Never renamed."""

    # The payload could not become an envelope.
    MALFORMED_PAYLOAD = "MALFORMED_PAYLOAD"
    SCHEMA_INVALID = "SCHEMA_INVALID"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    # Authorisation: a source may only send the message types it owns.
    UNAUTHORISED_SOURCE = "UNAUTHORISED_SOURCE"
    # Master data and business rules.
    UNKNOWN_PLANT = "UNKNOWN_PLANT"
    UNKNOWN_LOCATION = "UNKNOWN_LOCATION"
    UNKNOWN_ITEM = "UNKNOWN_ITEM"
    ITEM_EXISTS = "ITEM_EXISTS"
    UOM_NO_CONVERSION = "UOM_NO_CONVERSION"
    PLANT_NOT_APPLICABLE = "PLANT_NOT_APPLICABLE"
    REVISION_UNKNOWN = "REVISION_UNKNOWN"
    REVISION_NOT_RELEASED = "REVISION_NOT_RELEASED"
    REVISION_NOT_EFFECTIVE = "REVISION_NOT_EFFECTIVE"
    REVISION_MISMATCH = "REVISION_MISMATCH"
    WORK_ORDER_UNKNOWN = "WORK_ORDER_UNKNOWN"
    WORK_ORDER_EXISTS = "WORK_ORDER_EXISTS"
    WORK_ORDER_CLOSED = "WORK_ORDER_CLOSED"
    OPERATION_UNKNOWN = "OPERATION_UNKNOWN"
    COMPONENT_NOT_ON_BOM = "COMPONENT_NOT_ON_BOM"
    LOT_REQUIRED = "LOT_REQUIRED"
    LOT_ON_HOLD = "LOT_ON_HOLD"
    OVER_COMPLETION = "OVER_COMPLETION"
    PERIOD_ALREADY_CLOSED = "PERIOD_ALREADY_CLOSED"
    PERIOD_NOT_ENDED = "PERIOD_NOT_ENDED"
    BACKFLUSH_SHORTAGE = "BACKFLUSH_SHORTAGE"
    AMOUNT_OUT_OF_RANGE = "AMOUNT_OUT_OF_RANGE"
    # Sequencing and idempotency.
    SEQUENCE_GAP = "SEQUENCE_GAP"
    SEQUENCE_STALE = "SEQUENCE_STALE"
    AWAITING_DEPENDENCY = "AWAITING_DEPENDENCY"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    # Failures of the core itself (never a client's fault).
    UNBALANCED_ENTRY = "UNBALANCED_ENTRY"
    STORE_FAILURE = "STORE_FAILURE"
    CONFIGURATION = "CONFIGURATION"
    NOT_FOUND = "NOT_FOUND"


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a message cannot be applied: a code, a sentence, and where (a field path)."""

    code: ErrorCode
    message: str
    field: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message, "field": self.field}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Problem:
        return cls(ErrorCode(data["code"]), data["message"], data.get("field", ""))


class IntegrationError(Exception):
    """Root of every exception the core raises. `code` is stable; the text is for people."""

    code: ErrorCode = ErrorCode.CONFIGURATION

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class MessageRejected(IntegrationError):
    """A message cannot be applied; carries every problem found, the first one is the code."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        if not problems:
            raise ValueError("a rejection needs at least one problem")
        self.problems = tuple(problems)
        super().__init__("; ".join(p.message for p in self.problems), code=self.problems[0].code)


class StoreError(IntegrationError):
    """The ledger store failed; the transaction was rolled back and nothing was written."""

    code = ErrorCode.STORE_FAILURE


class ConfigurationError(IntegrationError):
    """The core or a store was set up with settings that cannot work."""

    code = ErrorCode.CONFIGURATION


class NotFound(IntegrationError):
    """A record asked for by id does not exist."""

    code = ErrorCode.NOT_FOUND
