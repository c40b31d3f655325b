"""An envelope given as an object is serialised once: its payload hash is read from that JSON
(`ParsedPayload.digest`), and must be exactly the hash `payload_hash` computes on its own."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from integration import Envelope
from integration.envelope import parse_payload, payload_hash
from tests.builders import Envelopes, adjustment, confirm, master_data, receipt, release
from tests.stateful.test_delivery_properties import message_sets


def tricky(env: Envelopes) -> list[Envelope]:
    """Text that JSON escapes or keeps as is, before the message and inside it."""
    base = env(receipt("2.5", location="LINE", purchase_order='PO-"1",\\"message\\":x'))
    return [
        base.model_copy(update={"correlation_id": ',"message":{"x":1}}'}),
        base.model_copy(update={"message_id": 'm-\\",', "idempotency_key": "k-ü€😀"}),
        env(adjustment("-2", count_id='naïve "message": ,"message":')),
    ]


def builders() -> list[Envelope]:
    env = Envelopes()
    return [
        *master_data(env),
        release(env),
        confirm(env, "1.25", seq=1),
        env(receipt("100", location="LINE")),
        *tricky(env),
    ]


@pytest.mark.parametrize("envelope", builders(), ids=lambda e: e.message_type)
def test_the_digest_read_from_the_envelopes_json_is_its_payload_hash(envelope):
    parsed = parse_payload(envelope)
    assert parsed.raw == envelope.model_dump_json()
    assert parsed.digest == payload_hash(envelope) != ""


@settings(max_examples=30, deadline=None)
@given(message_sets())
def test_every_message_of_a_drawn_day_has_the_same_digest(mset):
    for event in mset.events:
        assert parse_payload(event.envelope).digest == payload_hash(event.envelope)


def test_a_payload_read_from_text_leaves_the_digest_to_be_computed():
    envelope = builders()[-1]
    assert parse_payload(envelope.model_dump_json()).digest == ""
