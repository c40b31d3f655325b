"""Crash safety of `twin serve`: SIGKILL mid-stream, restart on the same ledger, resend.

A shop floor's stream (master data, a work-order release, goods receipts and sequenced MES
confirmations) goes to a real service process, one message at a time with its source's key.
Another thread SIGKILLs the process right after a seeded number of acknowledged answers, while
the next request is in flight. The service is restarted on the same store (an SQLite file, or
a PostgreSQL schema of its own), and the client resends every message it has no answer for,
plus a seeded 30 % of those it had; that resend is killed the same way, and after a second
restart the client resends until everything is acknowledged. Whatever the kills interrupted:

- an acknowledged message was durable: it is POSTED in the store right after the kill, and
  besides the acknowledged ones at most the request in flight got in;
- nothing is applied twice: one POSTED inbox row per message id and per idempotency key, and
  each message has the journal entries a clean in-order run (in-process Core over SQLite
  `:memory:`) gives it; a resend of what was committed answers DUPLICATE naming the entries
  of its first posting, and a resend of what was not answers POSTED;
- nothing is lost: every message is POSTED, no dead letters, no held messages, and the
  stream's position is one past its last confirmation;
- everything balances: reconciliation is ok and the GL balances and the valued stock equal
  the clean run's.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import threading
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import httpx
import pytest

from integration import (
    Core,
    Envelope,
    GoodsReceived,
    ManualClock,
    OperationCompleted,
    open_store,
)
from tests.builders import START, D, Envelopes, master_data, release, settings
from tests.integration.pg import fresh_schema, schema_url
from tests.integration.served import Served, auth

STREAM = "MES:WO-1"
RESEND_SHARE = 0.3
CRASHES = 2  # kill, restart and resend; kill again while resending; restart and finish
# Seeds pick where the kill lands (after how many answers, how long into the next request)
# and which acknowledged messages the client resends anyway.
SEEDS = (11, 2026)


# --- the stream -------------------------------------------------------------------------------
def shop_floor(receipts: int = 40, confirmations: int = 97) -> list[Envelope]:
    """150 messages by default: 12 master data, a release of WO-1 for 1000, then receipts
    (no stream) and MES confirmations on STREAM with source_seq 1..n, interleaved (seeded)."""
    envelopes = Envelopes()
    messages = [*master_data(envelopes), release(envelopes, qty="1000")]
    kinds = ["receipt"] * receipts + ["confirmation"] * confirmations
    random.Random(7).shuffle(kinds)
    stocked = (("RAW-A", None, "EA"), ("RAW-L", "L1", "EA"), ("RAW-B", None, "KG"))
    seq = 0
    for n, kind in enumerate(kinds, start=1):
        at = START + timedelta(minutes=n)
        if kind == "receipt":
            item, lot, uom = stocked[n % len(stocked)]
            message: Any = GoodsReceived(
                plant="P1",
                item=item,
                qty=D(50),
                uom=uom,
                location="LINE",
                lot=lot,
                purchase_order=f"PO-{n}",
                supplier="S1",
                unit_price=D("2.10"),
            )
            messages.append(envelopes(message, occurred_at=at))
        else:
            seq += 1
            operation = 10 if seq % 2 else 20
            message = OperationCompleted(
                work_order="WO-1",
                operation_seq=operation,
                good_qty=D(1),
                uom="EA",
                labour_hours=D("0.1"),
                backflush_location="LINE",
                component_lots={"RAW-L": "L1"} if operation == 10 else {},
            )
            messages.append(envelopes(message, stream=STREAM, seq=seq, occurred_at=at))
    return messages


class Reference:
    """The clean run: every message once, in order, into an in-process core."""

    def __init__(self, messages: list[Envelope]) -> None:
        core = Core(settings(), open_store(":memory:"), ManualClock(START))
        self.entries: dict[str, int] = {}
        for envelope in messages:
            outcome = core.submit(envelope)
            assert outcome.status.value == "POSTED", outcome
            self.entries[envelope.message_id] = len(outcome.entry_ids)
        self.balances = core.account_balances()
        self.stock = {key: (b.qty, b.value) for key, b in core.stock().items()}
        self.entry_count = core.store.entry_count()
        assert core.reconcile().ok
        core.close()


@cache
def reference_of(receipts: int = 40, confirmations: int = 97) -> Reference:
    return Reference(shop_floor(receipts, confirmations))


# --- the ledger as plain SQL -------------------------------------------------------------------
class LedgerSql:
    """Plain-SQL audits of a service's ledger, from outside the service."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url

    def rows(self, sql: str) -> list[tuple]:
        if self.db_url.startswith("sqlite:///"):
            db = sqlite3.connect(self.db_url.removeprefix("sqlite:///"))
            try:
                return db.execute(sql).fetchall()
            finally:
                db.close()
        import psycopg
        from psycopg import sql as pgsql

        from integration.store.postgres import split_schema

        conninfo, schema = split_schema(self.db_url)
        with psycopg.connect(conninfo, autocommit=True) as db:
            db.execute(pgsql.SQL("SET search_path TO {}").format(pgsql.Identifier(schema)))
            return db.execute(sql).fetchall()

    def posted(self) -> set[str]:
        return {m for (m,) in self.rows("SELECT message_id FROM inbox WHERE status = 'POSTED'")}

    def assert_exactly_once(self, messages: list[Envelope], reference: Reference) -> None:
        """One POSTED inbox row per message id and idempotency key, nothing else in the inbox,
        no dead letters, and each message's entries as in the clean run."""
        ids = sorted(e.message_id for e in messages)
        keys = sorted(e.idempotency_key for e in messages)
        inbox = self.rows("SELECT message_id, idempotency_key, status FROM inbox")
        by_id = Counter((m, s) for m, _, s in inbox)
        assert sorted(m for m, _, _ in inbox) == ids, "an inbox row per message, no more"
        assert sorted(k for _, k, _ in inbox) == keys
        assert by_id == Counter((m, "POSTED") for m in ids), "every message POSTED, once"
        assert self.rows("SELECT COUNT(*) FROM dead_letter") == [(0,)]
        entries = dict(self.rows("SELECT message_id, COUNT(*) FROM journal_entry GROUP BY 1"))
        expected = {m: n for m, n in reference.entries.items() if n}
        assert entries == expected, "each message's journal entries, exactly once"
        lines = self.rows(
            "SELECT entry_id, SUM(amount_minor) FROM journal_line GROUP BY entry_id"
            " HAVING SUM(amount_minor) <> 0"
        )
        assert lines == [], f"unbalanced entries {lines}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """A fresh ledger: an SQLite file, or a PostgreSQL schema dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
        return
    with fresh_schema() as schema:
        yield schema_url(schema)


