"""The load driver's client behaviour at the HTTP boundary, failures forced with respx: each
failure is retried per the policy with the same message id, and counted."""

from __future__ import annotations

import asyncio
import gc
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from integration import Outcome, SourceSystem, Status
from sim import load_scenario
from sim.load import HttpxClient, make_schedule
from sim.load.driver import Driver, RetryPolicy, Timeline
from sim.load.figures import LoadFigures
from sim.load.schedule import Send

BASE = "http://target"
KEYS = {source: f"{source.value.lower()}-key-0123456789abcdef" for source in SourceSystem}
TINY: dict[str, Any] = {
    "name": "driver-tiny",
    "seed": 3,
    "start": "2026-11-02T06:00:00+00:00",
    "horizon": "2h",
    "plants": [{"id": "LYON", "work_centres": [{"id": "CUT", "capacity": 1}]}],
    "products": {"count": 1, "components": 2, "operations": 1},
    "demand": {"orders_per_day": 24, "lot_size_min": 2, "lot_size_max": 3},
}


@pytest.fixture(scope="module")
def sends() -> list[Send]:
    schedule = make_schedule(load_scenario(json.loads(json.dumps(TINY))))
    assert len(schedule.sends) >= 3
    return schedule.sends


def posted(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    outcome = Outcome(Status.POSTED, body["message_id"], body["message"]["type"])
    return httpx.Response(200, json=outcome.to_dict())


class Answers:
    """The listener: what the driver reported."""

    def __init__(self) -> None:
        self.first_attempts: list[str] = []
        self.outcomes: list[tuple[str, Status]] = []

    def started(self, send: Send, wall: float) -> None:
        self.first_attempts.append(send.envelope.message_id)

    def answered(self, send: Send, outcome: Outcome, wall: float) -> None:
        self.outcomes.append((outcome.message_id, outcome.status))


def drive(router: respx.Router, sends, *, attempts: int = 3, backoff: float = 0.001):
    """Run `sends` through a driver on an httpx client whose transport is the respx router."""
    client = HttpxClient(
        httpx.AsyncClient(base_url=BASE, transport=httpx.MockTransport(router.async_handler))
    )
    answers, figures = Answers(), LoadFigures(late_after_s=1.0)
    driver = Driver(
        client,
        KEYS,
        answers,
        figures,
        Timeline(speed=1e9),  # everything due at once
        max_in_flight=4,
        policy=RetryPolicy(max_attempts=attempts, backoff_s=backoff),
    )

    async def go():
        try:
            return await driver.run(sends)
        finally:
            await client.close()

    parked = asyncio.run(go())
    return parked, answers, figures.summary()


def sent_ids(route: respx.Route) -> list[str]:
    return [json.loads(call.request.content)["message_id"] for call in route.calls]


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (httpx.ReadTimeout("too slow"), "timeout"),
        (httpx.ConnectError("connection refused"), "connection"),
        (httpx.RemoteProtocolError("connection reset by peer"), "connection"),
        (httpx.Response(503, json={"code": "STORE_FAILURE"}), "server_error"),
        (httpx.Response(500, text="oops"), "server_error"),
    ],
)
def test_a_failed_request_is_retried_with_the_same_message_id_and_counted(sends, failure, kind):
    router = respx.Router(base_url=BASE)
    route = router.post("/v1/messages").mock(side_effect=[failure, posted])
    parked, answers, summary = drive(router, sends[:1])
    message_id = sends[0].envelope.message_id
    assert sent_ids(route) == [message_id, message_id]
    assert answers.outcomes == [(message_id, Status.POSTED)]
    assert answers.first_attempts == [message_id]  # one delivery, however many attempts
    assert summary["retries"] == {kind: 1}
    assert summary["sends"]["answered"] == 1 and parked == []


def test_a_429_waits_its_retry_after_before_the_same_message_is_resent(sends):
    router = respx.Router(base_url=BASE)
    times: list[float] = []

    def limited_then_posted(request: httpx.Request) -> httpx.Response:
        times.append(asyncio.get_running_loop().time())
        if len(times) == 1:
            return httpx.Response(
                429, json={"code": "RATE_LIMITED"}, headers={"Retry-After": "0.2"}
            )
        return posted(request)

    route = router.post("/v1/messages").mock(side_effect=limited_then_posted)
    _parked, answers, summary = drive(router, sends[:1], backoff=0.001)
    assert len(set(sent_ids(route))) == 1 and len(times) == 2
    assert times[1] - times[0] >= 0.2  # the server's Retry-After, not the 1 ms backoff
    assert summary["retries"] == {"rate_limited": 1}
    assert answers.outcomes[0][1] is Status.POSTED


