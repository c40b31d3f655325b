"""Group commit of single submissions (`integration/service/runner.py`), on PostgreSQL.

Concurrent `POST /v1/messages` requests to the real app (in process, `httpx.ASGITransport`)
are committed in groups; each still gets its own outcome, is answered only once its
transaction has committed (another connection already sees it), and is applied exactly once,
a copy in the same group included. A group whose transaction fails is submitted again message
by message.
"""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest

from integration import OperationCompleted, StoreError
from integration.service import ApiKey, ApiKeys, create_app
from tests.builders import D, Envelopes, new_core, release
from tests.integration.pg import PG_URL, fresh_schema, schema_url
from tests.integration.served import KEYS, auth

MESSAGES = 12


@pytest.fixture
def pg_core():
    with fresh_schema() as schema:
        core, env, _clock = new_core(schema_url(schema))
        try:
            assert core.submit(release(env)).status.value == "POSTED"
            yield core, env, schema
        finally:
            core.close()


class GroupSizes:
    """Records the size of each group the runner commits (and commits it); with `fail_first`,
    the first group of more than one message fails instead."""

    def __init__(self, core, fail_first: bool = False) -> None:
        self.sizes: list[int] = []
        self.failed: list[int] = []  # the size of the group that failed
        self._submit_many, self._fail = core.submit_many, fail_first

    def __call__(self, payloads, sender=None):
        self.sizes.append(len(payloads))
        if self._fail and len(payloads) > 1:
            self._fail = False
            self.failed.append(len(payloads))
            raise StoreError("the group's transaction failed")
        return self._submit_many(payloads, sender)


def confirmations(env: Envelopes) -> list[bytes]:
    return [
        env(
            OperationCompleted(
                work_order="WO-1",
                operation_seq=10,
                good_qty=D("0.5"),
                uom="EA",
                backflush_location="LINE",
                component_lots={"RAW-L": "L1"},
            )
        )
        .model_dump_json()
        .encode()
        for _ in range(MESSAGES)
    ]


def committed(schema: str, message_id: str) -> str | None:
    """The inbox status another connection sees (None: not committed)."""
    with psycopg.connect(PG_URL) as db:
        row = db.execute(
            f'SELECT status FROM "{schema}".inbox WHERE message_id = %s', (message_id,)
        ).fetchone()
    return row[0] if row else None


async def post_all(app, bodies: list[bytes], schema: str) -> list[tuple[int, dict, str | None]]:
    """Every body at once; each answer with what another connection saw when it came."""
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://core") as client:

        async def one(body: bytes) -> tuple[int, dict, str | None]:
            answer = await client.post("/v1/messages", content=body, headers=auth("MES"))
            seen = answer.json().get("message_id")
            return answer.status_code, answer.json(), seen and committed(schema, seen)

        return await asyncio.gather(*(one(body) for body in bodies))


def test_concurrent_submissions_commit_in_groups_each_once_with_its_own_answer(pg_core):
    core, env, schema = pg_core
    sizes = GroupSizes(core)
    core.submit_many = sizes
    app = create_app(core, ApiKeys((ApiKey(name="mes", key=KEYS["MES"], source="MES"),)))
    bodies = confirmations(env)
    answers = asyncio.run(post_all(app, [*bodies, *bodies, b"{not json", b"[]"], schema))

    assert max(sizes.sizes) > 1, sizes.sizes  # grouped
    by_id: dict[str, list[dict]] = {}
    for status, body, seen in answers[: 2 * MESSAGES]:
        assert status == 200 and seen == "POSTED", (status, body, seen)  # durable when answered
        by_id.setdefault(body["message_id"], []).append(body)
    assert len(by_id) == MESSAGES
    for pair in by_id.values():
        assert sorted(answer["status"] for answer in pair) == ["DUPLICATE", "POSTED"], pair
        posted = next(a for a in pair if a["status"] == "POSTED")
        duplicate = next(a for a in pair if a["status"] == "DUPLICATE")
        assert duplicate["original"]["entry_ids"] == posted["entry_ids"] != []
    assert [(s, b["code"]) for s, b, _ in answers[-2:]] == [
        (400, "MALFORMED_PAYLOAD"),
        (422, "SCHEMA_INVALID"),
    ]
    rows = core.store.connection.execute(
        "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM inbox WHERE message_type = %s",
        ("OperationCompleted",),
    ).fetchone()
    assert rows == (MESSAGES, MESSAGES)
    assert core.reconcile().ok


def test_a_group_whose_transaction_fails_is_submitted_message_by_message(pg_core):
    core, env, schema = pg_core
    sizes = GroupSizes(core, fail_first=True)
    core.submit_many = sizes
    app = create_app(core, ApiKeys((ApiKey(name="mes", key=KEYS["MES"], source="MES"),)))
    answers = asyncio.run(post_all(app, confirmations(env), schema))

    assert sizes.failed and sizes.failed[0] > 1
    assert [(status, body["status"], seen) for status, body, seen in answers] == [
        (200, "POSTED", "POSTED")
    ] * MESSAGES
    assert core.reconcile().ok


def test_a_lone_submission_is_committed_as_a_batch_of_one(pg_core):
    """On PostgreSQL a batch's transaction is the cheaper one for a single message too."""
    core, env, schema = pg_core
    sizes = GroupSizes(core)
    core.submit_many = sizes
    app = create_app(core, ApiKeys((ApiKey(name="mes", key=KEYS["MES"], source="MES"),)))
    [(status, body, seen)] = asyncio.run(post_all(app, confirmations(env)[:1], schema))

    assert (status, body["status"], seen) == (200, "POSTED", "POSTED")
    assert sizes.sizes == [1]