@pytest.fixture
def services(tmp_path):
    """Starts `twin serve` processes; stops whatever is still running afterwards (before a
    PostgreSQL schema is dropped: the store fixture is set up first, so torn down last)."""
    started: list[Served] = []

    def start(db_url: str) -> Served:
        directory = tmp_path / f"serve-{len(started)}"
        directory.mkdir()
        served = Served(db_url, directory)
        started.append(served)
        return served.start()

    yield start
    for served in started:
        served.stop()


# --- reading the service -----------------------------------------------------------------------
def post(client: httpx.Client, served: Served, envelope: Envelope) -> httpx.Response:
    return client.post(
        f"{served.url}/v1/messages",
        content=envelope.model_dump_json(),
        headers=auth(envelope.source_system.value),
    )


def balances_of(served: Served) -> dict[tuple[str, str, str], Decimal]:
    answer = httpx.get(f"{served.url}/v1/ledger/balances", headers=auth("FINANCE"))
    assert answer.status_code == 200, answer.text
    return {
        (b["plant"], b["account"], b["currency"]): Decimal(b["balance"])
        for b in answer.json()["balances"]
    }


def stock_of(served: Served) -> dict[tuple[str, str, str, str], tuple[Decimal, Decimal]]:
    answer = httpx.get(f"{served.url}/v1/stock", headers=auth("WMS"))
    assert answer.status_code == 200, answer.text
    return {
        (s["plant"], s["item"], s["location"], s["lot"]): (Decimal(s["qty"]), Decimal(s["value"]))
        for s in answer.json()["stock"]
    }


