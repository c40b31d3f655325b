"""The operations console at `/console`: server-rendered pages over the same core and keys.

Pages: the overview (governance tiles, open incidents, latency, recent alert notices; its
figures refresh every few seconds from `/console/live/overview`), dead letters filtered by
business ids, code and correlation id, one correlation id's story, and the replay or discard
(closed by hand, with a reason) of a selection (an `operate` key, a confirmation page, then the
result). Jinja2 escapes every
value; every page is served under a Content-Security-Policy that allows only this origin's
stylesheet and script (no inline script or style). Sign-in and sessions: `sessions.py`.
"""

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from integration.durations import format_duration
from integration.errors import ErrorCode, StoreError
from integration.service.alerts import AlertMonitor
from integration.service.inputs import (
    MAX_REASON,
    Selection,
    ServiceError,
    refuse_unstorable_text,
)
from integration.service.keys import ApiKeys
from integration.service.metrics import ServiceMetrics
from integration.service.runner import CoreRunner
from integration.service.sessions import COOKIE, Session, Sessions
from integration.store.base import DeadLetterFilter
from integration.text import is_storable

__all__ = ["SECURITY_HEADERS", "install_console"]

_HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_MAX_FORM_BYTES = 64 * 1024
_MAX_SELECTION = 500  # dead letters one replay or discard may name
_SHOWN = 500  # dead letters one page lists
STATUSES = ("open", "replayed", "resolved", "discarded", "any")
_FILTERS = ("item", "plant", "work_order", "lot", "supplier", "period", "code", "correlation_id")
T = TypeVar("T")


class ConsoleError(Exception):
    """A page that says what went wrong, with its HTTP status (never a stack trace)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SignInNeeded(Exception):
    """No live session: pages redirect to the sign-in form, live fragments answer 401."""


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    environment.filters["age"] = lambda seconds: format_duration(
        timedelta(seconds=max(0, int(seconds)))
    )
    environment.filters["percent"] = lambda rate: "—" if rate is None else f"{rate} %"
    environment.filters["ms"] = lambda seconds: f"{seconds * 1000:.1f} ms"
    return environment


def install_console(
    app: FastAPI,
    keys: ApiKeys,
    runner: CoreRunner,
    monitor: AlertMonitor,
    metrics: ServiceMetrics,
) -> None:
    """Mount the console's pages, static files and error pages on `app`."""
    templates = _environment()
    sessions = Sessions(monitor.clock)
    core = runner.core
    router = APIRouter(prefix="/console", include_in_schema=False)

    def page(name: str, status: int = 200, /, **context: Any) -> HTMLResponse:
        html = templates.get_template(name).render(**context)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    async def read(function: Callable[..., T], *args: Any) -> T:
        try:
            return await runner.call(function, *args)
        except StoreError as error:
            raise ConsoleError(
                503, "The ledger store is unavailable; try again shortly."
            ) from error

    async def viewer(request: Request) -> Session:
        session = sessions.find(request.cookies.get(COOKIE, ""))
        if session is None:
            raise SignInNeeded
        try:
            refuse_unstorable_text(request.path_params, request.query_params)
        except ServiceError as error:
            raise ConsoleError(400, "The request holds text no ledger can store.") from error
        return session

    Viewer = Annotated[Session, Depends(viewer)]

    def base(session: Session, **context: Any) -> dict[str, Any]:
        return {"session": session, "key": session.key, **context}

    def overview_context() -> dict[str, Any]:
        now = monitor.clock.now()
        return {
            "governance": monitor.governance,
            "incidents": [(n, (now - n.since).total_seconds()) for n in monitor.incidents()],
            "recent": list(monitor.recent)[:20],
            "latency": metrics.latency_p95(),
            "interval": monitor.interval_s,
            "rules": monitor.rules.rules,
        }

    @router.get("/login")
    async def sign_in_form() -> HTMLResponse:
        return page("login.html")

    @router.post("/login")
    async def sign_in(request: Request) -> Response:
        form = await _form(request)
        key = keys.find(_one(form, "key"))
        if key is None:
            return page("login.html", 401, failed=True)
        answer = RedirectResponse("/console", status_code=303, headers=SECURITY_HEADERS)
        answer.set_cookie(
            COOKIE, sessions.open(key), httponly=True, samesite="strict", path="/console",
            secure=request.url.scheme == "https",
        )  # fmt: skip
        return answer

    @router.post("/logout")
    async def sign_out(request: Request, session: Viewer) -> Response:
        _check_csrf(session, await _form(request))
        sessions.close(request.cookies.get(COOKIE, ""))
        answer = RedirectResponse("/console/login", status_code=303, headers=SECURITY_HEADERS)
        answer.delete_cookie(COOKIE, path="/console")
        return answer

    @router.get("")
    async def overview(session: Viewer) -> HTMLResponse:
        return page("overview.html", **base(session, **overview_context()))

    @router.get("/live/overview")
    async def live_overview(_session: Viewer) -> HTMLResponse:
        return page("_overview.html", **overview_context())

    @router.get("/dead-letters")
    async def dead_letters(request: Request, session: Viewer) -> HTMLResponse:
        selection, chosen = _selection(request)
        letters = await read(core.dead_letters, selection)
        return page(
            "dead_letters.html",
            **base(session, letters=letters[:_SHOWN], total=len(letters), chosen=chosen,
                   codes=[code.value for code in ErrorCode], statuses=STATUSES),
        )  # fmt: skip

    @router.get("/story")
    async def story(request: Request, session: Viewer) -> HTMLResponse:
        correlation_id = request.query_params.get("correlation_id", "").strip()
        if not correlation_id:
            return page("story.html", **base(session, story=None, correlation_id=""))
        told = await read(core.story, correlation_id)
        message_of = {message.inbox_id: message.message_id for message in told.messages}
        status = 200 if told.messages or told.dead_letters else 404
        return page(
            "story.html", status,
            **base(session, story=told, correlation_id=correlation_id, message_of=message_of),
        )  # fmt: skip

    @router.post("/{action}/confirm")
    async def confirm(request: Request, session: Viewer, action: str) -> Response:
        if action not in ("replay", "discard"):
            _refuse(404, "There is no such page.")
        ids = _chosen_letters(session, await _form(request), action)
        letters = await read(core.dead_letters, DeadLetterFilter(ids=ids))
        return page("confirm.html", **base(session, letters=letters, action=action))

    @router.post("/discard")
    async def discard(request: Request, session: Viewer) -> Response:
        form = await _form(request)
        ids = _chosen_letters(session, form, "discard")
        reason = _one(form, "reason").strip()
        if not reason or len(reason) > MAX_REASON or not is_storable(reason):
            _refuse(400, f"Say why in at most {MAX_REASON} characters of plain text.")
        closed = await read(core.discard, DeadLetterFilter(ids=ids), reason)
        letters = await read(core.dead_letters, DeadLetterFilter(ids=ids, status=None))
        return page("discarded.html", **base(session, closed=closed, letters=letters))

    @router.post("/replay")
    async def replay(request: Request, session: Viewer) -> Response:
        ids = _chosen_letters(session, await _form(request), "replay")
        outcomes = await read(core.replay, DeadLetterFilter(ids=ids))
        for outcome in outcomes:
            metrics.replays.labels(outcome.status.value).inc()
        letters = await read(core.dead_letters, DeadLetterFilter(ids=ids, status=None))
        return page("result.html", **base(session, outcomes=outcomes, letters=letters))

    app.include_router(router)
    app.mount("/console/static", StaticFiles(directory=_HERE / "static"), name="console-static")

    @app.exception_handler(ConsoleError)
    async def _console_error(_request: Request, error: ConsoleError) -> HTMLResponse:
        return page("error.html", error.status, status=error.status, message=error.message)

    @app.exception_handler(SignInNeeded)
    async def _sign_in_needed(request: Request, _error: SignInNeeded) -> Response:
        if request.url.path.startswith("/console/live/"):
            return page("error.html", 401, status=401, message="Your session has ended.")
        return RedirectResponse("/console/login", status_code=303, headers=SECURITY_HEADERS)


