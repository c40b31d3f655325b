"""The `LedgerStore` contract. Every adapter runs these same tests (and test_store_batches.py):
add its factory to `STORE_FACTORIES` in conftest.py and nothing else changes."""

from __future__ import annotations

import sqlite3
from contextlib import nullcontext
from datetime import timedelta
from decimal import Decimal

import pytest

from integration import BusinessIds, ConfigurationError, ErrorCode, Problem, SqliteStore, StoreError
from integration.ledger import Account, JournalLine, Posting, StockException, StockMove
from integration.store.base import (
    Commit,
    DeadLetterFilter,
    DeadLetterWrite,
    DuplicateDelivery,
    EntryWrite,
    Identity,
    InboxStatus,
    InboxWrite,
)
from integration.store.schema import SCHEMA_VERSION
from tests.builders import START

D = Decimal


def inbox(message_id="m-1", key="k-1", status=InboxStatus.POSTED, **kw) -> InboxWrite:
    base = dict(
        message_id=message_id,
        idempotency_key=key,
        payload_hash="h-" + key,
        message_type="GoodsReceived",
        source_system="WMS",
        stream=None,
        source_seq=None,
        ids=BusinessIds(plant="P1", item="RAW-A"),
        status=status,
        code=None,
        envelope_json='{"x": 1}',
        received_at=START,
        committed_at=START if status is InboxStatus.POSTED else None,
    )
    return InboxWrite(**{**base, **kw})


def identity(message_id="m-1", key="k-1", source="WMS", message_type="GoodsReceived") -> Identity:
    """The identity of a record `inbox()` writes with these ids."""
    return Identity(source, message_id, message_type, key)


def entry(value="10.00", qty="5", item="RAW-A") -> EntryWrite:
    lines = (
        JournalLine("P1", Account.RAW_MATERIALS, "EUR", D(value), item=item),
        JournalLine("P1", Account.GRNI, "EUR", -D(value)),
    )
    moves = (StockMove("P1", item, "STORES", "", D(qty), D(value), Account.RAW_MATERIALS),)
    return EntryWrite(
        plant="P1",
        currency="EUR",
        period="2026-03",
        original_period="2026-03",
        late=False,
        event_type="GoodsReceived",
        work_order=None,
        occurred_at=START,
        posting=Posting(lines, moves),
    )


def dead_letter(**kw) -> DeadLetterWrite:
    base = dict(
        code=ErrorCode.UNKNOWN_ITEM,
        problems=(Problem(ErrorCode.UNKNOWN_ITEM, "no"),),
        raw="{raw}",
        ids=BusinessIds(plant="P1", item="X", work_order="WO-9"),
        at=START,
        message_id="m-d",
        waits_on=("item:X",),
    )
    return DeadLetterWrite(**{**base, **kw})


def row_counts(store) -> tuple:
    return (
        store.entry_count(),
        len(store.account_balances()),
        len(store.stock_balances()),
        len(store.dead_letters(DeadLetterFilter(status=None))),
    )


def test_a_commit_writes_inbox_entry_lines_and_moves_together(store):
    committed = store.commit(Commit(inbox=inbox(), entries=(entry(),)))
    assert committed.inbox_id and len(committed.entry_ids) == 1
    record = store.find_inbox(identity("m-1", "other"))
    assert record.status is InboxStatus.POSTED and record.entry_ids == committed.entry_ids
    assert store.account_balances() == {
        ("P1", Account.RAW_MATERIALS.value, "EUR"): D("10.00"),
        ("P1", Account.GRNI.value, "EUR"): D("-10.00"),
    }
    balance = store.stock_balances()[("P1", "RAW-A", "STORES", "")]
    assert (balance.qty, balance.value) == (D(5), D("10.00"))
    assert store.stock_value_by_account() == {("P1", Account.RAW_MATERIALS.value): D("10.00")}


def test_the_idempotency_key_alone_finds_the_record(store):
    store.commit(Commit(inbox=inbox()))
    assert store.find_inbox(identity("unknown", "k-1")).message_id == "m-1"
    assert store.find_inbox(identity("unknown", "unknown")) is None


