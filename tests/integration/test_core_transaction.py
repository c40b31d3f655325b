"""`Core.transaction()`: many entry points in one store transaction, on every store. Outcomes
are those of the calls alone; nothing is kept before the block ends; a failure loses all of it
and the books follow the store."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pytest

from integration import Core, ErrorCode, ManualClock, NotFound, Status
from tests.builders import START, Envelopes, confirm, master_data, new_core, release, settings


def _core_on(store) -> tuple[Core, Envelopes]:
    core = Core(settings(), store, ManualClock(START))
    envelopes = Envelopes()
    for envelope in master_data(envelopes):
        assert core.submit(envelope).status is Status.POSTED
    return core, envelopes


def _day(env: Envelopes) -> list:
    first, second = confirm(env, seq=1), confirm(env, seq=2)
    renumbered = first.model_copy(update={"message_id": "resend-1"})
    return [release(env), second, first, first, renumbered, confirm(env, "99")]


DAY_OUTCOMES = [
    (Status.POSTED, None),
    (Status.HELD, ErrorCode.SEQUENCE_GAP),
    (Status.POSTED, None),
    (Status.DUPLICATE, None),
    (Status.DUPLICATE, None),
    (Status.REJECTED, ErrorCode.OVER_COMPLETION),
]


def _statuses(outcomes) -> list[tuple[Status, object]]:
    return [(o.status, o.code) for o in outcomes]


def test_calls_in_a_transaction_get_the_outcomes_they_would_get_alone(store):
    alone, env_a, _ = new_core()
    singles = [alone.submit(message) for message in _day(env_a)]
    core, env = _core_on(store)
    with core.transaction():
        together = [core.submit(message) for message in _day(env)]
        # reads inside see the transaction's own writes
        assert core.work_order_status("WO-1") == alone.work_order_status("WO-1")
        assert core.outcome(together[0].message_id).status is Status.POSTED
    assert _statuses(together) == _statuses(singles) == DAY_OUTCOMES
    assert core.account_balances() == alone.account_balances()
    assert core.store.entry_count() == alone.store.entry_count()
    assert core.reconcile().ok


def _every_entry_point(core: Core, env: Envelopes) -> list[tuple[Status, object]]:
    outcomes = [core.submit(release(env)), core.submit(confirm(env, seq=2))]
    outcomes += core.expire_holds(older_than=timedelta(0))
    outcomes += core.submit_many([confirm(env, seq=1), confirm(env, seq=3)])
    outcomes += core.replay()
    return _statuses(outcomes)


def test_every_entry_point_runs_inside_a_transaction_as_it_does_alone(store):
    alone, env_a, _ = new_core()
    expected = _every_entry_point(alone, env_a)
    core, env = _core_on(store)
    with core.transaction():
        assert _every_entry_point(core, env) == expected
    assert (Status.REJECTED, ErrorCode.SEQUENCE_GAP) in expected  # the hold did expire
    assert core.held_count == alone.held_count
    assert core.account_balances() == alone.account_balances()
    assert core.reconcile().ok


def test_nothing_in_a_transaction_is_kept_before_it_ends(tmp_path):
    path = tmp_path / "ledger.db"
    core, env, _ = new_core(str(path))
    reader = sqlite3.connect(path)

    def inbox_rows() -> int:
        return reader.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]

    before = inbox_rows()
    with core.transaction():
        core.submit(release(env))
        with core.transaction():  # part of the enclosing one
            core.submit(confirm(env, seq=1))
        core.submit(confirm(env, seq=2))
        assert inbox_rows() == before  # another connection sees none of it yet
    assert inbox_rows() == before + 3


def test_a_failure_escaping_a_transaction_rolls_it_all_back_and_the_books_follow(store):
    core, env = _core_on(store)
    before = (core.account_balances(), core.stock(), core.store.entry_count())
    day = _day(env)
    with pytest.raises(RuntimeError), core.transaction():
        assert core.submit(day[0]).status is Status.POSTED
        raise RuntimeError("the caller failed part-way")
    assert (core.account_balances(), core.stock(), core.store.entry_count()) == before
    with pytest.raises(NotFound):  # the books in memory forgot the rolled-back release
        core.work_order_status("WO-1")
    with core.transaction():  # the same messages again: nothing of the first try remains
        assert _statuses(core.submit(message) for message in day) == DAY_OUTCOMES
    assert core.reconcile().ok


def test_another_threads_call_waits_for_the_transaction_to_end():
    """On PostgreSQL the block holds the writer lock: another thread's submit waits for it,
    then commits on its own, and both are kept."""
    from tests.integration.pg import ScratchPostgresStore

    store = ScratchPostgresStore()
    try:
        core, env = _core_on(store)
        answers = []
        other = threading.Thread(target=lambda: answers.append(core.submit(release(env, "WO-2"))))
        with core.transaction():
            assert core.submit(release(env)).status is Status.POSTED
            other.start()
            other.join(timeout=0.5)
            assert other.is_alive() and answers == []  # waiting on the writer lock
        other.join(timeout=30)
        assert [a.status for a in answers] == [Status.POSTED]
        assert core.reconcile().ok
    finally:
        store.close()
