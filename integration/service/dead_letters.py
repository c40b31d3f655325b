"""The service's dead-letter endpoints: list by filter (any key), replay and discard (an
`operate` key). A discard closes open dead letters without running them again (a message
superseded by a corrected one), each keeping why and when in its history."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from integration.core import Core
from integration.service.inputs import DISCARD_BODY, Selection, discard_request
from integration.service.keys import ApiKey
from integration.service.metrics import ServiceMetrics
from integration.service.runner import CoreRunner
from integration.store.base import DeadLetter

__all__ = ["dead_letter_routes", "dead_letter_view"]


def dead_letter_routes(
    core: Core,
    runner: CoreRunner,
    metrics: ServiceMetrics,
    caller: Callable[..., Awaitable[ApiKey]],
    operator: Callable[..., Awaitable[ApiKey]],
    body_of: Callable[[Request], Awaitable[bytes]],
) -> APIRouter:
    """The routes, with the app's key checks (`caller`, `operator`) and bounded body reader."""
    router = APIRouter(prefix="/v1/dead-letters", tags=["dead letters"])
    Caller = Annotated[ApiKey, Depends(caller)]
    Operator = Annotated[ApiKey, Depends(operator)]

    @router.get("")
    async def dead_letters(_key: Caller, selection: Annotated[Selection, Depends()]) -> dict:
        """Dead letters filtered by code, status and business identifiers."""
        letters = await runner.call(core.dead_letters, selection.to_filter())
        return {"dead_letters": [dead_letter_view(letter) for letter in letters]}

    @router.post("/replay", responses={403: {}})
    async def replay(_key: Operator, selection: Annotated[Selection, Depends()]) -> dict:
        """Replay the selected open dead letters (needs an `operate` key)."""
        outcomes = await runner.call(core.replay, selection.to_filter())
        for outcome in outcomes:
            metrics.replays.labels(outcome.status.value).inc()
        return {"outcomes": [outcome.to_dict() for outcome in outcomes]}

    @router.post(
        "/discard", responses={400: {}, 403: {}, 413: {}, 422: {}}, openapi_extra=DISCARD_BODY
    )
    async def discard(request: Request, _key: Operator) -> dict:
        """Close the selected open dead letters without replaying them (needs an `operate`
        key): a JSON body with the selection (ids, code, business ids; at least one) and a
        `reason`. Each becomes `discarded`; its history records the reason and the time."""
        selection, reason = discard_request(await body_of(request))
        closed = await runner.call(core.discard, selection, reason)
        return {"discarded": [dead_letter_view(letter) for letter in closed]}

    return router


def dead_letter_view(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as the service answers it."""
    return {
        "id": letter.id,
        "message_id": letter.message_id,
        "message_type": letter.message_type,
        "source_system": letter.source_system,
        "code": letter.code.value,
        "problems": [p.to_dict() for p in letter.problems],
        "raw": letter.raw,
        "raw_encoding": letter.raw_encoding,
        "correlation_id": letter.correlation_id,
        "plant": letter.ids.plant,
        "item": letter.ids.item,
        "work_order": letter.ids.work_order,
        "lot": letter.ids.lot,
        "supplier": letter.ids.supplier,
        "period": letter.ids.period,
        "attempts": letter.attempts,
        "history": list(letter.history),
        "status": letter.status,
        "waits_on": list(letter.waits_on),
        "created_at": letter.created_at.isoformat(),
        "updated_at": letter.updated_at.isoformat(),
    }
