"""Commits inside `store.batch()`, on every adapter: a batch answers each commit as a commit on
its own would (ids, clashes, reads of what it wrote), and a failure rolls all of it back.

Both adapters defer a batch's rows and write them together (deferred.py), so their answers
come from what the batch knows rather than from the database: these tests hold them to the
answers of commits made one at a time (SQLite's own batch: test_sqlite_batch.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from integration import Core, ManualClock, Status, StoreError
from integration.store.base import Commit, DuplicateDelivery, InboxStatus
from tests.builders import START, Envelopes, confirm, master_data, release, settings
from tests.integration.test_store_contract import dead_letter, entry, identity, inbox, row_counts


def expecting(pairs):
    """A batch's `expected`: the identities of `inbox()` records with these ids and keys."""
    return [identity(message_id, key) for message_id, key in pairs]


def held(message_id="m-h", key="k-h", **kw):
    return inbox(
        message_id,
        key,
        InboxStatus.HELD,
        code=None,
        hold_deadline=START + timedelta(hours=1),
        waits_on=("stream:s@2",),
        **kw,
    )


@pytest.mark.parametrize("declared", [True, False], ids=["expected", "not-expected"])
@pytest.mark.parametrize("clash", [("m-1", "k-9"), ("m-9", "k-1")], ids=["id", "key"])
def test_a_batch_finds_clashes_with_what_was_committed_before_it(store, declared, clash):
    store.commit(Commit(inbox=inbox(), entries=(entry(),)))
    before = row_counts(store)
    with store.batch(expecting([clash, ("m-2", "k-2")] if declared else ())):
        with pytest.raises(DuplicateDelivery):
            store.commit(Commit(inbox=inbox(*clash), entries=(entry("9.00"),), streams={"s": 2}))
        store.commit(Commit(inbox=inbox("m-2", "k-2"), entries=(entry(),)))
    assert store.entry_count() == before[0] + 1
    assert store.stream_positions() == {}
    assert store.find_inbox(identity("m-9", "k-9")) is None


def test_a_batch_finds_clashes_among_its_own_commits(store):
    with store.batch(expecting([("m-1", "k-1"), ("m-2", "k-1"), ("m-1", "k-3")])):
        store.commit(Commit(inbox=inbox(), entries=(entry(),)))
        for message_id, key in [("m-2", "k-1"), ("m-1", "k-3")]:
            with pytest.raises(DuplicateDelivery):
                store.commit(Commit(inbox=inbox(message_id, key), entries=(entry(),)))
    assert store.entry_count() == 1
    assert store.find_inbox(identity("m-2", "k-3")) is None


def test_reads_inside_a_batch_see_its_commits(store):
    with store.batch(expecting([("m-1", "k-1")])):
        committed = store.commit(Commit(inbox=inbox(), entries=(entry(),), streams={"s": 2}))
        assert store.find_inbox(identity("m-1", "k-1")).entry_ids == committed.entry_ids
        assert store.stream_positions() == {"s": 2}
        assert store.entry_count() == 1
        store.commit(Commit(inbox=inbox("m-2", "k-2"), entries=(entry(),), streams={"s": 3}))
    assert store.stream_positions() == {"s": 3}
    assert store.entry_count() == 2


def test_a_record_held_and_posted_in_one_batch_reads_back_posted_in_order(store):
    before = store.commit(Commit(inbox=held("m-0", "k-0")))  # held before the batch
    with store.batch(expecting([("m-h", "k-h"), ("m-p", "k-p")])):
        first = store.commit(Commit(inbox=held()))
        store.commit(Commit(inbox=inbox("m-p", "k-p")))
        posted = store.commit(
            Commit(inbox=inbox("m-h", "k-h", inbox_id=first.inbox_id), entries=(entry(),))
        )
        store.commit(Commit(inbox=inbox("m-0", "k-0", inbox_id=before.inbox_id)))
    assert store.held() == []
    applied = [(r.message_id, r.applied_seq) for r in store.posted_after(0)]
    assert applied == [("m-p", 1), ("m-h", 2), ("m-0", 3)]
    assert posted.applied_seq == 2 and posted.inbox_id == first.inbox_id
    assert store.find_inbox(identity("m-h", "k-h")).entry_ids == posted.entry_ids


