"""SQLite's deferred batch (sqlite_batch.py): rows kept and written together, ids and the order
of effect counted by the batch, clashes found without writing; and, on every adapter, a core
submitting in batches answers and books as it does message by message.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from integration import Core, ErrorCode, ManualClock, SqliteStore, Status, StoreError
from integration.store.base import Commit, DeadLetterFilter, DuplicateDelivery
from integration.store.deferred import DeferredRows
from integration.store.sqlite_batch import SqliteBatch
from tests.builders import START, Envelopes, confirm, master_data, receipt, release, settings
from tests.integration.test_store_batches import expecting, held
from tests.integration.test_store_contract import dead_letter, entry, identity, inbox, row_counts

GROUP = SqliteBatch.chunk
EVERY_LETTER = DeadLetterFilter(status=None)


@pytest.fixture(params=["memory", "file"])
def lite(request, tmp_path):
    made = SqliteStore(":memory:" if request.param == "memory" else tmp_path / "ledger.db")
    yield made
    made.close()


def raw_count(store: SqliteStore, table: str) -> int:
    """Rows the database holds, asked on the raw connection (which does not flush)."""
    return store.connection.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def statements(store: SqliteStore) -> list[str]:
    """Every statement the connection runs from now on (executemany: each row's)."""
    traced: list[str] = []
    store.connection.set_trace_callback(traced.append)
    return traced


# --- deferred rows, written before any read -------------------------------------------------
def test_rows_wait_until_a_read_needs_them_and_the_read_sees_them(lite):
    with lite.batch(expecting([("m-1", "k-1"), ("m-2", "k-2")])):
        lite.commit(Commit(inbox=inbox(), entries=(entry(),), streams={"s": 2}))
        lite.commit(Commit(inbox=inbox("m-2", "k-2"), entries=(entry(),), streams={"s": 3}))
        assert (raw_count(lite, "inbox"), raw_count(lite, "journal_line")) == (0, 0)
        assert lite.entry_count() == 2 and lite.stream_positions() == {"s": 3}  # written first
        assert (raw_count(lite, "inbox"), raw_count(lite, "journal_line")) == (2, 4)
    assert [r.applied_seq for r in lite.posted_after(0)] == [1, 2]


def test_a_batch_writes_each_table_once_per_group_and_no_savepoint(lite):
    names = [(f"m-{n}", f"k-{n}") for n in range(GROUP + 10)]
    with lite.batch(expecting(names)):
        traced = statements(lite)
        for n, (message_id, key) in enumerate(names):
            lite.commit(Commit(inbox=inbox(message_id, key), entries=(entry(),), streams={"s": n}))
        lite.connection.set_trace_callback(None)
    assert not [sql for sql in traced if "SAVEPOINT" in sql or sql.startswith("SELECT")]
    upserts = [sql for sql in traced if sql.startswith("INSERT INTO stream_position")]
    assert len(upserts) == 1  # the group's last position only (the rest at the batch's end)
    assert lite.stream_positions() == {"s": GROUP + 9} and lite.entry_count() == GROUP + 10


def test_expected_identities_are_looked_up_once_and_others_one_by_one(lite):
    lite.commit(Commit(inbox=inbox("m-0", "k-0")))
    for expected, lookups in ((True, 0), (False, 3)):
        suffix = "e" if expected else "u"
        names = [(f"m-{suffix}{n}", f"k-{suffix}{n}") for n in range(3)]
        with lite.batch(expecting([*names, ("m-0", "k-x")]) if expected else ()):
            traced = statements(lite)
            for message_id, key in names:
                lite.commit(Commit(inbox=inbox(message_id, key)))
            with pytest.raises(DuplicateDelivery):
                lite.commit(Commit(inbox=inbox("m-0", "k-x")))
            lite.connection.set_trace_callback(None)
        assert len([sql for sql in traced if sql.startswith("SELECT 1 FROM inbox")]) == lookups + (
            0 if expected else 1
        )
    assert lite.find_inbox(identity("m-x", "k-x")) is None


# --- a failure while writing the rows fails the whole batch -----------------------------------
def _crash_on_moves(store: SqliteStore) -> None:
    store.connection.execute(
        "CREATE TRIGGER crash BEFORE INSERT ON stock_move BEGIN SELECT RAISE(ABORT, 'crash'); END"
    )


FAILURES: dict[str, tuple[Callable, Callable[[int], Commit]]] = {
    # SQLite refuses a row: a trigger
    "trigger": (
        _crash_on_moves,
        lambda n: Commit(inbox=inbox(f"m-{n}", f"k-{n}"), entries=(entry(),)),
    ),
    # a value SQLite cannot hold: beyond 64-bit minor units
    "overflow": (
        lambda store: None,
        lambda n: Commit(
            inbox=inbox(f"m-{n}", f"k-{n}"),
            entries=(entry(value="100000000000000000000" if n == 3 else "10.00"),),
        ),
    ),
    # an outcome for a record that is not there
    "missing": (
        lambda store: None,
        lambda n: Commit(inbox=inbox(f"m-{n}", f"k-{n}", inbox_id=999 if n == 3 else None)),
    ),
}


@pytest.mark.parametrize("size", [5, GROUP + 10], ids=["one-group", "groups"])
@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_failure_while_writing_the_rows_rolls_the_whole_batch_back(lite, failure, size):
    prepare, commit_of = FAILURES[failure]
    lite.commit(Commit(inbox=inbox("m-before", "k-before"), entries=(entry(),)))
    before = row_counts(lite)
    prepare(lite)
    with pytest.raises(StoreError), lite.batch():
        for n in range(size):
            try:
                lite.commit(commit_of(n))
            except StoreError:  # found at a group's write: the batch is broken from then on
                with pytest.raises(StoreError, match="batch rolls back"):
                    lite.commit(Commit(inbox=inbox("m-after", "k-after")))
                raise
    assert row_counts(lite) == before and raw_count(lite, "inbox") == 1
    lite.connection.execute("DROP TRIGGER IF EXISTS crash")
    after = lite.commit(Commit(inbox=inbox("m-next", "k-next"), entries=(entry(),)))
    assert (after.inbox_id, after.entry_ids, after.applied_seq) == (2, (2,), 2)


def test_a_failure_the_caller_swallowed_still_fails_the_batch(lite):
    with pytest.raises(StoreError, match="batch rolls back"), lite.batch():
        lite.commit(Commit(inbox=inbox(), entries=(entry(),)))
        lite.commit(Commit(inbox=inbox("m-2", "k-2", inbox_id=999)))
        with pytest.raises(StoreError, match="missing"):
            lite.held()  # the read writes the rows first, and finds the record missing
    assert row_counts(lite) == (0, 0, 0, 0) and raw_count(lite, "inbox") == 0


def test_a_dead_letter_inside_a_batch_is_written_after_the_pending_rows(lite):
    with lite.batch():
        first = lite.commit(Commit(inbox=held()))
        lite.commit(Commit(dead_letter=dead_letter()))  # written at once: the rows go first
        assert raw_count(lite, "inbox") == 1
        lite.commit(Commit(inbox=inbox("m-h", "k-h", inbox_id=first.inbox_id)))
    assert lite.held() == [] and [r.applied_seq for r in lite.posted_after(0)] == [1]


# --- ids and the order of effect, dense as SQLite numbers them ---------------------------------
def test_ids_and_the_order_of_effect_stay_dense_across_batches_clashes_and_rollbacks(lite):
    def post(message_id, key, **kw):
        return lite.commit(Commit(inbox=inbox(message_id, key, **kw), entries=(entry(),)))

    seen = [post("m-a", "k-a")]
    with lite.batch(expecting([("m-b", "k-b"), ("m-h", "k-h")])):
        seen.append(post("m-b", "k-b"))
        with pytest.raises(DuplicateDelivery):  # takes no id
            post("m-a", "k-new")
        waiting = lite.commit(Commit(inbox=held()))
        seen.append(post("m-c", "k-c"))  # not expected: looked up
    with pytest.raises(RuntimeError), lite.batch():  # rolled back: its ids are used again
        post("m-x", "k-x")
        raise RuntimeError("the caller fails")
    with lite.batch():
        seen.append(post("m-h", "k-h", inbox_id=waiting.inbox_id))
        seen.append(post("m-d", "k-d"))
    seen.append(post("m-e", "k-e"))
    assert [c.inbox_id for c in seen] == [1, 2, 4, 3, 5, 6]  # the held record is 3
    assert [c.entry_ids for c in seen] == [(n,) for n in range(1, 7)]
    assert [c.applied_seq for c in seen] == list(range(1, 7))
    ledger = lite.connection.execute(
        "SELECT inbox_id, applied_seq FROM inbox ORDER BY inbox_id"
    ).fetchall()
    assert ledger == [(1, 1), (2, 2), (3, 4), (4, 3), (5, 5), (6, 6)]


def test_the_batch_rows_are_deferred_rows():
    """One bookkeeping for both adapters' batches (deferred.py)."""
    from integration.store.postgres_batch import DeferredBatch

    assert issubclass(SqliteBatch, DeferredRows) and issubclass(DeferredBatch, DeferredRows)


# --- a core submitting in batches, on every adapter ---------------------------------------------
def stream(env: Envelopes) -> list[list]:
    """A day in batches: duplicates inside a batch and against an earlier one (the same
    envelope; a resend under a new id; the key with another payload), a hold released in the
    batch that follows, rejections and an unreadable payload."""
    setup = master_data(env)
    first = env(receipt("100", location="LINE"))
    resend = first.model_copy(update={"message_id": "m-resend"})
    other_payload = env(receipt("7", location="LINE"), key=first.idempotency_key)
    early = confirm(env, "2", seq=2)
    return [
        setup,
        [first, release(env), first, resend, early, env(receipt("1", item="RAW-L"))],
        [first, other_payload, confirm(env, "1.25", seq=1), b'{"message_id": "broken"'],
        [confirm(env, "1", seq=3), early],
    ]


def ledger_after(core: Core, outcomes: list) -> tuple:
    """The outcomes (without ids: PostgreSQL's batches skip ids) and the ledger they left."""
    store = core.store
    return (
        [(o.status, o.code, len(o.entry_ids), [r.status for r in o.released]) for o in outcomes],
        core.account_balances(),
        core.stock(),
        [(r.message_id, r.status, r.applied_seq) for r in store.posted_after(0)],
        store.held(),
        [(d.id, d.code, d.raw, d.status) for d in core.dead_letters(EVERY_LETTER)],
        store.stream_positions(),
        (store.entry_count(), store.first_pass(None)),
        core.reconcile().ok,
    )


def run_in_batches(store, grouped: bool) -> tuple:
    core = Core(settings(), store, ManualClock(START))
    outcomes = []
    for batch in stream(Envelopes()):
        if grouped:
            outcomes += core.submit_many(batch)
        else:
            with core.transaction():  # the identities are not announced: looked up
                outcomes += [core.submit(message) for message in batch]
    return ledger_after(core, outcomes)


def run_message_by_message(store) -> tuple:
    """The same stream, each message its own commit: what the batches must equal."""
    core = Core(settings(), store, ManualClock(START))
    return ledger_after(core, [core.submit(m) for batch in stream(Envelopes()) for m in batch])


P, D_, H, R = Status.POSTED, Status.DUPLICATE, Status.HELD, Status.REJECTED
EXPECTED = [P, P, D_, D_, H, R, D_, R, P, R, P, D_]  # after the master data


@pytest.mark.parametrize("grouped", [True, False], ids=["submit_many", "transaction"])
def test_a_core_in_batches_answers_duplicates_and_keeps_one_of_each(store, tmp_path, grouped):
    result = run_in_batches(store, grouped)
    outcomes = result[0]
    assert [status for status, *_ in outcomes[-len(EXPECTED) :]] == EXPECTED
    assert outcomes[-5][1] is ErrorCode.IDEMPOTENCY_CONFLICT  # the key, another payload
    assert outcomes[-4][3] == [P]  # seq 1 released the held seq 2
    posted = [message_id for message_id, _status, _seq in result[3]]
    assert len(posted) == len(set(posted)) and "m-resend" not in posted  # nothing of a duplicate
    assert [seq for *_m, seq in result[3]] == list(range(1, len(posted) + 1))
    assert result[-1]  # reconciles
    alone = SqliteStore(tmp_path / "alone.db")
    try:
        assert result == run_message_by_message(alone)
    finally:
        alone.close()


def test_sqlite_and_postgres_ledgers_stay_equal_on_the_same_batches(tmp_path):
    from tests.integration.pg import ScratchPostgresStore

    results = []
    for store in (SqliteStore(tmp_path / "ledger.db"), ScratchPostgresStore()):
        try:
            results.append(run_in_batches(store, grouped=True))
        finally:
            store.close()
    on_sqlite, on_postgres = results
    assert on_postgres == on_sqlite
    assert len(on_sqlite[3]) > 10 and len(on_sqlite[5]) == 3  # postings; three dead letters
