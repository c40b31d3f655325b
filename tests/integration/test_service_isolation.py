"""Batch isolation and the dead-letter quota of the HTTP service.

* A batch with a poisoned middle item, against `twin serve` on PostgreSQL: the valid items
  post, the poisoned one has an outcome of its own, and the same batch sent again answers
  the same way instead of failing for ever. The poisons: NUL and a lone surrogate (which
  failed the whole batch with 503/500 before they became rejections at parse time), and a
  store failure of that one item (a trigger in the ledger's schema refuses its inbox row).
* The dead-letter quota per key, on the real app in process with a manual clock (an hour
  cannot be slept): rejections past the quota answer 429 with Retry-After and keep nothing;
  another key is not affected; an hour later the key's rejections are kept again.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import httpx
import psycopg
import pytest

from integration import SourceSystem
from integration.service import ApiKey, ApiKeys, create_app
from tests.builders import D, Envelopes, master_data, new_core
from tests.builders import receipt as goods_receipt
from tests.integration.pg import PG_URL, fresh_schema, schema_url
from tests.integration.served import KEYS, OPS_KEY, Served, auth

HOUR_S = 3600


def receipt(env: Envelopes, n: int, location: str = "STORES", source: str = "WMS") -> str:
    """A goods receipt of one RAW-A into `location` as JSON text, with ids of its own."""
    envelope = env(
        goods_receipt("1", location=location, purchase_order=f"PO-{n}", unit_price=D("2.00")),
        source=SourceSystem(source),
    )
    return envelope.model_dump_json()


POISONED_SUPPLIER = "SUP-POISON"
REFUSE_POISON = f"""
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.supplier = '{POISONED_SUPPLIER}' THEN
        RAISE EXCEPTION 'this row breaks the store';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON inbox
    FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


@pytest.fixture(scope="module")
def served_pg(tmp_path_factory):
    with fresh_schema() as schema:
        url = schema_url(schema)
        running = Served(url, tmp_path_factory.mktemp("isolation")).start()
        with psycopg.connect(PG_URL, autocommit=True) as db:
            db.execute(f'SET search_path TO "{schema}"')
            db.execute(REFUSE_POISON)
        env = Envelopes()
        for envelope in master_data(env):
            answer = httpx.post(
                f"{running.url}/v1/messages",
                content=envelope.model_dump_json(),
                headers=auth(envelope.source_system.value),
            )
            assert answer.status_code == 200, answer.text
        yield running, env
        running.stop()


@pytest.mark.parametrize(
    ("poison", "expected"),
    [
        ('"SUP\\u0000X"', ("REJECTED", "SCHEMA_INVALID")),  # refused when read, not stored
        ('"\\ud800"', ("REJECTED", "SCHEMA_INVALID")),
        (f'"{POISONED_SUPPLIER}"', ("FAILED", "STORE_FAILURE")),
    ],
    ids=["nul", "surrogate", "store-failure"],
)
def test_a_poisoned_batch_item_fails_alone_and_a_retry_answers_alike(served_pg, poison, expected):
    served, env = served_pg
    first, poisoned, last = (receipt(env, n) for n in range(3))
    poisoned = poisoned.replace('"SUP-1"', poison)
    body = f"[{first},{poisoned},{last}]".encode()
    headers = auth("WMS")
    stock_before = raw_a_stock(served)

    answers = [
        httpx.post(f"{served.url}/v1/messages/batch", content=body, headers=headers)
        for _ in range(2)
    ]

    assert [answer.status_code for answer in answers] == [200, 200], answers[0].text
    sent, resent = ([o["status"] for o in a.json()["outcomes"]] for a in answers)
    assert sent[0] == sent[2] == "POSTED" and resent[0] == resent[2] == "DUPLICATE"
    for answer in answers:
        middle = answer.json()["outcomes"][1]
        assert (middle["status"], middle["code"]) == expected, middle
    assert raw_a_stock(served) == stock_before + 2


def raw_a_stock(served) -> Decimal:
    stock = httpx.get(f"{served.url}/v1/stock", headers=auth("WMS")).json()["stock"]
    return sum((Decimal(row["qty"]) for row in stock if row["item"] == "RAW-A"), Decimal(0))


def test_rejections_past_a_keys_quota_answer_429_and_keep_nothing_until_the_hour_frees(
    tmp_path,
):
    core, env, clock = new_core(f"sqlite:///{tmp_path}/ledger.db")
    rejected = [receipt(env, n, location="NOWHERE").encode() for n in range(4)]
    rejected.insert(3, receipt(env, 3, location="NOWHERE", source="ERP").encode())
    quota = 2 * len(rejected[0]) + len(rejected[0]) // 2  # two rejections fit, not three
    keys = ApiKeys(
        (
            ApiKey(name="wms", key=KEYS["WMS"], source="WMS"),
            ApiKey(name="erp", key=KEYS["ERP"], source="ERP"),
            ApiKey(name="ops", key=OPS_KEY, operate=True),
        )
    )
    app = create_app(core, keys, max_body_bytes=quota, dead_letter_quota_bytes=quota, clock=clock)

    async def scenario() -> list[tuple[int, str, str | None, int]]:
        """Each step's status, code, Retry-After and the dead letters counted after it."""
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://core") as client:

            async def send(body: bytes, source: str = "WMS") -> tuple[int, str, str | None, int]:
                answer = await client.post("/v1/messages", content=body, headers=auth(source))
                letters = await client.get(
                    "/v1/dead-letters", params={"status": "any"}, headers=auth(source)
                )
                count = len(letters.json()["dead_letters"])
                return (
                    answer.status_code,
                    answer.json()["code"],
                    answer.headers.get("retry-after"),
                    count,
                )

            steps = [await send(rejected[0]), await send(rejected[1]), await send(rejected[2])]
            steps.append(await send(rejected[3], "ERP"))
            clock.advance(timedelta(seconds=HOUR_S))
            steps.append(await send(rejected[4]))
            return steps

    try:
        steps = asyncio.run(scenario())
    finally:
        core.close()

    assert steps == [
        (422, "UNKNOWN_LOCATION", None, 1),
        (422, "UNKNOWN_LOCATION", None, 2),
        (429, "DEAD_LETTER_QUOTA", str(HOUR_S), 2),  # refused: nothing kept
        (422, "UNKNOWN_LOCATION", None, 3),  # another key's quota
        (422, "UNKNOWN_LOCATION", None, 4),  # an hour later
    ]