def reconciliation_of(served: Served) -> dict[str, Any]:
    answer = httpx.get(f"{served.url}/v1/reconciliation", headers=auth("FINANCE"))
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- the kill ------------------------------------------------------------------------------------
class Killer:
    """SIGKILLs `served` from its own thread once request number `after + 1` has started
    (so `after` answers are in, and one request is in flight), `share` of the median answer
    time so far into it: aimed at the end of the request, when the commit is done or
    nearly (the one window a kill can leave a committed message unacknowledged).

    An answer counts as acknowledged only if the client had it before the signal went: one
    that arrives later is dropped as lost with the connection, so the request that was in
    flight is unacknowledged whether or not the service committed it before it died."""

    def __init__(self, served: Served, after: int, share: float) -> None:
        self.served, self.after, self.share = served, after, share
        self.started = 0
        self.latencies: list[float] = []
        self.delay: float | None = None
        self.answers: list[dict] = []
        self.at_kill: tuple[int, int] | None = None  # (started, acknowledged) at the signal
        self._lock = threading.Lock()
        self._go = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def on_request(self, _request: httpx.Request) -> None:  # an httpx event hook
        self.started += 1
        if self.started == self.after + 1:
            self._go.set()

    def acknowledge(self, answer: dict) -> bool:
        """Take an answer, unless the process has been killed meanwhile."""
        with self._lock:
            if self.at_kill is not None:
                return False
            self.answers.append(answer)
            return True

    def _run(self) -> None:
        self._go.wait(120)
        self.delay = self.share * statistics.median(self.latencies or [0.0])
        time.sleep(self.delay)  # the aim of the kill, not a synchronisation
        with self._lock:
            self.at_kill = (self.started, len(self.answers))
            self.served.kill()

    def join(self) -> None:
        self._go.set()  # the stream ended before the kill point: kill now (the test fails)
        self._thread.join(30)


def check_answer(answer: httpx.Response, envelope: Envelope, ledger: Ledger) -> dict:
    """POSTED if the store did not hold the message yet, else DUPLICATE naming the entries
    of its first (acknowledged) posting."""
    assert answer.status_code == 200, answer.text
    body = answer.json()
    if envelope.message_id in ledger.committed:
        assert body["status"] == "DUPLICATE", (envelope.message_id, body)
        first = ledger.acknowledged.get(envelope.message_id)
        if first is not None:
            assert body["original"]["entry_ids"] == first, (envelope.message_id, body)
    else:
        assert body["status"] == "POSTED", (envelope.message_id, body)
    return body


def send_until_killed(
    served: Served, messages: list[Envelope], killer: Killer, ledger: Ledger
) -> list[dict]:
    """Send in order until the process dies; returns the acknowledged answers."""
    with httpx.Client(event_hooks={"request": [killer.on_request]}, timeout=30) as client:
        for envelope in messages:
            sent = time.perf_counter()
            try:
                answer = post(client, served, envelope)
            except httpx.TransportError:
                break  # the process is gone: this and every later message are unanswered
            killer.latencies.append(time.perf_counter() - sent)
            if not killer.acknowledge(check_answer(answer, envelope, ledger)):
                break
    killer.join()
    return killer.answers


