"""The submission pipeline: authorise, deduplicate, sequence, validate and post, dead-letter.

Every step but the last is pure: it reads the in-memory book state and decides. The last step
writes the decision through the store's one atomic `commit`, and only once that has succeeded
does the in-memory state move, so a failed commit leaves both exactly as they were.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime

from integration.clock import Clock
from integration.envelope import BusinessIds, Envelope, business_ids, parse_payload, payload_hash
from integration.errors import ErrorCode, MessageRejected, Problem, StoreError
from integration.holds import HeldMessage, HoldIndex
from integration.ledger import imbalances
from integration.outcome import Outcome, Status
from integration.periods import posting_period
from integration.rules import Decision, decide
from integration.sequencing import (
    Order,
    is_satisfied,
    missing_dependencies,
    order_of,
    provided_dependencies,
    stream_waiting_key,
)
from integration.settings import CoreSettings
from integration.state import BookState
from integration.store.base import (
    Commit,
    Committed,
    DeadLetter,
    DeadLetterFilter,
    DeadLetterWrite,
    DuplicateDelivery,
    EntryWrite,
    InboxRecord,
    InboxStatus,
    InboxWrite,
    LedgerStore,
)
from integration.validation import authorise

__all__ = ["Pipeline", "outcome_of_record"]

_PARKED = (ErrorCode.SEQUENCE_GAP, ErrorCode.AWAITING_DEPENDENCY)
_REVISION_CODES = (
    ErrorCode.REVISION_UNKNOWN,
    ErrorCode.REVISION_NOT_RELEASED,
    ErrorCode.REVISION_NOT_EFFECTIVE,
)


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One pass of one message through the pipeline."""

    envelope: Envelope
    raw: str
    received_at: datetime
    inbox_id: int | None = None  # set when the message is already in the inbox
    seq_consumed: bool = False  # its sequence number was used by an earlier terminal outcome
    dead_letter: DeadLetter | None = None  # set when replaying


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


