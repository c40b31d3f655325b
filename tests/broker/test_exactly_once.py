"""Acked only after the commit: whatever happens to the consumer or its connection, every
message is posted exactly once, and a redelivery of what was committed is answered DUPLICATE.

- Killed between the commit and the ack (made certain by a queue on the outcomes exchange
  that refuses everything, so no outcome is confirmed and nothing can be acked), then at an
  arbitrary moment mid-stream; on SQLite and on PostgreSQL.
- Its connections closed by the broker twice while a stream is published: it reconnects.

Each run ends with the ledger audited in plain SQL against a clean in-order run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from integration import Envelope
from tests.broker.streams import SETUP_KEY, confirmations, setup
from tests.builders import Envelopes
from tests.integration.test_service_crash import LedgerSql, Reference, store_url  # noqa: F401


def ids(envelopes: list[Envelope]) -> list[str]:
    return [envelope.message_id for envelope in envelopes]


def wait_until(condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def statuses(rabbit) -> set[str]:
    return {outcome["status"] for outcome in rabbit.outcomes}


def test_a_consumer_killed_mid_group_posts_every_message_exactly_once(
    store_url,  # noqa: F811 - the fixture, set up first so the schema outlives the consumers
    rabbit,
    consumers,
):
    envelopes = Envelopes()
    ready = setup(envelopes, work_orders=10)
    first = confirmations(envelopes, 10, 3, seed=1)
    second = confirmations(envelopes, 10, 6, first_seq=4, seed=2)
    ledger = LedgerSql(store_url)
    consumer = consumers(store_url)
    rabbit.publish(ready, key=SETUP_KEY)
    rabbit.wait_outcomes(ids(ready))

    # 1. Killed after the commit and before the ack: the broker refuses every outcome.
    block = rabbit.block_outcomes()
    rabbit.publish(first)
    wait_until(lambda: set(ids(first)) & ledger.posted(), what="a group committed")
    consumer.kill()
    committed = set(ids(first)) & ledger.posted()
    wait_until(
        lambda: sum(rabbit.ready().values()) == len(first), what="every delivery back in its queue"
    )  # committed, never acked
    rabbit.delete_queue(block)
    consumer = consumers(store_url)
    outcomes = rabbit.wait_outcomes(sorted(committed), statuses=("DUPLICATE",))
    for message_id in committed:
        for duplicate in (o for o in outcomes[message_id] if o["status"] == "DUPLICATE"):
            assert duplicate["original"]["status"] == "POSTED", "names its first posting"
            assert duplicate["original"]["entry_ids"]
    rabbit.wait_outcomes(ids(first), statuses=("POSTED", "DUPLICATE"))
    assert consumer.metric("mfg_twin_broker_redeliveries_total") >= len(committed)

    # 2. Killed at an arbitrary moment while the second batch is consumed.
    rabbit.publish(second)
    wait_until(lambda: len(set(ids(second)) & ledger.posted()) >= len(second) // 3)
    consumer.kill()
    consumers(store_url)
    rabbit.wait_outcomes(ids(second), statuses=("POSTED", "DUPLICATE"))

    everything = ready + first + second
    ledger.assert_exactly_once(everything, Reference(everything))
    assert statuses(rabbit) <= {"POSTED", "DUPLICATE"}, "nothing held, nothing rejected"


def test_connections_closed_by_the_broker_lose_and_duplicate_nothing(rabbit, consumers, tmp_path):
    db_url = f"sqlite:///{tmp_path}/ledger.db"
    envelopes = Envelopes()
    ready = setup(envelopes, work_orders=10)
    stream = confirmations(envelopes, 10, 15, seed=3)
    consumer = consumers(db_url)
    rabbit.publish(ready, key=SETUP_KEY)
    rabbit.wait_outcomes(ids(ready))

    def publish_slowly() -> None:
        for start in range(0, len(stream), 10):
            rabbit.publish(stream[start : start + 10])
            time.sleep(0.2)

    publisher = threading.Thread(target=publish_slowly)
    publisher.start()
    closed = []
    try:
        for _ in range(2):
            wait_until(rabbit.consumer_connections, what="the consumer connected")
            closed.append(rabbit.close_consumer_connections())
    finally:
        publisher.join()
    assert closed == [1, 1], "the consumer's one connection, closed twice"
    rabbit.wait_outcomes(ids(stream), statuses=("POSTED", "DUPLICATE"))
    assert consumer.metric("mfg_twin_broker_reconnects_total") == 2
    assert consumer.process.poll() is None

    everything = ready + stream
    LedgerSql(db_url).assert_exactly_once(everything, Reference(everything))
    assert statuses(rabbit) <= {"POSTED", "DUPLICATE"}, "nothing held, nothing rejected"
