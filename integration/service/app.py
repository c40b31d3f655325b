"""The core as an HTTP service (FastAPI): versioned endpoints, bearer keys, hardened input.

Every answer is JSON with a stable `code` where something went wrong; no request produces a
stack trace, and a request without a valid key writes nothing.
"""

import json
import time
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from integration.alerting import AlertRules
from integration.clock import Clock, SystemClock
from integration.core import Core
from integration.errors import ConfigurationError, ErrorCode, IntegrationError, NotFound, StoreError
from integration.outcome import Outcome, Status
from integration.reconcile import Reconciliation
from integration.service.admission import (
    DEFAULT_DEAD_LETTER_QUOTA_BYTES,
    DEFAULT_MAX_WAIT_S,
    Admission,
    DeadLetterQuota,
    Refused,
    Reservation,
)
from integration.service.alerts import DEFAULT_ALERT_INTERVAL_S, AlertMonitor
from integration.service.console import install_console
from integration.service.dead_letters import dead_letter_routes
from integration.service.inputs import (
    EXPIRE_BODY,
    ServiceError,
    batch_items,
    older_than,
    refuse_unstorable_text,
)
from integration.service.keys import ApiKey, ApiKeys
from integration.service.metrics import ServiceMetrics
from integration.service.runner import CoreRunner
from integration.service.webhook import Webhook
from integration.text import text_refusal
from integration.validation import Sender

