"""The two submission endpoints, `POST /v1/messages` and `POST /v1/messages/batch`, and the
direct path that answers them without the web framework.

A single submission's own work in the core is small, so the framework around it was most of
what a request cost the service: py-spy (`--gil`) on the PostgreSQL single-request benchmark
put FastAPI's and Starlette's middleware, routing and dependency solving at a third of the
time the server held the interpreter, more than the core's share. `ServiceApp` therefore
answers these two paths itself, before the framework: the same key check, body limits,
admission, quota, core call, metrics and answers (`Submissions`, `error_answer`) as the
framework's routes, which stay declared for the OpenAPI document and serve the same paths when
the app is mounted under a prefix, or when FastAPI traces requests itself (OpenTelemetry).
"""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Any, TypeVar

from fastapi import FastAPI
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from integration.errors import IntegrationError, StoreError
from integration.outcome import Outcome, Status
from integration.service.admission import DeadLetterQuota, Reservation
from integration.service.answers import JsonAnswer, error_answer, outcome_status
from integration.service.inputs import ServiceError, batch_items, refuse_unstorable_text
from integration.service.keys import ApiKey, ApiKeys
from integration.service.metrics import ServiceMetrics
from integration.service.runner import CoreRunner
from integration.validation import Sender

__all__ = ["ServiceApp", "Submissions"]

_log = logging.getLogger("integration.service")
T = TypeVar("T")


class Submissions:
    """What a submission goes through, whichever path brought it: the key, the body's limits,
    admission and the dead-letter quota, the core, the metrics, and the answer."""

    def __init__(
        self,
        keys: ApiKeys,
        runner: CoreRunner,
        quota: DeadLetterQuota,
        metrics: ServiceMetrics,
        max_body_bytes: int,
        max_batch: int,
    ) -> None:
        self.keys, self.runner, self.quota, self.metrics = keys, runner, quota, metrics
        self.max_body_bytes, self.max_batch = max_body_bytes, max_batch

    def authenticate(self, authorization: str) -> ApiKey:
        """The key of an `Authorization: Bearer …` header, or 401 UNAUTHENTICATED."""
        scheme, _, token = authorization.partition(" ")
        key = self.keys.find(token.strip()) if scheme.lower() == "bearer" and token else None
        if key is None:
            raise ServiceError(401, "UNAUTHENTICATED", "a valid bearer API key is required")
        return key

    async def read_body(self, declared: str | None, chunks: AsyncIterator[bytes]) -> bytes:
        """The body, or 413 PAYLOAD_TOO_LARGE as soon as its declared or read size passes
        the limit."""
        if declared is not None and _larger(declared, self.max_body_bytes):
            raise self._too_large()
        parts, size = [], 0
        async for chunk in chunks:
            size += len(chunk)
            if size > self.max_body_bytes:
                raise self._too_large()
            parts.append(chunk)
        return b"".join(parts)

    async def one(self, body: bytes, key: ApiKey) -> JsonAnswer:
        """Submit one envelope: its outcome, with the status of `outcome_status`."""
        sender = _sender_of(key)
        started = perf_counter()
        reservation = self.quota.reserve(key.name, len(body))
        outcome = await _unless_failed(self.runner.submit(body, sender), reservation)
        self.quota.settle(reservation, len(body) if _kept(outcome) else 0)
        self.metrics.observe(
            outcome, outcome.message_type or "unreadable", perf_counter() - started
        )
        return JsonAnswer(outcome.to_dict(), status_code=outcome_status(outcome))

    async def batch(self, body: bytes, key: ApiKey) -> JsonAnswer:
        """Submit a JSON array of envelopes in one transaction: an outcome for each."""
        sender = _sender_of(key)
        items = batch_items(body, self.max_batch)
        started = perf_counter()
        reservation = self.quota.reserve(key.name, len(body))
        results = await _unless_failed(self.runner.submit_batch(items, sender), reservation)
        each = (perf_counter() - started) / max(len(results), 1)
        kept = 0
        for item, result in zip(items, results, strict=True):
            if isinstance(result, Outcome):
                kept += len(item.encode()) if _kept(result) else 0
                self.metrics.observe(result, result.message_type or "unreadable", each)
        self.quota.settle(reservation, kept)
        return JsonAnswer({"outcomes": [_result_view(result) for result in results]})

    def _too_large(self) -> ServiceError:
        return ServiceError(
            413, "PAYLOAD_TOO_LARGE", f"bodies are limited to {self.max_body_bytes} bytes"
        )