@pytest.mark.parametrize("sent_in_the_batch", [False, True], ids=["before", "in-the-batch"])
def test_a_record_that_changes_twice_in_a_batch_keeps_its_last_outcome(store, sent_in_the_batch):
    """A held record, sent before (committed earlier, or in a chunk the batch has already
    sent), is held again on another key, then posted: both changes go with the same rows.
    Found by `twin run` on PostgreSQL, whose one statement updated the record once for two
    changes and took it for missing."""
    names = [(f"m-{n}", f"k-{n}") for n in range(60 if sent_in_the_batch else 0)]
    first = None if sent_in_the_batch else store.commit(Commit(inbox=held()))
    with store.batch(expecting([("m-h", "k-h"), *names])):
        if sent_in_the_batch:
            first = store.commit(Commit(inbox=held()))
        for message_id, key in names:  # more than a chunk: the held record's row is sent
            store.commit(Commit(inbox=inbox(message_id, key), entries=(entry(),)))
        again = inbox("m-h", "k-h", InboxStatus.HELD, inbox_id=first.inbox_id, waits_on=("w",))
        store.commit(Commit(inbox=again))
        posted = store.commit(
            Commit(inbox=inbox("m-h", "k-h", inbox_id=first.inbox_id), entries=(entry(),))
        )
    assert store.held() == []
    assert store.find_inbox(identity("m-h", "k-h")).entry_ids == posted.entry_ids
    assert [r.message_id for r in store.posted_after(len(names))] == ["m-h"]


@pytest.mark.parametrize("declared", [3, 1, 5], ids=["as-many", "fewer", "more"])
def test_ids_increase_in_commit_order_within_and_across_batches(store, declared):
    """Whether a batch was told of as many messages as it commits, fewer (PostgreSQL draws
    another block of ids) or more (the ids left over are skipped)."""

    def post(message_id, key):
        return store.commit(Commit(inbox=inbox(message_id, key), entries=(entry(),)))

    seen = []
    for batch in range(3):
        names = [(f"m-{batch}-{n}", f"k-{batch}-{n}") for n in range(3)]
        told = [*names, *[(f"x-{batch}-{n}", f"y-{batch}-{n}") for n in range(2)]][:declared]
        with store.batch(expecting(told)):
            seen.extend(post(message_id, key) for message_id, key in names)
        seen.append(post(f"m-{batch}", f"k-{batch}"))  # and one on its own
    inbox_ids = [c.inbox_id for c in seen]
    entry_ids = [c.entry_ids[0] for c in seen]
    assert inbox_ids == sorted(set(inbox_ids)) and entry_ids == sorted(set(entry_ids))
    assert [c.applied_seq for c in seen] == list(range(1, len(seen) + 1))


@pytest.mark.parametrize(
    "failing",
    [
        Commit(inbox=inbox("m-2", "k-2", inbox_id=999)),  # no such record to update
        Commit(inbox=inbox("m-2", "k-2"), dead_letter=dead_letter(id=999)),  # after the inbox
    ],
    ids=["missing-record", "missing-dead-letter"],
)
def test_a_failing_commit_in_a_batch_rolls_the_whole_batch_back(store, failing):
    """No savepoint undoes one commit: a store fails the commit itself, or finds the failure
    when it writes the batch's rows (at the latest, at the next read), and the whole batch
    rolls back."""
    with pytest.raises(StoreError), store.batch(expecting([("m-1", "k-1"), ("m-2", "k-2")])):
        store.commit(Commit(inbox=inbox(), entries=(entry(),)))
        with pytest.raises(StoreError):
            store.commit(failing)
            store.entry_count()
    assert row_counts(store) == (0, 0, 0, 0)
    assert store.commit(Commit(inbox=inbox("m-3", "k-3"), entries=(entry(),))).inbox_id


def test_a_large_batch_keeps_every_row_whatever_it_sent_before(store):
    """More messages than PostgreSQL sends at a time (`postgres_batch._CHUNK`): a record held
    early in the batch is posted after its row was sent, a read in the middle sees what came
    before it, and a clash late in the batch is still found."""
    names = [(f"m-{n}", f"k-{n}") for n in range(60)]
    with store.batch(expecting([("m-h", "k-h"), *names])):
        first = store.commit(Commit(inbox=held()))
        for n, (message_id, key) in enumerate(names):
            store.commit(Commit(inbox=inbox(message_id, key), entries=(entry(),), streams={"s": n}))
            if n == 40:
                assert store.find_inbox(identity("m-30", "x")).applied_seq == 31
        with pytest.raises(DuplicateDelivery):
            store.commit(Commit(inbox=inbox("m-new", "k-5"), entries=(entry(),)))
        store.commit(Commit(inbox=inbox("m-h", "k-h", inbox_id=first.inbox_id)))
    assert store.held() == [] and store.entry_count() == 60
    assert [r.message_id for r in store.posted_after(59)] == ["m-59", "m-h"]
    assert store.stream_positions() == {"s": 59}


# --- PostgreSQL: a failure found at a flush fails the whole batch -----------------------------
@pytest.fixture
def pg_store():
    from tests.integration.pg import ScratchPostgresStore

    made = ScratchPostgresStore()
    yield made
    made.close()


