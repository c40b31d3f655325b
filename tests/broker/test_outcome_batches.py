"""How a group's outcomes become batches on the outcomes exchange (`replies.outcome_batches`):
one message per routing key, in the order readers rely on (no broker needed)."""

from __future__ import annotations

import json

from pamqp.commands import Basic

from integration.broker.deliveries import Delivery
from integration.broker.replies import outcome_batches
from integration.broker.topology import HEADER_COUNT
from integration.outcome import Outcome, Status


def delivery(message_id: str) -> Delivery:
    properties = Basic.Properties(message_id=message_id, correlation_id=f"corr-{message_id}")
    return Delivery(b"{}", properties, 1, False, "t.inbound.0")


def answered(*outcomes: Outcome) -> list[tuple[Outcome, Delivery, str]]:
    return [(outcome, delivery(outcome.message_id or "none"), "MES") for outcome in outcomes]


def published(group: list[tuple[Outcome, Delivery, str]]) -> list[tuple[str, list[str]]]:
    """(routing key, message ids) of each batch, in publish order; each batch's items and
    count header checked on the way."""
    batches = []
    for reply in outcome_batches(group):
        items = json.loads(reply.message.body)
        assert reply.message.headers[HEADER_COUNT] == len(items)
        for item in items:
            assert item["correlation_id"] == f"corr-{item['message_id']}"
            assert item["source"] == "MES"
            assert item["outcome"]["message_id"] == item["message_id"]
        batches.append((reply.routing_key, [item["message_id"] for item in items]))
    return batches


def posted(message_id: str, kind: str = "OperationCompleted", **fields) -> Outcome:
    return Outcome(Status.POSTED, message_id, kind, **fields)


def test_a_groups_outcomes_are_one_message_per_routing_key_in_delivery_order():
    group = answered(posted("a"), posted("b", "MaterialIssued"), posted("c"), posted("d"))
    assert published(group) == [
        ("POSTED.OperationCompleted", ["a", "c", "d"]),
        ("POSTED.MaterialIssued", ["b"]),
    ]


def test_an_unreadable_payloads_outcome_carries_the_deliverys_message_id():
    unreadable = Outcome(Status.REJECTED, None)
    [reply] = outcome_batches([(unreadable, delivery("raw-1"), "MES")])
    assert reply.routing_key == "REJECTED.unknown"
    assert [item["message_id"] for item in json.loads(reply.message.body)] == ["raw-1"]


def test_a_hold_is_published_before_the_outcome_that_releases_it():
    """By key alone, d's release would share a's batch and go out before c's hold."""
    held = Outcome(Status.HELD, "c", "OperationCompleted")
    releasing = posted("d", "MaterialIssued", released=(posted("c"),))
    group = answered(posted("a", "MaterialIssued"), held, releasing)
    assert published(group) == [
        ("POSTED.MaterialIssued", ["a"]),
        ("HELD.OperationCompleted", ["c"]),
        ("POSTED.MaterialIssued", ["d"]),
    ]


def test_a_messages_outcomes_keep_their_order_when_it_comes_twice_in_a_group():
    """A copy in the same group: its DUPLICATE after its POSTED, though another DUPLICATE of
    the group came first."""
    earlier = Outcome(Status.DUPLICATE, "old", "OperationCompleted")
    copy = Outcome(Status.DUPLICATE, "m", "OperationCompleted")
    group = answered(earlier, posted("m"), copy)
    assert published(group) == [
        ("DUPLICATE.OperationCompleted", ["old"]),
        ("POSTED.OperationCompleted", ["m"]),
        ("DUPLICATE.OperationCompleted", ["m"]),
    ]
