"""Building the records the pipeline writes: inbox rows, journal entries, dead letters.

Pure functions of the book state and the message being processed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import NamedTuple

from integration.envelope import BusinessIds, Envelope, business_ids, payload_hash
from integration.errors import ErrorCode, Problem
from integration.ledger import Posting
from integration.outcome import Outcome, Status
from integration.periods import posting_period
from integration.state import BookState
from integration.store.base import (
    DeadLetter,
    DeadLetterWrite,
    EntryWrite,
    Identity,
    InboxRecord,
    InboxStatus,
    InboxWrite,
)
from integration.text import TEXT, is_storable
from integration.validation import Sender

__all__ = [
    "Attempt",
    "identity_of",
    "digest_of",
    "outcome_of_record",
    "message_ids",
    "entry_write",
    "inbox_write",
    "dead_letter_write",
    "unreadable_dead_letter",
]


class Attempt(NamedTuple):
    """One pass of one message through the pipeline."""

    envelope: Envelope
    raw: str
    received_at: datetime
    inbox_id: int | None = None  # set when the message is already in the inbox
    seq_consumed: bool = False  # its sequence number was used by an earlier terminal outcome
    dead_letter: DeadLetter | None = None  # set when replaying
    sender: Sender | None = None  # who an authenticated channel says sent it
    digest: str = ""  # the envelope's payload hash, when reading it gave that (ParsedPayload)


def identity_of(env: Envelope) -> Identity:
    """What the inbox keeps unique of a message: its id in its source, its key in its type."""
    return Identity(str(env.source_system), env.message_id, env.message.type, env.idempotency_key)


def digest_of(attempt: Attempt) -> str:
    """The attempt's payload hash: the one reading its payload gave, or computed now."""
    return attempt.digest or payload_hash(attempt.envelope)


def outcome_of_record(record: InboxRecord) -> Outcome:
    """The outcome an inbox record stands for, as a duplicate's `original`."""
    return Outcome(
        status=Status(record.status.value),
        message_id=record.message_id,
        code=record.code,
        entry_ids=record.entry_ids,
        committed_at=record.committed_at,
        late=record.late,
    )


def message_ids(state: BookState, env: Envelope) -> BusinessIds:
    """The message's business identifiers, completed from the books: the plant of its work
    order, and the accounting period its business time falls in."""
    ids = business_ids(env.message)
    plant = ids.plant
    order = state.order(ids.work_order or "")
    if plant is None and order is not None:
        plant = order.plant
    period = state.period(plant, env.occurred_at) if plant in state.plants else None
    return BusinessIds(plant, ids.item, ids.work_order, ids.lot, ids.supplier, ids.period or period)


def entry_write(state: BookState, env: Envelope, plant: str, posting: Posting) -> EntryWrite:
    """The journal entry of one plant: into the first open period, flagged late if not its own."""
    original = state.period(plant, env.occurred_at)
    period, late = posting_period(original, state.closed_periods.get(plant, ()))
    message = env.message
    return EntryWrite(
        plant,
        state.currency(plant),
        period,
        original,
        late,
        message.type,
        getattr(message, "work_order", None),
        env.occurred_at,
        posting,
    )


def inbox_write(
    state: BookState,
    attempt: Attempt,
    status: InboxStatus,
    code,
    unique: bool,
    *,
    committed_at: datetime | None = None,
    hold_deadline: datetime | None = None,
    waits_on: tuple[str, ...] = (),
    late: bool = False,
) -> InboxWrite:
    """The inbox record of an attempt reaching `status`."""
    env = attempt.envelope
    return InboxWrite(
        env.message_id,
        env.idempotency_key,
        digest_of(attempt),
        env.message.type,
        str(env.source_system),  # its value, as a plain str
        env.stream,
        env.source_seq,
        message_ids(state, env),
        status,
        code,
        attempt.raw,
        attempt.received_at,
        committed_at,
        hold_deadline,
        waits_on,
        late,
        unique,
        attempt.inbox_id,
        env.correlation_id,
    )


def dead_letter_write(
    state: BookState, attempt: Attempt, problems, waits_on, at: datetime
) -> DeadLetterWrite:
    """A new dead letter for the attempt, or another attempt at the one it replays."""
    env = attempt.envelope
    ids = message_ids(state, env)
    if ids.lot is None:  # a confirmation names lots per component: file it under a held one
        ids = ids._replace(lot=_held_lot(env, problems))
    return DeadLetterWrite(
        code=problems[0].code,
        problems=tuple(problems),
        raw=attempt.raw,
        ids=ids,
        at=at,
        message_id=env.message_id,
        idempotency_key=env.idempotency_key,
        message_type=env.message_type,
        source_system=env.source_system.value,
        sender=attempt.sender.source.value if attempt.sender else None,
        waits_on=tuple(waits_on),
        id=attempt.dead_letter.id if attempt.dead_letter else None,
    )


def _held_lot(env: Envelope, problems) -> str | None:
    """The lot of the first LOT_ON_HOLD problem about a component (`component_lots.ITEM`), so
    that the letter is found by that lot when quality releases it."""
    lots = getattr(env.message, "component_lots", None) or {}
    for problem in problems:
        if problem.code is ErrorCode.LOT_ON_HOLD and problem.field.startswith("component_lots."):
            return lots.get(problem.field.removeprefix("component_lots."))
    return None


def unreadable_dead_letter(
    raw: str,
    problems: tuple[Problem, ...],
    at: datetime,
    dead_letter_id: int | None,
    raw_encoding: str = TEXT,
) -> DeadLetterWrite:
    """A dead letter for a payload that is no envelope (`raw` as `parse_payload` stored it):
    whatever identifiers can be read and stored."""
    data = _loads_object(raw) if raw_encoding == TEXT else {}
    message = data.get("message") if isinstance(data.get("message"), dict) else {}
    ids = business_ids(message)
    return DeadLetterWrite(
        code=problems[0].code,
        problems=tuple(problems),
        raw=raw,
        raw_encoding=raw_encoding,
        at=at,
        ids=BusinessIds(*(_text(value, 64) for value in ids)),
        message_id=_text(data.get("message_id")),
        idempotency_key=_text(data.get("idempotency_key")),
        message_type=_text(message.get("type")),
        source_system=_text(data.get("source_system")),
        id=dead_letter_id,
    )


def _loads_object(raw: str) -> dict:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: object, limit: int = 128) -> str | None:
    """An identifier read from an unreadable payload, if a store can hold it (bounded)."""
    return value[:limit] if isinstance(value, str) and is_storable(value[:limit]) else None
