"""The core as an HTTP service (FastAPI): versioned endpoints, bearer keys, hardened input.

Every answer is JSON with a stable `code` where something went wrong; no request produces a
stack trace, and a request without a valid key writes nothing. The two submission endpoints
are answered before the framework (submissions.py), with the same checks and answers.
"""

import json
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import Response

from integration.alerting import AlertRules
from integration.clock import Clock, SystemClock
from integration.core import Core
from integration.errors import ConfigurationError
from integration.reconcile import Reconciliation
from integration.service.admission import (
    DEFAULT_DEAD_LETTER_QUOTA_BYTES,
    DEFAULT_MAX_WAIT_S,
    Admission,
    DeadLetterQuota,
)
from integration.service.alerts import DEFAULT_ALERT_INTERVAL_S, AlertMonitor
from integration.service.answers import ANSWERED_ERRORS, JsonAnswer, error_answer
from integration.service.console import install_console
from integration.service.dead_letters import dead_letter_routes
from integration.service.inputs import EXPIRE_BODY, ServiceError, older_than, refuse_unstorable_text
from integration.service.keys import ApiKey, ApiKeys
from integration.service.metrics import ServiceMetrics
from integration.service.runner import CoreRunner
from integration.service.submissions import ServiceApp, Submissions
from integration.service.webhook import Webhook

__all__ = ["create_app", "DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_BATCH"]

DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_BATCH = 1000
# A source system's name (an unknown one has sent nothing: 404). Plain text, not the enum, so the
# OpenAPI document keeps one `SourceSystem` schema: the envelope's.
_SOURCE_QUERY = Query(pattern="^[A-Z]{1,32}$", description="the source system that sent the id")


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
    submissions = Submissions(keys, runner, quota, metrics, max_body_bytes, max_batch)
    app = ServiceApp(
        submissions,
        title="mfg-twin integration core",
        version="1",
        description="Canonical manufacturing messages in, exactly one ledger effect out.",
        lifespan=lambda _app: monitor.running(),
    )
    app.state.core, app.state.metrics, app.state.runner = core, metrics, runner
    app.state.alerts = monitor

    async def caller(request: Request) -> ApiKey:  # no I/O: async spares a threadpool hop
        key = submissions.authenticate(request.headers.get("authorization", ""))
        refuse_unstorable_text(request.path_params, request.query_params)
        return key

    Caller = Annotated[ApiKey, Depends(caller)]

    async def operator(key: Caller) -> ApiKey:
        if not key.operate:
            raise ServiceError(403, "FORBIDDEN", f"key {key.name} may not operate the core")
        return key

    Operator = Annotated[ApiKey, Depends(operator)]

    async def body_of(request: Request) -> bytes:
        return await submissions.read_body(request.headers.get("content-length"), request.stream())

    async def answer_error(_request: Request, error: Exception) -> JsonAnswer:
        return error_answer(error, metrics)

    for kind in (*ANSWERED_ERRORS, Exception):
        app.add_exception_handler(kind, answer_error)

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
    async def submit_one(request: Request, key: Caller) -> JsonAnswer:
        """Submit one envelope (JSON). POSTED and DUPLICATE answer 200, HELD 202; a rejection
        answers 400/403/409/422 with its code, and its payload is kept in the dead letters."""
        return await submissions.one(await body_of(request), key)

    @app.post(
        "/v1/messages/batch",
        tags=["messages"],
        response_model=dict[str, Any],
        responses={400: {}, 413: {}},
    )
    async def submit_batch(request: Request, key: Caller) -> JsonAnswer:
        """Submit a JSON array of envelopes; each gets its own outcome (partial failure is
        normal, as in an OAGIS ConfirmBOD)."""
        return await submissions.batch(await body_of(request), key)

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