__all__ = ["create_app", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_BATCH"]

DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_BATCH = 1000
# A source system's name (an unknown one has sent nothing: 404). Plain text, not the enum, so the
# OpenAPI document keeps one `SourceSystem` schema: the envelope's.
_SOURCE_QUERY = Query(pattern="^[A-Z]{1,32}$", description="the source system that sent the id")
T = TypeVar("T")


def _error(
    status: int,
    code: str,
    message: str,
    problems: list | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"code": code, "message": message, "problems": problems or []}
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(body, status_code=status, headers=headers)


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


def create_app(
    core: Core,
    keys: ApiKeys,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    dead_letter_quota_bytes: int = DEFAULT_DEAD_LETTER_QUOTA_BYTES,
    clock: Clock | None = None,
    alert_rules: AlertRules | None = None,
    alert_interval_s: float = DEFAULT_ALERT_INTERVAL_S,
    webhook_url: str | None = None,
) -> FastAPI:
    """The service over `core`. The core is single-threaded: every endpoint's core call runs
    on the core's one thread (`CoreRunner`), where concurrent single submissions are committed
    in groups; several processes share a PostgreSQL ledger through its writer lock.

    A submission is refused with 429 when its expected wait passes `max_wait_s`, or when its
    key's rejected payloads kept in the last hour (by `clock`, the wall clock by default)
    could pass `dead_letter_quota_bytes` (see `integration.service.admission`).

    While the app runs (its lifespan), `alert_rules` are evaluated every `alert_interval_s`
    on the ledger, with the governance figures the console at `/console` shows; notices go
    to the metrics and, given `webhook_url`, to that URL (see `integration.service.alerts`)."""
    if dead_letter_quota_bytes < max_body_bytes:
        raise ConfigurationError("the dead-letter quota must be at least the largest body")
    clock = clock or SystemClock()
    metrics = ServiceMetrics()
    runner = CoreRunner(core, max_batch, Admission(max_wait_s), metrics)
    quota = DeadLetterQuota(clock, dead_letter_quota_bytes)
    webhook = None if webhook_url is None else Webhook(webhook_url, metrics)
    rules = alert_rules or AlertRules()
    monitor = AlertMonitor(runner, rules, clock, metrics, alert_interval_s, webhook)
    app = FastAPI(
        title="mfg-twin integration core",
        version="1",
        description="Canonical manufacturing messages in, exactly one ledger effect out.",
        lifespan=lambda _app: monitor.running(),
    )
    app.state.core, app.state.metrics, app.state.runner = core, metrics, runner
    app.state.alerts = monitor

    async def caller(request: Request) -> ApiKey:  # no I/O: async spares a threadpool hop
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        key = keys.find(token.strip()) if scheme.lower() == "bearer" and token else None
        if key is None:
            raise ServiceError(401, "UNAUTHENTICATED", "a valid bearer API key is required")
        refuse_unstorable_text(request)
        return key

    Caller = Annotated[ApiKey, Depends(caller)]

    async def operator(key: Caller) -> ApiKey:
        if not key.operate:
            raise ServiceError(403, "FORBIDDEN", f"key {key.name} may not operate the core")
        return key

    Operator = Annotated[ApiKey, Depends(operator)]

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            raise ServiceError(
                413, "PAYLOAD_TOO_LARGE", f"bodies are limited to {max_body_bytes} bytes"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise ServiceError(
                    413, "PAYLOAD_TOO_LARGE", f"bodies are limited to {max_body_bytes} bytes"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def sender_of(key: ApiKey) -> Sender:
        if key.sender is None:
            raise ServiceError(403, "UNAUTHORISED_SOURCE", f"key {key.name} may not submit")
        return key.sender

    async def submit(payload: bytes, key: ApiKey) -> Outcome:
        sender = sender_of(key)
        started = time.perf_counter()
        reservation = quota.reserve(key.name, len(payload))
        outcome = await _unless_failed(runner.submit(payload, sender), reservation)
        quota.settle(reservation, len(payload) if _kept(outcome) else 0)
        metrics.observe(
            outcome, outcome.message_type or "unreadable", time.perf_counter() - started
        )
        return outcome

    async def submit_many(body: bytes, key: ApiKey) -> list[Outcome | BaseException]:
        sender = sender_of(key)
        items = batch_items(body, max_batch)
        started = time.perf_counter()
        reservation = quota.reserve(key.name, len(body))
        results = await _unless_failed(runner.submit_batch(items, sender), reservation)
        each = (time.perf_counter() - started) / max(len(results), 1)
        kept = 0
        for item, result in zip(items, results, strict=True):
            if isinstance(result, Outcome):
                kept += len(item.encode()) if _kept(result) else 0
                metrics.observe(result, result.message_type or "unreadable", each)
        quota.settle(reservation, kept)
        return results

    @app.exception_handler(Refused)
    async def _refused(_request: Request, error: Refused) -> JSONResponse:
        metrics.refused.labels(error.code).inc()
        headers = {"Retry-After": str(error.retry_after_s)}
        return _error(error.status, error.code, error.message, headers=headers)

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, error: ServiceError) -> JSONResponse:
        return _error(error.status, error.code, error.message, error.problems)

    @app.exception_handler(NotFound)
    async def _not_found(_request: Request, error: NotFound) -> JSONResponse:
        return _error(404, error.code.value, str(error))

    @app.exception_handler(StoreError)
    async def _store_failure(_request: Request, error: StoreError) -> JSONResponse:
        return _error(503, error.code.value, "the ledger store is unavailable; retry later")

    @app.exception_handler(IntegrationError)
    async def _integration_error(_request: Request, error: IntegrationError) -> JSONResponse:
        return _error(500, error.code.value, "the core could not process the request")

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "code": "SCHEMA_INVALID",
                "message": text_refusal(e) or e["msg"],
                "field": ".".join(map(str, e["loc"])),
            }
            for e in error.errors()
        ]
        return _error(422, "SCHEMA_INVALID", "the request is invalid", problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "HTTP_ERROR")
        return _error(error.status_code, code, str(error.detail))

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, _exception: Exception) -> JSONResponse:
        return _error(500, "INTERNAL", "the service failed; the request was not applied")

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers and its ledger store is open."""
        return {"status": "ok"}

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus exposition of the service's metrics."""
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.post(
        "/v1/messages",
        tags=["messages"],
        responses={202: {}, 400: {}, 403: {}, 409: {}, 413: {}, 422: {}},
    )
    async def submit_one(request: Request, key: Caller) -> JSONResponse:
        """Submit one envelope (JSON). POSTED and DUPLICATE answer 200, HELD 202; a rejection
        answers 400/403/409/422 with its code, and its payload is kept in the dead letters."""
        outcome = await submit(await body_of(request), key)
        return JSONResponse(outcome.to_dict(), status_code=outcome_status(outcome))

    @app.post("/v1/messages/batch", tags=["messages"], responses={400: {}, 413: {}})
    async def submit_batch(request: Request, key: Caller) -> dict[str, Any]:
        """Submit a JSON array of envelopes; each gets its own outcome (partial failure is
        normal, as in an OAGIS ConfirmBOD)."""
        results = await submit_many(await body_of(request), key)
        return {"outcomes": [_result_view(result) for result in results]}

    @app.get("/v1/messages/{message_id}", tags=["messages"], responses={404: {}})
    async def outcome_of(
        message_id: str, key: Caller, source: Annotated[str | None, _SOURCE_QUERY] = None
    ) -> dict[str, Any]:
        """The recorded outcome of the message `source` sent with this id (a message id is
        unique per source system). Without `source`: the caller's key's source, or for a key
        that names none, the first message received with this id."""
        source = source or key.source
        return (await runner.call(core.outcome, message_id, source)).to_dict()

    @app.get("/v1/ledger/balances", tags=["ledger"])
    async def balances(_key: Caller) -> dict[str, Any]:
        """GL balance per plant, account and currency (debit positive)."""
        rows = (await runner.call(core.account_balances)).items()
        return {
            "balances": [
                {"plant": p, "account": a, "currency": c, "balance": str(b)}
                for (p, a, c), b in rows
            ]
        }

    @app.get("/v1/stock", tags=["ledger"])
    async def stock(_key: Caller, source: Literal["ledger", "books"] = "ledger") -> dict[str, Any]:
        """The valued stock sub-ledger per plant, item, location and lot, read from the ledger;
        `source=books`: the same figures from the core's in-memory books, without scanning the
        ledger (for frequent samples of a long run)."""
        balances = await runner.call(core.book_stock if source == "books" else core.stock)
        return {
            "stock": [
                {
                    "plant": p,
                    "item": i,
                    "location": loc,
                    "lot": lot,
                    "qty": str(b.qty),
                    "value": str(b.value),
                }
                for (p, i, loc, lot), b in balances.items()
            ]
        }

    @app.get("/v1/work-orders/{work_order}", tags=["ledger"], responses={404: {}})
    async def work_order(work_order: str, _key: Caller) -> dict[str, Any]:
        """A work order as the books see it, with its WIP."""
        status = await runner.call(core.work_order_status, work_order)
        return json.loads(json.dumps(status, default=str))

    app.include_router(dead_letter_routes(core, runner, metrics, caller, operator, body_of))

    @app.post(
        "/v1/holds/expire",
        tags=["holds"],
        responses={400: {}, 403: {}, 413: {}},
        openapi_extra=EXPIRE_BODY,
    )
    async def expire_holds(request: Request, _key: Operator) -> dict:
        """Dead-letter held messages (needs an `operate` key): with `older_than_s`, every one
        held at least that many seconds by the service clock (0: all); without it, those
        past the configured hold timeout. Each becomes an open dead letter with its code."""
        outcomes = await runner.call(core.expire_holds, older_than(await body_of(request)))
        for outcome in outcomes:
            metrics.observe(outcome, outcome.message_type or "expired")
        return {"outcomes": [outcome.to_dict() for outcome in outcomes]}

    @app.get("/v1/reconciliation", tags=["ledger"])
    async def reconciliation(_key: Caller) -> dict[str, Any]:
        """Every ledger invariant, with findings where one does not hold, and the number of
        negative-stock exceptions recorded (postings that drove stock below zero)."""
        result, exceptions = await runner.call(_reconciled, core)
        metrics.reconciliation_exceptions.set(len(result.findings))
        return {
            "ok": result.ok,
            "entries_checked": result.entries_checked,
            "stock_exceptions": exceptions,
            "findings": [
                {
                    "check": f.check.value,
                    "subject": f.subject,
                    "expected": str(f.expected),
                    "actual": str(f.actual),
                }
                for f in result.findings
            ],
        }

    # after the API: routes are matched in order, and a submission should not try the
    # console's pages first
    install_console(app, keys, runner, monitor, metrics)
    return app


def _reconciled(core: Core) -> tuple[Reconciliation, int]:
    """Reconciliation and the negative-stock count, in one turn of the core's thread."""
    return core.reconcile(), core.store.stock_exception_count()


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
