"""`twin serve` over real HTTP on loopback: submission, auth, hardened input, reads."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import httpx
import pytest

from integration import FinishedGoodsReceived, PeriodClosed
from integration.service import ApiKey, ApiKeys, create_app
from tests.builders import D, Envelopes, confirm, master_data, new_core, release
from tests.integration.served import KEYS, OPS_KEY, READ_ONLY_KEY, Served, auth


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    directory = tmp_path_factory.mktemp("served")
    running = Served(f"sqlite:///{directory}/ledger.db", directory).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def env(served):
    envelopes = Envelopes()
    for envelope in [*master_data(envelopes), release(envelopes)]:
        answer = post(served, envelope)
        assert answer.status_code == 200, answer.text
    return envelopes


def post(served, envelope, source=None, **kw):
    headers = auth(source or envelope.source_system.value)
    return httpx.post(
        f"{served.url}/v1/messages", content=envelope.model_dump_json(), headers=headers, **kw
    )


def counts(served) -> tuple[int, int]:
    with sqlite3.connect(served.db_url.removeprefix("sqlite:///")) as db:
        return (
            db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0],
            db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0],
        )


def test_a_confirmation_posts_once_and_a_retry_is_a_duplicate(served, env):
    message = confirm(env)
    first, again = post(served, message), post(served, message)
    assert (first.status_code, first.json()["status"]) == (200, "POSTED")
    assert (again.status_code, again.json()["status"]) == (200, "DUPLICATE")
    assert again.json()["original"]["entry_ids"] == first.json()["entry_ids"]
    read = httpx.get(f"{served.url}/v1/messages/{message.message_id}", headers=auth("MES"))
    assert read.json()["status"] == "POSTED"


def test_an_early_message_is_accepted_as_held(served, env):
    answer = post(served, confirm(env, seq=2))
    assert (answer.status_code, answer.json()["code"]) == (202, "SEQUENCE_GAP")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-key-at-all-0000"}, {"Authorization": "Basic eDp5"}],
)
def test_without_a_valid_key_nothing_is_written_and_nothing_revealed(served, env, headers):
    before = counts(served)
    answer = httpx.post(
        f"{served.url}/v1/messages", content=confirm(env).model_dump_json(), headers=headers
    )
    assert answer.status_code == 401
    assert answer.json() == {
        "code": "UNAUTHENTICATED",
        "problems": [],
        "message": "a valid bearer API key is required",
    }
    assert counts(served) == before


def test_a_source_outside_its_role_is_forbidden_and_dead_lettered(served, env):
    before = counts(served)
    closing = env(PeriodClosed(plant="P1", period="2026-02"), source=None)
    answer = post(served, closing, source="MES")  # MES key, FINANCE's message
    assert (answer.status_code, answer.json()["code"]) == (403, "UNAUTHORISED_SOURCE")
    assert counts(served)[1] == before[1] + 1


def test_a_key_cannot_speak_for_another_source(served, env):
    answer = post(served, confirm(env), source="WMS")  # envelope says MES
    assert (answer.status_code, answer.json()["code"]) == (403, "UNAUTHORISED_SOURCE")


def test_a_read_only_key_may_read_but_not_submit_or_replay(served, env):
    headers = {"Authorization": f"Bearer {READ_ONLY_KEY}"}
    assert httpx.get(f"{served.url}/v1/stock", headers=headers).status_code == 200
    answer = httpx.post(
        f"{served.url}/v1/messages", content=confirm(env).model_dump_json(), headers=headers
    )
    assert answer.status_code == 403
    replay = httpx.post(f"{served.url}/v1/dead-letters/replay", headers=headers)
    assert (replay.status_code, replay.json()["code"]) == (403, "FORBIDDEN")


def test_an_oversized_body_is_refused_before_anything_is_written(served, env):
    before = counts(served)
    answer = httpx.post(
        f"{served.url}/v1/messages", content=b"{" + b" " * (1 << 21) + b"}", headers=auth("MES")
    )
    assert (answer.status_code, answer.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert counts(served) == before


@pytest.mark.parametrize(
    "body, status, code",
    [
        (b"{not json", 400, "MALFORMED_PAYLOAD"),
        (b"[" * 50_000 + b"]" * 50_000, 400, "MALFORMED_PAYLOAD"),
        (b'{"message_id": 7}', 422, "SCHEMA_INVALID"),
    ],
)
def test_bad_input_gets_a_code_and_its_payload_is_kept(served, env, body, status, code):
    before = counts(served)
    answer = httpx.post(f"{served.url}/v1/messages", content=body, headers=auth("MES"))
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    assert "Traceback" not in answer.text
    assert counts(served)[1] == before[1] + 1
    letters = httpx.get(
        f"{served.url}/v1/dead-letters", params={"code": code}, headers=auth("MES")
    ).json()["dead_letters"]
    assert any(letter["raw"] == body.decode() for letter in letters)


def test_validation_failures_name_their_fields(served, env):
    data = json.loads(confirm(env).model_dump_json())
    data["message"]["good_qty"] = "-2"
    answer = httpx.post(f"{served.url}/v1/messages", json=data, headers=auth("MES"))
    assert answer.status_code == 422
    assert answer.json()["problems"][0]["field"] == "message.OperationCompleted.good_qty"
    assert answer.json()["problems"][0]["code"] == "INVALID_QUANTITY"


def test_a_batch_answers_each_message(served, env):
    good = json.loads(confirm(env).model_dump_json())
    bad = {
        **good,
        "message_id": "batch-bad",
        "idempotency_key": "batch-bad",
        "message": {**good["message"], "work_order": "WO-404"},
    }
    answer = httpx.post(f"{served.url}/v1/messages/batch", json=[good, bad, 7], headers=auth("MES"))
    statuses = [(o["status"], o["code"]) for o in answer.json()["outcomes"]]
    assert answer.status_code == 200
    assert statuses == [
        ("POSTED", None),
        ("HELD", "AWAITING_DEPENDENCY"),
        ("REJECTED", "SCHEMA_INVALID"),
    ]


@pytest.mark.parametrize(
    "body",
    ['[{"a": 1},]', '[{"a": 1} {"b": 2}]', "[1] [2]", "[", "", '\ufeff{"a": [1]}', '"[1]"'],
)
def test_a_batch_body_that_is_not_a_json_array_is_refused_whole(served, body):
    answer = httpx.post(
        f"{served.url}/v1/messages/batch", content=body.encode(), headers=auth("MES")
    )
    assert (answer.status_code, answer.json()["code"]) == (400, "MALFORMED_PAYLOAD")


def test_each_message_of_a_batch_is_kept_as_the_text_it_was_sent_as(served, env):
    unreadable = '{ "message_id" : "odd",\n  "extra":[1, 2.50] }'
    body = f"\ufeff [ {confirm(env).model_dump_json()} ,\t{unreadable}\n]\r\n"
    answer = httpx.post(
        f"{served.url}/v1/messages/batch", content=body.encode(), headers=auth("MES")
    )
    assert [o["status"] for o in answer.json()["outcomes"]] == ["POSTED", "REJECTED"]
    letters = httpx.get(
        f"{served.url}/v1/dead-letters", params={"code": "SCHEMA_INVALID"}, headers=auth("MES")
    ).json()["dead_letters"]
    assert letters[-1]["raw"] == unreadable  # the newest, this batch's


def test_reads_report_the_books(served, env):
    assert post(served, confirm(env)).status_code == 200  # backflushes from an empty LINE
    receipt = env(FinishedGoodsReceived(work_order="WO-1", qty=D(1), uom="EA", location="FG"))
    assert post(served, receipt).status_code == 200
    headers = auth("ERP")
    balances = httpx.get(f"{served.url}/v1/ledger/balances", headers=headers).json()["balances"]
    assert any(b["account"] == "1320-finished-goods" and b["balance"] == "40.00" for b in balances)
    order = httpx.get(f"{served.url}/v1/work-orders/WO-1", headers=headers).json()
    assert D(order["received"]) == 1 and order["closed"] is False
    assert httpx.get(f"{served.url}/v1/work-orders/nope", headers=headers).status_code == 404
    ledger = httpx.get(f"{served.url}/v1/stock", headers=headers).json()["stock"]
    books = httpx.get(f"{served.url}/v1/stock?source=books", headers=headers).json()["stock"]
    assert any(row["item"] == "FG-1" and D(row["qty"]) == 1 for row in ledger)
    assert books == ledger
    wrong = httpx.get(f"{served.url}/v1/stock?source=cache", headers=headers)
    assert (wrong.status_code, wrong.json()["code"]) == (422, "SCHEMA_INVALID")
    checked = httpx.get(f"{served.url}/v1/reconciliation", headers=headers).json()
    assert checked["ok"] is True
    with sqlite3.connect(served.db_url.removeprefix("sqlite:///")) as db:
        exceptions = db.execute("SELECT COUNT(*) FROM stock_exception").fetchone()[0]
    assert checked["stock_exceptions"] == exceptions > 0
    assert "openapi" in httpx.get(f"{served.url}/openapi.json").json()


def test_replay_needs_an_operator_and_keeps_the_sender_it_was_sent_by(served, env):
    forged = env(PeriodClosed(plant="P1", period="2026-01"))  # claims FINANCE
    assert post(served, forged, source="MES").status_code == 403
    headers = {"Authorization": f"Bearer {OPS_KEY}"}
    answer = httpx.post(
        f"{served.url}/v1/dead-letters/replay",
        params={"code": "UNAUTHORISED_SOURCE"},
        headers=headers,
    )
    assert answer.status_code == 200
    replayed = answer.json()["outcomes"]
    assert replayed and {o["code"] for o in replayed} == {"UNAUTHORISED_SOURCE"}


def test_a_discard_needs_an_operator_a_selection_and_a_reason_and_closes_the_letter(served, env):
    rejected = post(served, env(PeriodClosed(plant="P1", period="2025-07")), source="MES")
    assert rejected.json()["code"] == "UNAUTHORISED_SOURCE"
    letter_id = rejected.json()["dead_letter_id"]
    url = f"{served.url}/v1/dead-letters/discard"
    body = {"ids": [letter_id], "reason": "superseded by a corrected confirmation"}
    read_only = httpx.post(url, json=body, headers={"Authorization": f"Bearer {READ_ONLY_KEY}"})
    assert (read_only.status_code, read_only.json()["code"]) == (403, "FORBIDDEN")
    ops = {"Authorization": f"Bearer {OPS_KEY}"}
    for wrong, status, code in (
        ({"ids": [letter_id]}, 422, "SCHEMA_INVALID"),  # no reason
        ({"ids": [letter_id], "reason": "  "}, 422, "SCHEMA_INVALID"),
        ({"reason": "everything"}, 422, "SCHEMA_INVALID"),  # no selection
        ({"ids": [letter_id], "reason": "x", "status": "any"}, 422, "SCHEMA_INVALID"),
    ):
        answer = httpx.post(url, json=wrong, headers=ops)
        assert (answer.status_code, answer.json()["code"]) == (status, code), wrong
        assert "Traceback" not in answer.text
    malformed = httpx.post(url, content=b"{oops", headers=ops)
    assert (malformed.status_code, malformed.json()["code"]) == (400, "MALFORMED_PAYLOAD")
    still = httpx.get(f"{served.url}/v1/dead-letters", params={"period": "2025-07"},
                      headers=ops).json()["dead_letters"]  # fmt: skip
    assert [letter["status"] for letter in still] == ["open"]
    answer = httpx.post(url, json=body, headers=ops)
    assert answer.status_code == 200
    (closed,) = answer.json()["discarded"]
    assert (closed["id"], closed["status"]) == (letter_id, "discarded")
    assert closed["history"][-1]["resolution"] == "discarded"
    assert closed["history"][-1]["reason"] == body["reason"]
    assert httpx.post(url, json=body, headers=ops).json() == {"discarded": []}
    replayed = httpx.post(
        f"{served.url}/v1/dead-letters/replay", params={"period": "2025-07"}, headers=ops
    )
    assert replayed.json() == {"outcomes": []}
    listed = httpx.get(f"{served.url}/v1/dead-letters", params={"status": "discarded"},
                       headers=ops).json()["dead_letters"]  # fmt: skip
    assert [letter["id"] for letter in listed] == [letter_id]


def test_metrics_count_outcomes_dead_letters_and_duplicates(served, env):
    message = confirm(env)
    post(served, message)
    post(served, message)
    httpx.post(f"{served.url}/v1/messages", content=b"{oops", headers=auth("MES"))
    text = httpx.get(f"{served.url}/metrics").text
    assert 'mfg_twin_messages_total{message_type="OperationCompleted",status="POSTED"}' in text
    assert 'mfg_twin_messages_total{message_type="OperationCompleted",status="DUPLICATE"}' in text
    assert "mfg_twin_duplicates_refused_total 0.0" not in text
    assert 'mfg_twin_dead_letters_total{code="MALFORMED_PAYLOAD"}' in text
    assert 'mfg_twin_submit_seconds_bucket{le="0.005",workflow="OperationCompleted"}' in text


def test_an_unexpected_failure_is_a_json_internal_error_that_reveals_nothing(monkeypatch):
    """The catch-all handler, in process (the served core has no such bug to trigger): an
    exception escaping the core answers 500 with the INTERNAL code, not its text."""
    core, _envelopes, _clock = new_core()
    app = create_app(core, ApiKeys((ApiKey(name="mes", key=KEYS["MES"], source="MES"),)))

    def broken(*_args, **_kwargs):
        raise RuntimeError("a secret detail")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://core") as client:
            return await client.post("/v1/messages", content=b"{}", headers=auth("MES"))

    monkeypatch.setattr(core, "submit_many", broken)
    try:
        answer = asyncio.run(call())
    finally:
        core.close()
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["code"] == "INTERNAL"
    assert "secret" not in answer.text and "Traceback" not in answer.text
