"""Schemathesis against the real `twin serve` subprocess (SQLite file store in a tmp dir).

Whatever schemathesis generates from the service's OpenAPI document, the service answers
without a 5xx, every error is JSON with a string `code`, and no body carries a stack trace.
Without a key, every `/v1` answer is 401 and nothing is written.

The served document declares no body for the message endpoints (they read the raw body so
that unreadable payloads can be dead-lettered), so the test adds the `Envelope` JSON schema as
the body of `POST /v1/messages` and an array of them for the batch. A second, "deep" variant
narrows the envelope to the MES key's message types and the test network's ids, so generated
messages get past authorisation and reference checks into posting: with quantities of a
realistic size (some must post, and the ledger must still reconcile), and of any size (up to
the float range as numbers, 1e999 as text), past the ledger's range of 10^15 a typed
rejection (AMOUNT_OUT_OF_RANGE), never a 500. After each operation's run the ledger must
still reconcile.

Why not `schemathesis.pytest.from_fixture`: with pytest 9.2 its lazy parametrisation fails
(`'Function' object has no attribute '_nodeid'`), so each operation's strategy
(`operation.as_strategy`) drives a plain hypothesis test, one pytest test per operation.
Deterministic: `derandomize=True`, no example database, bounded example counts.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from contextlib import closing
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from integration import Envelope
from tests.builders import Envelopes, master_data, release
from tests.integration.served import KEYS, OPS_KEY, Served, auth

# Every operation the service documents; a new endpoint must be added here (and gets fuzzed).
OPERATIONS = (
    "GET /healthz",
    "GET /metrics",
    "POST /v1/messages",
    "POST /v1/messages/batch",
    "GET /v1/messages/{message_id}",
    "GET /v1/ledger/balances",
    "GET /v1/stock",
    "GET /v1/work-orders/{work_order}",
    "GET /v1/dead-letters",
    "POST /v1/dead-letters/replay",
    "POST /v1/dead-letters/discard",
    "POST /v1/holds/expire",
    "GET /v1/reconciliation",
)
UNAUTHENTICATED = ("GET /healthz", "GET /metrics")  # answer without a key
# `operate` keys only
OPERATE = ("POST /v1/dead-letters/replay", "POST /v1/dead-letters/discard", "POST /v1/holds/expire")
WRITES = ("POST /v1/messages", "POST /v1/messages/batch", *OPERATE)

MES = {"Authorization": f"Bearer {KEYS['MES']}"}
OPS = {"Authorization": f"Bearer {OPS_KEY}"}

# The deep variant: what an MES line may send, about the test network's objects.
MES_TYPES = (
    "MaterialIssued",
    "OperationCompleted",
    "ScrapDeclared",
    "ByProductReported",
    "FinishedGoodsReceived",
)
NARROWED = {
    "work_order": ["WO-1", "WO-2"],
    "plant": ["P1"],
    "item": ["RAW-A", "RAW-B", "RAW-B2", "RAW-C", "RAW-L", "FG-1", "BY-1"],
    "component": ["RAW-A", "RAW-B", "RAW-L"],
    "location": ["LINE", "STORES", "FG"],
    "backflush_location": ["LINE", "STORES"],
    "uom": ["EA", "KG", "BOX", "G"],
    "operation_seq": [10, 20],
    "bom_revision": ["A"],
}

# Decimals in the deep variant: a number, or decimal text; "realistic" keeps magnitudes a
# plant would send, "any" lets numbers run to the float range (1e308) and text to 1e999.
DECIMAL_TEXT = {
    "realistic": r"^(0|[1-9][0-9]{0,5})(\.[0-9]{0,5}[1-9])?$",  # strict form, six places
    "any": r"^[+-]?[0-9]{1,32}(\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?$",
}
REALISTIC_MAXIMUM = 1_000_000


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        # No shrinking: a failure is reported as generated, so a failing run stays bounded
        # in time (shrinking a 500 against a live service can take minutes).
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
    )


def start_service(directory) -> Served:
    """A service on an SQLite file, with master data and an open work order (WO-1), so the
    deep variant's messages can post."""
    running = Served(f"sqlite:///{directory}/ledger.db", directory).start()
    envelopes = Envelopes()
    for envelope in [*master_data(envelopes), release(envelopes)]:
        answer = httpx.post(
            f"{running.url}/v1/messages",
            content=envelope.model_dump_json(),
            headers=auth(envelope.source_system.value),
        )
        assert answer.status_code == 200, answer.text
    return running


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    running = start_service(tmp_path_factory.mktemp("fuzz"))
    yield running
    running.stop()


