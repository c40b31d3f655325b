"""What the consumer publishes about a group of deliveries: their outcomes in batches, and a
dead letter for each one rejected.

The outcomes go out as one message per routing key (`STATUS.MessageType`) and group: its body
is the JSON list of that key's outcomes in delivery order, each an object with the delivery's
`message_id` (the outcome's, else the delivery's), its `correlation_id`, the authenticated
`source` and the `outcome` (`Outcome.to_dict()`); header `x-mfg-outcomes` holds how many. A
batch is confirmed as one, so each outcome in it is published when the batch is.

Batching by key reorders outcomes of different keys, which readers may rely on in two cases: a
message's own outcomes (a copy delivered twice in a group), and a hold before the outcome that
releases it. So a group is cut into runs, a new one started at an outcome whose message has
an outcome in the current run or which releases a message held in it; the batches go out run
after run (each run's keys in the order of their first outcome), on one channel, in order.

A dead letter carries the delivery's body byte for byte and the core's verdict in headers
(`x-mfg-code`, `x-mfg-problems` as JSON, `x-mfg-reason`, `x-mfg-dead-letter-id` naming the
core's own dead letter for replay, `x-mfg-source` the authenticated source). The delivery's
`user_id` is not copied: the broker accepts only the publisher's own user there.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from aio_pika import DeliveryMode, Message

from integration.broker.deliveries import Delivery
from integration.broker.topology import (
    HEADER_CODE,
    HEADER_COUNT,
    HEADER_DEAD_LETTER_ID,
    HEADER_PROBLEMS,
    HEADER_REASON,
    HEADER_SOURCE,
    outcome_routing_key,
)
from integration.errors import ErrorCode
from integration.outcome import Outcome, Status

__all__ = ["Reply", "outcome_batches", "dead_letter_reply", "unauthorised_reply"]

REJECTED = "rejected"  # the core dead-lettered it (its own dead letter names it)
UNAUTHORISED = "unauthorised"  # no key for its user: refused before the core, as over HTTP


@dataclass(frozen=True, slots=True)
class Reply:
    """One message to publish: to the outcomes exchange (`dead=False`) or the dead one."""

    routing_key: str
    message: Message
    dead: bool = False


def outcome_batches(answered: Iterable[tuple[Outcome, Delivery, str]]) -> list[Reply]:
    """(outcome, delivery, source) of a group as one message per routing key and run, in
    the order to publish them (module docstring)."""
    batches: list[Reply] = []
    by_key: dict[str, list[dict]] = {}
    answered_ids: set[str | None] = set()
    held: set[str | None] = set()
    for outcome, delivery, source in answered:
        message_id = outcome.message_id or delivery.message_id
        if message_id in answered_ids or any(r.message_id in held for r in outcome.released):
            batches.extend(_batch(key, items) for key, items in by_key.items())
            by_key, answered_ids, held = {}, set(), set()
        answered_ids.add(message_id)
        if outcome.status is Status.HELD:
            held.add(message_id)
        key = outcome_routing_key(outcome.status.value, outcome.message_type)
        by_key.setdefault(key, []).append({
            "message_id": message_id,
            "correlation_id": delivery.correlation_id,
            "source": source,
            "outcome": outcome.to_dict(),
        })  # fmt: skip
    batches.extend(_batch(key, items) for key, items in by_key.items())
    return batches


def _batch(key: str, items: list[dict]) -> Reply:
    message = Message(
        json.dumps(items, separators=(",", ":")).encode(),
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        headers={HEADER_COUNT: len(items)},
    )
    return Reply(key, message)


def dead_letter_reply(outcome: Outcome, delivery: Delivery, source: str) -> Reply | None:
    """The delivery to the dead-letter exchange when the core rejected it, now or (a redelivery
    answered DUPLICATE) the first time: at least once; a copy has the same message id, and the
    core's code but not its problems or dead-letter id (a duplicate's outcome has neither)."""
    rejected = outcome if outcome.status is Status.REJECTED else outcome.original
    if rejected is None or rejected.status is not Status.REJECTED:
        return None
    headers = {
        HEADER_CODE: rejected.code.value if rejected.code else "",
        HEADER_PROBLEMS: json.dumps([problem.to_dict() for problem in rejected.problems]),
        HEADER_REASON: REJECTED,
        HEADER_SOURCE: source,
    }
    if rejected.dead_letter_id is not None:
        headers[HEADER_DEAD_LETTER_ID] = rejected.dead_letter_id
    return Reply("", _dead_copy(delivery, headers), dead=True)


def unauthorised_reply(delivery: Delivery) -> Reply:
    """A delivery whose user has no key with a source: refused before the core (nothing of it
    is in the core's dead letters, as for an HTTP request without a submitting key)."""
    problem = {
        "code": ErrorCode.UNAUTHORISED_SOURCE.value,
        "message": f"broker user {delivery.user_id or '(none)'} has no key with a source",
        "field": "user_id",
    }
    headers = {
        HEADER_CODE: ErrorCode.UNAUTHORISED_SOURCE.value,
        HEADER_PROBLEMS: json.dumps([problem]),
        HEADER_REASON: UNAUTHORISED,
        HEADER_SOURCE: "",
    }
    return Reply("", _dead_copy(delivery, headers), dead=True)


def _dead_copy(delivery: Delivery, headers: dict) -> Message:
    return Message(
        delivery.body,
        content_type=delivery.content_type,
        content_encoding=delivery.content_encoding,
        delivery_mode=DeliveryMode.PERSISTENT,
        correlation_id=delivery.correlation_id,
        message_id=delivery.message_id,
        timestamp=delivery.timestamp,
        headers={**delivery.headers, **headers},
    )