@pytest.mark.parametrize(
    "clash", [{"message_id": "m-1", "key": "k-2"}, {"message_id": "m-2", "key": "k-1"}]
)
def test_a_second_writer_of_the_same_message_loses_and_writes_nothing(store, clash):
    store.commit(Commit(inbox=inbox(), entries=(entry(),)))
    before = row_counts(store)
    with pytest.raises(DuplicateDelivery) as raised:
        store.commit(
            Commit(
                inbox=inbox(**clash),
                entries=(entry("99.00"),),
                dead_letter=dead_letter(),
                streams={"s": 4},
            )
        )
    assert raised.value.code is ErrorCode.IDEMPOTENCY_CONFLICT
    assert row_counts(store) == before and store.stream_positions() == {}


def _identity_of(write: InboxWrite) -> Identity:
    return Identity(
        write.source_system, write.message_id, write.message_type, write.idempotency_key
    )


@pytest.mark.parametrize("in_batch", [False, True], ids=["alone", "in-a-batch"])
def test_an_id_is_unique_per_source_and_a_key_per_message_type(store, in_batch):
    """Another source may reuse a message id, another message type a key; the same type's key
    from another source is the same event, the same source's id the same message: clashes."""
    store.commit(Commit(inbox=inbox(), entries=(entry(),)))  # the WMS's m-1, GoodsReceived k-1
    others = [
        inbox(source_system="MES", message_type="MachineEvent", key="k-2"),  # the MES's m-1
        inbox("m-3", source_system="MES", message_type="MachineEvent"),  # k-1 of another type
    ]
    clashes = [
        inbox("m-4", source_system="ERP"),  # GoodsReceived k-1 again, from the ERP
        inbox(key="k-5", message_type="SubcontractReceived"),  # the WMS's m-1 again
    ]
    expected = [_identity_of(write) for write in others + clashes] if in_batch else None
    with store.batch(expected) if in_batch else nullcontext():
        for write in others:
            store.commit(Commit(inbox=write, entries=(entry(),)))
        for write in clashes:
            with pytest.raises(DuplicateDelivery):
                store.commit(Commit(inbox=write, entries=(entry(),)))
    assert store.entry_count() == 3
    received = store.find_inbox(_identity_of(clashes[0]))
    assert (received.source_system, received.message_id) == ("WMS", "m-1")
    # the record holding the id comes first, before the one holding the key
    both = store.find_inbox(Identity("MES", "m-1", "GoodsReceived", "k-1"))
    assert (both.source_system, both.message_type) == ("MES", "MachineEvent")
    assert store.inbox_record("m-1", "MES").message_type == "MachineEvent"
    assert store.inbox_record("m-1").source_system == "WMS"  # any source: the first received
    assert store.inbox_record("m-3", "WMS") is None


def test_a_commit_failing_part_way_writes_nothing_and_the_store_goes_on(store):
    with pytest.raises(StoreError):  # the dead letter to update is missing
        store.commit(Commit(inbox=inbox(), entries=(entry(),), dead_letter=dead_letter(id=999)))
    assert row_counts(store) == (0, 0, 0, 0) and store.find_inbox(identity("m-1", "k-1")) is None
    assert store.commit(Commit(inbox=inbox(), entries=(entry(),))).applied_seq == 1


def test_without_unique_ids_the_same_message_can_be_recorded_twice(store):
    store.commit(Commit(inbox=inbox(unique=False), entries=(entry(),)))
    store.commit(Commit(inbox=inbox(unique=False), entries=(entry(),)))
    assert store.entry_count() == 2
    assert store.find_inbox(identity("m-1", "k-1")) is None  # idempotency off: nothing to find


def test_a_held_record_is_updated_in_place_and_applied_after_earlier_postings(store):
    held = store.commit(
        Commit(
            inbox=inbox(
                "m-h",
                "k-h",
                InboxStatus.HELD,
                code=ErrorCode.SEQUENCE_GAP,
                hold_deadline=START + timedelta(hours=1),
                waits_on=("stream:s@2",),
            )
        )
    )
    store.commit(Commit(inbox=inbox("m-p", "k-p")))
    (record,) = store.held()
    assert record.waits_on == ("stream:s@2",) and record.hold_deadline == START + timedelta(hours=1)
    store.commit(Commit(inbox=inbox("m-h", "k-h", inbox_id=held.inbox_id), entries=(entry(),)))
    assert store.held() == []
    assert [r.message_id for r in store.posted_after(0)] == ["m-p", "m-h"]


