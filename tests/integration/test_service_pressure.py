"""Back-pressure and groups across senders, against `twin serve` in a subprocess on
PostgreSQL.

* Overload: the service's capacity is measured first (a closed loop of many connections), then
  twice that rate is offered for 10 s, open-model (with connections enough for the backlog to
  pass the admission threshold), receipts alternating between the WMS and the
  ERP. Some submissions are refused with 429 OVERLOADED and a Retry-After; the service's own
  time for the accepted ones (`mfg_twin_submit_seconds`) stays within twice the configured
  bound at the 99th percentile (under it on a quiet machine); after the client has resent every refused one after its Retry-After,
  each receipt is posted exactly once and the books reconcile.
* Groups across senders: interleaved WMS and ERP singles are committed in shared groups
  (`mfg_twin_groups_mixed_senders_total`).
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
import psycopg
import pytest

from integration import GoodsReceived, SourceSystem
from integration.service.admission import TARGET_SHARE
from sim.load.client import RequestFailed
from sim.load.http11 import Http11Client
from tests.builders import D, Envelopes, master_data
from tests.integration.pg import PG_URL, fresh_schema, schema_url
from tests.integration.served import KEYS, OPS_KEY, Served

BOUND_S = 0.5  # --max-wait-s: a bucket edge of mfg_twin_submit_seconds
RAMP_S, RAMP_CONNECTIONS = 2.0, 32
OVERLOAD_S = 10.0
SENDERS = (SourceSystem.WMS, SourceSystem.ERP)


@pytest.fixture
def served(tmp_path):
    """`twin serve` on a fresh PostgreSQL schema, the master data posted; yields it and the
    schema."""
    with fresh_schema() as schema:
        url = schema_url(schema)
        running = Served(url, tmp_path, options=("--max-wait-s", str(BOUND_S))).start()
        envelopes = Envelopes()
        for envelope in master_data(envelopes):
            answer = httpx.post(
                f"{running.url}/v1/messages",
                content=envelope.model_dump_json(),
                headers={"Authorization": f"Bearer {KEYS[envelope.source_system.value]}"},
            )
            assert answer.status_code == 200, answer.text
        try:
            yield running, schema
        finally:
            running.stop()


class Receipts:
    """Goods receipts of one RAW-A each, with ids of their own, senders taking turns."""

    def __init__(self) -> None:
        self.made = 0
        self._envelopes = Envelopes()

    def next(self) -> tuple[str, bytes]:
        """The sender's key and the envelope's JSON."""
        self.made += 1
        n = self.made
        source = SENDERS[n % len(SENDERS)]
        receipt = GoodsReceived(
            plant="P1",
            item="RAW-A",
            qty=D(1),
            uom="EA",
            location="STORES",
            purchase_order=f"PO-{n}",
            supplier="SUP-1",
            unit_price=D("2.00"),
        )
        envelope = self._envelopes(receipt, source=source, message_id=f"r-{n}", key=f"rk-{n}")
        return KEYS[source.value], envelope.model_dump_json().encode()


@dataclass
class Deliveries:
    """What the client saw: final answers by status, and every 429 refusal."""

    final: list[int] = field(default_factory=list)
    refusals: list[tuple[str | None, float | None]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # no answer: the kind of failure
    jitter: random.Random = field(default_factory=lambda: random.Random(17))

    async def deliver(self, client: Http11Client, key: str, body: bytes) -> None:
        """Send until the service takes it, waiting each 429's Retry-After (and resending at
        once over a keep-alive connection the service had closed meanwhile)."""
        for _ in range(100):
            try:
                reply = await client.post("/v1/messages", key, body)
            except RequestFailed as failure:
                self.failures.append(failure.kind)
                continue
            if reply.status != 429:
                self.final.append(reply.status)
                return
            self.refusals.append((reply.body["code"], reply.retry_after))
            await asyncio.sleep(reply.retry_after * self.jitter.uniform(1, 2))
        raise AssertionError(f"not taken after 100 attempts; failures: {self.failures[-5:]}")


async def measured_capacity(url: str, receipts: Receipts, deliveries: Deliveries) -> float:
    """Receipts per second the service takes from a closed loop of many connections."""
    client = Http11Client(url, timeout_s=60)
    deadline = time.perf_counter() + RAMP_S
    taken = 0

    async def loop() -> None:
        nonlocal taken
        while time.perf_counter() < deadline:
            await deliveries.deliver(client, *receipts.next())
            taken += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(RAMP_CONNECTIONS)))
    await client.close()
    return taken / (time.perf_counter() - started)


def in_flight_for(capacity: float) -> int:
    """Connections enough for the backlog to pass the admission threshold (TARGET_SHARE of
    the bound's worth of messages at `capacity`) twice over: with fewer, a fast service never
    has that many waiting, however high the rate offered, and refuses nothing."""
    return max(256, math.ceil(2 * TARGET_SHARE * BOUND_S * capacity))


async def offer(url: str, rate: float, receipts: Receipts, deliveries: Deliveries) -> None:
    """`rate` receipts a second for OVERLOAD_S, each sent at its time whatever the earlier
    answers did (at most `in_flight_for(rate / 2)` connections), then every one delivered."""
    client = Http11Client(url, timeout_s=60)
    connections = asyncio.Semaphore(in_flight_for(rate / 2))

    async def send(key: str, body: bytes) -> None:
        async with connections:
            await deliveries.deliver(client, key, body)

    sends, started = [], time.perf_counter()
    for n in range(int(rate * OVERLOAD_S)):
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        sends.append(asyncio.create_task(send(*receipts.next())))
    await asyncio.gather(*sends)
    await client.close()


def submit_seconds(url: str) -> dict[str, float]:
    """`mfg_twin_submit_seconds` bucket counts (by upper bound), summed over workflows."""
    text = httpx.get(f"{url}/metrics").text
    buckets: dict[str, float] = {}
    for bound, value in re.findall(r'mfg_twin_submit_seconds_bucket\{le="([^"]+)".*\} (\S+)', text):
        buckets[bound] = buckets.get(bound, 0.0) + float(value)
    return buckets


def metric(url: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", httpx.get(f"{url}/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_twice_the_capacity_is_refused_with_429_and_every_receipt_posts_once(served):
    served, schema = served
    receipts, ramp, deliveries = Receipts(), Deliveries(), Deliveries()
    capacity = asyncio.run(measured_capacity(served.url, receipts, ramp))
    asyncio.run(offer(served.url, 2 * capacity, receipts, deliveries))

    sent = receipts.made
    assert ramp.final + deliveries.final == [200] * sent  # every receipt taken in the end
    codes = {code for code, _ in deliveries.refusals}
    assert deliveries.refusals and codes == {"OVERLOADED"}, (capacity, codes)
    assert all(wait is not None and wait >= 1 for _, wait in deliveries.refusals)
    # The accepted requests' p99 stays near the bound instead of running away (without
    # admission, 10 s at twice the capacity queues for seconds). The margin of one bucket keeps
    # the test honest on two shared cores, where another test runs beside it; the benchmark
    # reports the exact share under the bound.
    buckets = submit_seconds(served.url)
    assert buckets[str(2 * BOUND_S)] >= 0.99 * buckets["+Inf"], f"{capacity=} {buckets}"

    with psycopg.connect(PG_URL) as db:
        posted = db.execute(
            f'SELECT COUNT(*), COUNT(DISTINCT message_id) FROM "{schema}".inbox'
            " WHERE message_type = 'GoodsReceived' AND status = 'POSTED'"
        ).fetchone()
    assert posted == (sent, sent)
    headers = {"Authorization": f"Bearer {OPS_KEY}"}
    stock = httpx.get(f"{served.url}/v1/stock", headers=headers).json()["stock"]
    assert sum(Decimal(row["qty"]) for row in stock if row["item"] == "RAW-A") == sent
    assert httpx.get(f"{served.url}/v1/reconciliation", headers=headers).json()["ok"] is True


def test_interleaved_senders_are_committed_in_shared_groups(served):
    served, _schema = served
    receipts, deliveries = Receipts(), Deliveries()

    async def interleaved() -> None:
        client = Http11Client(served.url, timeout_s=60)
        bodies = [receipts.next() for _ in range(400)]
        connections = asyncio.Semaphore(32)

        async def send(key: str, body: bytes) -> None:
            async with connections:
                await deliveries.deliver(client, key, body)

        await asyncio.gather(*(send(*pair) for pair in bodies))
        await client.close()

    groups_before = metric(served.url, "mfg_twin_group_messages_count")
    asyncio.run(interleaved())

    assert deliveries.final == [200] * 400
    groups = metric(served.url, "mfg_twin_group_messages_count") - groups_before
    assert groups < 400  # committed together
    assert metric(served.url, "mfg_twin_groups_mixed_senders_total") > 0