Endpoint = Callable[[bytes, ApiKey], Awaitable[JsonAnswer]]


class ServiceApp(FastAPI):
    """The service's app: `POST /v1/messages` and `/v1/messages/batch` go straight to
    `submissions` (see the module docstring); every other request goes through FastAPI, whose
    `options` it takes."""

    def __init__(self, submissions: Submissions, **options: Any) -> None:
        super().__init__(**options)
        self._submissions = submissions
        self._traces: bool | None = None  # whether FastAPI traces requests, once known
        self._direct: dict[str, Endpoint] = {
            "/v1/messages": submissions.one,
            "/v1/messages/batch": submissions.batch,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = None
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._direct.get(scope["path"])
        if endpoint is None or self._traced():
            await super().__call__(scope, receive, send)
            return
        try:
            answer = await self._answer(endpoint, scope, receive)
        except ClientDisconnect:
            return  # nobody to answer
        await answer(scope, receive, send)

    def _traced(self) -> bool:
        """Whether FastAPI traces requests itself (OpenTelemetry configured, FastAPI 0.16x's
        native telemetry): submissions then go through it, so that they stay in the traces.
        Decided at the first request, as OpenTelemetry is configured when a process starts:
        asked on every request, unconfigured providers cost three environment look-ups, 4 %
        of the server's interpreter time on single submissions (py-spy `--gil`)."""
        if self._traces is None:
            telemetry = getattr(self, "_native_telemetry", None)
            self._traces = telemetry is not None and telemetry.enabled()
        return self._traces

    async def _answer(self, endpoint: Endpoint, scope: Scope, receive: Receive) -> JsonAnswer:
        submissions = self._submissions
        try:
            headers = _headers(scope)
            key = submissions.authenticate(headers.get(b"authorization", b"").decode("latin-1"))
            if scope["query_string"]:
                refuse_unstorable_text({}, QueryParams(scope["query_string"].decode("latin-1")))
            declared = headers.get(b"content-length")
            body = await submissions.read_body(
                None if declared is None else declared.decode("latin-1"), _chunks(receive)
            )
            return await endpoint(body, key)
        except ClientDisconnect:
            raise
        except Exception as error:  # noqa: BLE001 - answered with its code, never a trace
            if not isinstance(error, (ServiceError, IntegrationError)):
                _log.exception("a submission failed")
            return error_answer(error, submissions.metrics)


def _larger(declared: str, limit: int) -> bool:
    """Whether a Content-Length declares more than `limit` bytes; one that is not a decimal
    number is left to the count of what arrives."""
    if not (declared.isascii() and declared.isdigit()):
        return False
    digits = declared.lstrip("0")  # int() of thousands of digits would raise
    return len(digits) > len(str(limit)) or int(digits or "0") > limit


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (the first of a repeated one, as Starlette)."""
    found: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        found.setdefault(name, value)
    return found


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _sender_of(key: ApiKey) -> Sender:
    if key.sender is None:
        raise ServiceError(403, "UNAUTHORISED_SOURCE", f"key {key.name} may not submit")
    return key.sender


async def _unless_failed(submission: Awaitable[T], reservation: Reservation) -> T:
    """Await the submission; one that raised (refused, or rolled back) kept nothing."""
    try:
        return await submission
    except Exception:
        DeadLetterQuota.settle(reservation, 0)
        raise


def _kept(outcome: Outcome) -> bool:
    """The outcome's message was dead-lettered with its raw payload."""
    return outcome.status is Status.REJECTED and outcome.dead_letter_id is not None


def _result_view(result: Outcome | BaseException) -> dict[str, Any]:
    """A batch item's answer: its outcome, or FAILED with the code of what failed its own
    transaction (STORE_FAILURE: nothing of it was applied, send it again later)."""
    if isinstance(result, Outcome):
        return result.to_dict()
    if isinstance(result, StoreError):
        code, message = result.code.value, "the ledger store failed on this message; retry later"
    elif isinstance(result, IntegrationError):
        code, message = result.code.value, "the core could not process this message"
    else:
        code, message = "INTERNAL", "the service failed on this message; it was not applied"
    problem = {"code": code, "message": message, "field": ""}
    return Outcome(Status.REJECTED, None).to_dict() | {
        "status": "FAILED",
        "code": code,
        "problems": [problem],
    }
