"""The real core over PostgreSQL: restart, several cores (processes) on one ledger, concurrent
duplicates, and what the adapter adds beyond the shared contract (locks, versions, URLs)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import timedelta

import pytest

from integration import (
    ConfigurationError,
    Core,
    DeadLetterFilter,
    GoodsReceived,
    ItemCreated,
    ItemType,
    ManualClock,
    PostgresStore,
    SqliteStore,
    Status,
    StoreError,
    open_store,
)
from integration.store.base import Commit, DuplicateDelivery, InboxStatus
from integration.store.postgres import split_schema
from integration.store.schema import SCHEMA_VERSION
from tests.builders import (
    START,
    D,
    Envelopes,
    adjustment,
    confirm,
    item,
    master_data,
    release,
    settings,
)
from tests.integration.pg import postgres_ledger
from tests.integration.test_store_contract import entry, identity, inbox


@pytest.fixture
def ledger():
    with postgres_ledger() as opened:
        yield opened


def post_all(core: Core, envelopes) -> None:
    for envelope in envelopes:
        outcome = core.submit(envelope)
        assert outcome.status is Status.POSTED, outcome


def receipt(env, item_id="RAW-A", qty="100", lot=None, location="LINE"):
    return env(
        GoodsReceived(
            plant="P1",
            item=item_id,
            qty=D(qty),
            uom="EA",
            location=location,
            lot=lot,
            purchase_order="PO-1",
            supplier="SUP-1",
            unit_price=D("2.10"),
        )
    )


def sql(core: Core, query: str, *params) -> list[tuple]:
    return core.store.connection.execute(query, params).fetchall()


def books(core: Core) -> tuple:
    return core.account_balances(), core.stock(), core.work_order_wip()


def run_in_threads(*work: Callable[[], object]) -> list:
    """Run each callable in its own thread, released together by a barrier; their results."""
    barrier = threading.Barrier(len(work))
    results: list = [None] * len(work)

    def run(index: int, task: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[index] = task()
        except BaseException as error:  # noqa: BLE001 - re-raised in the test's thread
            results[index] = error

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(work)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a submitting thread hung"
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


# --- the core over PostgreSQL -----------------------------------------------------------------
def test_a_reopened_postgres_ledger_rebuilds_state_and_holds(ledger):
    clock = ManualClock(START)
    core, env = ledger.core(clock), Envelopes()
    post_all(core, master_data(env))
    core.submit(release(env))
    core.submit(confirm(env, "3", seq=1))
    waiting = confirm(env, "2", seq=3)
    assert core.submit(waiting).status is Status.HELD
    before = books(core)
    core.close()

    reopened = ledger.core(clock)
    assert books(reopened) == before
    assert reopened.work_order_status("WO-1")["good_by_operation"] == {10: D(3)}
    assert reopened.held_count == 1
    outcome = reopened.submit(confirm(env, "1", seq=2))
    assert [r.message_id for r in outcome.released] == [waiting.message_id]
    assert reopened.work_order_status("WO-1")["good_by_operation"] == {10: D(6)}
    assert reopened.reconcile().ok


def test_two_cores_on_one_ledger_catch_up_on_each_others_commits(ledger):
    clock = ManualClock(START)
    a, b = ledger.core(clock), ledger.core(clock)  # b opens on an empty ledger
    env = Envelopes()
    post_all(a, [*master_data(env), receipt(env), receipt(env, "RAW-L", "50", "L1")])
    post_all(a, [release(env)])

    first = confirm(env, "3", seq=1)
    assert b.submit(first).status is Status.POSTED  # b caught up: the order exists
    again = a.submit(first)
    assert again.status is Status.DUPLICATE and again.original.status is Status.POSTED
    assert a.submit(confirm(env, "2", seq=2)).status is Status.POSTED  # a knows seq 1 went

    assert books(a) == books(b) and a.account_balances()
    assert a.reconcile().ok and b.reconcile().ok
    assert a.work_order_status("WO-1") == b.work_order_status("WO-1")
    assert b.work_order_status("WO-1")["good_by_operation"] == {10: D(5)}
    assert sql(
        a,
        "SELECT COUNT(*) FROM inbox WHERE message_id = %s AND status = 'POSTED'",
        first.message_id,
    ) == [(1,)]
    assert (
        sql(
            a,
            "SELECT message_id FROM inbox WHERE status = 'POSTED'"
            " GROUP BY message_id HAVING COUNT(*) > 1",
        )
        == []
    )
    (seqs,) = sql(
        a, "SELECT array_agg(applied_seq ORDER BY applied_seq) FROM inbox WHERE status = 'POSTED'"
    )
    assert seqs[0] == list(range(1, len(seqs[0]) + 1))  # one order of effect, no gaps


@pytest.mark.parametrize("size", [3, 40], ids=["small", "pipelined"])
def test_a_batch_catches_up_with_another_cores_commits_inside_its_transaction(ledger, size):
    """The batch takes the writer lock itself, so the books catch up inside it; a batch
    large enough for pipeline mode reads the other core's postings without a server-side
    cursor."""
    clock = ManualClock(START)
    a, b = ledger.core(clock), ledger.core(clock)  # b opens on an empty ledger
    env = Envelopes()
    post_all(a, [*master_data(env), receipt(env), release(env)])
    batch = [confirm(env, "1", seq=1), *(receipt(env, qty="1") for _ in range(size - 1))]
    assert {o.status for o in b.submit_many(batch)} == {Status.POSTED}
    assert b.work_order_status("WO-1")["good_by_operation"] == {10: D(1)}
    assert books(a) == books(b) and a.reconcile().ok and b.reconcile().ok


def test_a_message_held_by_one_core_is_released_by_another(ledger):
    clock = ManualClock(START)
    a, b = ledger.core(clock), ledger.core(clock)
    env = Envelopes()
    post_all(a, [*master_data(env), release(env)])
    late = confirm(env, "2", seq=2)
    assert b.submit(late).status is Status.HELD
    outcome = a.submit(confirm(env, "1", seq=1))
    assert outcome.status is Status.POSTED
    assert [r.message_id for r in outcome.released] == [late.message_id]
    assert a.held_count == 0 and b.held_count == 0
    assert b.outcome(late.message_id).status is Status.POSTED
    assert b.work_order_status("WO-1")["good_by_operation"] == {10: D(3)}
    assert books(a) == books(b) and a.reconcile().ok and b.reconcile().ok


def test_a_duplicate_submitted_concurrently_by_two_cores_is_applied_once(ledger):
    clock = ManualClock(START)
    a = ledger.core(clock)
    env = Envelopes()
    post_all(a, [*master_data(env), release(env)])
    b = ledger.core(clock)
    for _ in range(5):
        message = confirm(env, "1")
        outcomes = run_in_threads(lambda m=message: a.submit(m), lambda m=message: b.submit(m))
        assert sorted(o.status.value for o in outcomes) == ["DUPLICATE", "POSTED"]
        posted = next(o for o in outcomes if o.status is Status.POSTED)
        duplicate = next(o for o in outcomes if o.status is Status.DUPLICATE)
        assert duplicate.original.entry_ids == posted.entry_ids
        assert sql(a, "SELECT COUNT(*) FROM inbox WHERE message_id = %s", message.message_id) == [
            (1,)
        ]
    assert a.work_order_status("WO-1")["good_by_operation"] == {10: D(5)}
    assert books(a) == books(b) and a.reconcile().ok and b.reconcile().ok


def test_two_cores_submitting_concurrently_keep_one_consistent_ledger(ledger):
    clock = ManualClock(START)
    a = ledger.core(clock)
    env = Envelopes()
    post_all(a, [*master_data(env), release(env, "WO-1", "100"), release(env, "WO-2", "100")])
    b = ledger.core(clock)
    # each core works its own order, in sequence, plus receipts: all of them must post
    work = {
        core: [
            m
            for seq in range(1, 11)
            for m in (confirm(env, "1", seq=seq, work_order=wo), receipt(env, qty="3"))
        ]
        for core, wo in ((a, "WO-1"), (b, "WO-2"))
    }
    results = run_in_threads(*(lambda c=c: [c.submit(m).status for m in work[c]] for c in work))
    assert all(status is Status.POSTED for statuses in results for status in statuses)
    assert books(a) == books(b) and a.reconcile().ok and b.reconcile().ok
    assert a.work_order_status("WO-2")["good_by_operation"] == {10: D(10)}
    assert b.work_order_status("WO-1")["good_by_operation"] == {10: D(10)}
    assert a.stock()[("P1", "RAW-A", "LINE", "")].qty == D(60) - D(2) * 20  # 20 backflushed


def test_postgres_and_sqlite_ledgers_read_back_the_same(ledger):
    def run(store):
        core, env = Core(settings(), store, ManualClock(START)), Envelopes()
        outcomes = [
            core.submit(m)
            for m in (
                *master_data(env),
                receipt(env, "RAW-L", "7.5", "L1"),
                release(env),
                confirm(env, "1.25", seq=1),
                confirm(env, "2", seq=3),
                receipt(env, "NEW-1", "4"),
                env(adjustment("0.5", item="NEW-1", location="LINE", reason="found")),  # waits
                env(adjustment("-9", item="RAW-L", location="LINE", lot="L1")),  # below zero
                receipt(env, "RAW-L", "1"),  # no lot: LOT_REQUIRED
                b'{"message_id": "broken"',
                env(ItemCreated(item=item("NEW-1", ItemType.RAW, "3.00"))),
                confirm(env, "1", seq=2),
            )
        ]
        dead = core.dead_letters(DeadLetterFilter(status=None))
        result = (
            [(o.status, o.code, o.entry_ids, o.late) for o in outcomes],
            books(core),
            core.store.held(),
            dead,
            list(core.store.posted_after(0)),
            core.store.stream_positions(),
            core.store.unbalanced_entries(),
            (core.store.entry_count(), core.store.stock_exception_count()),
            core.reconcile().ok,
        )
        core.close()
        return result

    on_sqlite = run(SqliteStore(":memory:"))
    on_postgres = run(ledger.store())
    assert on_postgres == on_sqlite
    assert len(on_postgres[3]) == 2 and on_postgres[2] == []  # dead letters, nothing held
    assert on_postgres[8]
    balances = on_postgres[1][0]
    assert {type(v) for v in balances.values()} == {type(v) for v in on_sqlite[1][0].values()}


# --- what the adapter adds ----------------------------------------------------------------------
def test_a_ledger_schema_is_versioned_and_a_newer_version_refused(ledger):
    store = ledger.store()
    assert (store.schema_version(), store.data_version()) == (SCHEMA_VERSION, 0)
    assert store.schema == ledger.schema
    store.commit(Commit(inbox=inbox(), entries=(entry(),)))
    store.connection.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(ConfigurationError, match="999, newer than this build"):
        ledger.store()


def test_every_commit_moves_the_data_version_that_other_connections_see(ledger):
    one, two = ledger.store(), ledger.store()
    committed = one.commit(Commit(inbox=inbox(), entries=(entry(),)))
    assert committed.data_version == one.data_version() == two.data_version() == 1
    assert committed.applied_seq == 1
    held = two.commit(Commit(inbox=inbox("m-2", "k-2", InboxStatus.HELD)))
    assert (held.data_version, held.applied_seq) == (2, None)
    assert one.data_version() == 2


def test_commits_without_the_writer_lock_still_take_one_order_of_effect(ledger):
    stores = [ledger.store() for _ in range(3)]

    def write(n: int, store: PostgresStore) -> list[int]:
        return [
            store.commit(Commit(inbox=inbox(f"m-{n}-{i}", f"k-{n}-{i}"))).applied_seq
            for i in range(30)
        ]

    results = run_in_threads(*(lambda n=n, s=s: write(n, s) for n, s in enumerate(stores)))
    assert sorted(seq for seqs in results for seq in seqs) == list(range(1, 91))
    assert all(seqs == sorted(seqs) for seqs in results)
    assert stores[0].data_version() == 90
    assert [r.applied_seq for r in stores[0].posted_after(45)] == list(range(46, 91))


@pytest.mark.parametrize("holds", ["exclusive", "batch"])
def test_the_writer_lock_excludes_other_connections_until_released(ledger, holds):
    one, two = ledger.store(), ledger.store()
    entered = threading.Event()

    def wait_for_lock() -> None:
        with two.exclusive():
            entered.set()

    with one.exclusive() if holds == "exclusive" else one.batch():
        with one.exclusive():  # re-entrant within one connection
            one.commit(Commit(inbox=inbox(), entries=(entry(),)))
        waiter = threading.Thread(target=wait_for_lock)
        waiter.start()
        assert not entered.wait(0.5)
    assert entered.wait(10)
    waiter.join(10)


def test_the_version_read_with_the_lock_includes_the_last_holders_commit(ledger):
    """The lock and the version read share a round trip; the read must still come after the
    lock (its own snapshot), or a waiter would catch up to a ledger older than the one it
    writes to."""
    one, two = ledger.store(), ledger.store()
    seen: list[int] = []

    def catch_up() -> None:
        with two.exclusive():
            seen.append(two.data_version())

    with one.exclusive():
        waiter = threading.Thread(target=catch_up)
        waiter.start()
        waiter.join(0.5)  # queued behind the lock
        committed = one.commit(Commit(inbox=inbox(), entries=(entry(),)))
    waiter.join(10)
    assert seen == [committed.data_version] and committed.data_version == 1


def test_a_batch_that_waited_for_the_lock_counts_on_from_what_its_holder_committed(ledger):
    """A batch opens with one script (the lock, the version bump, MAX(applied_seq) and the id
    blocks, the look-up): the statements after the lock take their own snapshots, so a batch
    that waited for another's lock sees that batch's commits. Were they one statement, its
    snapshot would predate them: an applied_seq taken twice, or a duplicate let through."""
    one, two = ledger.store(), ledger.store()
    second: list = []

    def batch_behind_the_lock() -> None:
        expected = [identity(), identity("m-2", "k-2")]
        with two.batch(expected):
            try:
                two.commit(Commit(inbox=inbox(), entries=(entry(),)))
            except DuplicateDelivery:  # found by the batch's opening look-up
                second.append("duplicate")
            second.append(two.commit(Commit(inbox=inbox("m-2", "k-2"), entries=(entry(),))))

    with one.batch([identity()]):
        first = one.commit(Commit(inbox=inbox(), entries=(entry(),)))
        waiter = threading.Thread(target=batch_behind_the_lock)
        waiter.start()
        waiter.join(0.5)  # queued behind the lock
        assert not second
    waiter.join(10)
    duplicate, committed = second
    assert duplicate == "duplicate"
    assert committed.applied_seq == first.applied_seq + 1
    assert committed.inbox_id > first.inbox_id
    assert one.data_version() == 2 and two.entry_count() == 2


def test_the_version_read_with_the_lock_is_not_answered_once_the_lock_is_released(ledger):
    one, two = ledger.store(), ledger.store()
    with one.exclusive():
        pass  # read the version with the lock, never asked for it
    assert two.commit(Commit(inbox=inbox(), entries=(entry(),))).data_version == 1
    assert one.data_version() == 1


def test_a_lost_connection_releases_the_writer_lock(ledger):
    one, two = ledger.store(), ledger.store()
    with one.exclusive():
        pid = one.connection.info.backend_pid
        two.connection.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with two.exclusive():  # would block forever if the lock outlived the process
            two.commit(Commit(inbox=inbox()))
        with pytest.raises(StoreError):
            one.commit(Commit(inbox=inbox("m-2", "k-2")))
    assert two.entry_count() == 0 and two.find_inbox(identity("m-1", "k-1")) is not None


@pytest.mark.parametrize(
    "poison",
    [
        {"message_id": "m-\x00"},  # text PostgreSQL cannot hold
        {"entries": (entry(value="100000000000000000000"),)},  # beyond BIGINT minor units
        {"inbox_id": 999},  # no such record to update
    ],
)
def test_a_failed_commit_writes_nothing_and_leaves_the_store_usable(ledger, poison):
    store = ledger.store()
    store.commit(Commit(inbox=inbox()))
    entries = poison.pop("entries", ())
    with pytest.raises(StoreError) as raised:
        store.commit(
            Commit(inbox=inbox(**{"message_id": "m-2", "key": "k-2", **poison}), entries=entries)
        )
    assert type(raised.value) is StoreError  # not a DuplicateDelivery
    assert store.data_version() == 1 and store.entry_count() == 0
    assert store.commit(Commit(inbox=inbox("m-3", "k-3"), entries=(entry(),))).applied_seq == 2


def test_open_store_takes_postgres_urls_and_a_schema_parameter(ledger):
    url = ledger.url.replace("postgresql://", "postgres://", 1)
    store = ledger.track(open_store(f"{url}&application_name=mfg-twin-test"))
    assert isinstance(store, PostgresStore) and store.schema == ledger.schema
    assert store.connection.execute("SHOW application_name").fetchone() == ("mfg-twin-test",)
    assert store.connection.execute("SELECT current_schema()").fetchone() == (ledger.schema,)


def test_schema_urls_are_split_and_checked():
    assert split_schema("postgresql://u@h/db") == ("postgresql://u@h/db", None)
    assert split_schema("postgresql://u@h/db?sslmode=disable&schema=s1") == (
        "postgresql://u@h/db?sslmode=disable",
        "s1",
    )
    # The rest of the query reaches libpq as written: a space stays %20 (libpq reads '+' as
    # a plus, not a space), a '+' stays a plus.
    assert split_schema(
        "postgresql://u@h/db?options=-c%20synchronous_commit%3Doff&schema=s1&application_name=a+b"
    ) == ("postgresql://u@h/db?options=-c%20synchronous_commit%3Doff&application_name=a%2Bb", "s1")
    for bad in ("postgresql://u@h/db?schema=", "postgresql://u@h/db?schema=a&schema=b"):
        with pytest.raises(ConfigurationError):
            split_schema(bad)


def test_an_unreachable_server_is_a_configuration_error_without_the_password():
    pytest.importorskip("psycopg")
    with pytest.raises(ConfigurationError) as raised:
        open_store("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=2")
    assert "secret" not in str(raised.value)


def test_without_psycopg_a_postgres_url_is_a_configuration_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    with pytest.raises(ConfigurationError, match="psycopg"):
        open_store("postgresql://postgres@127.0.0.1:5432/test")


def test_hold_deadlines_and_timestamps_round_trip(ledger):
    store = ledger.store()
    deadline = START + timedelta(hours=1, microseconds=7)
    store.commit(Commit(inbox=inbox("m-h", "k-h", InboxStatus.HELD, hold_deadline=deadline)))
    (record,) = store.held()
    assert record.hold_deadline == deadline and record.received_at == START
    assert record.hold_deadline.utcoffset() == timedelta(0)


def test_posted_after_streams_while_the_store_keeps_working(ledger):
    store = ledger.store()
    for n in range(5):
        store.commit(Commit(inbox=inbox(f"m-{n}", f"k-{n}")))
    seen = []
    for record in store.posted_after(1):  # a server-side cursor that outlives commits
        seen.append(record.applied_seq)
        store.commit(Commit(streams={"s": record.applied_seq}))
        assert store.find_inbox(identity(record.message_id, "-")).applied_seq == record.applied_seq
    assert seen == [2, 3, 4, 5] and store.stream_positions() == {"s": 5}


def test_threads_sharing_one_store_take_turns_under_the_writer_lock(ledger):
    store = ledger.store()
    inside, most = [0], [0]

    def steps(n: int) -> None:
        for i in range(20):
            with store.exclusive():
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                store.commit(Commit(inbox=inbox(f"m-{n}-{i}", f"k-{n}-{i}")))
                inside[0] -= 1

    run_in_threads(*(lambda n=n: steps(n) for n in range(3)))
    assert most[0] == 1 and store.data_version() == 60
