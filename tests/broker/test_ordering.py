"""Per-stream order through the broker: 50 work orders' MES streams, published interleaved
across work orders (each stream in its own order), consumed by 4 `twin consume` processes, one
the active one SIGKILLed midway. The consistent hash keeps a stream on one queue and single active
consumer gives a queue to one consumer at a time, so the core never holds a message for a
sequence gap (no HELD outcome, ever) and applies each stream in source order, the active
consumer's death included."""

from __future__ import annotations

from tests.broker.streams import SETUP_KEY, applied_seqs, confirmations, setup
from tests.broker.test_exactly_once import ids, wait_until
from tests.builders import Envelopes
from tests.integration.test_service_crash import LedgerSql

WORK_ORDERS = 50
PER_ORDER = 4


def test_four_consumers_apply_every_stream_in_source_order(rabbit, consumers, tmp_path):
    db_url = f"sqlite:///{tmp_path}/ledger.db"
    envelopes = Envelopes()
    ready = setup(envelopes, WORK_ORDERS)
    stream = confirmations(envelopes, WORK_ORDERS, PER_ORDER, seed=5)
    started = [consumers(db_url, wait=False) for _ in range(4)]  # they race for the queues
    for consumer in started:
        consumer.wait_ready()
    rabbit.publish(ready, key=SETUP_KEY)
    rabbit.wait_outcomes(ids(ready))

    ledger = LedgerSql(db_url)
    half = len(stream) // 2
    rabbit.publish(stream[:half])
    wait_until(lambda: len(set(ids(stream)) & ledger.posted()) >= half // 2)
    # The first to subscribe is every queue's active consumer; the others stand by. Kill it:
    # its queues go to another consumer, their unacked messages with them.
    active = max(started, key=lambda c: c.metric("mfg_twin_broker_messages_total"))
    active.kill()
    rabbit.publish(stream[half:])
    rabbit.wait_outcomes(ids(stream), statuses=("POSTED", "DUPLICATE"))
    took_over = [
        c for c in started if c is not active and c.metric("mfg_twin_broker_messages_total")
    ]
    assert took_over, "a standby consumer took the queues over"

    held = [o for o in rabbit.outcomes if o["status"] == "HELD"]
    assert held == [], "no message waited for a gap the broker made"
    assert {o["status"] for o in rabbit.outcomes} <= {"POSTED", "DUPLICATE"}
    applied = applied_seqs(ledger)
    assert len(applied) == WORK_ORDERS
    assert all(seqs == list(range(1, PER_ORDER + 1)) for seqs in applied.values()), applied
