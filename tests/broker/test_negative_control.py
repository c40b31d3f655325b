"""The negative control of ack-after-commit: with the test-only `--ack-before-commit` switch a
consumer killed between its ack and its commit loses the group, and this test sees the loss;
without it, the same kill loses nothing.

The kill lands in that window for certain: the test holds the SQLite ledger's write lock, so
the consumer's commit waits, while it waits for the broker to have handed over every message.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.broker.streams import SETUP_KEY
from tests.broker.test_exactly_once import ids, wait_until
from tests.builders import Envelopes, master_data, receipt
from tests.integration.test_service_crash import LedgerSql


@pytest.mark.parametrize("ack_before_commit", [False, True], ids=["ack-after", "ack-before"])
def test_a_kill_before_the_commit_loses_only_what_was_acked_first(
    rabbit, consumers, tmp_path, ack_before_commit
):
    path = tmp_path / "ledger.db"
    db_url = f"sqlite:///{path}"
    consumer = consumers(db_url, *(["--ack-before-commit"] if ack_before_commit else []))
    envelopes = Envelopes()
    ready = master_data(envelopes)
    receipts = [envelopes(receipt("1", purchase_order=f"PO-{n}")) for n in range(20)]
    rabbit.publish(ready, key=SETUP_KEY)
    rabbit.wait_outcomes(ids(ready))

    lock = sqlite3.connect(path, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the consumer's next commit waits for it
        rabbit.publish(receipts)
        wait_until(lambda: sum(rabbit.ready().values()) == 0, what="every message handed over")
        time.sleep(0.3)  # an ack sent before the commit has reached the broker
        consumer.kill()
    finally:
        lock.execute("ROLLBACK")
        lock.close()

    consumers(db_url)  # a correct consumer, restarted on the same ledger and queues
    wait_until(lambda: sum(rabbit.ready().values()) == 0)
    time.sleep(1.0)  # whatever the broker still had is posted by now
    missing = set(ids(receipts)) - LedgerSql(db_url).posted()
    if ack_before_commit:
        assert missing, "acked before the commit, killed before it: the group is lost"
        assert sum(rabbit.ready().values()) == 0, "and the broker has nothing left to redeliver"
    else:
        assert missing == set(), "acked only after the commit: redelivered and posted"
        rabbit.wait_outcomes(ids(receipts))