async def _form(request: Request) -> dict[str, list[str]]:
    """A url-encoded form body (bounded)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            raise ConsoleError(413, "The form is too large.")
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _one(form: dict[str, list[str]], name: str) -> str:
    return (form.get(name) or [""])[0]


def _check_csrf(session: Session, form: dict[str, list[str]]) -> None:
    if not session.csrf_matches(_one(form, "csrf")):
        raise ConsoleError(403, "This form has expired or did not come from the console: reload "
                                "the page and try again.")  # fmt: skip


def _chosen_letters(session: Session, form: dict[str, list[str]], action: str) -> tuple[int, ...]:
    """The dead letters a replay or discard form names, once its CSRF token and key allow
    it."""
    _check_csrf(session, form)
    if not session.key.operate:
        _refuse(403, f"Your key {session.key.name} is read-only: it may see dead letters but "
                     f"not {action} them. Sign in with an operate key to {action}.")  # fmt: skip
    ids = form.get("id", [])
    if not ids:
        _refuse(400, f"Select at least one dead letter to {action}.")
    if len(ids) > _MAX_SELECTION or not all(value.isdigit() for value in ids):
        _refuse(400, f"Select up to {_MAX_SELECTION} dead letters by their ids.")
    return tuple(sorted({int(value) for value in ids}))


def _refuse(status: int, message: str) -> NoReturn:
    raise ConsoleError(status, message)


def _selection(request: Request) -> tuple[DeadLetterFilter, dict[str, str]]:
    """The dead-letter filter of the query (blank fields ignored), and the values chosen."""
    chosen = {name: value.strip() for name, value in request.query_params.items()
              if name in (*_FILTERS, "status") and value.strip()}  # fmt: skip
    status = chosen.setdefault("status", "open")
    if status not in STATUSES:
        _refuse(400, f"Status is one of {', '.join(STATUSES)}.")
    try:
        code = ErrorCode(chosen["code"]) if "code" in chosen else None
    except ValueError:
        _refuse(400, f"There is no error code {chosen['code']}.")
    fields = {name: chosen.get(name) for name in _FILTERS if name != "code"}
    return Selection(code=code, status=status, **fields).to_filter(), chosen
