"""The twin drives the core over HTTP (`sim.HttpTarget`): against `twin serve` in a subprocess
on loopback, against the same FastAPI app in process, and at the client boundary under respx."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from integration import (
    Core,
    CoreSettings,
    ErrorCode,
    Outcome,
    Problem,
    Status,
    SystemClock,
    open_store,
)
from integration.service import ApiKey, ApiKeys, create_app
from sim import HttpTarget, InProcessTarget, load_scenario, simulate
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from sim.model.target import TargetRefused, TargetUnavailable
from sim.run.http_target import outcome_from
from tests.builders import Envelopes, confirm, master_data, release, settings
from tests.integration.served import KEYS, OPS_KEY, Served

# One plant for six hours with duplicated deliveries and some confirmations missing their lot
# (LOT_REQUIRED dead letters). Network delays stay far below the hold timeout, so no hold
# outlives it in virtual time: over HTTP, holds expire on the service's wall clock instead
# (see sim/run/http_target.py), and a run whose holds time out differs between the adapters.
SMALL: dict[str, Any] = {
    "name": "http-small",
    "seed": 7,
    "start": "2026-11-02T06:00:00+00:00",
    "horizon": "6h",
    "plants": [
        {
            "id": "LYON",
            "work_centres": [{"id": "CUT", "capacity": 2}, {"id": "PACK", "capacity": 2}],
        }
    ],
    "products": {"count": 3, "components": 3, "operations": 2},
    "demand": {"orders_per_day": 40, "lot_size_min": 5, "lot_size_max": 10},
    "edge_cases": {"missing_lot_rate": 0.3},
    "faults": {"duplicate_rate": 0.05},
}
AT = datetime(2026, 11, 2, 6, tzinfo=UTC)


def scenario_and_settings() -> tuple[Any, CoreSettings]:
    scenario = load_scenario(json.loads(json.dumps(SMALL)))
    return scenario, Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()


def asgi_target(settings: CoreSettings) -> HttpTarget:
    """The service's real app in process, on the wall clock as `twin serve` runs it."""
    core = Core(settings, open_store(":memory:"), SystemClock())
    keys = [ApiKey(name=source.lower(), key=key, source=source) for source, key in KEYS.items()]
    keys.append(ApiKey(name="ops", key=OPS_KEY, operate=True))
    return HttpTarget.over_asgi(create_app(core, ApiKeys(tuple(keys))), KEYS, operate_key=OPS_KEY)


# --- (a) over loopback, against `twin serve` ---------------------------------------------------
@pytest.fixture
def served_for_scenario(tmp_path):
    """`twin serve` started with the scenario's core settings (Catalogue.core_settings())."""
    _scenario, settings = scenario_and_settings()
    running = Served(f"sqlite:///{tmp_path}/ledger.db", tmp_path, settings).start()
    yield running
    running.stop()


def test_the_twin_drives_the_served_core_over_loopback(served_for_scenario):
    scenario, _settings = scenario_and_settings()
    client = httpx.Client(base_url=served_for_scenario.url, timeout=10)
    summary = simulate(scenario, target=HttpTarget(client, KEYS, operate_key=OPS_KEY)).summary
    assert client.is_closed  # the run closes its target
    assert summary["events"]["messages"] > 0
    assert summary["duplicates"]["delivered"] > 0
    assert summary["duplicates"]["posted"] == 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert summary["ledger"]["balanced"] is True
    assert summary["ledger"]["reconciled"] is True
    assert summary["dead_letters"]["by_code"] == {"LOT_REQUIRED": 1}


# --- (b) the same run through both adapters -----------------------------------------------------
def test_the_asgi_adapter_and_the_in_process_core_give_the_same_run():
    """Same seed, same scenario: the HTTP adapter changes nothing the harness measures."""
    scenario, settings = scenario_and_settings()
    direct = simulate(scenario).summary
    over_http = simulate(scenario, target=asgi_target(settings)).summary
    assert direct["duplicates"]["delivered"] > 0 and direct["dead_letters"]["total"] > 0
    keys = ("events", "duplicates", "dead_letters", "drift", "ledger", "outcomes")
    for key in (*keys, "negative_stock_events"):
        assert over_http[key] == direct[key], key


def seen(outcomes: list[Outcome]) -> list[tuple[Status, ErrorCode | None, str | None]]:
    return [(outcome.status, outcome.code, outcome.message_id) for outcome in outcomes]


def test_asgi_books_match_the_in_process_books_message_for_message():
    _scenario, settings = scenario_and_settings()
    envelopes = master_data(Envelopes())
    direct = InProcessTarget(settings, ":memory:", AT)
    over_http = asgi_target(settings)
    try:
        for envelope in [*envelopes, envelopes[0]]:  # the last one is a duplicate
            one, other = direct.submit(envelope, AT), over_http.submit(envelope, AT)
            assert (other.status, other.code, other.message_id) == (
                one.status,
                one.code,
                one.message_id,
            )
        assert over_http.stock() == direct.stock()
        # The scenario's settings lack the test items: most of these messages are held. Over
        # HTTP heal expires every hold; in process, those due by the heal's time.
        expired, replayed = over_http.heal(AT)
        direct_expired, direct_replayed = direct.heal(AT + settings.hold_timeout)
        assert expired and seen(expired) == seen(direct_expired)
        assert replayed == direct_replayed
        assert over_http.books() == direct.books()
    finally:
        direct.close()
        over_http.close()