def test_dead_letters_keep_the_raw_payload_attempts_history_and_waits(store):
    first = store.commit(Commit(dead_letter=dead_letter()))
    store.commit(
        Commit(
            dead_letter=dead_letter(
                id=first.dead_letter_id,
                at=START + timedelta(minutes=5),
                code=ErrorCode.SEQUENCE_GAP,
                waits_on=("k2",),
            )
        )
    )
    (letter,) = store.dead_letters(DeadLetterFilter(item="X"))
    assert letter.raw == "{raw}" and letter.attempts == 2
    assert [h["code"] for h in letter.history] == ["UNKNOWN_ITEM", "SEQUENCE_GAP"]
    assert letter.code is ErrorCode.SEQUENCE_GAP and letter.waits_on == ("k2",)
    assert store.dead_letters(DeadLetterFilter(waits_on="item:X")) == []
    assert store.dead_letters(DeadLetterFilter(waits_on="k2"))[0].id == letter.id


@pytest.mark.parametrize(
    "selection, found",
    [
        (DeadLetterFilter(plant="P1"), True),
        (DeadLetterFilter(plant="P2"), False),
        (DeadLetterFilter(work_order="WO-9"), True),
        (DeadLetterFilter(lot="L"), False),
        (DeadLetterFilter(code=ErrorCode.UNKNOWN_ITEM), True),
        (DeadLetterFilter(code=ErrorCode.LOT_REQUIRED), False),
        (DeadLetterFilter(status="replayed"), False),
    ],
)
def test_dead_letters_are_found_by_business_identifiers_and_code(store, selection, found):
    store.commit(Commit(dead_letter=dead_letter()))
    assert bool(store.dead_letters(selection)) is found


def test_resolving_a_dead_letter_closes_it_and_its_waits(store):
    letter = store.commit(Commit(dead_letter=dead_letter())).dead_letter_id
    store.commit(Commit(inbox=inbox(), entries=(entry(),), resolved_dead_letter=letter))
    assert store.dead_letters(DeadLetterFilter()) == []
    assert store.dead_letters(DeadLetterFilter(status="replayed"))[0].waits_on == ()


def test_unbalanced_entries_and_counts_are_reported_not_hidden(store):
    wip_only = (JournalLine("P1", Account.WIP, "EUR", D(1), work_order="WO-1"),)
    shortage = (StockException("P1", "RAW-A", "LINE", "", D(-1)),)
    crooked = entry()._replace(late=True, posting=Posting(wip_only, exceptions=shortage))
    committed = store.commit(Commit(inbox=inbox(), entries=(crooked,)))
    assert store.unbalanced_entries() == [(committed.entry_ids[0], "P1", "EUR", D("1.00"))]
    assert store.wip_by_work_order() == {"WO-1": D("1.00")}
    settled = (  # a closed order: its WIP in and out again
        JournalLine("P1", Account.WIP, "EUR", D(3), work_order="WO-2"),
        JournalLine("P1", Account.WIP, "EUR", D(-3), work_order="WO-2"),
    )
    closed = entry()._replace(posting=Posting(settled))
    store.commit(Commit(inbox=inbox("m-2", "k-2"), entries=(closed,)))
    assert store.wip_by_work_order() == {"WO-1": D("1.00"), "WO-2": D("0.00")}
    assert store.wip_by_work_order(nonzero=True) == {"WO-1": D("1.00")}
    assert (store.stock_exception_count(), store.late_entry_count()) == (1, 1)


