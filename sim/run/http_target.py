"""The twin's `Target` port over HTTP: the core as `twin serve` answers it, through httpx.

`HttpTarget(client, keys)` drives a served core: each message is posted to `/v1/messages`
under the bearer key of its envelope's source system, and the JSON answer is read back into
the core's `Outcome`. `HttpTarget.over_asgi(app, keys)` runs the real FastAPI app in this
process through `httpx.ASGITransport` (no socket, no mock).

Time: the service runs on its own clock (`SystemClock` for `twin serve`), not the twin's
virtual one. `submit(envelope, at)` cannot move that clock, so in a virtual-time run over
HTTP **hold timeouts follow the service's wall clock**: a hold the in-process target would
expire after `integration.hold_timeout` of virtual time stays held until the gap fills, the
dependency arrives, or its wall-clock timeout passes (the service expires holds itself, on
every submit). `heal` then expires **every** hold still open (`POST /v1/holds/expire` with
`older_than_s: 0`), so whatever is still held at the end of a run becomes a named dead letter,
and replays dead letters. `committed_at` is wall time too.

Failures: a transport error, a 5xx or a 429 raises `TargetUnavailable` (nothing is known to
be applied; a retry with the same message id is safe, the core deduplicates it); a 4xx that
carries no outcome (bad key, body too large) raises `TargetRefused`. Both are `TargetError`.

httpx is imported only when a request is made, so `import sim` works without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from integration import (
    DeadLetterFilter,
    Envelope,
    ErrorCode,
    Outcome,
    Problem,
    SourceSystem,
    Status,
)
from sim.model.target import Books, TargetRefused, TargetUnavailable
from sim.model.truth import StockKey
from sim.run.targets import by_location, finding_text, first_codes, replay_rounds

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpTarget", "outcome_from", "retry_after"]

# the dead-letter filter's fields the service's replay takes as query parameters (and its
# discard in its body)
_FILTERS = ("code", "plant", "item", "work_order", "lot", "supplier", "period")


def outcome_from(data: Mapping[str, Any]) -> Outcome:
    """The `Outcome` that `Outcome.to_dict()` wrote (as the service answers it)."""

    def optional(name: str, read):
        return read(data[name]) if data.get(name) is not None else None

    return Outcome(
        status=Status(data["status"]),
        message_id=data.get("message_id"),
        message_type=data.get("message_type"),
        code=optional("code", ErrorCode),
        problems=tuple(Problem.from_dict(p) for p in data.get("problems") or ()),
        entry_ids=tuple(data.get("entry_ids") or ()),
        committed_at=optional("committed_at", datetime.fromisoformat),
        late=bool(data.get("late")),
        original=optional("original", outcome_from),
        dead_letter_id=data.get("dead_letter_id"),
        released=tuple(outcome_from(r) for r in data.get("released") or ()),
    )


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header in its delta-seconds form (else None)."""
    try:
        seconds = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


