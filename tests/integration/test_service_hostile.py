"""Hostile values in every field of every message type, through the real `twin serve` on a
SQLite file and on PostgreSQL (a schema of its own).

Each request is a sample envelope about the test network with one field changed (the fields
read from the models, `tests.integration.hostile`): NUL, lone surrogates, invalid UTF-8, bidi
controls, 10k-character strings, dates across the whole calendar in any offset, Unix times,
huge, tiny and padded decimals, integers beyond int64. Never a 5xx; a value the documented
rules refuse is a rejection, never a posting; every rejection has a dead letter that gives back
the exact bytes sent; the books still reconcile. The same values inside a batch, between two
valid receipts: the receipts post.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from contextlib import closing
from itertools import count

import httpx
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from integration.text import decode_raw
from tests.builders import Envelopes, master_data, release
from tests.integration.hostile import MODELS, Hostile, body, hostile, leaves, sample, source_of
from tests.integration.pg import PG_URL, fresh_schema, schema_url
from tests.integration.served import OPS_KEY, Served, auth

# Every example sends one request per hostile class of every field of every message type
# (about a thousand); the ci profile's 60 examples become 2 such rounds, the soak profile's
# 3000 become 100. Shrinking is off: an example is many requests, and its draws name the field.
ROUNDS = max(1, settings.default.max_examples // 30)
HEAVY = settings(max_examples=ROUNDS, phases=[Phase.explicit, Phase.reuse, Phase.generate])
_ids = count(1)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "sqlite":
        running = Served(f"sqlite:///{directory}/ledger.db", directory).start()
        yield running
        running.stop()
        return
    with fresh_schema() as schema:
        running = Served(schema_url(schema), directory)
        running.schema = schema
        running.start()
        yield running
        running.stop()


@pytest.fixture(scope="module")
def client(served):
    with httpx.Client(base_url=served.url, timeout=30) as http:
        envelopes = Envelopes()
        for envelope in [*master_data(envelopes), release(envelopes, qty="1000000")]:
            answer = http.post(
                "/v1/messages",
                content=envelope.model_dump_json(),
                headers=auth(envelope.source_system.value),
            )
            assert answer.status_code == 200, answer.text
        yield http


def stored_raw(served, ids: list[int]) -> dict[int, bytes]:
    """The dead letters' payloads as the ledger keeps them, decoded to bytes."""
    query = "SELECT dead_letter_id, raw, raw_encoding FROM dead_letter WHERE dead_letter_id IN"
    if served.db_url.startswith("sqlite:///"):
        marks = ", ".join("?" * len(ids))
        with closing(sqlite3.connect(served.db_url.removeprefix("sqlite:///"))) as db:
            rows = db.execute(f"{query} ({marks})", ids).fetchall()
    else:
        import psycopg

        with psycopg.connect(PG_URL, options=f"-c search_path={served.schema}") as db:
            rows = db.execute(f"{query} (SELECT unnest(%s::bigint[]))", (ids,)).fetchall()
    return {row[0]: decode_raw(row[1], row[2]) for row in rows}


def send(client, source: str, payload: bytes, value: Hostile) -> dict | None:
    """Submit; check the answer; the outcome when the service kept a dead letter."""
    answer = client.post("/v1/messages", content=payload, headers=auth(source))
    described = f"{value.label}: {payload[:300]!r} -> {answer.status_code} {answer.text[:300]}"
    assert answer.status_code < 500, described
    outcome = answer.json()
    if value.must_refuse:
        assert answer.status_code in (400, 403, 409, 422), described
        assert outcome["status"] == "REJECTED", described
    return outcome


def assert_kept_exactly(served, sent: dict[int, bytes]) -> None:
    kept = stored_raw(served, list(sent))
    assert kept.keys() == sent.keys()
    for dead_letter_id, payload in sent.items():
        assert kept[dead_letter_id] == payload, (dead_letter_id, payload[:200])


def assert_reconciled(client) -> None:
    answer = client.get("/v1/reconciliation", headers=auth("MES"))
    assert answer.status_code == 200 and answer.json()["ok"], answer.text


QUANTITY_TYPES = [t for t in MODELS if any(leaf.is_quantity for leaf in leaves(t))]


@pytest.mark.parametrize("message_type", QUANTITY_TYPES)
def test_the_unchanged_samples_post(served, client, message_type):
    """What makes the hostile test sharp: without its one changed field a message with a
    quantity posts, so a hostile value that is not refused would post too."""
    answer = client.post(
        "/v1/messages",
        json=sample(message_type, next(_ids)),
        headers=auth(source_of(message_type)),
    )
    assert (answer.status_code, answer.json()["status"]) == (200, "POSTED"), answer.text


