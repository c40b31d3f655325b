"""The service's answers: JSON bodies, and the one mapping from an error to its answer, which
the framework's exception handlers and the direct submission path (submissions.py) share."""

from typing import Any

import orjson
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from integration.errors import ErrorCode, IntegrationError, NotFound, StoreError
from integration.outcome import Outcome, Status
from integration.service.admission import Refused
from integration.service.inputs import ServiceError
from integration.service.metrics import ServiceMetrics
from integration.text import text_refusal

__all__ = ["ANSWERED_ERRORS", "JsonAnswer", "error_answer", "outcome_status"]

# The errors with an answer of their own (`error_answer`), by base class (a handler registered
# for one serves its subclasses: Refused, NotFound, StoreError); anything else is 500 INTERNAL.
ANSWERED_ERRORS = (ServiceError, IntegrationError, RequestValidationError, StarletteHTTPException)


class JsonAnswer(Response):
    """A JSON answer, encoded by orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def outcome_status(outcome: Outcome) -> int:
    """The HTTP status of a submission's outcome."""
    if outcome.status is Status.HELD:
        return 202
    if outcome.status is not Status.REJECTED:
        return 200
    return {
        ErrorCode.MALFORMED_PAYLOAD: 400,
        ErrorCode.UNAUTHORISED_SOURCE: 403,
        ErrorCode.IDEMPOTENCY_CONFLICT: 409,
    }.get(outcome.code, 422)


def error_answer(error: Exception, metrics: ServiceMetrics) -> JsonAnswer:
    """The answer to a request that failed with `error`: its status, a stable code, a
    sentence and its problems; never a stack trace. Refusals (429) are counted in `metrics`
    and say when to come back."""
    if isinstance(error, Refused):
        metrics.refused.labels(error.code).inc()
        headers = {"Retry-After": str(error.retry_after_s)}
        return _answer(error.status, error.code, error.message, headers=headers)
    if isinstance(error, ServiceError):
        return _answer(error.status, error.code, error.message, error.problems)
    if isinstance(error, NotFound):
        return _answer(404, error.code.value, str(error))
    if isinstance(error, StoreError):
        return _answer(503, error.code.value, "the ledger store is unavailable; retry later")
    if isinstance(error, IntegrationError):
        return _answer(500, error.code.value, "the core could not process the request")
    if isinstance(error, RequestValidationError):
        return _answer(422, "SCHEMA_INVALID", "the request is invalid", _problems(error))
    if isinstance(error, StarletteHTTPException):
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "HTTP_ERROR")
        return _answer(error.status_code, code, str(error.detail))
    return _answer(500, "INTERNAL", "the service failed; the request was not applied")


def _problems(error: RequestValidationError) -> list[dict[str, str]]:
    return [
        {
            "code": "SCHEMA_INVALID",
            "message": text_refusal(e) or e["msg"],
            "field": ".".join(map(str, e["loc"])),
        }
        for e in error.errors()
    ]


def _answer(
    status: int,
    code: str,
    message: str,
    problems: list | None = None,
    headers: dict[str, str] | None = None,
) -> JsonAnswer:
    body = {"code": code, "message": message, "problems": problems or []}
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JsonAnswer(body, status_code=status, headers=headers)