class HttpTarget:
    """The core behind its HTTP API. `keys` maps each source system (enum or name) to its
    bearer key; `operate_key` (an `operate` key) is needed to expire holds and replay dead
    letters in `heal` and is used for reads, else any source key reads."""

    def __init__(
        self,
        client: httpx.Client,
        keys: Mapping[SourceSystem | str, str],
        *,
        operate_key: str | None = None,
    ) -> None:
        self.client = client
        self.keys = {SourceSystem(source).value: key for source, key in keys.items()}
        self.operate_key = operate_key
        self._read_key = operate_key or next(iter(self.keys.values()), "")

    @classmethod
    def over_asgi(
        cls, app: Any, keys: Mapping[SourceSystem | str, str], *, operate_key: str | None = None
    ) -> HttpTarget:
        """The real ASGI app (e.g. `integration.service.create_app(core, keys)`) in process."""
        import httpx

        client = httpx.Client(transport=_sync_asgi_transport(app), base_url="http://core")
        return cls(client, keys, operate_key=operate_key)

    # --- the port ------------------------------------------------------------------------------
    def submit(self, envelope: Envelope, at: datetime) -> Outcome:
        """Post one envelope as its source system. `at` is not sent: the service stamps its
        own clock (see the module docstring)."""
        source = envelope.source_system.value
        if source not in self.keys:
            raise TargetRefused(f"no API key for source system {source}")
        body = self._call(
            "POST",
            "/v1/messages",
            self.keys[source],
            content=envelope.model_dump_json().encode(),
            headers={"Content-Type": "application/json"},
            outcome=True,
        )
        return outcome_from(body)

    def stock(self) -> dict[StockKey, Decimal]:
        """The service's books, cheap to sample; `books()` reads its ledger."""
        return self._stock("/v1/stock?source=books")

    def _stock(self, path: str) -> dict[StockKey, Decimal]:
        rows = self._call("GET", path, self._read_key)["stock"]
        return by_location((r["plant"], r["item"], r["location"], Decimal(r["qty"])) for r in rows)

    def expire(self, at: datetime) -> list[Outcome]:
        """Nothing: the service expires holds on its own clock, inside its submits."""
        return []

    def heal(self, at: datetime) -> tuple[list[Outcome], list[Outcome]]:
        """Expire every message still held, however briefly (the service's clock is not the
        run's, see the module docstring), then replay open dead letters (rounds, as
        `InProcessTarget`): (expired, replayed). Both need the `operate_key`."""
        if self.operate_key is None:
            raise TargetRefused("heal expires holds and replays dead letters: pass an operate_key")
        expired = self._call(
            "POST", "/v1/holds/expire", self.operate_key, json={"older_than_s": 0}
        )["outcomes"]

        def replay() -> list[Outcome]:
            answer = self._call("POST", "/v1/dead-letters/replay", self.operate_key)
            return [outcome_from(o) for o in answer["outcomes"]]

        return [outcome_from(o) for o in expired], replay_rounds(replay)

    def replay(self, selection: DeadLetterFilter, at: datetime) -> list[Outcome]:
        """`POST /v1/dead-letters/replay` with the selection as query parameters (the
        `operate_key` is needed); `at` is not sent, the service's clock stamps it."""
        if self.operate_key is None:
            raise TargetRefused("a replay needs an operate_key")
        params = {name: getattr(selection, name) for name in _FILTERS}
        params = {name: str(value) for name, value in params.items() if value is not None}
        answer = self._call("POST", "/v1/dead-letters/replay", self.operate_key, params=params)
        return [outcome_from(o) for o in answer["outcomes"]]

    def discard(self, selection: DeadLetterFilter, reason: str, at: datetime) -> int:
        """`POST /v1/dead-letters/discard` with the selection and reason as its JSON body (the
        `operate_key` is needed); `at` is not sent, the service's clock stamps it."""
        if self.operate_key is None:
            raise TargetRefused("a discard needs an operate_key")
        fields = {name: getattr(selection, name) for name in _FILTERS}
        body = {name: str(value) for name, value in fields.items() if value is not None}
        body = {**body, "ids": list(selection.ids), "reason": reason}
        answer = self._call("POST", "/v1/dead-letters/discard", self.operate_key, json=body)
        return len(answer["discarded"])

    def books(self) -> Books:
        """Reconciliation (with the service's count of negative-stock exceptions), dead letters
        (open ones, and every one by its first code) and stock."""
        result = self._call("GET", "/v1/reconciliation", self._read_key)
        every = self._call("GET", "/v1/dead-letters?status=any", self._read_key)["dead_letters"]
        letters = [letter for letter in every if letter["status"] == "open"]
        findings = result["findings"]
        return Books(
            stock=self._stock("/v1/stock"),
            open_dead_letters=[(letter["message_id"], letter["code"]) for letter in letters],
            balanced=not any(f["check"] == "ENTRY_BALANCES" for f in findings),
            reconciled=bool(result["ok"]),
            entries=int(result["entries_checked"]),
            findings=[
                finding_text(f["check"], f["subject"], f["expected"], f["actual"]) for f in findings
            ],
            negative_stock_events=int(result["stock_exceptions"]),
            dead_letters_total=len(every),
            dead_letters_replayed=sum(letter["status"] == "replayed" for letter in every),
            dead_letters_by_first_code=first_codes(letter["history"] for letter in every),
        )

    def close(self) -> None:
        self.client.close()

    # --- HTTP ----------------------------------------------------------------------------------
    def _call(self, method: str, path: str, key: str, outcome: bool = False, **kw: Any) -> dict:
        """One request's JSON body, or a `TargetError`. With `outcome`, a 4xx whose
        body is an outcome (a rejection) is an answer, not an error."""
        import httpx

        kw["headers"] = {"Authorization": f"Bearer {key}", **kw.get("headers", {})}
        try:
            response = self.client.request(method, path, **kw)
        except httpx.TransportError as error:
            raise TargetUnavailable(f"{method} {path}: {error!r}") from error
        try:
            body = response.json()
        except ValueError:
            body = {}
        status = response.status_code
        code = body.get("code") if isinstance(body, dict) else None
        what = f"{method} {path} answered {status} {code or ''}".rstrip()
        if status >= 500 or status == 429:
            raise TargetUnavailable(what, status, code, retry_after(response.headers))
        if not isinstance(body, dict):
            raise TargetRefused(f"{what}: the body is not a JSON object", status, code)
        if status >= 400 and not (outcome and body.get("status") in Status.__members__):
            raise TargetRefused(f"{what}: {body.get('message', response.text[:200])}", status, code)
        return body


def _sync_asgi_transport(app: Any) -> httpx.BaseTransport:
    """`httpx.ASGITransport` is async-only: this transport runs each request to completion on
    a private event loop, so a sync `httpx.Client` drives the ASGI app (not from inside a
    running event loop). The class is made here so that httpx is imported only when used."""
    import httpx

    class SyncASGITransport(httpx.BaseTransport):
        def __init__(self) -> None:
            self._asgi = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            self._runner = asyncio.Runner()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            return self._runner.run(self._handle(request))

        async def _handle(self, request: httpx.Request) -> httpx.Response:
            response = await self._asgi.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(
                response.status_code, headers=response.headers, stream=httpx.ByteStream(content)
            )

        def close(self) -> None:
            self._runner.close()

    return SyncASGITransport()
