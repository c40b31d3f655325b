"""A stateful model of the core on a real SQLite file (docs/architecture.md, The core and Negative
controls).

Rules: deliver the next planned message, deliver an already-sent one again (same message_id or a
resend under a new one), skip ahead, let hold timeouts pass, crash inside the store transaction
(a real SQLite TEMP TRIGGER aborting the INSERT INTO stock_move), replay dead letters, close a
period, and restart (close the core and reopen the same file). After every step:

* the reconciliation holds and every journal entry balances;
* no message id and no idempotency key has more than one POSTED inbox row;
* a message's journal entries are written once, by one inbox record, and never change after;
* nothing is lost: every message delivered has one inbox row, POSTED, HELD (and actually held
  in memory, so it can still be released or expire) or REJECTED with an open dead letter
  carrying the same code;
* nothing posts into a closed period: later entries of a closed period go to the next open
  one, flagged late, keeping their original period.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from integration import (
    Core,
    DeadLetterFilter,
    Envelope,
    ErrorCode,
    GoodsReceived,
    MaterialIssued,
    Outcome,
    PeriodClosed,
    ScrapDeclared,
    SourceSystem,
    Status,
    StoreError,
    open_store,
)
from tests.builders import START, D, Envelopes, new_core, release, settings
from tests.stateful.test_delivery_properties import FORMS, message_sets, wire

HOLD_TIMEOUT = timedelta(hours=1)
PERIODS = ("2026-03", "2026-04")  # closable in any order; every planned message is in March
# Both periods have ended in P1's zone (Berlin): closes are dated from here, and the clock
# starts here, or the core refuses them (PERIOD_NOT_ENDED).
CLOSES_FROM = datetime(2026, 5, 1, tzinfo=UTC)
COUNTED = ("inbox", "journal_entry", "journal_line", "stock_move", "dead_letter")
CRASH_TRIGGER = (
    "CREATE TEMP TRIGGER injected_crash BEFORE INSERT ON main.stock_move"
    " BEGIN SELECT RAISE(ABORT, 'injected crash'); END"
)
MOVES_STOCK = ("MaterialIssued", "FinishedGoodsReceived", "ByProductReported", "GoodsReceived")


def walk(outcome: Outcome) -> Iterator[Outcome]:
    yield outcome
    for released in outcome.released:
        yield from walk(released)


def counts(core: Core) -> dict[str, int]:
    db = core.store.connection
    return {table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in COUNTED}


class CoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="core-machine-"))
        self.path = str(self.directory / "ledger.db")
        self.core, _envelopes, self.clock = new_core(self.path)
        self.clock.set(CLOSES_FROM)
        self.plan: list[Envelope] = []
        self.pending: list[Envelope] = []  # planned and not yet delivered, in plan order
        self.sent: list[Envelope] = []  # delivered at least once (under this message_id)
        self.entries_of: dict[str, tuple[int, ...]] = {}  # message_id -> its journal entries
        self.closed: list[tuple[str, int]] = []  # (period, max entry_id when it closed)
        self.serial = 0

    # --- helpers -------------------------------------------------------------------------
    def _fresh(
        self,
        message: Any,
        *,
        prefix: str,
        source: SourceSystem | None = None,
        occurred_at: datetime | None = None,
    ) -> Envelope:
        self.serial += 1
        envelopes = Envelopes(START + timedelta(minutes=self.serial))
        return envelopes(
            message,
            source=source,
            occurred_at=occurred_at,
            message_id=f"{prefix}-{self.serial}",
            key=f"{prefix}-key-{self.serial}",
        )

    def _db(self):
        return self.core.store.connection

    def _first_delivery(self, envelope: Envelope, form: str = "envelope") -> Outcome:
        outcome = self.core.submit(wire(envelope, form))
        self.pending.remove(envelope)
        self.sent.append(envelope)
        assert outcome.status is not Status.DUPLICATE, outcome
        if outcome.status is Status.REJECTED:
            # The only way a planned message is refused: its order was closed (the close
            # skipped ahead of it). Anything else would be a core bug.
            assert outcome.code is ErrorCode.WORK_ORDER_CLOSED, outcome
            assert self._posted("WorkOrderClosed", envelope.message.work_order)
        return outcome

    def _posted(self, message_type: str, work_order: str) -> bool:
        return (
            self._db()
            .execute(
                "SELECT 1 FROM inbox"
                " WHERE message_type = ? AND work_order = ? AND status = 'POSTED'",
                (message_type, work_order),
            )
            .fetchone()
            is not None
        )

    def _next_seq(self, stream: str) -> int:
        row = (
            self._db()
            .execute("SELECT next_seq FROM stream_position WHERE stream = ?", (stream,))
            .fetchone()
        )
        return row[0] if row else 1

    def _crashable(self) -> list[Envelope]:
        """Pending planned messages that would post right now and write stock moves."""
        found = []
        for envelope in self.pending:
            message = envelope.message
            moves = message.type in MOVES_STOCK or (
                message.type == "OperationCompleted" and message.good_qty + message.scrap_qty > 0
            )
            if not moves or envelope.stream is None:
                continue
            order = message.work_order
            if (
                self._posted("WorkOrderReleased", order)
                and not self._posted("WorkOrderClosed", order)
                and self._next_seq(envelope.stream) == envelope.source_seq
            ):
                found.append(envelope)
        return found

    def _crash(self, envelope: Envelope) -> None:
        """Submit `envelope` with the store rigged to fail inside its transaction."""
        self.core.expire_holds()  # so that submit's own expiry sweep writes nothing
        before = counts(self.core)
        self._db().execute(CRASH_TRIGGER)
        try:
            with pytest.raises(StoreError, match="injected crash"):
                self.core.submit(envelope)
        finally:
            self._db().execute("DROP TRIGGER IF EXISTS temp.injected_crash")
        assert counts(self.core) == before  # the whole transaction rolled back
        assert self.core.store.inbox_record(envelope.message_id) is None
        assert not self._db().in_transaction

    # --- rules ---------------------------------------------------------------------------
    @initialize(mset=message_sets(max_orders=2, max_steps=6, period_close=False))
    def plan_messages(self, mset) -> None:
        self.plan = [event.envelope for event in mset.events]
        self.pending = list(self.plan)

    @precondition(lambda self: self.pending)
    @rule(burst=st.integers(1, 4), form=st.sampled_from(FORMS))
    def deliver_next(self, burst: int, form: str) -> None:
        for envelope in self.pending[:burst]:
            self._first_delivery(envelope, form)

    @precondition(lambda self: len(self.pending) > 1)
    @rule(data=st.data())
    def deliver_out_of_order(self, data: st.DataObject) -> None:
        skip = data.draw(st.integers(1, min(3, len(self.pending) - 1)), label="skip ahead")
        self._first_delivery(self.pending[skip])

    @precondition(lambda self: self.sent)
    @rule(data=st.data(), resend=st.booleans(), form=st.sampled_from(FORMS))
    def deliver_duplicate(self, data: st.DataObject, resend: bool, form: str) -> None:
        envelope = data.draw(st.sampled_from(self.sent), label="again")
        if resend:
            self.serial += 1
            envelope = envelope.model_copy(
                update={
                    "message_id": f"{envelope.message_id}~resend-{self.serial}",
                    "sent_at": envelope.sent_at + timedelta(minutes=self.serial),
                }
            )
        self.core.expire_holds()
        before = counts(self.core)
        outcome = self.core.submit(wire(envelope, form))
        assert outcome.status is Status.DUPLICATE, outcome
        assert outcome.original is not None and outcome.released == ()
        assert counts(self.core) == before  # a duplicate writes nothing at all

    @precondition(lambda self: self.sent)
    @rule(data=st.data(), same_message_id=st.booleans())
    def deliver_a_conflicting_payload(self, data: st.DataObject, same_message_id: bool) -> None:
        """The same idempotency key (and maybe message id) with another business payload."""
        original = data.draw(st.sampled_from(self.sent), label="conflict with")
        self.serial += 1
        conflicting = original.model_copy(
            update={
                "message_id": original.message_id
                if same_message_id
                else f"{original.message_id}~conflict-{self.serial}",
                "occurred_at": original.occurred_at + timedelta(seconds=self.serial),
            }
        )
        self.core.expire_holds()
        before = counts(self.core)
        outcome = self.core.submit(conflicting)
        assert outcome.status is Status.REJECTED, outcome
        assert outcome.code is ErrorCode.IDEMPOTENCY_CONFLICT, outcome
        # Dead-lettered, nothing else: the original's inbox row and entries are untouched
        # (the entries_written_once invariant checks the latter).
        assert counts(self.core) == {**before, "dead_letter": before["dead_letter"] + 1}
        letter = self.core.dead_letters(DeadLetterFilter(ids=(outcome.dead_letter_id,)))
        assert [(d.code, d.message_id) for d in letter] == [
            (ErrorCode.IDEMPOTENCY_CONFLICT, conflicting.message_id)
        ]

    @rule()
    def let_holds_time_out(self) -> None:
        self.clock.advance(HOLD_TIMEOUT + timedelta(minutes=1))

    @rule(item=st.sampled_from(("RAW-A", "RAW-C")), qty=st.integers(1, 20))
    def crash_on_a_receipt_then_redeliver(self, item: str, qty: int) -> None:
        envelope = self._fresh(
            GoodsReceived(
                plant="P1",
                item=item,
                qty=D(qty),
                uom="EA",
                location="STORES",
                purchase_order="PO-9",
                supplier="SUP-9",
                unit_price=D("2.10"),
            ),
            prefix="gr",
        )
        self._crash(envelope)
        outcome = self.core.submit(envelope)
        assert outcome.status is Status.POSTED and outcome.entry_ids, outcome
        self.sent.append(envelope)

    @precondition(lambda self: self._crashable())
    @rule(data=st.data(), redeliver_now=st.booleans())
    def crash_on_a_planned_message(self, data: st.DataObject, redeliver_now: bool) -> None:
        envelope = data.draw(st.sampled_from(self._crashable()), label="crash on")
        self._crash(envelope)
        if redeliver_now:  # otherwise it stays pending, to be delivered by a later rule
            outcome = self._first_delivery(envelope)
            assert outcome.status is Status.POSTED and outcome.entry_ids, outcome

    @rule()
    def replay_dead_letters(self) -> None:
        posted_before = {
            row[0]
            for row in self._db().execute(
                "SELECT idempotency_key FROM inbox WHERE status = 'POSTED'"
            )
        }
        open_before = len(self.core.dead_letters())
        outcomes = self.core.replay()
        assert len(outcomes) <= open_before
        for outcome in outcomes:
            for applied in walk(outcome):
                if applied.status is Status.POSTED:
                    record = self.core.store.inbox_record(applied.message_id)
                    assert record.idempotency_key not in posted_before, applied

    @rule(period=st.sampled_from(PERIODS))
    def close_a_period(self, period: str) -> None:
        envelope = self._fresh(
            PeriodClosed(plant="P1", period=period), prefix="close", occurred_at=CLOSES_FROM
        )
        outcome = self.core.submit(envelope)
        self.sent.append(envelope)
        if period in {closed for closed, _watermark in self.closed}:
            assert outcome.status is Status.REJECTED, outcome
            assert outcome.code is ErrorCode.PERIOD_ALREADY_CLOSED
            return
        assert outcome.status is Status.POSTED, outcome
        watermark = (
            self._db().execute("SELECT COALESCE(MAX(entry_id), 0) FROM journal_entry").fetchone()[0]
        )
        self.closed.append((period, watermark))

    @rule()
    def restart(self) -> None:
        orders = sorted(
            {
                e.message.work_order
                for e in self.plan
                if e.message.type == "WorkOrderReleased"
                and self._posted("WorkOrderReleased", e.message.work_order)
            }
        )
        # Holds already past their timeout may be swept on open; sweep them first so that the
        # snapshot compares like with like (the not-yet-expired holds must all come back).
        self.core.expire_holds()
        before = self._snapshot(orders)
        self.core.close()
        self.core = Core(settings(), open_store(self.path), self.clock)
        assert self._snapshot(orders) == before

    def _snapshot(self, orders: list[str]) -> tuple:
        return (
            self.core.account_balances(),
            self.core.stock(),
            self.core.work_order_wip(),
            self.core.held_count,
            self.core.reconcile(),
            [self.core.work_order_status(order) for order in orders],
        )

    # --- invariants ----------------------------------------------------------------------
    @invariant()
    def books_reconcile(self) -> None:
        assert self.core.store.unbalanced_entries() == []
        reconciliation = self.core.reconcile()
        assert reconciliation.ok, reconciliation.findings
        assert self.core.book_stock() == self.core.stock()  # the books agree with the ledger

    @invariant()
    def posted_at_most_once(self) -> None:
        db = self._db()
        for column in ("message_id", "idempotency_key"):
            assert (
                db.execute(
                    f"SELECT {column}, COUNT(*) FROM inbox WHERE status = 'POSTED'"
                    f" GROUP BY {column} HAVING COUNT(*) > 1"
                ).fetchall()
                == []
            )

    @invariant()
    def entries_written_once(self) -> None:
        db = self._db()
        assert (
            db.execute(
                "SELECT message_id, COUNT(DISTINCT inbox_id) FROM journal_entry GROUP BY message_id"
                " HAVING COUNT(DISTINCT inbox_id) > 1"
            ).fetchall()
            == []
        )
        assert (
            db.execute(
                "SELECT COUNT(*) FROM journal_entry e JOIN inbox i ON i.inbox_id = e.inbox_id"
                " WHERE i.status != 'POSTED' OR i.message_id != e.message_id"
            ).fetchone()[0]
            == 0
        )
        now: dict[str, list[int]] = {}
        for message_id, entry_id in db.execute(
            "SELECT message_id, entry_id FROM journal_entry ORDER BY entry_id"
        ):
            now.setdefault(message_id, []).append(entry_id)
        for message_id, entry_ids in self.entries_of.items():
            assert tuple(now.get(message_id, ())) == entry_ids, message_id
        self.entries_of = {message_id: tuple(ids) for message_id, ids in now.items()}

    @invariant()
    def nothing_lost(self) -> None:
        db = self._db()
        for envelope in self.sent:
            rows = db.execute(
                "SELECT status, code, message_id FROM inbox WHERE idempotency_key = ?",
                (envelope.idempotency_key,),
            ).fetchall()
            assert len(rows) == 1, (envelope.message_id, rows)
            status, code, message_id = rows[0]
            if status == "REJECTED":
                letters = db.execute(
                    "SELECT code FROM dead_letter WHERE message_id = ? AND status = 'open'",
                    (message_id,),
                ).fetchall()
                assert (code,) in letters, (message_id, code, letters)
            else:
                assert status in ("POSTED", "HELD"), rows
        held = db.execute("SELECT COUNT(*) FROM inbox WHERE status = 'HELD'").fetchone()[0]
        assert self.core.held_count == held  # every HELD row can still be released or expire

    def _satisfied(self, key: str) -> bool:
        """Whether what a waiting message waits for (a hold or parked dead letter) is there."""
        if key.startswith("stream:"):
            stream, _, seq = key.removeprefix("stream:").rpartition("@")
            return self._next_seq(stream) >= int(seq)
        if key.startswith("work_order:"):
            return self._posted("WorkOrderReleased", key.removeprefix("work_order:"))
        return True  # items and BOMs: all master data was posted by new_core()

    @invariant()
    def nothing_waits_for_what_has_arrived(self) -> None:
        """Held messages are released, parked dead letters replayed, when the gap fills."""
        db = self._db()
        for message_id, waits_on in db.execute(
            "SELECT message_id, waits_on FROM inbox WHERE status = 'HELD'"
        ).fetchall():
            ready = [key for key in json.loads(waits_on) if self._satisfied(key)]
            assert ready == [], (message_id, ready)
        for dead_letter_id, key in db.execute(
            "SELECT w.dead_letter_id, w.dependency FROM dead_letter_wait w"
            " JOIN dead_letter d USING (dead_letter_id) WHERE d.status = 'open'"
        ).fetchall():
            assert not self._satisfied(key), (dead_letter_id, key)

    @invariant()
    def nothing_posts_into_a_closed_period(self) -> None:
        db = self._db()
        for period, watermark in self.closed:
            assert (
                db.execute(
                    "SELECT COUNT(*) FROM journal_entry WHERE entry_id > ? AND period = ?",
                    (watermark, period),
                ).fetchone()[0]
                == 0
            )
        closed = {period for period, _ in self.closed}
        for entry_id, period, original, late in db.execute(
            "SELECT entry_id, period, original_period, late FROM journal_entry"
        ):
            assert bool(late) == (period != original), entry_id
            if late:  # only a closed period sends entries on (the check above: not into one)
                assert original in closed and period > original, (entry_id, period, original)

    def teardown(self) -> None:
        self.core.close()
        shutil.rmtree(self.directory, ignore_errors=True)


CoreMachine.TestCase.settings = hypothesis_settings(stateful_step_count=50)
TestCoreMachine = CoreMachine.TestCase


# --- a store failure while held messages are being released ------------------------------------
def test_a_crash_while_releasing_held_messages_loses_nothing(tmp_path: Path) -> None:
    core, envelopes, _clock = new_core(str(tmp_path / "ledger.db"))
    try:
        assert core.submit(release(envelopes)).status is Status.POSTED
        scrap = envelopes(
            ScrapDeclared(work_order="WO-1", operation_seq=10, qty=D(1), uom="EA"),
            stream="MES:WO-1",
            seq=1,
        )  # journal lines, no stock move
        issue = envelopes(
            MaterialIssued(
                work_order="WO-1", component="RAW-A", qty=D(5), uom="EA", location="STORES"
            ),
            stream="MES:WO-1",
            seq=2,
        )  # moves stock
        assert core.submit(issue).status is Status.HELD  # waits for seq 1
        core.store.connection.execute(CRASH_TRIGGER)
        try:
            # seq 1 commits (no stock move); re-applying the released seq 2 then fails inside
            # its own transaction. Whether submit answers or raises, seq 1 is posted.
            try:
                core.submit(scrap)
            except StoreError:
                pass
        finally:
            core.store.connection.execute("DROP TRIGGER IF EXISTS temp.injected_crash")
        assert core.outcome(scrap.message_id).status is Status.POSTED
        held_rows = core.store.connection.execute(
            "SELECT COUNT(*) FROM inbox WHERE status = 'HELD'"
        ).fetchone()[0]
        assert core.held_count == held_rows  # every HELD row is still held in memory
        # Its gap has filled: the very next submission (here its own redelivery) applies it,
        # once — no hold timeout, no manual replay, no restart.
        assert core.submit(issue).status is Status.DUPLICATE
        assert core.outcome(issue.message_id).status is Status.POSTED
        assert core.held_count == 0
        moves = core.store.connection.execute(
            "SELECT COUNT(*) FROM stock_move m JOIN journal_entry e USING (entry_id)"
            " WHERE e.message_id = ?",
            (issue.message_id,),
        ).fetchone()[0]
        assert moves == 1
        assert core.reconcile().ok
    finally:
        core.close()


def test_a_crash_while_expiring_a_hold_loses_nothing(tmp_path: Path) -> None:
    core, envelopes, clock = new_core(str(tmp_path / "ledger.db"))
    try:
        early = envelopes(
            MaterialIssued(
                work_order="WO-1", component="RAW-A", qty=D(5), uom="EA", location="STORES"
            ),
            stream="MES:WO-1",
            seq=2,
        )
        assert core.submit(early).status is Status.HELD
        clock.advance(HOLD_TIMEOUT + timedelta(minutes=1))
        db = core.store.connection
        db.execute(
            "CREATE TEMP TRIGGER injected_crash BEFORE INSERT ON main.dead_letter"
            " BEGIN SELECT RAISE(ABORT, 'injected crash'); END"
        )
        try:
            with pytest.raises(StoreError):
                core.expire_holds()
        finally:
            db.execute("DROP TRIGGER IF EXISTS temp.injected_crash")
        held_rows = db.execute("SELECT COUNT(*) FROM inbox WHERE status = 'HELD'").fetchone()[0]
        assert core.held_count == held_rows  # every HELD row is still held in memory
        # Once the store works again, the next sweep dead-letters it as it should have.
        expired = core.expire_holds()
        assert [o.message_id for o in expired] == [early.message_id]
        assert [d.message_id for d in core.dead_letters()] == [early.message_id]
    finally:
        core.close()


def test_a_restart_releases_held_messages_whose_gap_already_filled(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.db")
    core, envelopes, clock = new_core(path)
    try:
        assert core.submit(release(envelopes)).status is Status.POSTED
        scrap = envelopes(
            ScrapDeclared(work_order="WO-1", operation_seq=10, qty=D(1), uom="EA"),
            stream="MES:WO-1",
            seq=1,
        )
        issue = envelopes(
            MaterialIssued(
                work_order="WO-1", component="RAW-A", qty=D(5), uom="EA", location="STORES"
            ),
            stream="MES:WO-1",
            seq=2,
        )
        assert core.submit(issue).status is Status.HELD
        # seq 1 commits, then the process "dies" before seq 2 is applied: the injected failure
        # stops the release, and the restart below throws away whatever memory the core kept.
        core.store.connection.execute(CRASH_TRIGGER)
        try:
            core.submit(scrap)
        except StoreError:
            pass
        finally:
            core.store.connection.execute("DROP TRIGGER IF EXISTS temp.injected_crash")
        core.close()
        core = Core(settings(), open_store(path), clock)
        assert core.outcome(scrap.message_id).status is Status.POSTED
        # The gap has filled: the next message (or the restart itself) lets the issue through,
        # with no timeout and no manual replay.
        receipt = envelopes(
            GoodsReceived(
                plant="P1",
                item="RAW-C",
                qty=D(1),
                uom="EA",
                location="STORES",
                purchase_order="PO-1",
                supplier="SUP-1",
                unit_price=D("0.50"),
            )
        )
        assert core.submit(receipt).status is Status.POSTED
        assert core.outcome(issue.message_id).status is Status.POSTED
        assert core.held_count == 0
        assert core.reconcile().ok
    finally:
        core.close()


# --- a failure inside the store transaction that is not an sqlite3.Error ------------------------
def test_an_amount_too_large_for_the_ledger_is_dead_lettered_and_poisons_nothing(
    tmp_path: Path,
) -> None:
    core, envelopes, _clock = new_core(str(tmp_path / "ledger.db"))

    def receipt(qty: str) -> Envelope:
        return envelopes(
            GoodsReceived(
                plant="P1",
                item="RAW-A",
                qty=D(qty),
                uom="EA",
                location="STORES",
                purchase_order="PO-1",
                supplier="SUP-1",
                unit_price=D("2.00"),
            )
        )

    try:
        before = counts(core)
        huge = receipt("1e15")  # 2e15 EUR: beyond the ledger's range (LEDGER_LIMIT)
        outcome = core.submit(huge)  # "never raises for bad input" (Core.submit)
        assert outcome.status is Status.REJECTED, outcome
        assert [d.message_id for d in core.dead_letters()] == [huge.message_id]
        assert not core.store.connection.in_transaction
        after = counts(core)
        assert {t: after[t] for t in COUNTED if t not in ("inbox", "dead_letter")} == {
            t: before[t] for t in COUNTED if t not in ("inbox", "dead_letter")
        }
        # The next, ordinary message is not affected.
        assert core.submit(receipt("3")).status is Status.POSTED
        assert core.reconcile().ok
    finally:
        core.close()