def test_every_row_of_a_two_entry_commit_is_kept_as_written(store):
    """Two entries (two plants and currencies) in one commit: each line, move and exception
    comes back, in order, field for field, with exact quantities."""
    p1 = Posting(
        (
            JournalLine("P1", Account.WIP, "EUR", D("1234567.89"), work_order="WO-7", item="FG"),
            JournalLine("P1", Account.RAW_MATERIALS, "EUR", D("-1234567.89"), item="RAW-A"),
        ),
        (
            StockMove("P1", "RAW-A", "LINE", "L-1", D("-0.000001"), D("-0.01"), Account.WIP),
            StockMove("P1", "RAW-B", "LINE", "", D("123456789.123456"), D(0), Account.WIP),
        ),
        (StockException("P1", "RAW-A", "LINE", "L-1", D("-0.000001")),),
    )
    p2 = Posting((JournalLine("P2", Account.GRNI, "USD", D("0.05")),))
    entries = (
        entry()._replace(work_order="WO-7", posting=p1),
        entry()._replace(plant="P2", currency="USD", posting=p2),
    )
    committed = store.commit(Commit(inbox=inbox(), entries=entries))
    first, second = committed.entry_ids
    db = store.connection
    lines = db.execute(
        "SELECT entry_id, line_no, plant, account, currency, amount_minor, work_order, item"
        " FROM journal_line ORDER BY entry_id, line_no"
    ).fetchall()
    assert [tuple(row) for row in lines] == [
        (first, 1, "P1", Account.WIP.value, "EUR", 123456789, "WO-7", "FG"),
        (first, 2, "P1", Account.RAW_MATERIALS.value, "EUR", -123456789, None, "RAW-A"),
        (second, 1, "P2", Account.GRNI.value, "USD", 5, None, None),
    ]
    moves = db.execute(
        "SELECT entry_id, plant, item, location, lot, qty, value_minor, account"
        " FROM stock_move ORDER BY move_id"
    ).fetchall()
    assert [(*row[:5], D(str(row[5])), *row[6:]) for row in moves] == [
        (first, "P1", "RAW-A", "LINE", "L-1", D("-0.000001"), -1, Account.WIP.value),
        (first, "P1", "RAW-B", "LINE", "", D("123456789.123456"), 0, Account.WIP.value),
    ]
    shortages = db.execute(
        "SELECT entry_id, plant, item, location, lot, qty_after FROM stock_exception"
    ).fetchall()
    assert [(*row[:5], D(str(row[5]))) for row in shortages] == [
        (first, "P1", "RAW-A", "LINE", "L-1", D("-0.000001"))
    ]
    assert store.find_inbox(identity("m-1", "k-1")).entry_ids == (first, second)


def test_in_a_batch_a_clashing_commit_rolls_back_alone(store):
    """In a batch, a clashing commit fails alone: the commits around it (and after it,
    statements the adapter may have prepared) still commit with the batch."""
    with store.batch():
        first = store.commit(Commit(inbox=inbox(), entries=(entry(),)))
        with pytest.raises(DuplicateDelivery):
            store.commit(Commit(inbox=inbox("m-2", "k-1"), entries=(entry("7.00"),)))
        later = [
            store.commit(Commit(inbox=inbox(f"m-{n}", f"k-{n}"), entries=(entry(),)))
            for n in range(3, 12)
        ]
    assert store.find_inbox(identity("m-2", "none")) is None
    assert store.find_inbox(identity("m-1", "k-1")).entry_ids == first.entry_ids
    assert [store.find_inbox(identity(f"m-{n}", "x")).entry_ids for n in range(3, 12)] == [
        c.entry_ids for c in later
    ]
    assert store.entry_count() == 10
    assert store.account_balances()[("P1", Account.RAW_MATERIALS.value, "EUR")] == D("100.00")


def test_stream_positions_are_upserted(store):
    store.commit(Commit(streams={"MES:WO-1": 2}))
    store.commit(Commit(streams={"MES:WO-1": 3, "MES:WO-2": 2}))
    assert store.stream_positions() == {"MES:WO-1": 3, "MES:WO-2": 2}


def test_a_file_ledger_survives_reopening_and_refuses_a_newer_schema(tmp_path):
    path = tmp_path / "ledger.db"
    first = SqliteStore(path)
    first.commit(Commit(inbox=inbox(), entries=(entry(),)))
    first.close()
    again = SqliteStore(path)
    assert again.entry_count() == 1 and again.schema_version() == SCHEMA_VERSION
    assert again.upgraded_from is None
    again.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(ConfigurationError, match="999, newer than this build"):
        SqliteStore(path)
