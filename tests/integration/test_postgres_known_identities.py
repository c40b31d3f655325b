"""A PostgreSQL batch leaves out its look-up of the expected identities when the writer's
filter of the inbox rules them all out (integration/store/identity_filter.py), and looks them up
whenever it cannot: a possible duplicate, another writer's commit, a filter not loaded yet (it
is loaded after a streak of the writer's own commits).

What the batch sends is read off libpq's own trace of the connection, not guessed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from integration import Core, Envelope, ManualClock, Status, StoreError
from integration.store.identity_filter import _FIRST_STREAK
from tests.builders import START, Envelopes, master_data, release
from tests.integration.pg import Ledger, postgres_ledger
from tests.integration.test_postgres_core import books, post_all, receipt, sql

_OPENING = "pg_advisory_xact_lock"
_LOOK_UP = "jsonb_array_elements"  # only the identities' look-up reads a JSON array at BEGIN
_LOAD = 'DECLARE "known_identities"'  # the cursor that reads the inbox into the filter


@pytest.fixture
def ledger():
    with postgres_ledger() as opened:
        yield opened


@contextmanager
def sent(core: Core, trace: Path) -> Iterator[list[str]]:
    """The statements the core's connection sends inside the block (simple queries and
    parsed ones), filled in when it ends."""
    pgconn = core.store.connection.pgconn
    statements: list[str] = []
    with trace.open("w") as out:
        pgconn.trace(out.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            yield statements
        finally:
            pgconn.untrace()
    for line in trace.read_text().splitlines():
        found = re.match(r'F\t\d+\t(?:Query|Parse)\t.*?"(.*)"', line)
        if found:
            statements.append(found.group(1))


def openings(statements: list[str]) -> list[str]:
    return [statement for statement in statements if _OPENING in statement]


def looked_up(statements: list[str]) -> bool:
    return any(_LOOK_UP in statement for statement in statements)


def alone_until_loaded(core: Core, env: Envelopes) -> list[Envelope]:
    """Batches of one receipt, this writer's own commits in a row, up to the one that loads
    the filter; what they posted."""
    posted = [receipt(env) for _ in range(_FIRST_STREAK + 1)]
    for message in posted:
        assert core.submit_many([message])[0].status is Status.POSTED
    return posted


def started(ledger: Ledger) -> tuple[Core, Envelopes]:
    """A core whose writer has loaded its filter."""
    core = ledger.core(ManualClock(START))
    env = Envelopes()
    core.submit_many([*master_data(env), release(env)])
    alone_until_loaded(core, env)
    return core, env


def test_a_batch_of_new_messages_opens_without_the_look_up(ledger, tmp_path):
    core, env = started(ledger)
    with sent(core, tmp_path / "trace") as statements:
        outcomes = core.submit_many([receipt(env) for _ in range(8)])
    assert {outcome.status for outcome in outcomes} == {Status.POSTED}
    assert len(openings(statements)) == 1 and not looked_up(statements)


def test_the_first_batch_looks_up_before_anything_is_known(ledger, tmp_path):
    core = ledger.core(ManualClock(START))
    env = Envelopes()
    with sent(core, tmp_path / "trace") as statements:
        core.submit_many(master_data(env))
    (opening,) = openings(statements)
    assert _LOOK_UP in opening


def test_the_filter_is_loaded_after_a_streak_of_own_commits(ledger, tmp_path):
    core = ledger.core(ManualClock(START))
    env = Envelopes()
    core.submit_many(master_data(env))
    with sent(core, tmp_path / "trace") as statements:
        alone_until_loaded(core, env)
    loads = [n for n, statement in enumerate(statements) if _LOAD in statement]
    opened = [n for n, statement in enumerate(statements) if _OPENING in statement]
    assert len(opened) == _FIRST_STREAK + 1 and len(loads) == 1 and loads[0] > opened[-1]


def test_what_the_batch_that_loads_the_filter_posts_is_known_to_the_next(ledger):
    core = ledger.core(ManualClock(START))
    env = Envelopes()
    core.submit_many(master_data(env))
    posted = alone_until_loaded(core, env)  # the last batch loads, then posts
    assert [o.status for o in core.submit_many(posted[-2:])] == [Status.DUPLICATE] * 2


def test_writers_that_take_turns_never_load_the_filter(ledger, tmp_path):
    """Each sees the other's commit before its own every time: loading a filter that the
    next batch drops would only cost each of them a read of the whole inbox."""
    a = ledger.core(ManualClock(START))
    env = Envelopes()
    a.submit_many(master_data(env))
    b = ledger.core(ManualClock(START))
    with sent(a, tmp_path / "a") as by_a, sent(b, tmp_path / "b") as by_b:
        for _ in range(10):  # turns enough for two streaks, were they counted wrong
            for writer in (a, b):
                assert writer.submit_many([receipt(env)])[0].status is Status.POSTED
    assert not any(_LOAD in statement for statement in [*by_a, *by_b])
    assert all(_LOOK_UP in opening for opening in openings(by_a) + openings(by_b))
    assert books(a) == books(b) and a.reconcile().ok


def test_a_redelivered_message_is_looked_up_and_answered_as_a_duplicate(ledger, tmp_path):
    core, env = started(ledger)
    first = receipt(env)
    core.submit_many([first])
    with sent(core, tmp_path / "trace") as statements:
        outcomes = core.submit_many([receipt(env), first])
    assert [outcome.status for outcome in outcomes] == [Status.POSTED, Status.DUPLICATE]
    (opening,) = openings(statements)
    assert _LOOK_UP in opening and first.message_id in opening  # only what may be there
    assert sql(core, "SELECT count(*) FROM inbox WHERE message_id = %s", first.message_id) == [(1,)]


def test_another_writers_commit_makes_the_batch_look_up_after_all(ledger, tmp_path):
    """b posts a message a has never seen; a's filter rules it out, but the version its batch
    opens at shows a commit that was not a's own, so a looks it up before deciding, and from
    then on always does. Without that check a's batch would insert it again, and fail."""
    a, env = started(ledger)
    own = receipt(env)
    post_all(a, [own])
    b = ledger.core(ManualClock(START))
    taken = receipt(env)
    post_all(b, [taken])
    with sent(a, tmp_path / "trace") as statements:
        outcomes = a.submit_many([taken, receipt(env), own])
    assert [o.status for o in outcomes] == [Status.DUPLICATE, Status.POSTED, Status.DUPLICATE]
    (opening,) = openings(statements)
    assert own.message_id in opening and taken.message_id not in opening
    assert sum(_LOOK_UP in statement for statement in statements) == 2  # and `taken`'s after
    with sent(a, tmp_path / "again") as statements:
        a.submit_many([receipt(env)])
    assert _LOOK_UP in openings(statements)[0]  # a shared ledger: the filter is gone
    assert books(a) == books(b) and a.reconcile().ok


