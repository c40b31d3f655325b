"""What the consumer publishes about a delivery: its outcome, and its dead letter when rejected.

A dead letter carries the delivery's body byte for byte and the core's verdict in headers
(`x-mfg-code`, `x-mfg-problems` as JSON, `x-mfg-reason`, `x-mfg-dead-letter-id` naming the
core's own dead letter for replay, `x-mfg-source` the authenticated source). The delivery's
`user_id` is not copied: the broker accepts only the publisher's own user there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aio_pika import DeliveryMode, Message
from aio_pika.abc import AbstractIncomingMessage

from integration.broker.topology import (
    HEADER_CODE,
    HEADER_DEAD_LETTER_ID,
    HEADER_PROBLEMS,
    HEADER_REASON,
    HEADER_SOURCE,
    outcome_routing_key,
)
from integration.errors import ErrorCode
from integration.outcome import Outcome, Status

__all__ = ["Reply", "outcome_reply", "dead_letter_reply", "unauthorised_reply"]

REJECTED = "rejected"  # the core dead-lettered it (its own dead letter names it)
UNAUTHORISED = "unauthorised"  # no key for its user: refused before the core, as over HTTP


@dataclass(frozen=True, slots=True)
class Reply:
    """One message to publish: to the outcomes exchange (`dead=False`) or the dead one."""

    routing_key: str
    message: Message
    dead: bool = False


def outcome_reply(outcome: Outcome, delivery: AbstractIncomingMessage, source: str) -> Reply:
    """The outcome as JSON, routed by `STATUS.MessageType`, with the delivery's correlation
    id and the message's id."""
    body = json.dumps(outcome.to_dict(), separators=(",", ":")).encode()
    message = Message(
        body,
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        correlation_id=delivery.correlation_id,
        message_id=outcome.message_id or delivery.message_id,
        headers={HEADER_SOURCE: source},
    )
    return Reply(outcome_routing_key(outcome.status.value, outcome.message_type), message)


def dead_letter_reply(
    outcome: Outcome, delivery: AbstractIncomingMessage, source: str
) -> Reply | None:
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


def unauthorised_reply(delivery: AbstractIncomingMessage) -> Reply:
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


def _dead_copy(delivery: AbstractIncomingMessage, headers: dict) -> Message:
    return Message(
        delivery.body,
        content_type=delivery.content_type,
        content_encoding=delivery.content_encoding,
        delivery_mode=DeliveryMode.PERSISTENT,
        correlation_id=delivery.correlation_id,
        message_id=delivery.message_id,
        timestamp=delivery.timestamp,
        headers={**(delivery.headers or {}), **headers},
    )