@pytest.mark.parametrize(
    "poison",
    [
        {"message_id": "m-\x00"},  # text PostgreSQL cannot hold
        {"entries": (entry(value="100000000000000000000"),)},  # beyond BIGINT minor units
        {"inbox_id": 999},  # no such record to update
    ],
    ids=["nul", "bigint", "missing"],
)
def test_a_write_postgres_refuses_rolls_its_whole_batch_back(pg_store, poison):
    fields = {"message_id": "m-2", "key": "k-2", **poison}
    entries = fields.pop("entries", ())
    with pytest.raises(StoreError), pg_store.batch(expecting([("m-1", "k-1")])):
        pg_store.commit(Commit(inbox=inbox(), entries=(entry(),)))
        pg_store.commit(Commit(inbox=inbox(**fields), entries=entries))
        pg_store.commit(Commit(inbox=inbox("m-3", "k-3"), entries=(entry(),)))
    assert row_counts(pg_store) == (0, 0, 0, 0) and pg_store.data_version() == 0
    assert pg_store.commit(Commit(inbox=inbox(), entries=(entry(),))).applied_seq == 1


def test_a_failure_a_caller_swallowed_still_fails_the_batch(pg_store):
    """The read that sent the rows raised, and the caller went on (as the pipeline does when
    a release fails): the batch must not commit what it could not write."""
    swallowed = "records to update are missing: 1"  # the cause stays in what follows
    with pytest.raises(StoreError, match=f"{swallowed}.*batch rolls back"), pg_store.batch():
        pg_store.commit(Commit(inbox=inbox(), entries=(entry(),)))
        pg_store.commit(Commit(inbox=inbox("m-2", "k-2", inbox_id=999)))
        with pytest.raises(StoreError, match=swallowed):
            pg_store.held()
        with pytest.raises(StoreError, match=f"{swallowed}.*batch rolls back"):
            pg_store.commit(Commit(inbox=inbox("m-3", "k-3")))
    assert row_counts(pg_store) == (0, 0, 0, 0)


@pytest.mark.parametrize("rows_sent", [False, True], ids=["rows-pending", "rows-sent"])
def test_a_failure_swallowed_outside_the_store_still_fails_the_batch(pg_store, rows_sent):
    """A statement on the raw connection fails inside the batch and its caller goes on: the
    transaction is aborted. With rows still to send, sending them fails; with none, PostgreSQL
    answers the COMMIT with a ROLLBACK, which the batch must not take for a commit."""
    with pytest.raises(StoreError, match="rolled back" if rows_sent else "aborted"):
        with pg_store.batch():
            pg_store.commit(Commit(inbox=inbox(), entries=(entry(),)))
            if rows_sent:
                pg_store.held()  # a read: the batch's rows go first
            with pytest.raises(Exception, match="division by zero"):
                pg_store.connection.execute("SELECT 1 / 0")
    assert row_counts(pg_store) == (0, 0, 0, 0)
    assert pg_store.commit(Commit(inbox=inbox(), entries=(entry(),))).applied_seq == 1


def test_a_core_batch_that_postgres_refuses_rolls_back_and_the_books_follow(pg_store):
    core = Core(settings(), pg_store, ManualClock(START))
    env = Envelopes()
    assert {core.submit(m).status for m in master_data(env)} == {Status.POSTED}
    before = (core.account_balances(), core.stock(), pg_store.entry_count())
    pg_store.connection.execute(
        "CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'crash'; END $$;"
        " CREATE TRIGGER crash BEFORE INSERT ON stock_move FOR EACH ROW EXECUTE FUNCTION crash()"
    )
    day = [release(env), confirm(env, seq=1), confirm(env, seq=2)]
    with pytest.raises(StoreError):
        core.submit_many(day)
    pg_store.connection.execute("DROP TRIGGER crash ON stock_move")
    assert (core.account_balances(), core.stock(), pg_store.entry_count()) == before
    assert [o.status for o in core.submit_many(day)] == [Status.POSTED] * 3
    assert core.reconcile().ok


def test_a_failure_in_rows_sent_early_rolls_a_large_batch_back(pg_store):
    """A large batch sends its rows in chunks while it goes on (pipeline mode): the failure of
    an early chunk surfaces later, and still nothing of the batch is kept."""
    names = [(f"m-{n}", f"k-{n}") for n in range(80)]
    with pytest.raises(StoreError), pg_store.batch(expecting(names)):
        for n, (message_id, key) in enumerate(names):
            value = "100000000000000000000" if n == 3 else "10.00"  # beyond BIGINT minor units
            pg_store.commit(Commit(inbox=inbox(message_id, key), entries=(entry(value),)))
    assert row_counts(pg_store) == (0, 0, 0, 0) and pg_store.data_version() == 0
    assert pg_store.commit(Commit(inbox=inbox(), entries=(entry(),))).applied_seq == 1