class Ledger:
    """What the client knows: acknowledged messages (with their first entry ids), and what
    the store held after the last kill."""

    def __init__(self) -> None:
        self.acknowledged: dict[str, list[int]] = {}
        self.committed: set[str] = set()

    def outstanding(self, messages: list[Envelope], rng: random.Random) -> list[Envelope]:
        """What a client resends: every unacknowledged message and a share of the others."""
        acked = [e.message_id for e in messages if e.message_id in self.acknowledged]
        again = set(rng.sample(acked, round(len(acked) * RESEND_SHARE)))
        return [
            e for e in messages if e.message_id not in self.acknowledged or e.message_id in again
        ]


# --- the test ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_a_killed_service_loses_nothing_and_applies_nothing_twice(store_url, services, seed):
    rng = random.Random(seed)
    messages = shop_floor()
    reference = reference_of()
    assert len(messages) == 150
    audit = LedgerSql(store_url)
    ledger = Ledger()

    for crash in range(CRASHES):
        outstanding = ledger.outstanding(messages, rng)
        assert len(outstanding) > 20, "the seed leaves too little to interrupt"
        served = services(store_url)
        killer = Killer(
            served, after=rng.randrange(10, len(outstanding) - 10), share=rng.uniform(0.5, 1.1)
        )
        answers = send_until_killed(served, outstanding, killer, ledger)

        # The kill landed mid-stream, with a request in flight or just answered.
        assert served.process is not None and served.process.returncode == -9, "not killed"
        assert killer.at_kill is not None
        started, acked_at_kill = killer.at_kill
        assert acked_at_kill == len(answers) >= killer.after and started >= killer.after + 1
        assert started - acked_at_kill <= 1, "one request at a time: in flight or just answered"
        assert len(answers) < len(outstanding), f"crash {crash} must interrupt the stream"
        acked = [e.message_id for e in outstanding[: len(answers)]]
        assert [a["message_id"] for a in answers] == acked

        # Every acknowledged message survived the kill; besides them at most the one that was
        # in flight got in (committed but never acknowledged).
        committed = audit.posted()
        assert set(acked) <= committed, f"acknowledged but lost: {set(acked) - committed}"
        in_flight = outstanding[len(answers)].message_id
        assert committed - ledger.committed <= {*acked, in_flight}, "posted, yet never sent"
        assert audit.rows("SELECT COUNT(*) FROM inbox WHERE status <> 'POSTED'") == [(0,)]
        for answer in answers:
            first = answer["original"] if answer["status"] == "DUPLICATE" else answer
            ledger.acknowledged.setdefault(answer["message_id"], first["entry_ids"])
        ledger.committed = committed

    # The last restart: resend until everything is acknowledged.
    served = services(store_url)
    with httpx.Client(timeout=30) as client:
        for envelope in ledger.outstanding(messages, rng):
            check_answer(post(client, served, envelope), envelope, ledger)

    audit.assert_exactly_once(messages, reference)
    confirmations = sum(1 for e in messages if e.stream == STREAM)
    assert audit.rows(f"SELECT next_seq FROM stream_position WHERE stream = '{STREAM}'") == [
        (confirmations + 1,)
    ]
    result = reconciliation_of(served)
    assert result["ok"] is True, result["findings"]
    assert result["entries_checked"] == reference.entry_count
    assert balances_of(served) == reference.balances
    assert stock_of(served) == reference.stock


def test_the_reference_run_posts_what_the_stream_says():
    """The clean run the crash test compares with: every message posts, confirmations and
    receipts make one entry each, master data none (so a wrong reference cannot hide a
    double posting)."""
    messages = shop_floor()
    reference = reference_of()
    by_type = Counter((e.message_type, reference.entries[e.message_id]) for e in messages)
    assert by_type == Counter(
        {
            ("OperationCompleted", 1): 97,
            ("GoodsReceived", 1): 40,
            ("ItemCreated", 0): 9,
            ("BomReleased", 0): 3,
            ("WorkOrderReleased", 0): 1,
        }
    )
    assert reference.entry_count == 137
