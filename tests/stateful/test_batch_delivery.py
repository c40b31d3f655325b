"""The delivery property of test_delivery_properties.py, delivered in batches into PostgreSQL.

A PostgreSQL batch answers its commits from what it knows rather than from the server (ids
from sequence blocks, clashes looked up when it begins, rows sent in chunks, in pipeline mode
when it is large: integration/store/postgres_batch.py). Here the same valid message sets, with
duplicates, resends and any order, go through `Core.submit_many` in batches of random sizes,
sent in chunks of a few messages (so in pipeline mode too), and must end in exactly the
ledger that in-order, exactly-once delivery into an SQLite core produces, every event posted
once.
"""

from __future__ import annotations

from collections import Counter
from unittest.mock import patch

from hypothesis import given, note
from hypothesis import strategies as st

from integration import Core, Status
from integration.store import postgres_batch
from tests.integration.pg import PG_URL, fresh_schema
from tests.stateful.test_delivery_properties import (
    Delivery,
    MessageSet,
    core_after_march,
    draw_schedule,
    ledger,
    message_sets,
    reference_ledger,
    resent,
    walk,
    wire,
)


def batches(data: st.DataObject, schedule: list[Delivery]) -> list[list[Delivery]]:
    """The schedule cut into consecutive batches of 1 to 40 deliveries."""
    cut: list[list[Delivery]] = []
    while len(schedule) > sum(map(len, cut)):
        start = sum(map(len, cut))
        size = data.draw(st.integers(1, 40), label="batch size")
        cut.append(schedule[start : start + size])
    return cut


def deliver_in_batches(core: Core, mset: MessageSet, cut: list[list[Delivery]]) -> Counter:
    """Submit each batch; check each outcome as a single submission would be checked.
    Returns how often each event was reported POSTED."""
    message_keys = {e.envelope.message_id: e.key for e in mset.events}
    posted: Counter = Counter()
    seen: set[str] = set()
    position = 0
    for batch in cut:
        payloads, keys = [], []
        for delivery in batch:
            event = mset.events[delivery.event]
            envelope = event.envelope
            if delivery.resend:
                envelope = resent(envelope, position)
                message_keys[envelope.message_id] = event.key
            payloads.append(wire(envelope, delivery.form))
            keys.append(event.key)
            position += 1
        for key, outcome in zip(keys, core.submit_many(payloads), strict=True):
            expected = (Status.DUPLICATE,) if key in seen else (Status.POSTED, Status.HELD)
            assert outcome.status in expected, (key, outcome)
            seen.add(key)
            for applied in walk(outcome):
                if applied.status is Status.POSTED:
                    posted[message_keys[applied.message_id]] += 1
    return posted


def sql(core: Core, query: str) -> list[tuple]:
    return core.store.connection.execute(query).fetchall()


@given(mset=message_sets(), data=st.data())
def test_batches_into_postgres_converge_to_the_in_order_ledger(
    mset: MessageSet, data: st.DataObject
) -> None:
    cut = batches(data, draw_schedule(data, mset))
    # The sets are small: chunks of a few messages make batches send in pipeline mode too.
    chunk = data.draw(st.sampled_from([2, 5, postgres_batch._CHUNK]), label="chunk")
    note(f"batches: {[[(d.event, d.resend) for d in batch] for batch in cut]}")
    reference = reference_ledger(mset)
    with fresh_schema() as schema, patch.object(postgres_batch, "_CHUNK", chunk):
        core, _clock = core_after_march(f"{PG_URL}?schema={schema}")
        try:
            posted = deliver_in_batches(core, mset, cut)
            assert ledger(core) == ledger(reference)
            assert core.reconcile().ok
            assert posted == Counter({event.key: 1 for event in mset.events})
            assert core.held_count == 0 and core.dead_letters() == []
            records = sql(reference, "SELECT COUNT(*) FROM inbox")[0][0]
            statuses = sql(core, "SELECT status, COUNT(*) FROM inbox GROUP BY status")
            assert statuses == [("POSTED", records)]  # resends added no record
            per_message = sql(
                core,
                "SELECT message_id FROM journal_entry GROUP BY message_id"
                " HAVING COUNT(DISTINCT inbox_id) > 1",
            )
            assert per_message == []
            assert core.store.entry_count() == reference.store.entry_count()
        finally:
            core.close()
            reference.close()
