"""`POST /v1/holds/expire`: held messages become named dead letters on an operator's request.

In process (the real app through `httpx.ASGITransport`, on a manual clock) for the semantics of
`older_than_s`; over loopback against `twin serve` on PostgreSQL for the heal phase of a load
test (`older_than_s: 0`) and the negative-stock count reconciliation reports.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from integration.sequencing import stream_waiting_key
from integration.service import ApiKey, ApiKeys, create_app
from tests.builders import Envelopes, confirm, master_data, new_core, release
from tests.integration.pg import fresh_schema, schema_url
from tests.integration.served import KEYS, OPS_KEY, READ_ONLY_KEY, Served, auth

OPS = {"Authorization": f"Bearer {OPS_KEY}"}
STREAM = "MES:WO-1"


class InProcess:
    """The real app over a core on a manual clock, with WO-1 released."""

    def __init__(self) -> None:
        self.core, self.env, self.clock = new_core()
        assert self.core.submit(release(self.env)).status.value == "POSTED"
        keys = [ApiKey(name="mes", key=KEYS["MES"], source="MES")]
        keys += [ApiKey(name="ops", key=OPS_KEY, operate=True)]
        self.app = create_app(self.core, ApiKeys(tuple(keys)))

    def hold(self, seq: int) -> str:
        """Submit a confirmation beyond a sequence gap; its message id (now held)."""
        outcome = self.core.submit(confirm(self.env, seq=seq))
        assert outcome.status.value == "HELD", outcome
        return outcome.message_id

    def expire(self, body: bytes | None = None, headers=OPS) -> httpx.Response:
        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://core") as client:
                return await client.post("/v1/holds/expire", content=body, headers=headers)

        return asyncio.run(call())


@pytest.fixture
def service():
    running = InProcess()
    yield running
    running.core.close()


def expired_ids(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [outcome["message_id"] for outcome in answer.json()["outcomes"]]


def test_older_than_s_expires_exactly_the_messages_held_at_least_that_long(service):
    first = service.hold(seq=3)
    service.clock.advance(timedelta(seconds=600))
    second = service.hold(seq=4)
    assert expired_ids(service.expire(b'{"older_than_s": 600.5}')) == []
    answer = service.expire(b'{"older_than_s": 600}')  # held exactly 600 s: at least that long
    assert expired_ids(answer) == [first]
    [outcome] = answer.json()["outcomes"]
    assert (outcome["status"], outcome["code"]) == ("REJECTED", "SEQUENCE_GAP")
    assert service.core.held_count == 1
    [letter] = service.core.dead_letters()
    assert (letter.id, letter.message_id) == (outcome["dead_letter_id"], first)
    assert letter.waits_on == (stream_waiting_key(STREAM, 3),)  # what it was held for
    assert service.core.outcome(first).status.value == "REJECTED"
    assert service.core.outcome(second).status.value == "HELD"


def test_without_a_body_the_configured_hold_timeout_applies(service):
    held = service.hold(seq=3)
    service.clock.advance(service.core.settings.hold_timeout - timedelta(seconds=1))
    assert expired_ids(service.expire()) == []
    assert expired_ids(service.expire(b"{}")) == []
    assert expired_ids(service.expire(b'{"older_than_s": null}')) == []
    service.clock.advance(timedelta(seconds=1))
    assert expired_ids(service.expire()) == [held]
    assert service.core.held_count == 0


def test_zero_expires_every_hold_oldest_first_and_a_second_call_finds_none(service):
    held = [service.hold(seq=n) for n in (5, 3, 4)]
    assert expired_ids(service.expire(b'{"older_than_s": 0}')) == held
    assert service.core.held_count == 0
    assert expired_ids(service.expire(b'{"older_than_s": 0}')) == []


def test_an_expired_message_still_posts_once_when_its_gap_fills(service):
    held = service.hold(seq=2)
    assert expired_ids(service.expire(b'{"older_than_s": 0}')) == [held]
    gap = service.core.submit(confirm(service.env, seq=1))
    assert gap.status.value == "POSTED"
    assert [(o.message_id, o.status.value) for o in gap.released] == [(held, "POSTED")]
    assert service.core.dead_letters() == [] and service.core.replay() == []
    assert service.core.reconcile().ok


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "MALFORMED_PAYLOAD"),
        (b"[" * 50_000 + b"]" * 50_000, 400, "MALFORMED_PAYLOAD"),
        (b'{"older_than_s": -1}', 422, "SCHEMA_INVALID"),
        (b'{"older_than_s": "0"}', 422, "SCHEMA_INVALID"),
        (b'{"older_than_s": true}', 422, "SCHEMA_INVALID"),
        (b'{"older_than_s": 1e999}', 422, "SCHEMA_INVALID"),
        (b'{"older_than_s": 1e12}', 422, "SCHEMA_INVALID"),
        (b'{"older_than": 0}', 422, "SCHEMA_INVALID"),
        (b"[0]", 422, "SCHEMA_INVALID"),
    ],
)
def test_a_bad_body_gets_a_code_and_expires_nothing(service, body, status, code):
    service.hold(seq=3)
    answer = service.expire(body)
    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert "Traceback" not in answer.text
    assert service.core.held_count == 1


@pytest.mark.parametrize(
    "headers, status, code",
    [
        ({}, 401, "UNAUTHENTICATED"),
        (auth("MES"), 403, "FORBIDDEN"),  # a source key, however valid, does not operate
    ],
)
def test_only_an_operate_key_expires_holds(service, headers, status, code):
    service.hold(seq=3)
    answer = service.expire(b'{"older_than_s": 0}', headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert service.core.held_count == 1


# --- over loopback, on PostgreSQL --------------------------------------------------------------
@pytest.fixture
def served_on_pg(tmp_path):
    with fresh_schema() as schema:
        running = Served(schema_url(schema), tmp_path)
        running.start()
        try:
            yield running
        finally:
            running.stop()


def post(served: Served, envelope) -> httpx.Response:
    return httpx.post(
        f"{served.url}/v1/messages",
        content=envelope.model_dump_json(),
        headers=auth(envelope.source_system.value),
    )


def reconciliation(served: Served) -> dict:
    answer = httpx.get(f"{served.url}/v1/reconciliation", headers=auth("FINANCE"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def stock_exception_rows(schema_url: str) -> int:
    import psycopg

    from integration.store.postgres import split_schema

    conninfo, schema = split_schema(schema_url)
    with psycopg.connect(conninfo) as db:
        return db.execute(f'SELECT COUNT(*) FROM "{schema}".stock_exception').fetchone()[0]


def test_served_heal_turns_every_hold_into_a_dead_letter_and_counts_negative_stock(served_on_pg):
    env = Envelopes()
    for envelope in [*master_data(env), release(env)]:
        assert post(served_on_pg, envelope).status_code == 200
    assert reconciliation(served_on_pg)["stock_exceptions"] == 0
    # Nothing was ever received at LINE: the backflush drives its components negative.
    assert post(served_on_pg, confirm(env, seq=1)).json()["status"] == "POSTED"
    counted = reconciliation(served_on_pg)
    assert counted["stock_exceptions"] == stock_exception_rows(served_on_pg.db_url) > 0
    assert counted["ok"] is True

    held = [post(served_on_pg, confirm(env, seq=n)) for n in (3, 4)]
    assert [answer.status_code for answer in held] == [202, 202]
    url = f"{served_on_pg.url}/v1/holds/expire"
    for key in (KEYS["MES"], READ_ONLY_KEY):
        refused = httpx.post(
            url, json={"older_than_s": 0}, headers={"Authorization": f"Bearer {key}"}
        )
        assert (refused.status_code, refused.json()["code"]) == (403, "FORBIDDEN")
    assert httpx.post(url, headers=OPS).json() == {"outcomes": []}  # within the hold timeout
    answer = httpx.post(url, json={"older_than_s": 0}, headers=OPS)
    assert answer.status_code == 200, answer.text
    ids = [answer.json()["outcomes"][i]["message_id"] for i in (0, 1)]
    assert ids == [h.json()["message_id"] for h in held]
    letters = httpx.get(
        f"{served_on_pg.url}/v1/dead-letters", params={"code": "SEQUENCE_GAP"}, headers=OPS
    ).json()["dead_letters"]
    assert sorted(letter["message_id"] for letter in letters) == sorted(ids)
    assert httpx.post(url, json={"older_than_s": 0}, headers=OPS).json() == {"outcomes": []}
