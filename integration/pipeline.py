"""The submission pipeline: authorise, deduplicate, sequence, validate and post, dead-letter.

Every step but the last is pure: it reads the in-memory book state and decides. The last step
writes the decision through the store's one atomic `commit`, and only once that has succeeded
does the in-memory state move, so a failed commit leaves both exactly as they were.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from integration.clock import Clock
from integration.envelope import (
    Envelope,
    SourceSystem,
    business_ids,
    parse_payload,
    payload_hash,
)
from integration.errors import (
    ConfigurationError,
    ErrorCode,
    MessageRejected,
    Problem,
    StoreError,
)
from integration.holds import HeldMessage, HoldIndex
from integration.ledger import imbalances, out_of_range
from integration.outcome import Outcome, Status
from integration.records import (
    Attempt,
    dead_letter_write,
    entry_write,
    inbox_write,
    outcome_of_record,
    unreadable_dead_letter,
)
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
    InboxRecord,
    InboxStatus,
    InboxWrite,
    LedgerStore,
)
from integration.validation import Sender, authorise

__all__ = ["Pipeline"]

_PARKED = (ErrorCode.SEQUENCE_GAP, ErrorCode.AWAITING_DEPENDENCY)
_REVISION_CODES = (
    ErrorCode.REVISION_UNKNOWN,
    ErrorCode.REVISION_NOT_RELEASED,
    ErrorCode.REVISION_NOT_EFFECTIVE,
)


class Pipeline:
    def __init__(self, store: LedgerStore, settings: CoreSettings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.state = BookState(settings)
        self.holds = HoldIndex()
        self.streams: dict[str, int] = {}
        self._unreleased: deque[str] = deque()  # satisfied keys whose waiters are not yet run
        self._applied_seq = 0  # the last posting (in order of effect) the state includes
        self._data_version: int | None = None  # the store's data version the state reflects

    # --- entry points: each runs under the store's writer lock, on up-to-date books --------
    def submit(self, payload, sender: Sender | None = None) -> Outcome:
        with self.store.exclusive():
            self.sync()
            self._expire_holds()
            return self._submit(payload, sender)

    def submit_many(self, payloads, sender: Sender | None = None) -> list[Outcome]:
        """Submit several messages in one store transaction: each has its own outcome, and a
        store failure rolls the whole batch back (the books are then rebuilt from the store)."""
        with self.store.exclusive():
            self.sync()
            try:
                with self.store.batch():
                    self._expire_holds()
                    return [self._submit(payload, sender) for payload in payloads]
            except StoreError:
                self._forget()
                raise

    def _submit(self, payload, sender: Sender | None) -> Outcome:
        parsed = parse_payload(payload)
        if parsed.envelope is None:
            return self._dead_letter_unreadable(parsed.raw, parsed.problems)
        return self._run(Attempt(parsed.envelope, parsed.raw, self.clock.now(), sender=sender))

    def _forget(self) -> None:
        """Drop the in-memory books (ahead of a store that rolled back): the next step
        rebuilds them from the ledger."""
        self.state = BookState(self.settings)
        self.holds = HoldIndex()
        self._unreleased.clear()
        self._applied_seq = 0
        self._data_version = None

    def replay(self, dead_letter_id: int) -> Outcome | None:
        """Run an open dead letter through the pipeline again; never applies anything twice.
        None when it is no longer open."""
        with self.store.exclusive():
            self.sync()
            found = self.store.dead_letters(DeadLetterFilter(ids=(dead_letter_id,)))
            if not found:
                return None
            attempt = self._attempt_from(found[0])
            return attempt if isinstance(attempt, Outcome) else self._run(attempt)

    def expire_holds(self) -> list[Outcome]:
        """Dead-letter every held message whose hold timeout has passed."""
        with self.store.exclusive():
            self.sync()
            return self._expire_holds()

    def open(self) -> None:
        """Build the book state from the ledger and resume what was waiting."""
        with self.store.exclusive():
            self.sync()

    def sync(self) -> None:
        """Catch the book state up with the store: the whole ledger when the core opens, and
        what other writers committed since (several processes on one database)."""
        version = self.store.data_version()
        if version == self._data_version:
            return
        for record in self.store.posted_after(self._applied_seq):
            envelope = Envelope.model_validate_json(record.envelope_json)
            try:
                decide(self.state, envelope).apply_to(self.state)
            except MessageRejected as error:
                raise ConfigurationError(
                    f"cannot rebuild from {record.message_id}: the ledger was written under "
                    f"other settings ({error})"
                ) from error
            self._applied_seq = record.applied_seq
        self.streams = self.store.stream_positions()
        self.holds = HoldIndex()
        self._unreleased.clear()
        self._data_version = version
        self._resume(self.store.held(), self.store.waiting_keys())

    def _attempt_from(self, dead_letter: DeadLetter) -> Attempt | Outcome:
        parsed = parse_payload(dead_letter.raw)
        if parsed.envelope is None:
            return self._dead_letter_unreadable(parsed.raw, parsed.problems, dead_letter.id)
        record = self.store.inbox_record(parsed.envelope.message_id)
        if record is not None and record.payload_hash != payload_hash(parsed.envelope):
            record = None  # the dead letter's message id was taken by another payload
        if record is not None and record.status is InboxStatus.POSTED:
            self._write(Commit(resolved_dead_letter=dead_letter.id, resolution="resolved"))
            return Outcome(Status.DUPLICATE, record.message_id, original=outcome_of_record(record))
        return Attempt(
            parsed.envelope,
            parsed.raw,
            self.clock.now(),
            inbox_id=record.inbox_id if record else None,
            seq_consumed=record is not None and record.code not in _PARKED,
            dead_letter=dead_letter,
            sender=Sender(SourceSystem(dead_letter.sender)) if dead_letter.sender else None,
        )

    def _expire_holds(self) -> list[Outcome]:
        outcomes = []
        expired = self.holds.expired(self.clock.now())
        for index, held in enumerate(expired):
            problem = Problem(
                held.code, f"held past the hold timeout, waiting on {', '.join(held.waits_on)}"
            )
            attempt = Attempt(held.envelope, held.raw, held.received_at, inbox_id=held.inbox_id)
            try:
                outcomes.append(self._reject(attempt, (problem,), {}, waits_on=held.waits_on)[0])
            except StoreError:
                for again in expired[index:]:  # still held: they expire on the next call
                    self.holds.add(again)
                raise
        return outcomes

    def _resume(self, held: list[InboxRecord], waiting_keys: list[str]) -> list[Outcome]:
        """Index the held messages again, and release whatever waits on something that has
        arrived meanwhile (a commit whose releases never ran: a restart, another process)."""
        for record in held:
            envelope = Envelope.model_validate_json(record.envelope_json)
            self.holds.add(
                HeldMessage(
                    record.inbox_id,
                    envelope,
                    record.envelope_json,
                    record.code,
                    record.waits_on,
                    record.hold_deadline,
                    record.received_at,
                )
            )
        keys = {key for record in held for key in record.waits_on} | set(waiting_keys)
        self._unreleased.extend(
            key for key in sorted(keys) if is_satisfied(key, self.state, self.streams)
        )
        return self._drain()

    # --- the steps -------------------------------------------------------------------------
    def _run(self, attempt: Attempt) -> Outcome:
        outcome, keys = self._process(attempt)
        self._unreleased.extend(keys)
        released = tuple(self._drain())
        return replace(outcome, message_type=attempt.envelope.message_type, released=released)

    def _drain(self) -> list[Outcome]:
        """Let through what waited on the satisfied keys, and on what those in turn provide.

        Keys stay queued until everything waiting on them was processed: if the store fails
        part-way, the held messages go back to the index and the next call carries on, so
        nothing held is stranded (the caller's own message has committed all the same).
        """
        released: list[Outcome] = []
        while self._unreleased:
            key = self._unreleased[0]
            try:
                letters = self.store.dead_letters(DeadLetterFilter(waits_on=key))
            except StoreError:
                return released
            held = self.holds.take(key)
            waiting: list[HeldMessage | DeadLetter] = [*held, *letters]
            for index, waiter in enumerate(waiting):
                try:
                    outcome, more = self._release(waiter)
                except StoreError:
                    for again in waiting[index:]:
                        if isinstance(again, HeldMessage):
                            self.holds.add(again)
                    return released
                released.append(outcome)
                self._unreleased.extend(more)
            self._unreleased.popleft()
        return released

    def _release(self, waiter: HeldMessage | DeadLetter) -> tuple[Outcome, list[str]]:
        """Run a held message or a parked dead letter whose wait is over."""
        if isinstance(waiter, HeldMessage):
            attempt = Attempt(
                waiter.envelope, waiter.raw, waiter.received_at, inbox_id=waiter.inbox_id
            )
        else:
            attempt = self._attempt_from(waiter)
            if isinstance(attempt, Outcome):
                return attempt, []
        outcome, more = self._process(attempt)
        return replace(outcome, message_type=attempt.envelope.message_type), more

    def _process(self, attempt: Attempt) -> tuple[Outcome, list[str]]:
        env = attempt.envelope
        problems = authorise(self.settings, env, attempt.sender)
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
        entries = tuple(
            entry_write(self.state, env, plant, posting) for plant, posting in decision.entries
        )
        for entry in entries:
            if imbalances(entry.posting.lines):
                problem = Problem(
                    ErrorCode.UNBALANCED_ENTRY,
                    f"entry for {entry.plant} does not balance: {imbalances(entry.posting.lines)}",
                )
                return self._reject(attempt, (problem,), advance)
            if beyond := out_of_range(entry.posting):
                problem = Problem(
                    ErrorCode.AMOUNT_OUT_OF_RANGE, f"beyond the ledger's range: {', '.join(beyond)}"
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

    def _write(self, commit: Commit) -> Committed:
        committed = self.store.commit(commit)
        if committed.applied_seq is not None:
            self._applied_seq = committed.applied_seq
        if committed.data_version is not None:
            self._data_version = committed.data_version
        return committed

    def _find(self, env: Envelope) -> InboxRecord | None:
        if not self.settings.idempotency:
            return None
        return self.store.find_inbox(env.message_id, env.idempotency_key)

    def _commit(self, attempt: Attempt, commit: Commit) -> Committed | Outcome:
        """Commit, or — when the inbox already holds the message — answer as a duplicate."""
        try:
            return self._write(commit)
        except DuplicateDelivery:
            return self._duplicate(attempt, self._find(attempt.envelope))

    def _duplicate(self, attempt: Attempt, found: InboxRecord) -> Outcome:
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
            self._write(Commit(resolved_dead_letter=attempt.dead_letter.id, resolution="resolved"))
        return Outcome(Status.DUPLICATE, env.message_id, original=outcome_of_record(found))

    def _hold(self, attempt: Attempt, code: ErrorCode, waits_on) -> Outcome:
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

    def _refuse(self, attempt: Attempt, problems) -> Outcome:
        """A rejection before the inbox: dead letter only, nothing else is written."""
        dead_letter = self._dead_letter_write(attempt, problems, ())
        committed = self._write(Commit(dead_letter=dead_letter))
        return Outcome(
            Status.REJECTED,
            attempt.envelope.message_id,
            code=problems[0].code,
            problems=tuple(problems),
            dead_letter_id=committed.dead_letter_id or dead_letter.id,
        )

    def _dead_letter_unreadable(self, raw: str, problems, dead_letter_id=None) -> Outcome:
        write = unreadable_dead_letter(raw, problems, self.clock.now(), dead_letter_id)
        committed = self._write(Commit(dead_letter=write))
        return Outcome(
            Status.REJECTED,
            write.message_id,
            write.message_type,
            code=write.code,
            problems=write.problems,
            dead_letter_id=committed.dead_letter_id or dead_letter_id,
        )

    def _inbox_write(self, attempt: Attempt, status, code, **fields) -> InboxWrite:
        return inbox_write(self.state, attempt, status, code, self.settings.idempotency, **fields)

    def _dead_letter_write(self, attempt: Attempt, problems, waits_on) -> DeadLetterWrite:
        return dead_letter_write(self.state, attempt, problems, waits_on, self.clock.now())
