"""The submission pipeline end to end on real SQLite: idempotency, sequencing, holds, dead
letters, replay, periods and restart."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

import integration.steps
from integration import (
    Account,
    ConfigurationError,
    Core,
    DeadLetterFilter,
    ErrorCode,
    FinishedGoodsReceived,
    GoodsReceived,
    Item,
    ItemCreated,
    ItemType,
    NotFound,
    PeriodClosed,
    Status,
    StoreError,
    WorkOrderClosed,
    open_store,
    parse_payload,
)
from integration.envelope import payload_hash
from tests.builders import START, D, adjustment, confirm, new_core, receipt, release, settings

# March ends at midnight local time: 22:00 UTC in Berlin (P1, CEST), 05:00 UTC in Chicago (P2).
APRIL_IN_BERLIN = datetime(2026, 3, 31, 22, tzinfo=UTC)
APRIL_IN_CHICAGO = datetime(2026, 4, 1, 5, tzinfo=UTC)


def posted_rows(core, message_id):
    return core.store.connection.execute(
        "SELECT COUNT(*) FROM inbox WHERE message_id = ? AND status = 'POSTED'", (message_id,)
    ).fetchone()[0]


def _confirmation(core, env):
    core.submit(release(env))
    return confirm(env)


def _count(_core, env):
    return env(adjustment("-3", item="RAW-L", location="LINE", lot="L1"))


# A message that posts one entry, after what it needs: one per kind of sender.
FIRST_MESSAGE = pytest.mark.parametrize(
    "first_message", [_confirmation, _count], ids=["confirmation", "stock-adjustment"]
)


@FIRST_MESSAGE
def test_a_retry_with_the_same_message_id_returns_the_original_outcome(first_message):
    core, env, _ = new_core()
    first = core.submit(message := first_message(core, env))
    again = core.submit(message)
    assert first.status is Status.POSTED and first.entry_ids
    assert again.status is Status.DUPLICATE
    assert again.original.status is Status.POSTED
    assert again.original.entry_ids == first.entry_ids
    assert core.store.entry_count() == 1


@FIRST_MESSAGE
def test_a_resend_under_a_new_message_id_is_caught_by_the_idempotency_key(first_message):
    core, env, _ = new_core()
    message = first_message(core, env)
    core.submit(message)
    resent = core.submit(message.model_copy(update={"message_id": "resend-1"}))
    assert resent.status is Status.DUPLICATE
    assert resent.original.message_id == message.message_id
    assert core.store.entry_count() == 1


@FIRST_MESSAGE
def test_negative_control_without_idempotency_a_duplicate_posts_twice(first_message):
    core, env, _ = new_core(idempotency=False)
    message = first_message(core, env)
    assert core.submit(message).status is Status.POSTED
    assert core.submit(message).status is Status.POSTED
    assert core.store.entry_count() == 2
    assert core.reconcile().ok  # balanced, yet wrong: the harness must count the duplicate


def test_a_payload_read_ahead_is_submitted_as_read():
    """`parse_payload` is pure: what it read on another thread or process is submitted as
    the payload itself would be, raw text and payload hash included (the duplicate is caught
    by comparing hashes)."""
    (direct, env, _), (ahead, _, _) = new_core(), new_core()
    work_order = release(env)
    assert [core.submit(work_order).status for core in (direct, ahead)] == [Status.POSTED] * 2
    message = confirm(env)
    text = message.model_dump_json()
    outcomes = [direct.submit(text), ahead.submit(parse_payload(text))]
    assert [o.status for o in outcomes] == [Status.POSTED, Status.POSTED]
    assert ahead.submit(parse_payload(message)).status is Status.DUPLICATE
    changed = message.model_copy(update={"message_id": "other-id"})
    changed = changed.model_copy(
        update={"message": changed.message.model_copy(update={"good_qty": D("2")})}
    )
    assert ahead.submit(parse_payload(changed)).code is ErrorCode.IDEMPOTENCY_CONFLICT
    raw = "SELECT envelope, payload_hash FROM inbox WHERE message_id = ?"
    assert [
        core.store.connection.execute(raw, (message.message_id,)).fetchone()
        for core in (direct, ahead)
    ] == [(text, payload_hash(message))] * 2


def test_out_of_order_messages_are_held_and_applied_in_sequence():
    core, env, _ = new_core()
    core.submit(release(env))
    third, second, first = confirm(env, seq=3), confirm(env, seq=2), confirm(env, seq=1)
    assert core.submit(third).status is Status.HELD
    held = core.submit(second)
    assert held.status is Status.HELD and held.code is ErrorCode.SEQUENCE_GAP
    outcome = core.submit(first)
    assert outcome.status is Status.POSTED
    assert [r.message_id for r in outcome.released] == [second.message_id, third.message_id]
    applied = [
        row[0]
        for row in core.store.connection.execute(
            "SELECT message_id FROM inbox WHERE status = 'POSTED'"
            " AND message_type = 'OperationCompleted' ORDER BY applied_seq"
        )
    ]
    assert applied == [first.message_id, second.message_id, third.message_id]
    assert core.held_count == 0


def test_a_confirmation_before_its_work_order_waits_for_the_release():
    core, env, _ = new_core()
    early = core.submit(confirm(env))
    assert early.status is Status.HELD and early.code is ErrorCode.AWAITING_DEPENDENCY
    released = core.submit(release(env))
    assert [r.status for r in released.released] == [Status.POSTED]
    assert core.work_order_status("WO-1")["good_by_operation"] == {10: D(1)}


def test_a_gap_past_the_hold_timeout_is_dead_lettered_then_replayed_when_it_fills():
    core, env, clock = new_core()
    core.submit(release(env))
    second, first = confirm(env, seq=2), confirm(env, seq=1)
    assert core.submit(second).status is Status.HELD
    clock.advance(timedelta(hours=2))
    expired = core.expire_holds()
    assert [(o.status, o.code) for o in expired] == [(Status.REJECTED, ErrorCode.SEQUENCE_GAP)]
    (letter,) = core.dead_letters()
    assert letter.ids.work_order == "WO-1" and letter.raw and letter.waits_on
    outcome = core.submit(first)
    assert [r.message_id for r in outcome.released] == [second.message_id]
    assert core.dead_letters() == []
    assert core.dead_letters(DeadLetterFilter(status="replayed"))[0].id == letter.id
    assert posted_rows(core, second.message_id) == 1


def test_master_data_arriving_replays_what_waited_on_it():
    core, env, clock = new_core()
    waiting = env(
        GoodsReceived(
            plant="P1",
            item="NEW-1",
            qty=D(5),
            uom="EA",
            location="STORES",
            purchase_order="PO-9",
            supplier="SUP-1",
            unit_price=D(1),
        )
    )
    assert core.submit(waiting).code is ErrorCode.AWAITING_DEPENDENCY
    clock.advance(timedelta(hours=2))
    core.expire_holds()
    assert (
        core.dead_letters(DeadLetterFilter(item="NEW-1"))[0].code is ErrorCode.AWAITING_DEPENDENCY
    )
    created = core.submit(
        env(
            ItemCreated(
                item=Item(id="NEW-1", base_uom="EA", type=ItemType.RAW, standard_costs={"P1": D(1)})
            )
        )
    )
    assert [r.status for r in created.released] == [Status.POSTED]
    assert core.stock()[("P1", "NEW-1", "STORES", "")].qty == 5


def test_replay_after_a_fix_posts_once_and_a_second_replay_does_nothing():
    core, env, _ = new_core(sequencing=False)
    bad = core.submit(confirm(env))  # no work order yet, and no waiting without sequencing
    assert bad.code is ErrorCode.WORK_ORDER_UNKNOWN
    core.submit(release(env))
    first = core.replay(DeadLetterFilter(work_order="WO-1"))
    assert [o.status for o in first] == [Status.POSTED]
    assert core.replay(DeadLetterFilter(work_order="WO-1")) == []
    assert core.replay(DeadLetterFilter(status=None, work_order="WO-1")) == []
    assert core.store.entry_count() == 1


def test_a_replay_that_still_fails_counts_another_attempt():
    core, env, _ = new_core(sequencing=False)
    core.submit(confirm(env))
    (outcome,) = core.replay(DeadLetterFilter(code=ErrorCode.WORK_ORDER_UNKNOWN))
    assert outcome.status is Status.REJECTED
    (letter,) = core.dead_letters()
    assert letter.attempts == 2 and len(letter.history) == 2


def test_a_late_event_after_period_close_posts_to_the_next_open_period():
    core, env, clock = new_core()
    core.submit(release(env))
    clock.set(APRIL_IN_BERLIN)
    closed = core.submit(env(PeriodClosed(plant="P1", period="2026-03"), occurred_at=clock.now()))
    assert closed.status is Status.POSTED
    late = core.submit(
        env(
            FinishedGoodsReceived(work_order="WO-1", qty=D(1), uom="EA", location="FG"),
            occurred_at=START,
        )
    )
    assert late.status is Status.POSTED and late.late
    row = core.store.connection.execute(
        "SELECT period, original_period, late FROM journal_entry WHERE entry_id = ?", late.entry_ids
    ).fetchone()
    assert row == ("2026-04", "2026-03", 1)
    assert core.store.late_entry_count() == 1


def close(env, plant, at):
    return env(PeriodClosed(plant=plant, period="2026-03"), occurred_at=at)


def test_a_close_is_refused_until_the_period_has_ended_in_the_plants_time_zone():
    """A minute before 05:00 UTC on 1 April it is April in Berlin, still March in Chicago."""
    core, env, clock = new_core()
    clock.set(APRIL_IN_CHICAGO - timedelta(minutes=1))
    berlin = core.submit(close(env, "P1", clock.now()))
    chicago = core.submit(close(env, "P2", clock.now()))
    assert berlin.status is Status.POSTED
    assert (chicago.status, chicago.code) == (Status.REJECTED, ErrorCode.PERIOD_NOT_ENDED)
    assert [p.field for p in chicago.problems] == ["occurred_at", "period"]
    assert "2026-04-01T00:00:00-05:00" in chicago.problems[0].message
    clock.set(APRIL_IN_CHICAGO)
    assert core.submit(close(env, "P2", clock.now())).status is Status.POSTED


def test_a_close_that_arrives_before_the_period_ended_posts_when_replayed_after_it():
    core, env, clock = new_core()
    core.submit(release(env))
    clock.set(APRIL_IN_BERLIN - timedelta(hours=1))
    early = core.submit(close(env, "P1", APRIL_IN_BERLIN))  # dated right, arrived early
    assert (early.status, early.code) == (Status.REJECTED, ErrorCode.PERIOD_NOT_ENDED)
    assert [p.field for p in early.problems] == ["period"]
    finished = FinishedGoodsReceived(work_order="WO-1", qty=D(1), uom="EA", location="FG")
    in_march = core.submit(env(finished, occurred_at=START))
    assert in_march.status is Status.POSTED and not in_march.late  # March is still open
    assert [o.code for o in core.replay()] == [ErrorCode.PERIOD_NOT_ENDED]
    clock.set(APRIL_IN_BERLIN)
    assert [o.status for o in core.replay()] == [Status.POSTED]
    assert core.submit(env(finished, occurred_at=START)).late


def test_a_close_dated_before_the_period_ended_stays_refused_on_replay():
    core, env, clock = new_core()
    wrong = core.submit(close(env, "P1", APRIL_IN_BERLIN - timedelta(seconds=1)))
    assert wrong.code is ErrorCode.PERIOD_NOT_ENDED
    clock.set(APRIL_IN_BERLIN + timedelta(days=1))
    (replayed,) = core.replay()
    assert (replayed.status, replayed.code) == (Status.REJECTED, ErrorCode.PERIOD_NOT_ENDED)
    assert [p.field for p in replayed.problems] == ["occurred_at"]


def test_a_close_of_a_period_outside_the_calendar_is_invalid():
    core, env, _clock = new_core()
    outcome = core.submit(env(PeriodClosed(plant="P1", period="9999-12")))
    assert (outcome.status, outcome.code) == (Status.REJECTED, ErrorCode.SCHEMA_INVALID)
    assert outcome.problems[0].field == "period"


def test_a_posting_goes_to_the_period_of_its_plants_time_zone():
    """At 04:30 UTC on 1 April a receipt in Chicago is March's, one in Berlin April's."""
    core, env, _clock = new_core()
    item = Item(
        id="RAW-Z", base_uom="EA", type=ItemType.RAW, standard_costs={"P1": D(1), "P2": D(1)}
    )
    assert core.submit(env(ItemCreated(item=item))).status is Status.POSTED
    at = APRIL_IN_CHICAGO - timedelta(minutes=30)
    periods = {}
    for plant in ("P1", "P2"):
        goods = receipt("1", plant=plant, item="RAW-Z", unit_price=D(1))
        outcome = core.submit(env(goods, occurred_at=at))
        periods[plant] = core.store.connection.execute(
            "SELECT period, late FROM journal_entry WHERE entry_id = ?", outcome.entry_ids
        ).fetchone()
    assert periods == {"P1": ("2026-04", 0), "P2": ("2026-03", 0)}


def test_stock_adjustments_reconcile_and_the_books_rebuild_from_the_ledger(tmp_path):
    path = tmp_path / "ledger.db"
    core, env, clock = new_core(str(path))
    for message in (
        receipt("10", location="LINE"),  # RAW-A 10 × 2.00 = 20.00
        adjustment("4", location="LINE"),  # +8.00
        adjustment("-16", location="LINE", reason="damage"),  # -32.00: -2 on the books
        adjustment("0.1", item="RAW-L", location="LINE", lot="L1"),  # 0.125 to even: 0.12
        adjustment("-0.1", item="RAW-L", location="LINE", lot="L1"),  # -0.12: back to 0
        adjustment("3", location="SUB", reason="correction"),  # 6.00 at the subcontractor
    ):
        assert core.submit(env(message)).status is Status.POSTED
    refused = env(adjustment("2", item="RAW-L", location="NOWHERE", lot="L9"))
    assert core.submit(refused).code is ErrorCode.UNKNOWN_LOCATION

    assert core.reconcile().ok
    balances = core.account_balances()
    assert core.store.stock_value_by_account() == {
        ("P1", Account.RAW_MATERIALS): D("-4.00"),  # 20.00 + 8.00 - 32.00 + 0.12 - 0.12
        ("P1", Account.AT_SUBCONTRACTOR): D("6.00"),
    }
    assert balances[("P1", Account.RAW_MATERIALS, "EUR")] == D("-4.00")
    assert balances[("P1", Account.AT_SUBCONTRACTOR, "EUR")] == D("6.00")
    assert balances[("P1", Account.INVENTORY_ADJUSTMENT, "EUR")] == D("18.00")  # net write-off
    assert core.store.stock_exception_count() == 1
    (letter,) = core.dead_letters(DeadLetterFilter(plant="P1", item="RAW-L", lot="L9"))
    assert letter.message_id == refused.message_id and letter.raw == refused.model_dump_json()
    before = (balances, core.stock())
    core.close()

    reopened = Core(settings(), open_store(f"sqlite:///{path}"), clock)
    assert (reopened.account_balances(), reopened.stock()) == before
    assert reopened.book_stock() == before[1]
    assert reopened.reconcile().ok


def test_a_reopened_file_ledger_rebuilds_state_and_holds(tmp_path):
    path = tmp_path / "ledger.db"
    core, env, clock = new_core(str(path))
    core.submit(release(env))
    core.submit(confirm(env, "3", seq=1))
    waiting = confirm(env, "2", seq=3)
    core.submit(waiting)
    before = (core.account_balances(), core.stock(), core.work_order_wip())
    core.close()

    reopened = Core(settings(), open_store(f"sqlite:///{path}"), clock)
    assert (reopened.account_balances(), reopened.stock(), reopened.work_order_wip()) == before
    assert reopened.work_order_status("WO-1")["good_by_operation"] == {10: D(3)}
    assert reopened.held_count == 1
    outcome = reopened.submit(confirm(env, "1", seq=2))
    assert [r.message_id for r in outcome.released] == [waiting.message_id]
    assert reopened.work_order_status("WO-1")["good_by_operation"] == {10: D(6)}
    assert reopened.reconcile().ok


def test_a_closed_order_keeps_its_status_and_its_refusals_across_a_reopen(tmp_path):
    # The books keep a closed order as a small record, not its BOM snapshot and working state.
    path = tmp_path / "ledger.db"
    core, env, clock = new_core(str(path))
    core.submit(release(env))
    core.submit(confirm(env, "3"))
    core.submit(env(FinishedGoodsReceived(work_order="WO-1", qty=D(3), uom="EA", location="FG")))
    assert core.submit(env(WorkOrderClosed(work_order="WO-1"))).status is Status.POSTED
    status = core.work_order_status("WO-1")
    core.close()

    reopened = Core(settings(), open_store(f"sqlite:///{path}"), clock)
    assert reopened.work_order_status("WO-1") == status
    assert status["closed"] and status["received"] == D(3) and status["wip"] == 0
    assert status["good_by_operation"] == {10: D(3)}
    late = reopened.submit(confirm(env, "1"))
    again = reopened.submit(release(env))
    assert (late.code, again.code) == (ErrorCode.WORK_ORDER_CLOSED, ErrorCode.WORK_ORDER_EXISTS)
    assert reopened.dead_letters()[0].ids.plant == "P1"  # the plant still comes from the order
    assert reopened.reconcile().ok


def test_negative_control_without_sequencing_out_of_order_work_fails_visibly():
    core, env, _ = new_core(sequencing=False)
    early = core.submit(confirm(env, seq=2))
    assert early.status is Status.REJECTED
    assert core.dead_letters()[0].code is ErrorCode.WORK_ORDER_UNKNOWN


def test_nul_and_lone_surrogates_are_refused_and_the_dead_letter_keeps_the_exact_payload():
    """In a field: SCHEMA_INVALID with its path, whether the envelope was built unvalidated or
    sent as JSON; a payload that is not storable text at all (a raw NUL, not UTF-8) is
    MALFORMED_PAYLOAD and kept as base64. Every dead letter gives back the bytes sent."""
    core, env, _ = new_core()
    for bad in ("nul\x00id", "lone\ud800"):
        envelope = confirm(env).model_copy(update={"message_id": bad})
        for payload in (envelope, json.dumps(envelope.model_dump(mode="json"))):
            outcome = core.submit(payload)
            assert (outcome.code, outcome.problems[0].field) == (
                ErrorCode.SCHEMA_INVALID,
                "message_id",
            )
    sent = [b'{"message_id": "\x00"}', b'{"message_id": "\xff\xfe"}', '{"x": "\ud800"}']
    for payload in sent:
        assert core.submit(payload).code is ErrorCode.MALFORMED_PAYLOAD
    letters = core.dead_letters()
    assert [letter.raw_encoding for letter in letters[-3:]] == ["base64"] * 3
    exact = [p.encode("utf-8", "surrogatepass") if isinstance(p, str) else p for p in sent]
    assert [letter.raw_bytes() for letter in letters[-3:]] == exact
    assert core.store.entry_count() == 0


@pytest.mark.parametrize("qty, posts", [("0.0004", False), ("0.0005", False), ("0.0006", True)])
def test_a_quantity_converting_to_zero_base_units_is_refused(qty, posts):
    """0.0004 G of RAW-B is 0.0000004 KG, zero at the ledger's six places (0.0000005 too,
    rounded half to even): it would post nothing; 0.0006 G is 0.000001 KG and posts."""
    core, env, _ = new_core()
    outcome = core.submit(env(receipt(qty, item="RAW-B", uom="G", unit_price=D(1))))
    if posts:
        assert outcome.status is Status.POSTED
    else:
        assert (outcome.code, outcome.problems[0].field) == (ErrorCode.INVALID_QUANTITY, "uom")
        assert core.store.entry_count() == 0


def test_a_store_failure_while_looking_for_waiters_strands_nothing(monkeypatch):
    core, env, _ = new_core()
    parked = confirm(env, "2")
    assert core.submit(parked).status is Status.HELD
    assert core.expire_holds(timedelta(0))[0].code is ErrorCode.AWAITING_DEPENDENCY
    held = confirm(env, seq=1)
    assert core.submit(held).status is Status.HELD  # both wait for WO-1's release
    lookups = core.store.dead_letters

    def failing_once(selection):
        monkeypatch.setattr(core.store, "dead_letters", lookups)
        raise StoreError("database is locked")

    monkeypatch.setattr(core.store, "dead_letters", failing_once)
    released = core.submit(release(env))
    assert released.status is Status.POSTED and released.released == ()
    assert core.held_count == 1  # still held, not forgotten
    again = core.submit(held)  # the next call carries on releasing
    assert again.status is Status.DUPLICATE
    assert [r.message_id for r in again.released] == [held.message_id, parked.message_id]
    assert posted_rows(core, held.message_id) == posted_rows(core, parked.message_id) == 1


def _day(env):
    first, second = confirm(env, seq=1), confirm(env, seq=2)
    return [release(env), second, first, first, confirm(env, "99")]


def test_a_batch_gives_each_message_the_outcome_it_would_get_alone():
    alone, env_a, _ = new_core()
    batched, env_b, _ = new_core()
    singles = [alone.submit(message) for message in _day(env_a)]
    together = batched.submit_many(_day(env_b))
    assert [(o.status, o.code) for o in together] == [(o.status, o.code) for o in singles]
    assert [(o.status, o.code) for o in together] == [
        (Status.POSTED, None),
        (Status.HELD, ErrorCode.SEQUENCE_GAP),
        (Status.POSTED, None),
        (Status.DUPLICATE, None),
        (Status.REJECTED, ErrorCode.OVER_COMPLETION),
    ]
    assert batched.account_balances() == alone.account_balances()
    assert batched.reconcile().ok


def test_a_store_failure_in_a_batch_rolls_it_all_back_and_the_books_follow(tmp_path):
    core, env, _ = new_core(str(tmp_path / "ledger.db"))
    before = (core.account_balances(), core.stock(), core.store.entry_count())
    core.store.connection.execute(
        "CREATE TEMP TRIGGER crash AFTER INSERT ON stock_move"
        " BEGIN SELECT RAISE(ABORT, 'crash'); END"
    )
    day = _day(env)
    with pytest.raises(StoreError):
        core.submit_many(day)
    core.store.connection.execute("DROP TRIGGER temp.crash")
    assert (core.account_balances(), core.stock(), core.store.entry_count()) == before
    assert [o.status for o in core.submit_many(day)][:3] == [
        Status.POSTED,
        Status.HELD,
        Status.POSTED,
    ]
    assert core.reconcile().ok


def test_any_failure_escaping_a_batch_rolls_it_all_back_and_the_books_follow(tmp_path, monkeypatch):
    """Not only a store failure: whatever escapes the batch (here a bug in a rule, on the
    batch's last message) rolls the store back, and the books must not keep what the
    messages before it did."""
    core, env, _ = new_core(str(tmp_path / "ledger.db"))
    before = (core.account_balances(), core.stock(), core.store.entry_count())
    day = _day(env)
    poisoned = confirm(env, "2")
    real_decide = integration.steps.decide

    def decide(state, envelope):
        if envelope.message_id == poisoned.message_id:
            raise RuntimeError("a bug in a rule")
        return real_decide(state, envelope)

    monkeypatch.setattr(integration.steps, "decide", decide)
    with pytest.raises(RuntimeError):
        core.submit_many([*day, poisoned])
    assert (core.account_balances(), core.stock(), core.store.entry_count()) == before
    assert core.reconcile().ok
    with pytest.raises(NotFound):  # the books in memory forgot the rolled-back release
        core.work_order_status("WO-1")
    assert [o.status for o in core.submit_many(day)][:3] == [
        Status.POSTED,
        Status.HELD,
        Status.POSTED,
    ]
    assert core.reconcile().ok


def _tamper(path, message_id: str, change) -> None:
    with sqlite3.connect(path) as db:
        (text,) = db.execute(
            "SELECT envelope FROM inbox WHERE message_id = ?", (message_id,)
        ).fetchone()
        document = json.loads(text)
        change(document)
        db.execute(
            "UPDATE inbox SET envelope = ? WHERE message_id = ?", (json.dumps(document), message_id)
        )


def test_a_ledger_posted_under_looser_reading_rules_still_opens_with_its_books(tmp_path):
    """An older build accepted padded decimal text, Unix times and quantities below the
    ledger's precision; what a ledger holds was judged when it arrived, so rebuilding the books
    reads it as stored instead of refusing the ledger."""
    path = tmp_path / "ledger.db"
    core, env, clock = new_core(str(path))
    posted = core.submit(release(env))
    before = core.work_order_status("WO-1")
    core.close()

    def loosen(document: dict) -> None:
        document["message"]["qty"] = " 10 "
        document["occurred_at"] = 1772431200

    _tamper(path, posted.message_id, loosen)
    reopened = Core(settings(), open_store(f"sqlite:///{path}"), clock)
    assert reopened.work_order_status("WO-1") == before


def test_a_ledger_holding_an_unreadable_envelope_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "ledger.db"
    core, env, clock = new_core(str(path))
    posted = core.submit(release(env))
    core.close()
    _tamper(path, posted.message_id, lambda document: document["message"].pop("qty"))
    with pytest.raises(ConfigurationError, match=f"cannot rebuild from {posted.message_id}"):
        Core(settings(), open_store(f"sqlite:///{path}"), clock)