def test_asgi_heal_dead_letters_every_hold_and_books_count_negative_stock():
    """Over HTTP, `heal` expires whatever is still held (the service's clock is not the run's,
    so a hold could otherwise outlive the run unnamed), and the books carry the service's
    count of negative-stock exceptions, as the in-process target's do."""
    env = Envelopes()
    messages = [*master_data(env), release(env), confirm(env, seq=1), confirm(env, seq=3)]
    direct = InProcessTarget(settings(), ":memory:", AT)
    over_http = asgi_target(settings())
    try:
        outcomes = [over_http.submit(message, AT) for message in messages]
        for message in messages:
            direct.submit(message, AT)
        assert [o.status for o in outcomes[-2:]] == [Status.POSTED, Status.HELD]
        expired, replayed = over_http.heal(AT)
        assert [(o.message_id, o.status, o.code) for o in expired] == [
            (messages[-1].message_id, Status.REJECTED, ErrorCode.SEQUENCE_GAP)
        ]
        # Replayed once: still waiting on seq 2, it is parked again as a dead letter.
        assert [(o.message_id, o.code) for o in replayed] == [
            (messages[-1].message_id, ErrorCode.SEQUENCE_GAP)
        ]
        books = over_http.books()
        assert books.open_dead_letters == [(messages[-1].message_id, "SEQUENCE_GAP")]
        assert books.negative_stock_events == direct.books().negative_stock_events > 0
    finally:
        direct.close()
        over_http.close()


# --- (c) failures at the client boundary ----------------------------------------------------------
try:
    import respx
except ImportError:  # a dev dependency; without it only these tests skip
    respx = None


@pytest.fixture
def mocked():
    if respx is None:
        pytest.skip("respx is not installed")
    with respx.mock(base_url="http://core", assert_all_called=False) as router:
        yield router, HttpTarget(httpx.Client(base_url="http://core"), KEYS, operate_key=OPS_KEY)


def envelope():
    return master_data(Envelopes())[0]


def test_a_503_is_target_unavailable_with_its_code_and_retry_after(mocked):
    router, target = mocked
    body = {"code": "STORE_FAILURE", "message": "retry later", "problems": []}
    router.post("/v1/messages").respond(503, json=body, headers={"Retry-After": "2"})
    with pytest.raises(TargetUnavailable) as raised:
        target.submit(envelope(), AT)
    assert (raised.value.status, raised.value.code, raised.value.retry_after) == (
        503,
        "STORE_FAILURE",
        2.0,
    )


def test_a_connect_error_is_target_unavailable_without_a_status(mocked):
    router, target = mocked
    router.post("/v1/messages").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TargetUnavailable) as raised:
        target.submit(envelope(), AT)
    assert raised.value.status is None
    router.get("/v1/stock").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TargetUnavailable):
        target.stock()


def test_each_message_authenticates_as_its_source_and_a_bad_key_is_refused(mocked):
    router, target = mocked
    route = router.post("/v1/messages").respond(
        401, json={"code": "UNAUTHENTICATED", "message": "a valid bearer API key is required"}
    )
    message = envelope()
    with pytest.raises(TargetRefused) as raised:
        target.submit(message, AT)
    assert (raised.value.status, raised.value.code) == (401, "UNAUTHENTICATED")
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Bearer {KEYS[message.source_system.value]}"
    assert json.loads(sent.content)["message_id"] == message.message_id


def test_a_rejection_is_an_outcome_not_an_error_and_survives_the_round_trip(mocked):
    router, target = mocked
    problem = Problem(ErrorCode.LOT_REQUIRED, "a lot is required", "message.lot")
    original = Outcome(Status.POSTED, "m-0", "ItemCreated", entry_ids=(1, 2), committed_at=AT)
    released = Outcome(Status.POSTED, "m-2", "MaterialIssued", late=True)
    rejected = Outcome(
        Status.REJECTED,
        "m-1",
        "MaterialIssued",
        code=ErrorCode.LOT_REQUIRED,
        problems=(problem,),
        dead_letter_id=7,
        original=original,
        released=(released,),
    )
    router.post("/v1/messages").respond(422, json=rejected.to_dict())
    assert target.submit(envelope(), AT) == rejected
    assert outcome_from(json.loads(json.dumps(rejected.to_dict()))) == rejected


def test_stock_is_summed_over_lots_and_heal_needs_an_operate_key(mocked):
    router, target = mocked
    rows = [
        {"plant": "P", "item": "I", "location": "L", "lot": lot, "qty": qty, "value": "0"}
        for lot, qty in (("A", "1.5"), ("B", "2"), (None, "0.5"))
    ]
    router.get("/v1/stock").respond(200, json={"stock": rows})
    assert target.stock() == {("P", "I", "L"): Decimal("4.0")}
    reader = HttpTarget(httpx.Client(base_url="http://core"), KEYS)
    with pytest.raises(TargetRefused):
        reader.heal(AT)