def test_after_its_last_attempt_a_delivery_is_parked_and_a_resend_delivers_it(sends):
    router = respx.Router(base_url=BASE)
    route = router.post("/v1/messages").mock(side_effect=httpx.ConnectError("down"))
    parked, answers, summary = drive(router, sends[:2], attempts=3)
    assert len(route.calls) == 6 and summary["retries"] == {"connection": 4}  # 3 tries each
    assert summary["parked"] == 2 and [s.envelope for s in parked] == [
        s.envelope for s in sends[:2]
    ]
    assert answers.outcomes == []


def test_a_4xx_without_an_outcome_is_refused_not_retried(sends):
    router = respx.Router(base_url=BASE)
    route = router.post("/v1/messages").respond(401, json={"code": "UNAUTHENTICATED"})
    parked, answers, summary = drive(router, sends[:3])
    assert len(route.calls) == 3 and summary["retries"] == {}
    assert summary["refused"] == {"401": 3} and parked == [] and answers.outcomes == []


def test_a_rejection_is_an_answer_and_each_source_sends_with_its_own_key(sends):
    router = respx.Router(base_url=BASE)

    def rejected(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        outcome = Outcome(Status.REJECTED, body["message_id"], body["message"]["type"])
        return httpx.Response(422, json=outcome.to_dict())

    route = router.post("/v1/messages").mock(side_effect=rejected)
    _parked, answers, summary = drive(router, sends[:3])
    assert [status for _id, status in answers.outcomes] == [Status.REJECTED] * 3
    for call, send in zip(route.calls, sends[:3], strict=True):
        source = send.envelope.source_system
        assert call.request.headers["authorization"] == f"Bearer {KEYS[source]}"
    assert summary["retries"] == {} and summary["refused"] == {}


def test_the_heap_is_frozen_while_sending_and_thawed_after(sends, monkeypatch):
    # A full collection over a large schedule pauses the loop: what is alive when sending
    # starts is hidden from the collector until the run ends.
    router = respx.Router(base_url=BASE)
    router.post("/v1/messages").mock(side_effect=posted)
    frozen_at_send: list[int] = []
    record = lambda _self, _send, _wall: frozen_at_send.append(gc.get_freeze_count())  # noqa: E731
    monkeypatch.setattr(Answers, "started", record)
    drive(router, sends[:3])
    assert len(frozen_at_send) == 3 and min(frozen_at_send) > 0
    assert gc.get_freeze_count() == 0


# --- the measures' view of answers that arrive out of order or not at all ---------------------
def books_for(sends):
    from sim.load.driver import Timeline
    from sim.load.session import _Books
    from sim.model.measures import Measures

    measures = Measures()
    for send in sends:
        measures.happened(send.event)
    return _Books(measures, Timeline(1.0)), measures


def outcomes(send: Send):
    message_id, kind = send.envelope.message_id, send.envelope.message.type
    at = datetime(2026, 11, 2, 7, tzinfo=UTC)
    posted = Outcome(Status.POSTED, message_id, kind, entry_ids=(4, 5), committed_at=at)
    return posted, Outcome(Status.DUPLICATE, message_id, kind, original=posted)


def test_a_duplicate_heard_first_stands_in_for_the_lost_answer(sends):
    books, measures = books_for(sends)
    posted, duplicate = outcomes(sends[0])
    books.answered(sends[0], duplicate, 0.0)
    assert measures.applied(sends[0].event) == 1  # the original's effect
    assert measures.duplicates() == {"delivered": 1, "detected": 1, "posted": 0}


def test_the_late_real_answer_after_a_stand_in_is_not_applied_twice(sends):
    books, measures = books_for(sends)
    posted, duplicate = outcomes(sends[0])
    books.answered(sends[0], duplicate, 0.0)  # the copy's answer overtook the first copy's
    books.answered(sends[0], posted, 0.0)
    assert measures.applied(sends[0].event) == 1
    assert measures.duplicates()["posted"] == 0


def test_a_duplicate_after_the_real_answer_is_only_a_duplicate(sends):
    books, measures = books_for(sends)
    posted, duplicate = outcomes(sends[0])
    books.answered(sends[0], posted, 0.0)
    books.answered(sends[0], duplicate, 0.0)
    assert measures.applied(sends[0].event) == 1
    assert measures.duplicates() == {"delivered": 1, "detected": 1, "posted": 0}


def test_slots_hand_over_first_come_first_served_and_survive_a_cancelled_waiter():
    from sim.load.driver import Slots

    async def scenario() -> list[str]:
        slots, order = Slots(1), []

        async def holder(name: str, hold: float) -> None:
            async with slots:
                order.append(name)
                await asyncio.sleep(hold)

        first = asyncio.create_task(holder("first", 0.01))
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(holder("cancelled", 0))
        later = [asyncio.create_task(holder(f"waiter-{i}", 0)) for i in range(3)]
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(first, *later)
        assert slots.free == 1  # every slot came back
        return order

    assert asyncio.run(scenario()) == ["first", "waiter-0", "waiter-1", "waiter-2"]
