"""Several processes on one SQLite ledger file, as `twin consume` and `twin load`'s heal phase
are: the file's writer lock excludes the other process for a whole step, so a core never
writes over a commit it has not caught up with."""

from __future__ import annotations

import multiprocessing
import random
import threading
from datetime import timedelta

import pytest

from integration import Core, SqliteStore, SystemClock, open_store
from integration.store.base import Commit
from tests.integration.test_postgres_core import run_in_threads
from tests.integration.test_store_contract import entry, inbox

SPAWN = multiprocessing.get_context("spawn")  # a fresh interpreter, as a second process is


def _schedule() -> tuple:
    """The load tests' scenario: its core settings and its messages in arrival order."""
    from sim import load_scenario
    from sim.load.schedule import make_schedule
    from tests.load.test_live_target import DOCUMENT

    schedule = make_schedule(load_scenario(DOCUMENT))
    return schedule.catalogue.core_settings(), [send.body for send in schedule.sends]


def _submit_shuffled(url: str, seed: int, go) -> None:
    """A consumer: every message, once, in an order that holds many of them."""
    settings, bodies = _schedule()
    random.Random(seed).shuffle(bodies)
    core = Core(settings, open_store(url), SystemClock())
    go.wait()
    for body in bodies:
        core.submit(body)
    core.close()


def _heal_until(url: str, go, stop) -> None:
    """A heal phase run again and again meanwhile: every hold expired, dead letters replayed."""
    settings, _bodies = _schedule()
    core = Core(settings, open_store(url), SystemClock())
    go.wait()
    while not stop.is_set():
        core.expire_holds(timedelta(0))
        core.replay()
    core.close()


def _hold_the_lock(url: str, held, release) -> None:
    store = SqliteStore(url)
    with store.exclusive():
        held.set()
        release.wait(30)
    store.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_consumer_and_a_heal_loop_in_two_processes_keep_one_consistent_ledger(tmp_path, seed):
    url = f"sqlite:///{tmp_path}/ledger.db"
    settings, bodies = _schedule()
    Core(settings, open_store(url), SystemClock()).close()
    go, stop = SPAWN.Event(), SPAWN.Event()
    consumer = SPAWN.Process(target=_submit_shuffled, args=(url, seed, go))
    healer = SPAWN.Process(target=_heal_until, args=(url, go, stop))
    consumer.start()
    healer.start()
    go.set()
    consumer.join(120)
    stop.set()
    healer.join(120)
    assert consumer.exitcode == healer.exitcode == 0
    core = Core(settings, open_store(url), SystemClock())  # rebuilds from the postings
    core.expire_holds(timedelta(0))
    core.replay()
    ledger = {key: balance.qty for key, balance in core.stock().items() if balance.qty}
    books = {key: balance.qty for key, balance in core.book_stock().items() if balance.qty}
    # the rebuild decided every posted message once, against books in the ledger's order: a
    # message posted twice, or against books it never saw, leaves the ledger's stock different
    assert ledger == books
    assert core.reconcile().ok
    inbox = core.store.connection.execute("SELECT count(*) FROM inbox").fetchone()[0]
    assert inbox == len(set(bodies))  # every message recorded, once
    core.close()


def test_the_writer_lock_excludes_another_process_until_released(tmp_path):
    url = str(tmp_path / "ledger.db")
    SqliteStore(url).close()
    held, release = SPAWN.Event(), SPAWN.Event()
    other = SPAWN.Process(target=_hold_the_lock, args=(url, held, release))
    store, entered = SqliteStore(url), threading.Event()

    def write() -> None:
        with store.batch():
            store.commit(Commit(inbox=inbox(), entries=(entry(),)))
        entered.set()

    other.start()
    try:
        assert held.wait(60)
        writer = threading.Thread(target=write)
        writer.start()
        assert not entered.wait(0.5)  # waits for the other process
        release.set()
        assert entered.wait(30)
        writer.join(30)
        assert store.connection.execute("SELECT count(*) FROM inbox").fetchone()[0] == 1
    finally:
        release.set()
        other.join(30)
        store.close()


def test_threads_sharing_one_file_store_take_turns_under_the_writer_lock(tmp_path):
    store = SqliteStore(tmp_path / "ledger.db")
    inside, most = [0], [0]

    def steps(n: int) -> None:
        for i in range(20):
            with store.exclusive():
                with store.exclusive():  # re-entrant
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                    store.commit(Commit(inbox=inbox(f"m-{n}-{i}", f"k-{n}-{i}")))
                    inside[0] -= 1

    run_in_threads(*(lambda n=n: steps(n) for n in range(3)))
    assert most[0] == 1
    assert store.connection.execute("SELECT count(*) FROM inbox").fetchone()[0] == 60
    store.close()