@HEAVY
@given(data=st.data())
def test_a_hostile_value_in_any_field_is_refused_or_kept_never_a_5xx(served, client, data):
    dead_letters: dict[int, bytes] = {}
    for message_type in MODELS:
        source = source_of(message_type)
        for leaf in leaves(message_type):
            for values in hostile(leaf):
                value = data.draw(values, label=f"{message_type} {leaf.path}")
                payload = body(sample(message_type, next(_ids)), leaf, value.token)
                outcome = send(client, source, payload, value)
                if outcome.get("status") == "REJECTED":
                    assert outcome["dead_letter_id"] is not None, outcome
                    dead_letters[outcome["dead_letter_id"]] = payload
    assert_kept_exactly(served, dead_letters)
    assert_reconciled(client)


@HEAVY
@given(data=st.data())
def test_a_hostile_item_in_a_batch_leaves_the_valid_items_posting(served, client, data):
    dead_letters: dict[int, bytes] = {}
    hostile_values = [
        (leaf, values)
        for leaf in leaves("GoodsReceived")
        # values that keep the body a JSON array: invalid UTF-8 or a raw NUL would make all
        # of it unreadable, refused as a whole (400 MALFORMED_PAYLOAD)
        for values in hostile(leaf, framed=True)
    ]
    for leaf, values in hostile_values:
        value = data.draw(values, label=str(leaf.path))
        item = body(sample("GoodsReceived", next(_ids)), leaf, value.token)
        valid = [json.dumps(sample("GoodsReceived", next(_ids))).encode() for _ in range(2)]
        answer = client.post(
            "/v1/messages/batch",
            content=b"[" + b",".join([valid[0], item, valid[1]]) + b"]",
            headers=auth(source_of("GoodsReceived")),
        )
        assert answer.status_code < 500, (value.label, item[:300], answer.text[:300])
        assert answer.status_code == 200, answer.text[:300]
        first, middle, last = answer.json()["outcomes"]
        assert (first["status"], last["status"]) == ("POSTED", "POSTED"), (value.label, middle)
        if value.must_refuse:
            assert middle["status"] == "REJECTED", (value.label, item[:300], middle)
        if middle["status"] == "REJECTED":
            dead_letters[middle["dead_letter_id"]] = item
    assert_kept_exactly(served, dead_letters)
    assert_reconciled(client)


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/v1/messages/a%00b"),
        ("GET", "/v1/work-orders/WO%00"),
        ("GET", "/v1/dead-letters?plant=%00"),
        ("GET", "/v1/dead-letters?status=any&supplier=A%00B"),
        ("POST", "/v1/dead-letters/replay?work_order=%00"),
    ],
)
def test_nul_in_a_path_id_or_query_parameter_is_a_typed_400(served, client, method, path):
    answer = client.request(method, path, headers={"Authorization": f"Bearer {OPS_KEY}"})
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "SCHEMA_INVALID"
    assert answer.json()["problems"][0]["code"] == "SCHEMA_INVALID"


def test_an_encoded_surrogate_in_a_path_id_is_not_found(served, client):
    answer = client.get("/v1/messages/%ED%A0%80", headers=auth("MES"))  # not UTF-8: U+FFFD
    assert (answer.status_code, answer.json()["code"]) == (404, "NOT_FOUND")


def test_a_payload_that_is_not_text_is_served_and_replayed_byte_for_byte(served, client):
    """The dead-letter view gives base64 with its marker; a replay keeps the same bytes."""
    sent = [b'{"message_id": "A\x00B"}', b'{"message_id": "\xff\xfe"}']
    ids = []
    for payload in sent:
        answer = client.post("/v1/messages", content=payload, headers=auth("WMS"))
        assert (answer.status_code, answer.json()["code"]) == (400, "MALFORMED_PAYLOAD")
        ids.append(answer.json()["dead_letter_id"])
    listed = client.get("/v1/dead-letters?code=MALFORMED_PAYLOAD", headers=auth("WMS")).json()
    views = {letter["id"]: letter for letter in listed["dead_letters"]}
    for dead_letter_id, payload in zip(ids, sent, strict=True):
        view = views[dead_letter_id]
        assert view["raw_encoding"] == "base64"
        assert base64.b64decode(view["raw"]) == payload
    ops = {"Authorization": f"Bearer {OPS_KEY}"}
    replayed = client.post("/v1/dead-letters/replay?code=MALFORMED_PAYLOAD", headers=ops).json()
    assert {o["dead_letter_id"] for o in replayed["outcomes"]} >= set(ids)
    assert stored_raw(served, ids) == dict(zip(ids, sent, strict=True))