@pytest.fixture
def own_served(tmp_path):
    """A service of the test's own, for tests that may leave a broken one behind."""
    running = start_service(tmp_path)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def documented(served) -> dict[str, Any]:
    """The served OpenAPI document with the envelope as the message endpoints' body."""
    doc = httpx.get(f"{served.url}/openapi.json").json()
    found = tuple(
        f"{method.upper()} {path}" for path, ops in doc["paths"].items() for method in ops
    )
    assert sorted(found) == sorted(OPERATIONS), "fuzz every documented operation"
    envelope = Envelope.model_json_schema(ref_template="#/components/schemas/{model}")
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    clash = set(envelope["$defs"]) & set(components)
    assert not clash, clash
    components.update(envelope.pop("$defs"))
    components["Envelope"] = envelope
    one = {"$ref": "#/components/schemas/Envelope"}
    bodies = {"/v1/messages": one, "/v1/messages/batch": {"type": "array", "items": one}}
    for path, body in bodies.items():
        doc["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    return doc


def deep(doc: dict[str, Any], magnitude: str) -> dict[str, Any]:
    """The document narrowed to MES messages about the test network (see the module doc),
    with decimals of a `magnitude` (see DECIMAL_TEXT)."""
    doc = copy.deepcopy(doc)
    components = doc["components"]["schemas"]
    envelope = components["Envelope"]["properties"]
    envelope["source_system"] = {"type": "string", "enum": ["MES"]}
    envelope["stream"] = {"type": "null"}  # sequencing would hold nearly everything
    envelope["source_seq"] = {"type": "null"}
    for stamp in ("occurred_at", "sent_at"):  # inside the documented window
        envelope[stamp] = {"enum": ["2026-03-02T06:00:00Z", "2026-03-02T07:30:00+01:00"]}
    message = envelope["message"]
    message["oneOf"] = [{"$ref": f"#/components/schemas/{name}"} for name in MES_TYPES]
    message["discriminator"]["mapping"] = {
        name: f"#/components/schemas/{name}" for name in MES_TYPES
    }
    for name in MES_TYPES:
        properties = components[name]["properties"]
        properties["type"] = {"const": name}  # optional in pydantic's schema; the tag matters
        components[name]["required"] = sorted({*components[name]["required"], "type"})
        for value in properties.values():  # decimals: a number, or a decimal in text
            for branch in value.get("anyOf", ()):
                if branch == {"type": "string"}:
                    branch["pattern"] = DECIMAL_TEXT[magnitude]
                elif branch.get("type") == "number" and magnitude == "realistic":
                    branch["maximum"] = REALISTIC_MAXIMUM
                    branch["multipleOf"] = 0.25  # none below the ledger's six places
                elif branch.get("type") == "number":  # past the ledger's range too
                    branch.pop("maximum", None)
        for field, values in NARROWED.items():
            if field in properties:
                properties[field] = {"enum": values}
        if "component_lots" in properties:
            properties["component_lots"] = {
                "type": "object",
                "properties": {"RAW-L": {"enum": ["L1", "L2"]}},
                "additionalProperties": False,
            }
    return doc


def operation(doc: dict[str, Any], label: str):
    schema = schemathesis.openapi.from_dict(doc)
    method, path = label.split(" ", 1)
    return schema[path][method]


def modes(doc: dict[str, Any], label: str) -> tuple[GenerationMode, ...]:
    """Negative generation needs something to break: a body or a query parameter (a string
    path parameter accepts any string, so it has no invalid values)."""
    method, path = label.split(" ", 1)
    declared = doc["paths"][path][method.lower()]
    queried = any(p["in"] == "query" for p in declared.get("parameters", []))
    if queried or declared.get("requestBody"):
        return (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    return (GenerationMode.POSITIVE,)


def ledger_counts(served: Served) -> tuple[int, int, int]:
    """(inbox rows, journal entries, dead letters), read with plain SQL."""
    with closing(sqlite3.connect(served.db_url.removeprefix("sqlite:///"))) as db:
        return tuple(
            db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("inbox", "journal_entry", "dead_letter")
        )


def check_answer(response: schemathesis.Response, where: str) -> None:
    """The service's promise for any request: no 5xx, errors are JSON with a string code,
    no stack trace anywhere."""
    text = response.text
    assert response.status_code < 500, f"{where}: {response.status_code} {text[:500]}"
    assert "Traceback" not in text, f"{where}: {text[:500]}"
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/json"), f"{where}: {content_type}"
        body = json.loads(text)
        assert isinstance(body, dict) and isinstance(body.get("code"), str), f"{where}: {text}"


def run_fuzz(
    op,
    mode: GenerationMode,
    max_examples: int,
    served: Served,
    headers,
    seen: list[int],
    answers: list[str] | None = None,
):
    """Fuzz `op`, checking every answer; statuses go to `seen`, bodies to `answers`."""
    session = requests.Session()

    @fuzz_settings(max_examples)
    @given(case=op.as_strategy(generation_mode=mode))
    def fuzzed(case):
        response = case.call(base_url=served.url, session=session, headers=headers, timeout=30)
        sent = response.request.body or b""
        sent = sent.decode(errors="replace") if isinstance(sent, bytes) else str(sent)
        check_answer(
            response,
            f"{mode.value} {response.request.method} {response.request.url} body={sent[:1500]}",
        )
        seen.append(response.status_code)
        if answers is not None:
            answers.append(response.text)

    try:
        fuzzed()
    finally:
        session.close()


def assert_still_reconciles(served: Served) -> None:
    answer = httpx.get(f"{served.url}/v1/reconciliation", headers=MES)
    assert answer.status_code == 200 and answer.json()["ok"] is True, answer.text


@pytest.mark.parametrize("label", OPERATIONS)
def test_with_the_mes_key_no_generated_request_breaks_the_service(served, documented, label):
    op = operation(documented, label)
    seen: list[int] = []
    examples = 40 if label in WRITES else 15
    for mode in modes(documented, label):
        run_fuzz(op, mode, examples, served, MES, seen)
    if label in OPERATE:  # the MES key may not operate: fuzz as ops too
        # 400: a query value no store can hold is refused with the key, before its rights
        assert set(seen) <= {400, 403, 422}, seen
        for mode in modes(documented, label):
            run_fuzz(op, mode, examples, served, OPS, seen)
    assert seen, "no request was sent"
    assert_still_reconciles(served)


@pytest.mark.parametrize("label", ["POST /v1/messages", "POST /v1/messages/batch"])
def test_deep_mes_messages_of_realistic_size_post_or_are_refused_cleanly(served, documented, label):
    op = operation(deep(documented, "realistic"), label)
    before = ledger_counts(served)
    seen: list[int] = []
    run_fuzz(op, GenerationMode.POSITIVE, 50, served, MES, seen)
    # The narrowing reaches posting: some generated messages become journal entries.
    assert ledger_counts(served)[1] > before[1], "no generated message posted"
    assert 200 in seen
    assert_still_reconciles(served)


@pytest.mark.parametrize("label", ["POST /v1/messages", "POST /v1/messages/batch"])
def test_deep_mes_messages_of_any_size_are_refused_cleanly(served, documented, label):
    """Values past the ledger's range (10^15) among them: each such message is a typed
    rejection, not a 500, and the ledger still reconciles."""
    op = operation(deep(documented, "any"), label)
    seen: list[int] = []
    answers: list[str] = []
    run_fuzz(op, GenerationMode.POSITIVE, 50, served, MES, seen, answers)
    assert any("AMOUNT_OUT_OF_RANGE" in text for text in answers), "nothing out of range sent"
    assert_still_reconciles(served)


def test_a_value_beyond_the_ledgers_range_is_rejected_and_kept_alone_or_in_a_batch(own_served):
    """1e22 is beyond what Decimal's default context can quantize to six places: it must be
    refused as it is read (AMOUNT_OUT_OF_RANGE), alone or in a batch beside a good message
    that still posts, and its dead letter keeps the payload as sent."""
    good = {
        "message_id": "batch-good",
        "idempotency_key": "batch-good",
        "source_system": "MES",
        "stream": "MES:WO-1",
        "source_seq": 1,
        "occurred_at": "2026-03-02T07:00:00Z",
        "sent_at": "2026-03-02T07:00:00Z",
        "message": {
            "type": "OperationCompleted",
            "work_order": "WO-1",
            "operation_seq": 10,
            "good_qty": "1",
            "uom": "EA",
            "backflush_location": "LINE",
            "component_lots": {"RAW-L": "L1"},
        },
    }
    huge = {
        **good,
        "message_id": "batch-huge",
        "idempotency_key": "batch-huge",
        "stream": None,
        "source_seq": None,
        "message": {
            "type": "ScrapDeclared",
            "work_order": "WO-1",
            "operation_seq": 10,
            "qty": "1e22",
            "uom": "EA",
        },
    }
    alone = {**huge, "message_id": "alone-huge", "idempotency_key": "alone-huge"}
    url = f"{own_served.url}/v1/messages"
    answer = httpx.post(f"{url}/batch", json=[good, huge], headers=MES)
    assert answer.status_code == 200, answer.text
    outcomes = [(o["status"], o["code"]) for o in answer.json()["outcomes"]]
    assert outcomes == [("POSTED", None), ("REJECTED", "AMOUNT_OUT_OF_RANGE")]
    answer = httpx.post(url, json=alone, headers=MES)
    assert answer.status_code == 422, answer.text
    assert answer.json()["problems"][0]["field"] == "message.ScrapDeclared.qty"
    assert answer.json()["code"] == "AMOUNT_OUT_OF_RANGE"

    letters = httpx.get(
        f"{own_served.url}/v1/dead-letters", params={"code": "AMOUNT_OUT_OF_RANGE"}, headers=MES
    ).json()["dead_letters"]
    kept = {letter["message_id"]: json.loads(letter["raw"]) for letter in letters}
    assert kept == {"batch-huge": huge, "alone-huge": alone}
    assert_still_reconciles(own_served)
    again = httpx.post(url, json=good, headers=MES)
    assert again.status_code == 200 and again.json()["status"] == "DUPLICATE", again.text


@pytest.mark.parametrize("label", OPERATIONS)
def test_without_a_key_only_operations_endpoints_answer_and_nothing_is_written(
    served, documented, label
):
    op = operation(documented, label)
    before = ledger_counts(served)
    seen: list[int] = []
    for mode in modes(documented, label):
        run_fuzz(op, mode, 10, served, None, seen)
    assert seen
    if label in UNAUTHENTICATED:
        assert set(seen) == {200}, seen
    else:
        assert set(seen) == {401}, seen
    assert ledger_counts(served) == before