class Pipeline:
    def __init__(self, store: LedgerStore, settings: CoreSettings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.state = BookState(settings)
        self.holds = HoldIndex()
        self.streams: dict[str, int] = store.stream_positions()
        self._unreleased: deque[str] = deque()  # satisfied keys whose waiters are not yet run

    # --- entry points ----------------------------------------------------------------------
    def submit(self, payload) -> Outcome:
        self.expire_holds()
        parsed = parse_payload(payload)
        if parsed.envelope is None:
            return self._dead_letter_unreadable(parsed.raw, parsed.problems)
        attempt = _Attempt(parsed.envelope, parsed.raw, self.clock.now())
        return self._run(attempt)

    def replay(self, dead_letter: DeadLetter) -> Outcome:
        """Run a dead letter through the pipeline again; never applies anything twice."""
        attempt = self._attempt_from(dead_letter)
        return attempt if isinstance(attempt, Outcome) else self._run(attempt)

    def _attempt_from(self, dead_letter: DeadLetter) -> _Attempt | Outcome:
        parsed = parse_payload(dead_letter.raw)
        if parsed.envelope is None:
            return self._dead_letter_unreadable(parsed.raw, parsed.problems, dead_letter.id)
        record = self.store.inbox_record(parsed.envelope.message_id)
        if record is not None and record.payload_hash != payload_hash(parsed.envelope):
            record = None  # the dead letter's message id was taken by another payload
        if record is not None and record.status is InboxStatus.POSTED:
            self.store.commit(Commit(resolved_dead_letter=dead_letter.id, resolution="resolved"))
            return Outcome(Status.DUPLICATE, record.message_id, original=outcome_of_record(record))
        return _Attempt(
            parsed.envelope,
            parsed.raw,
            self.clock.now(),
            inbox_id=record.inbox_id if record else None,
            seq_consumed=record is not None and record.code not in _PARKED,
            dead_letter=dead_letter,
        )

    def expire_holds(self) -> list[Outcome]:
        """Dead-letter every held message whose hold timeout has passed."""
        outcomes = []
        expired = self.holds.expired(self.clock.now())
        for index, held in enumerate(expired):
            problem = Problem(
                held.code, f"held past the hold timeout, waiting on {', '.join(held.waits_on)}"
            )
            attempt = _Attempt(held.envelope, held.raw, held.received_at, inbox_id=held.inbox_id)
            try:
                outcomes.append(self._reject(attempt, (problem,), {}, waits_on=held.waits_on)[0])
            except StoreError:
                for again in expired[index:]:  # still held: they expire on the next call
                    self.holds.add(again)
                raise
        return outcomes

    def resume(self, held: list[InboxRecord], waiting_keys: list[str]) -> list[Outcome]:
        """After a restart: index the held messages again, and release whatever waits on
        something that arrived before the process stopped (a commit whose releases never ran)."""
        for record in held:
            envelope = Envelope.model_validate_json(record.envelope_json)
            self.holds.add(HeldMessage(record.inbox_id, envelope, record.envelope_json,
                                       record.code, record.waits_on, record.hold_deadline,
                                       record.received_at))
        keys = {key for record in held for key in record.waits_on} | set(waiting_keys)
        self._unreleased.extend(
            key for key in sorted(keys) if is_satisfied(key, self.state, self.streams)
        )
        return self._drain()

    # --- the steps -------------------------------------------------------------------------
    def _run(self, attempt: _Attempt) -> Outcome:
        outcome, keys = self._process(attempt)
        self._unreleased.extend(keys)
        released = self._drain()
        return replace(outcome, released=tuple(released)) if released else outcome

    def _drain(self) -> list[Outcome]:
        """Let through what waited on the satisfied keys, and on what those in turn provide.

        Keys stay queued until everything waiting on them was processed: if the store fails
        part-way, the held messages go back to the index and the next call carries on, so
        nothing held is stranded (the caller's own message has committed all the same).
        """
        released: list[Outcome] = []
        while self._unreleased:
            key = self._unreleased[0]
            held = self.holds.take(key)
            waiting = [
                (h, _Attempt(h.envelope, h.raw, h.received_at, inbox_id=h.inbox_id)) for h in held
            ]
            for dead_letter in self.store.dead_letters(DeadLetterFilter(waits_on=key)):
                attempt = self._attempt_from(dead_letter)
                if isinstance(attempt, Outcome):
                    released.append(attempt)
                else:
                    waiting.append((None, attempt))
            for index, (_held, attempt) in enumerate(waiting):
                try:
                    outcome, more = self._process(attempt)
                except StoreError:
                    for again, _attempt in waiting[index:]:
                        if again is not None:
                            self.holds.add(again)
                    return released
                released.append(outcome)
                self._unreleased.extend(more)
            self._unreleased.popleft()
        return released

    def _process(self, attempt: _Attempt) -> tuple[Outcome, list[str]]:
        env = attempt.envelope
        problems = authorise(self.settings, env)
        if problems:
            return self._refuse(attempt, problems), []
        # Idempotency rests on the inbox's unique constraints: a duplicate is found when its
        # commit clashes (see `_commit`), so the common, new message pays for no lookup.
        advance: dict[str, int] = {}
        if self.settings.sequencing:
            if env.stream is not None and not attempt.seq_consumed:
                expected = self.streams.get(env.stream, 1)
                order = order_of(env.source_seq, expected)
                if order is Order.STALE:
                    found = self._find(env) if attempt.inbox_id is None else None
                    if found is not None:
                        return self._duplicate(attempt, found), []
                    problem = Problem(
                        ErrorCode.SEQUENCE_STALE,
                        f"{env.stream} is already past {env.source_seq} (next is {expected})",
                        "source_seq",
                    )
                    return self._refuse(attempt, [problem]), []
                if order is Order.EARLY:
                    key = stream_waiting_key(env.stream, env.source_seq)
                    return self._hold(attempt, ErrorCode.SEQUENCE_GAP, (key,)), []
                advance = {env.stream: expected + 1}
            missing = missing_dependencies(self.state, env)
            if missing:
                return self._hold(attempt, ErrorCode.AWAITING_DEPENDENCY, missing), []
        try:
            decision = decide(self.state, env)
        except MessageRejected as rejected:
            return self._reject(attempt, rejected.problems, advance)
        return self._post(attempt, decision, advance)

    def _advanced_keys(self, advance: dict[str, int]) -> list[str]:
        return [stream_waiting_key(stream, seq) for stream, seq in advance.items()]

    def _post(self, attempt, decision: Decision, advance) -> tuple[Outcome, list[str]]:
        env = attempt.envelope
        entries = tuple(self._entry(env, plant, posting) for plant, posting in decision.entries)
        for entry in entries:
            if imbalances(entry.posting.lines):
                problem = Problem(
                    ErrorCode.UNBALANCED_ENTRY,
                    f"entry for {entry.plant} does not balance: {imbalances(entry.posting.lines)}",
                )
                return self._reject(attempt, (problem,), advance)
        now = self.clock.now()
        late = any(entry.late for entry in entries)
        inbox = self._inbox_write(attempt, InboxStatus.POSTED, None, committed_at=now, late=late)
        commit = Commit(
            inbox=inbox,
            entries=entries,
            streams=advance,
            resolved_dead_letter=attempt.dead_letter.id if attempt.dead_letter else None,
        )
        committed = self._commit(attempt, commit)
        if isinstance(committed, Outcome):
            return committed, []
        decision.apply_to(self.state)
        self.streams.update(advance)
        outcome = Outcome(
            Status.POSTED,
            env.message_id,
            entry_ids=committed.entry_ids,
            committed_at=now,
            late=late,
        )
        return outcome, [*provided_dependencies(env), *self._advanced_keys(advance)]

    def _entry(self, env: Envelope, plant: str, posting) -> EntryWrite:
        original = self.state.period(plant, env.occurred_at)
        period, late = posting_period(original, self.state.closed_periods.get(plant, ()))
        return EntryWrite(
            plant=plant,
            currency=self.state.currency(plant),
            period=period,
            original_period=original,
            late=late,
            event_type=env.message_type,
            work_order=getattr(env.message, "work_order", None),
            occurred_at=env.occurred_at,
            posting=posting,
        )

    def _find(self, env: Envelope) -> InboxRecord | None:
        if not self.settings.idempotency:
            return None
        return self.store.find_inbox(env.message_id, env.idempotency_key)

    def _commit(self, attempt: _Attempt, commit: Commit) -> Committed | Outcome:
        """Commit, or — when the inbox already holds the message — answer as a duplicate."""
        try:
            return self.store.commit(commit)
        except DuplicateDelivery:
            return self._duplicate(attempt, self._find(attempt.envelope))

    def _duplicate(self, attempt: _Attempt, found: InboxRecord) -> Outcome:
        env = attempt.envelope
        same_ids = (
            found.message_id != env.message_id or found.idempotency_key == env.idempotency_key
        )
        if found.payload_hash != payload_hash(env) or not same_ids:
            problem = Problem(
                ErrorCode.IDEMPOTENCY_CONFLICT,
                f"{found.message_id}/{found.idempotency_key} was first seen with "
                "a different payload",
                "idempotency_key",
            )
            return self._refuse(attempt, [problem])
        if attempt.dead_letter is not None:  # the message got through another way meanwhile
            self.store.commit(
                Commit(resolved_dead_letter=attempt.dead_letter.id, resolution="resolved")
            )
        return Outcome(Status.DUPLICATE, env.message_id, original=outcome_of_record(found))

    def _hold(self, attempt: _Attempt, code: ErrorCode, waits_on) -> Outcome:
        env = attempt.envelope
        problem = Problem(code, f"waiting on {', '.join(waits_on)}")
        if attempt.dead_letter is not None:  # a replay that is still not ready stays parked
            return self._reject(attempt, (problem,), {}, waits_on=tuple(waits_on))[0]
        deadline = attempt.received_at + self.settings.hold_timeout
        inbox = self._inbox_write(
            attempt, InboxStatus.HELD, code, hold_deadline=deadline, waits_on=tuple(waits_on)
        )
        committed = self._commit(attempt, Commit(inbox=inbox))
        if isinstance(committed, Outcome):
            return committed
        self.holds.add(
            HeldMessage(
                committed.inbox_id,
                env,
                attempt.raw,
                code,
                tuple(waits_on),
                deadline,
                attempt.received_at,
            )
        )
        return Outcome(Status.HELD, env.message_id, code=code, problems=(problem,))

    def _reject(self, attempt, problems, advance, waits_on=()) -> tuple[Outcome, list[str]]:
        """A terminal rejection: the inbox says REJECTED, a dead letter keeps the payload."""
        env = attempt.envelope
        code = problems[0].code
        if not waits_on and any(p.code in _REVISION_CODES for p in problems):
            item = business_ids(env.message).item
            waits_on = (f"bom:{item}",) if item else ()
        inbox = self._inbox_write(
            attempt, InboxStatus.REJECTED, code, committed_at=self.clock.now()
        )
        dead_letter = self._dead_letter_write(attempt, problems, waits_on)
        committed = self._commit(
            attempt, Commit(inbox=inbox, dead_letter=dead_letter, streams=advance)
        )
        if isinstance(committed, Outcome):
            return committed, []
        self.streams.update(advance)
        outcome = Outcome(
            Status.REJECTED,
            env.message_id,
            code=code,
            problems=tuple(problems),
            dead_letter_id=committed.dead_letter_id or dead_letter.id,
        )
        return outcome, self._advanced_keys(advance)

    def _refuse(self, attempt: _Attempt, problems) -> Outcome:
        """A rejection before the inbox: dead letter only, nothing else is written."""
        dead_letter = self._dead_letter_write(attempt, problems, ())
        committed = self.store.commit(Commit(dead_letter=dead_letter))
        return Outcome(
            Status.REJECTED,
            attempt.envelope.message_id,
            code=problems[0].code,
            problems=tuple(problems),
            dead_letter_id=committed.dead_letter_id or dead_letter.id,
        )

    def _dead_letter_unreadable(self, raw: str, problems, dead_letter_id=None) -> Outcome:
        data = _loads_object(raw)
        message = data.get("message") if isinstance(data.get("message"), dict) else {}
        write = DeadLetterWrite(
            code=problems[0].code,
            problems=tuple(problems),
            raw=raw,
            at=self.clock.now(),
            ids=business_ids(message),
            message_id=_text(data.get("message_id")),
            idempotency_key=_text(data.get("idempotency_key")),
            message_type=_text(message.get("type")),
            source_system=_text(data.get("source_system")),
            id=dead_letter_id,
        )
        committed = self.store.commit(Commit(dead_letter=write))
        return Outcome(
            Status.REJECTED,
            write.message_id,
            code=write.code,
            problems=write.problems,
            dead_letter_id=committed.dead_letter_id or dead_letter_id,
        )

    # --- record builders -------------------------------------------------------------------
    def business_ids(self, env: Envelope) -> BusinessIds:
        ids = business_ids(env.message)
        plant = ids.plant
        order = self.state.work_orders.get(ids.work_order or "")
        if plant is None and order is not None:
            plant = order.plant
        period = self.state.period(plant, env.occurred_at) if plant in self.state.plants else None
        return BusinessIds(
            plant, ids.item, ids.work_order, ids.lot, ids.supplier, ids.period or period
        )

    def _inbox_write(self, attempt, status, code, **fields) -> InboxWrite:
        env = attempt.envelope
        return InboxWrite(
            message_id=env.message_id,
            idempotency_key=env.idempotency_key,
            payload_hash=payload_hash(env),
            message_type=env.message_type,
            source_system=env.source_system.value,
            stream=env.stream,
            source_seq=env.source_seq,
            ids=self.business_ids(env),
            status=status,
            code=code,
            envelope_json=attempt.raw,
            received_at=attempt.received_at,
            unique=self.settings.idempotency,
            inbox_id=attempt.inbox_id,
            **fields,
        )

    def _dead_letter_write(self, attempt, problems, waits_on) -> DeadLetterWrite:
        env = attempt.envelope
        return DeadLetterWrite(
            code=problems[0].code,
            problems=tuple(problems),
            raw=attempt.raw,
            ids=self.business_ids(env),
            at=self.clock.now(),
            message_id=env.message_id,
            idempotency_key=env.idempotency_key,
            message_type=env.message_type,
            source_system=env.source_system.value,
            waits_on=tuple(waits_on),
            id=attempt.dead_letter.id if attempt.dead_letter else None,
        )


def _loads_object(raw: str) -> dict:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: object) -> str | None:
    return value[:128] if isinstance(value, str) else None