def test_plain_commits_keep_the_filter_current(ledger, tmp_path):
    """A message posted outside a batch (`Core.submit`) is known to the next batch: it is
    looked up when delivered again, and the batch opens without a look-up otherwise."""
    core, env = started(ledger)
    single = receipt(env)
    post_all(core, [single])
    with sent(core, tmp_path / "trace") as statements:
        outcomes = core.submit_many([single])
    assert outcomes[0].status is Status.DUPLICATE and _LOOK_UP in openings(statements)[0]
    with sent(core, tmp_path / "fresh") as statements:
        core.submit_many([receipt(env)])
    assert not looked_up(statements)


def test_a_message_outside_the_expected_ones_is_not_looked_up_when_ruled_out(ledger, tmp_path):
    """`Core.transaction()` expects nothing: each new message's identity would be looked up
    on its own; the filter rules it out instead, and a real duplicate is still found."""
    core, env = started(ledger)
    again = receipt(env)
    post_all(core, [again])
    with sent(core, tmp_path / "trace") as statements:
        with core.transaction():
            fresh = [core.submit(receipt(env)) for _ in range(3)]
            duplicate = core.submit(again)
    assert {outcome.status for outcome in fresh} == {Status.POSTED}
    assert duplicate.status is Status.DUPLICATE
    assert sum(_LOOK_UP in statement for statement in statements) == 1  # `again`'s only


def test_a_wrong_absent_cannot_post_twice(ledger):
    """The backstop: were the filter to rule out a message the inbox holds, the unique index
    refuses its row, the batch rolls back whole, and submitted again alone it is a duplicate.
    Forced here by emptying the filter behind the store's back."""
    core, env = started(ledger)
    taken = receipt(env)
    post_all(core, [taken])
    core.store._known.load([], 0)  # noqa: SLF001 - the fault
    before = books(core)
    with pytest.raises(StoreError):
        core.submit_many([receipt(env), taken])
    assert books(core) == before
    assert core.submit(taken).status is Status.DUPLICATE
    assert sql(core, "SELECT count(*) FROM inbox WHERE message_id = %s", taken.message_id) == [(1,)]
    assert core.reconcile().ok
