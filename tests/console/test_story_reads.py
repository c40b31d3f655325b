"""The reads behind the console's story and filters, on a real SQLite file and PostgreSQL:
a correlation id is matched exactly (LIKE's own characters are plain text, and an id that
merely contains it is another id), with its messages, entries, dead letters and replays."""

from __future__ import annotations

import json

from integration import DeadLetterFilter
from tests.builders import confirm, receipt
from tests.integration.incident import ledger  # noqa: F401 (a fixture)

TRICKY = r"50%_off\shift"  # LIKE's wildcards and escape character, as plain text


def _submit(core, envelope, correlation_id):
    return core.submit(envelope.model_copy(update={"correlation_id": correlation_id}))


def test_a_story_holds_exactly_its_correlation_ids_messages_entries_and_replays(ledger):  # noqa: F811
    core, envelopes, _clock = ledger
    failed = _submit(core, confirm(envelopes), TRICKY)
    _submit(core, confirm(envelopes), TRICKY + "-later")  # contains the id: another story
    _submit(core, envelopes(receipt("1")), "50x_offxshift")  # what the wildcards would match
    assert failed.code.value == "BACKFLUSH_SHORTAGE"
    for goods in (receipt("2", location="LINE"), receipt("1", item="RAW-L", lot="L1",
                                                        location="LINE")):  # fmt: skip
        _submit(core, envelopes(goods), TRICKY)
    [replayed] = core.replay(DeadLetterFilter(ids=(failed.dead_letter_id,)))
    assert replayed.status.value == "POSTED"

    story = core.story(TRICKY)
    assert [m.message_type for m in story.messages] == [
        "OperationCompleted", "GoodsReceived", "GoodsReceived",
    ]  # fmt: skip
    assert [m.status.value for m in story.messages] == ["POSTED"] * 3
    assert sorted(e.inbox_id for e in story.entries) == sorted(
        inbox for m in story.messages for inbox in [m.inbox_id] * len(m.entry_ids)
    )
    confirmation = next(e for e in story.entries if e.event_type == "OperationCompleted")
    assert (confirmation.work_order, confirmation.currency) == ("WO-1", "EUR")
    assert confirmation.debits > 0
    [letter] = story.dead_letters
    assert (letter.id, letter.status, letter.correlation_id) == (
        failed.dead_letter_id, "replayed", TRICKY,
    )  # fmt: skip
    assert [event["code"] for event in letter.history] == ["BACKFLUSH_SHORTAGE"]

    by_id = core.dead_letters(DeadLetterFilter(status=None, correlation_id=TRICKY))
    assert [one.id for one in by_id] == [failed.dead_letter_id]
    assert [one.correlation_id for one in core.dead_letters()] == [TRICKY + "-later"]
    assert core.story("no-such-id").messages == ()
    assert core.story("50x").messages == ()  # a part of an id is not the id


def test_a_correlation_id_is_found_however_common_json_writers_encode_it(ledger):  # noqa: F811
    core, envelopes, _clock = ledger
    shift = "Schicht-Früh-Ü"
    escaped = _submit(core, envelopes(receipt("1")), shift)  # pydantic: UTF-8 as is
    envelope = envelopes(receipt("1")).model_copy(update={"correlation_id": shift})
    text = json.dumps(envelope.model_dump(mode="json"))  # Python's default: \\u00fc
    assert "\\u00fc" in text
    plain = core.submit(text)
    assert escaped.status.value == plain.status.value == "POSTED"
    assert [m.message_id for m in core.story(shift).messages] == [
        escaped.message_id, plain.message_id,
    ]  # fmt: skip
