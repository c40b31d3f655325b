"""Two `twin serve` processes on ONE PostgreSQL schema, every message delivered to both at once.

Two threads, one per process, post the same messages; the deliveries race:

- lockstep: master data, the release and the first receipts and confirmations, with a
  `threading.Barrier` before every message, so both copies of a message arrive together;
- free-running: the rest of the stream, one barrier and then each thread sends it all in
  order, so the processes overtake each other at random;
- batches: goods receipts through `/v1/messages/batch`, the same batch to both at once.

The MES confirmations keep their stream and source_seq (MES:WO-1, 1..n). That is the harder
case and the one production has: a process may find the message already posted either by the
inbox's unique index (the other process committed first) or by the stream position having
moved past it (SEQUENCE_STALE, which must turn into DUPLICATE, not a rejection), and a stale
view of the stream position in the losing process would hold or reject a message instead.

Each message must be applied exactly once: exactly one POSTED inbox row per message id, one
delivery answered POSTED and the other DUPLICATE naming the same entries; each message's
entries as in a clean in-order run; reconciliation ok on both processes; and both processes
report identical balances and stock, equal to the clean run's.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest

from integration import Envelope, GoodsReceived, SourceSystem
from tests.builders import START, D
from tests.integration import pg
from tests.integration.served import Served, auth
from tests.integration.test_service_crash import (
    STREAM,
    LedgerSql,
    Reference,
    balances_of,
    reconciliation_of,
    shop_floor,
    stock_of,
)

LOCKSTEP = 45  # messages delivered with a barrier each; the rest of the stream runs free
BATCHES, BATCH_SIZE = 4, 5


def batch_receipts() -> list[list[Envelope]]:
    """Goods receipts (WMS) for the batch endpoint, with ids of their own."""
    batches = []
    for b in range(BATCHES):
        batch = []
        for i in range(BATCH_SIZE):
            at = START + timedelta(hours=4, minutes=b * BATCH_SIZE + i)
            batch.append(
                Envelope(
                    message_id=f"batch-{b}-{i}",
                    idempotency_key=f"batch-key-{b}-{i}",
                    source_system=SourceSystem.WMS,
                    occurred_at=at,
                    sent_at=at,
                    message=GoodsReceived(
                        plant="P1",
                        item="RAW-C",
                        qty=D(10 + i),
                        uom="EA",
                        location="STORES",
                        purchase_order=f"PO-B{b}",
                        supplier="S2",
                        unit_price=D("0.45"),
                    ),
                )
            )
        batches.append(batch)
    return batches


@pytest.fixture
def schema_url():
    with pg.fresh_schema() as schema:
        yield pg.schema_url(schema)


@pytest.fixture
def pair(schema_url, tmp_path):
    """Two services on the one schema (stopped before the schema is dropped)."""
    started = []
    try:
        for name in ("a", "b"):
            directory = tmp_path / name
            directory.mkdir()
            started.append(Served(schema_url, directory).start())
        yield started
    finally:
        for served in started:
            served.stop()


class Racer:
    """One thread's side of the race: a warmed-up connection to one process."""

    def __init__(self, served: Served) -> None:
        self.served = served
        self.client = httpx.Client(base_url=served.url, timeout=60)
        assert self.client.get("/healthz").status_code == 200  # connect before racing

    def one(self, envelope: Envelope) -> dict:
        answer = self.client.post(
            "/v1/messages",
            content=envelope.model_dump_json(),
            headers=auth(envelope.source_system.value),
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    def batch(self, envelopes: list[Envelope]) -> list[dict]:
        body = "[" + ",".join(e.model_dump_json() for e in envelopes) + "]"
        answer = self.client.post(
            "/v1/messages/batch", content=body, headers=auth(envelopes[0].source_system.value)
        )
        assert answer.status_code == 200, answer.text
        return answer.json()["outcomes"]


def race(racers: list[Racer], work: Callable[[Racer, threading.Barrier], list[dict]]):
    """Run `work` for both racers on two threads; returns each one's answers. A failing side
    breaks the barrier, so the other does not wait for it."""
    barrier = threading.Barrier(len(racers), timeout=60)

    def on_done(future: Future) -> None:
        if future.exception() is not None:
            barrier.abort()

    with ThreadPoolExecutor(len(racers)) as pool:
        futures = [pool.submit(work, racer, barrier) for racer in racers]
        for future in futures:
            future.add_done_callback(on_done)
        errors = [future.exception(timeout=120) for future in futures]
    causes = [e for e in errors if e and not isinstance(e, threading.BrokenBarrierError)]
    if causes:
        raise causes[0]  # the failure itself, not the other side's broken barrier
    return [future.result() for future in futures]


def test_two_processes_on_one_schema_apply_each_message_exactly_once(pair, schema_url):
    stream = shop_floor(receipts=20, confirmations=40)
    lockstep, free = stream[:LOCKSTEP], stream[LOCKSTEP:]
    batches = batch_receipts()
    messages = [*stream, *(e for batch in batches for e in batch)]
    reference = Reference(messages)
    racers = [Racer(served) for served in pair]

    def in_lockstep(racer: Racer, barrier: threading.Barrier) -> list[dict]:
        answers = []
        for envelope in lockstep:
            barrier.wait()
            answers.append(racer.one(envelope))
        return answers

    def free_running(racer: Racer, barrier: threading.Barrier) -> list[dict]:
        barrier.wait()
        return [racer.one(envelope) for envelope in free]

    def in_batches(racer: Racer, barrier: threading.Barrier) -> list[dict]:
        answers = []
        for batch in batches:
            barrier.wait()
            answers.extend(racer.batch(batch))
        return answers

    answers_a, answers_b = [], []
    try:
        for work in (in_lockstep, free_running, in_batches):
            got_a, got_b = race(racers, work)
            answers_a += got_a
            answers_b += got_b
    finally:
        for racer in racers:
            racer.client.close()

    # Every message: one delivery POSTED, the other DUPLICATE of that very posting.
    assert [a["message_id"] for a in answers_a] == [e.message_id for e in messages]
    assert [b["message_id"] for b in answers_b] == [e.message_id for e in messages]
    winners = Counter()
    for envelope, a, b in zip(messages, answers_a, answers_b, strict=True):
        statuses = sorted([a["status"], b["status"]])
        assert statuses == ["DUPLICATE", "POSTED"], (envelope.message_id, a, b)
        posted, duplicate = (a, b) if a["status"] == "POSTED" else (b, a)
        assert duplicate["original"]["status"] == "POSTED", duplicate
        assert duplicate["original"]["entry_ids"] == posted["entry_ids"], (posted, duplicate)
        assert len(posted["entry_ids"]) == reference.entries[envelope.message_id]
        winners["a" if posted is a else "b"] += 1
    # The race was real: each process posted some messages first (the split is ~1:2 either way
    # in practice; one process winning all 93 races would mean the deliveries never overlapped).
    assert set(winners) == {"a", "b"}, winners

    # The ledger, in plain SQL: exactly one POSTED inbox row per message, nothing else.
    audit = LedgerSql(schema_url)
    audit.assert_exactly_once(messages, reference)
    confirmations = sum(1 for e in messages if e.stream == STREAM)
    assert audit.rows(f"SELECT next_seq FROM stream_position WHERE stream = '{STREAM}'") == [
        (confirmations + 1,)
    ]

    # Both processes reconcile and report the same books, equal to the clean run's.
    for served in pair:
        result = reconciliation_of(served)
        assert result["ok"] is True, (served.url, result["findings"])
        assert result["entries_checked"] == reference.entry_count
    balances = [balances_of(served) for served in pair]
    assert balances[0] == balances[1]
    assert balances[0] == reference.balances
    assert any(balance != Decimal(0) for balance in balances[0].values())
    stocks = [stock_of(served) for served in pair]
    assert stocks[0] == stocks[1] == reference.stock
