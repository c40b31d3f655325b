"""Envelopes: JSON round trips, schema export, and bad input turned into typed problems."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from integration import MESSAGE_TYPES, Envelope, ErrorCode, WorkOrderClosed
from integration.envelope import parse_payload, payload_hash
from integration.text import PLAIN_PATTERN, decode_raw, encode_raw, is_storable, text_refusal
from tests.builders import Envelopes, master_data, release


def sample_envelopes() -> list[Envelope]:
    env = Envelopes()
    return [*master_data(env), release(env)]


@pytest.mark.parametrize("envelope", sample_envelopes(), ids=lambda e: e.message_type)
def test_json_round_trips_exactly(envelope):
    text = envelope.model_dump_json()
    assert Envelope.model_validate_json(text) == envelope
    assert parse_payload(text).envelope == envelope


def test_the_json_schema_exports_every_message_type():
    schema = Envelope.model_json_schema()
    mapping = schema["properties"]["message"]["discriminator"]["mapping"]
    assert sorted(mapping) == sorted(MESSAGE_TYPES)
    json.dumps(schema)  # serialisable as is


def test_a_resend_under_new_delivery_metadata_hashes_the_same():
    envelope = sample_envelopes()[-1]
    resent = envelope.model_copy(update={"message_id": "x", "sent_at": datetime.now().astimezone()})
    assert payload_hash(resent) == payload_hash(envelope)
    changed = envelope.model_copy(
        update={"message": envelope.message.model_copy(update={"qty": Decimal(11)})}
    )
    assert payload_hash(changed) != payload_hash(envelope)


def _raw(**message_overrides) -> dict:
    data = json.loads(sample_envelopes()[-1].model_dump_json())
    data["message"].update(message_overrides)
    return data


def _top(**overrides) -> dict:
    return {**json.loads(sample_envelopes()[-1].model_dump_json()), **overrides}


@pytest.mark.parametrize(
    "payload, code, field",
    [
        ("{not json", ErrorCode.MALFORMED_PAYLOAD, ""),
        (b"\xff\xfe", ErrorCode.MALFORMED_PAYLOAD, ""),
        (_raw(qty="-3"), ErrorCode.INVALID_QUANTITY, "message.WorkOrderReleased.qty"),
        (_raw(qty=float("nan")), ErrorCode.INVALID_QUANTITY, "message.WorkOrderReleased.qty"),
        (_raw(qty="Infinity"), ErrorCode.INVALID_QUANTITY, "message.WorkOrderReleased.qty"),
        (_raw(colour="red"), ErrorCode.UNKNOWN_FIELD, "message.WorkOrderReleased.colour"),
        (_raw(plant=7), ErrorCode.SCHEMA_INVALID, "message.WorkOrderReleased.plant"),
        (_raw(type="Teleported"), ErrorCode.SCHEMA_INVALID, "message"),
        # text no store holds, at parse time, with the field's path
        (_raw(plant="P\x001"), ErrorCode.SCHEMA_INVALID, "message.WorkOrderReleased.plant"),
        (_raw(uom="E\ud800"), ErrorCode.SCHEMA_INVALID, "message.WorkOrderReleased.uom"),
        (_top(message_id="m\x00"), ErrorCode.SCHEMA_INVALID, "message_id"),
        (_top(correlation_id="\udfff"), ErrorCode.SCHEMA_INVALID, "correlation_id"),
        ('["\\ud800"]', ErrorCode.SCHEMA_INVALID, "0"),
        ('{"message": ["\\udc00"]}', ErrorCode.SCHEMA_INVALID, "message.0"),
        ('"\\ud800"', ErrorCode.SCHEMA_INVALID, ""),
        # quantities that round to zero at six places; strict decimal text
        (_raw(qty="1e-30"), ErrorCode.INVALID_QUANTITY, "message.WorkOrderReleased.qty"),
        (_raw(qty="0.0000004"), ErrorCode.INVALID_QUANTITY, "message.WorkOrderReleased.qty"),
        (_raw(qty=" 5 "), ErrorCode.INVALID_QUANTITY, "message.WorkOrderReleased.qty"),
        (_raw(qty="+5"), ErrorCode.INVALID_QUANTITY, "message.WorkOrderReleased.qty"),
        # business times: ISO text with a zone, inside 1900..9000 in any zone
        (_top(occurred_at=1772431200), ErrorCode.SCHEMA_INVALID, "occurred_at"),
        (_top(occurred_at="9999-12-31T23:59:59Z"), ErrorCode.SCHEMA_INVALID, "occurred_at"),
        (_top(sent_at="0001-01-01T00:00:00Z"), ErrorCode.SCHEMA_INVALID, "sent_at"),
        (_top(sent_at="1900-01-01T00:00:00+00:01"), ErrorCode.SCHEMA_INVALID, "sent_at"),
        # integers a BIGINT holds, as JSON integers
        (_top(stream="S", source_seq=2**63), ErrorCode.SCHEMA_INVALID, "source_seq"),
        (_top(stream="S", source_seq="5"), ErrorCode.SCHEMA_INVALID, "source_seq"),
    ],
)
def test_bad_input_becomes_typed_problems_with_field_paths(payload, code, field):
    parsed = parse_payload(payload)
    assert parsed.envelope is None
    assert (parsed.problems[0].code, parsed.problems[0].field) == (code, field)
    assert parsed.raw  # kept for the dead letter


@pytest.mark.parametrize(
    "payload, message",
    [
        (_raw(plant="P\x001"), "text may not hold NUL (character 1)"),
        (json.dumps(_raw(plant="PL\x00")), "text may not hold NUL (character 2)"),
        (_raw(uom="E\ud800"), "text may not hold an unpaired surrogate"),  # JSON can't say it
        (_top(message_id="m\x00"), "text may not hold NUL (character 1)"),
    ],
)
def test_text_no_store_holds_is_refused_in_words_naming_the_character(payload, message):
    (problem,) = parse_payload(payload).problems
    assert (problem.code, problem.message) == (ErrorCode.SCHEMA_INVALID, message)


def test_text_refusal_words_only_the_errors_of_unstorable_text():
    with pytest.raises(ValidationError) as built:  # a Python caller's str, surrogate and all
        WorkOrderClosed(work_order="WO\ud800")
    (error,) = built.value.errors()
    assert text_refusal(error) == "text may not hold an unpaired surrogate (character 2)"
    other = {"type": "string_pattern_mismatch", "input": "a\x00", "ctx": {"pattern": "^x$"}}
    assert text_refusal(other) is None  # another pattern's mismatch keeps pydantic's words
    assert text_refusal({"type": "string_too_short", "input": ""}) is None
    assert Envelope.model_json_schema()["properties"]["message_id"]["pattern"] == PLAIN_PATTERN


def test_a_payload_already_read_is_not_read_again():
    envelope = sample_envelopes()[-1]
    read = parse_payload(envelope.model_dump_json())
    assert parse_payload(read) is read
    unreadable = parse_payload("{not json")
    assert parse_payload(unreadable) is unreadable


def test_all_problems_of_a_payload_are_reported_at_once():
    parsed = parse_payload(_raw(qty="-1", colour="red", plant=None))
    assert {p.code for p in parsed.problems} == {
        ErrorCode.INVALID_QUANTITY,
        ErrorCode.UNKNOWN_FIELD,
        ErrorCode.SCHEMA_INVALID,
    }


def test_naive_timestamps_and_half_a_stream_are_refused():
    data = json.loads(sample_envelopes()[-1].model_dump_json())
    assert parse_payload({**data, "occurred_at": "2026-03-02T06:00:00"}).problems
    assert parse_payload({**data, "stream": "MES:WO-1"}).problems


@pytest.mark.parametrize("moment", ["1764979200", "+1764979200", "1764979200.5", "2026-03-02"])
def test_unix_times_as_text_and_dates_without_a_time_are_refused(moment):
    data = json.loads(sample_envelopes()[-1].model_dump_json())
    problems = parse_payload({**data, "occurred_at": moment}).problems
    assert [(p.code, p.field) for p in problems] == [(ErrorCode.SCHEMA_INVALID, "occurred_at")]


def test_a_python_caller_may_pass_datetime_objects():
    envelope = sample_envelopes()[-1]
    assert envelope.model_copy(update={}).occurred_at == envelope.occurred_at
    again = type(envelope).model_validate(
        {**envelope.model_dump(), "occurred_at": envelope.occurred_at}
    )
    assert again.occurred_at == envelope.occurred_at


def test_deeply_nested_payloads_are_refused_without_an_exception():
    parsed = parse_payload("[" * 100_000 + "]" * 100_000)
    assert parsed.envelope is None and parsed.problems[0].code is ErrorCode.MALFORMED_PAYLOAD


def test_the_window_edges_and_the_finest_quantity_are_accepted():
    parsed = parse_payload(
        _top(
            occurred_at="1900-01-01T00:00:00Z",
            sent_at="8999-12-31T09:59:59-14:00",
            message={**_top()["message"], "qty": "0.000001"},
        )
    )
    assert parsed.problems == () and parsed.envelope.message.qty == Decimal("0.000001")


@pytest.mark.parametrize(
    "payload, encoding",
    [
        (b"{}", "text"),
        ("plain text", "text"),
        ("\u00e9\U0001f600", "text"),
        (b"\xff\xfe", "base64"),
        (b"a\x00b", "base64"),
        ("a\ud800b", "base64"),
    ],
)
def test_a_raw_payload_is_kept_exactly(payload, encoding):
    stored = encode_raw(payload)
    exact = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    assert stored[1] == encoding and is_storable(stored[0])
    assert decode_raw(*stored) == exact
