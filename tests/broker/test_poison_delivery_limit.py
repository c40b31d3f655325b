"""A poison message that crashes the consumer every time it is delivered: the broker's delivery
limit, not the core, takes it out of the queue. A supervisor (`supervise`) restarts the consumer
after every crash; the queue (`--delivery-limit 2`) dead-letters the poison to the DLQ when it
comes back a third time, with the broker's `x-death` (reason `delivery_limit`), once. Nothing
loops for ever.

The crash is the consumer's hidden test-only `--crash-on TEXT` switch: the process exits at
once (code 70, no ack, no cleanup) on a delivery whose body contains TEXT.

- `--prefetch 1`: the stream's messages behind the poison stay in the queue, undelivered, while
  it crashes the consumer, and post in order once it has left.
- `--prefetch 3`: the broker hands over (and counts a delivery against) three messages at a
  time, so the poison's two neighbours in the window age with it and reach the DLQ beside it;
  the messages beyond the window post. README, "Poison messages".
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from integration.broker import HEADER_CODE
from integration.broker.consumer import CRASH_EXIT_CODE
from tests.broker.rabbit import user
from tests.broker.streams import SETUP_KEY, setup, work_order
from tests.broker.test_exactly_once import ids
from tests.builders import Envelopes, confirm, master_data, receipt
from tests.integration.test_service_crash import LedgerSql, Reference

DELIVERY_LIMIT = 2
MARKER = "POISON-4f1c"
POISON = f'{{"note": "{MARKER}"}}'.encode()
LIMITED = pytest.mark.parametrize("rabbit", [{"delivery_limit": DELIVERY_LIMIT}], indirect=True)


def supervise(start: Callable, done: Callable[[], bool], timeout: float = 60.0) -> list[str]:
    """Start the consumer and start it again whenever the poison kills it, until `done`; then
    check for a moment that it keeps running. The log of each crashed process."""
    consumer, crashed = start(), []
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not done; crashes so far: {crashed}"
        code = consumer.process.poll()
        if code is None:
            time.sleep(0.05)
            continue
        assert code == CRASH_EXIT_CODE, consumer.log_text()
        crashed.append(consumer.log_text())
        assert len(crashed) <= DELIVERY_LIMIT + 1, "the poison is redelivered for ever"
        consumer = start()
    time.sleep(1.0)  # a poison still in the queue would crash it again meanwhile
    assert consumer.process.poll() is None, "the consumer runs on: the poison is gone"
    return crashed


def delivery_counts(crashed: list[str]) -> list[str]:
    """The poison's `x-delivery-count` as each crashed consumer logged it."""
    return [log.split("x-delivery-count ")[1].split(":")[0] for log in crashed]


def assert_dead_by_the_broker(letter, rabbit) -> None:
    [death] = letter.headers["x-death"]
    assert death["reason"] == "delivery_limit"
    assert death["queue"] in rabbit.topology.inbound_queues
    assert HEADER_CODE not in letter.headers, "the broker dead-lettered it, not the consumer"


@LIMITED
def test_a_message_crashing_the_consumer_is_dead_lettered_after_the_delivery_limit(
    rabbit, consumers, tmp_path
):
    db_url = f"sqlite:///{tmp_path}/ledger.db"
    envelopes = Envelopes()
    ready = setup(envelopes, work_orders=1)
    before, *behind = [confirm(envelopes, seq=n, work_order=work_order(1)) for n in (1, 2, 3)]
    consumer = consumers(db_url)
    rabbit.publish(ready, key=SETUP_KEY)
    rabbit.wait_outcomes(ids(ready))
    assert consumer.stop() == 0
    rabbit.publish([before])
    rabbit.publish_raw(user("MES"), [(POISON, before.stream, "poison")])  # behind `before`
    rabbit.publish(behind)

    crashed = supervise(
        lambda: consumers(db_url, "--prefetch", "1", "--crash-on", MARKER, wait=False),
        lambda: set(ids(behind)) <= LedgerSql(db_url).posted(),
    )

    assert delivery_counts(crashed) == ["0", "1", "2"], "delivered delivery_limit + 1 times"
    [dead] = rabbit.drain(rabbit.topology.dead)
    assert dead.body == POISON and dead.message_id == "poison"
    assert_dead_by_the_broker(dead, rabbit)
    assert sum(rabbit.ready().values()) == 0
    outcomes = rabbit.wait_outcomes(ids([before, *behind]))
    assert "poison" not in outcomes, "the core never saw it"
    everything = [*ready, before, *behind]
    LedgerSql(db_url).assert_exactly_once(everything, Reference(everything))
    assert [seq for (seq,) in LedgerSql(db_url).rows(
        "SELECT source_seq FROM inbox WHERE stream IS NOT NULL ORDER BY inbox_id"
    )] == [1, 2, 3]  # fmt: skip


@LIMITED
def test_the_poisons_prefetch_window_is_dead_lettered_with_it(rabbit, consumers, tmp_path):
    db_url = f"sqlite:///{tmp_path}/ledger.db"
    envelopes = Envelopes()
    ready = master_data(envelopes)
    receipts = [envelopes(receipt("1", purchase_order=f"PO-{n}")) for n in range(4)]
    consumer = consumers(db_url)
    rabbit.publish(ready, key=SETUP_KEY)
    rabbit.wait_outcomes(ids(ready))
    assert consumer.stop() == 0
    # Queued before any consumer runs, in one queue: each start is handed the first three.
    window = [(POISON, "window", "poison")] + [
        (r.model_dump_json().encode(), "window", r.message_id) for r in receipts
    ]
    rabbit.publish_raw(user("WMS"), window)

    beyond = receipts[2:]
    crashed = supervise(
        lambda: consumers(db_url, "--prefetch", "3", "--crash-on", MARKER, wait=False),
        lambda: set(ids(beyond)) <= LedgerSql(db_url).posted(),
    )

    assert delivery_counts(crashed) == ["0", "1", "2"]
    dead = rabbit.drain(rabbit.topology.dead)
    assert sorted(letter.message_id for letter in dead) == sorted(["poison", *ids(receipts[:2])]), (
        "the poison and its two neighbours in the window, once each"
    )
    for letter in dead:
        assert_dead_by_the_broker(letter, rabbit)
    posted = LedgerSql(db_url).posted()
    assert not set(ids(receipts[:2])) & posted, "the core never saw the neighbours"
    assert sum(rabbit.ready().values()) == 0
    everything = [*ready, *beyond]
    LedgerSql(db_url).assert_exactly_once(everything, Reference(everything))
