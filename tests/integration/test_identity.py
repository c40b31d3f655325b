"""Identity no other source can take: a message id is unique per source system, an idempotency
key per message type. Through `Core.submit` on every store adapter, and through `twin serve`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from integration import Core, MachineEvent, SourceSystem, Status
from integration.clock import ManualClock
from tests.builders import START, D, Envelopes, master_data, receipt, settings
from tests.integration.pg import fresh_schema, schema_url
from tests.integration.served import Served, auth

MACHINE_EVENT = MachineEvent(plant="P1", work_centre="CUT", state="DOWN")

# What the MES takes of the WMS's next receipt: its idempotency key, its message id, or both.
TAKEN = {
    "key": {"key": "GR-1001"},
    "message_id": {"message_id": "WMS-0001"},
    "both": {"key": "GR-1001", "message_id": "WMS-0001"},
}


@pytest.fixture
def core(store) -> tuple[Core, Envelopes]:
    """A core with the test master data posted, on every store adapter."""
    started = Core(settings(), store, ManualClock(START))
    envelopes = Envelopes()
    for envelope in master_data(envelopes):
        assert started.submit(envelope).status is Status.POSTED
    return started, envelopes


@pytest.mark.parametrize("taken", sorted(TAKEN))
def test_the_mes_cannot_block_the_wms_receipt_that_follows(core, taken):
    core, env = core
    ids = {"key": "GR-1001", "message_id": "WMS-0001"}
    blocker = core.submit(env(MACHINE_EVENT, source=SourceSystem.MES, **TAKEN[taken]))
    assert blocker.status is Status.POSTED
    received = core.submit(env(receipt(), **ids))
    assert received.status is Status.POSTED and len(received.entry_ids) == 1
    assert core.stock()[("P1", "RAW-A", "STORES", "")].qty == D(5)
    assert core.outcome("WMS-0001", SourceSystem.WMS).entry_ids == received.entry_ids


def test_the_same_receipt_from_the_erp_and_the_wms_posts_once(core):
    core, env = core
    first = core.submit(env(receipt(), source=SourceSystem.ERP, key="GR-1001"))
    second = core.submit(env(receipt(), source=SourceSystem.WMS, key="GR-1001"))
    assert first.status is Status.POSTED
    assert second.status is Status.DUPLICATE
    assert second.original.entry_ids == first.entry_ids
    assert core.store.entry_count() == 1  # master data posts no entries; no second one
    assert core.stock()[("P1", "RAW-A", "STORES", "")].qty == D(5)


def test_the_same_key_for_another_receipt_from_another_source_is_a_conflict(core):
    core, env = core
    core.submit(env(receipt(), source=SourceSystem.ERP, key="GR-1001"))
    other = core.submit(env(receipt(qty="6"), source=SourceSystem.WMS, key="GR-1001"))
    assert (other.status, other.code) == (Status.REJECTED, "IDEMPOTENCY_CONFLICT")
    assert core.stock()[("P1", "RAW-A", "STORES", "")].qty == D(5)


def test_the_same_message_id_from_two_sources_is_two_messages(core):
    core, env = core
    from_erp = core.submit(env(receipt(), source=SourceSystem.ERP, message_id="MSG-1"))
    from_wms = core.submit(env(receipt(qty="2"), source=SourceSystem.WMS, message_id="MSG-1"))
    assert (from_erp.status, from_wms.status) == (Status.POSTED, Status.POSTED)
    assert core.outcome("MSG-1", SourceSystem.ERP).entry_ids == from_erp.entry_ids
    assert core.outcome("MSG-1", SourceSystem.WMS).entry_ids == from_wms.entry_ids
    assert core.outcome("MSG-1").entry_ids == from_erp.entry_ids  # no source: the first
    assert core.stock()[("P1", "RAW-A", "STORES", "")].qty == D(7)


def test_a_batch_scopes_ids_and_keys_as_single_submissions_do(core):
    core, env = core
    outcomes = core.submit_many(
        [
            env(MACHINE_EVENT, source=SourceSystem.MES, **TAKEN["both"]),
            env(receipt(), key="GR-1001", message_id="WMS-0001"),
            env(receipt(), source=SourceSystem.ERP, key="GR-1001"),
        ]
    )
    statuses = [outcome.status for outcome in outcomes]
    assert statuses == [Status.POSTED, Status.POSTED, Status.DUPLICATE]


# --- through `twin serve`, on SQLite and PostgreSQL ---------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def served(request, tmp_path):
    if request.param == "sqlite":
        running = Served(f"sqlite:///{tmp_path}/ledger.db", tmp_path).start()
        yield running
        running.stop()
        return
    with fresh_schema() as schema:
        running = Served(schema_url(schema), tmp_path)
        running.start()
        try:
            yield running
        finally:
            running.stop()


def post(served: Served, envelope, source: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{served.url}/v1/messages", content=envelope.model_dump_json(), headers=auth(source)
    )
    assert answer.status_code < 500, answer.text
    return answer.json()


def test_over_http_no_source_can_take_another_ones_id_or_key(served):
    env = Envelopes()
    for envelope in master_data(env):
        assert post(served, envelope, envelope.source_system.value)["status"] == "POSTED"
    blocker = env(MACHINE_EVENT, source=SourceSystem.MES, **TAKEN["both"])
    assert post(served, blocker, "MES")["status"] == "POSTED"
    wms = post(served, env(receipt(), key="GR-1001", message_id="WMS-0001"), "WMS")
    assert wms["status"] == "POSTED" and len(wms["entry_ids"]) == 1
    erp = post(served, env(receipt(), source=SourceSystem.ERP, key="GR-1001"), "ERP")
    assert erp["status"] == "DUPLICATE" and erp["original"]["entry_ids"] == wms["entry_ids"]
    url = f"{served.url}/v1/messages/WMS-0001"
    # a sender's key reads its own source's message; `source=` reads another's
    assert httpx.get(url, headers=auth("WMS")).json()["entry_ids"] == wms["entry_ids"]
    machine_event = httpx.get(url, headers=auth("MES")).json()  # posted, with no entry
    assert (machine_event["status"], machine_event["entry_ids"]) == ("POSTED", [])
    on_request = httpx.get(url, params={"source": "WMS"}, headers=auth("MES")).json()
    assert on_request["entry_ids"] == wms["entry_ids"]
    assert httpx.get(url, params={"source": "PLM"}, headers=auth("WMS")).status_code == 404
    assert httpx.get(url, params={"source": "W\x00S"}, headers=auth("WMS")).status_code == 400
