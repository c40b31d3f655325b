"""The submission pipeline: entry points, catching up with the store, holds and releases.

Each message goes through `Steps`; whatever it satisfies (a sequence gap, a work order, an
item) lets through what was held or parked waiting for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import timedelta

from pydantic import ValidationError

from integration.envelope import (
    Envelope,
    ParsedPayload,
    SourceSystem,
    parse_payload,
    payload_hash,
)
from integration.errors import ConfigurationError, MessageRejected, Problem, StoreError
from integration.holds import HeldMessage, HoldIndex
from integration.master import STORED
from integration.outcome import Outcome, Status
from integration.records import Attempt, identity_of, outcome_of_record
from integration.rules import decide
from integration.sequencing import is_satisfied
from integration.state import BookState
from integration.steps import PARKED, Steps
from integration.store.base import (
    Commit,
    DeadLetter,
    DeadLetterFilter,
    Identity,
    InboxRecord,
    InboxStatus,
)
from integration.validation import Sender

__all__ = ["Pipeline"]


class Pipeline(Steps):
    """The core's entry points: each runs under the store's writer lock on books caught up
    with the store, then lets through whatever its message released."""

    # --- entry points: each runs under the store's writer lock, on up-to-date books --------
    def submit(self, payload, sender: Sender | None = None) -> Outcome:
        parsed = parse_payload(payload)
        with self.caught_up():
            self._expire_holds()
            return self._submit(parsed, sender)

    def submit_many(self, payloads, senders: list[Sender | None]) -> list[Outcome]:
        """Submit several messages, each with its sender, in one store transaction: each has
        its own outcome, and a failure (of the store, or anything else that escapes) rolls the
        whole batch back; the books, already ahead of the store, are then rebuilt from it."""
        parsed = [parse_payload(payload) for payload in payloads]
        expected = [identity_of(p.envelope) for p in parsed if p.envelope]
        with self._one_transaction(expected):
            self._expire_holds()
            pairs = zip(parsed, senders, strict=True)
            return [self._submit(one, sender) for one, sender in pairs]

    def transaction(self) -> AbstractContextManager[None]:
        """Every entry point this thread calls inside runs in this one store transaction,
        committed when the block ends; a failure rolls all of it back and the books are
        rebuilt. Other threads' calls take the writer lock as usual. A block inside another
        is part of it."""
        return self._one_transaction(())

    def _in_transaction(self) -> bool:
        return self._transaction_thread == threading.get_ident()

    def caught_up(self) -> AbstractContextManager[None]:
        """Under the writer lock, with the books caught up with other writers' commits. Inside
        this thread's transaction, already so: it holds the lock, nobody else can commit (and
        a message's delivery, which asks twice, pays for no generator)."""
        if self._in_transaction():
            return nullcontext()
        return self._locked_and_synced()

    @contextmanager
    def _locked_and_synced(self) -> Iterator[None]:
        with self.store.exclusive():
            self.sync()
            yield

    @contextmanager
    def _one_transaction(self, expected: list[Identity]) -> Iterator[None]:
        """One store transaction, marked as this thread's; inside one, part of it. A batch
        holds the writer lock itself, so the books catch up inside it."""
        if self._in_transaction():
            yield
            return
        try:
            with self.store.batch(expected):
                self._transaction_thread = threading.get_ident()
                try:
                    self.sync()
                    yield
                finally:
                    self._transaction_thread = None
        except BaseException:
            self._forget()
            raise

    def _submit(self, parsed: ParsedPayload, sender: Sender | None) -> Outcome:
        if parsed.envelope is None:
            return self._dead_letter_unreadable(
                parsed.raw, parsed.problems, raw_encoding=parsed.raw_encoding
            )
        attempt = Attempt(
            parsed.envelope, parsed.raw, self.clock.now(), sender=sender, digest=parsed.digest
        )
        return self._run(attempt)

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
        with self.caught_up():
            found = self.store.dead_letters(DeadLetterFilter(ids=(dead_letter_id,)))
            if not found:
                return None
            attempt = self._attempt_from(found[0])
            return attempt if isinstance(attempt, Outcome) else self._run(attempt)

    def discard(self, dead_letter_ids: list[int], reason: str) -> list[int]:
        """Close the open dead letters among `dead_letter_ids` without running them again,
        as `discarded` with `reason` and the clock's time in their histories; the ids closed."""
        if not dead_letter_ids:
            return []  # an empty `ids` selects every letter
        with self.caught_up():
            now = self.clock.now()
            still_open = self.store.dead_letters(DeadLetterFilter(ids=tuple(dead_letter_ids)))
            for letter in still_open:
                self._write(
                    Commit(
                        resolved_dead_letter=letter.id,
                        resolution="discarded",
                        resolved_at=now,
                        reason=reason,
                    )
                )
            return [letter.id for letter in still_open]

    def expire_holds(self, older_than: timedelta | None = None) -> list[Outcome]:
        """Dead-letter every held message whose hold timeout has passed or, given
        `older_than`, every one held at least that long."""
        with self.caught_up():
            return self._expire_holds(older_than)

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
            try:  # a ledger posted by an older, looser build may hold what reading now refuses
                envelope = Envelope.model_validate_json(record.envelope_json, context=STORED)
                decide(self.state, envelope).apply_to(self.state)
            except (MessageRejected, ValidationError) as error:
                raise ConfigurationError(
                    f"cannot rebuild from {record.message_id}: the ledger was written under "
                    f"other settings ({error})"
                ) from error
            self._applied_seq = record.applied_seq
        self.streams = self.store.stream_positions()
        self.holds = HoldIndex()
        self._unreleased.clear()
        self._data_version = version
        self._parked_waits = set(self.store.waiting_keys())
        self._resume(self.store.held())

    def _attempt_from(self, dead_letter: DeadLetter) -> Attempt | Outcome:
        parsed = parse_payload(dead_letter.raw_bytes())
        if parsed.envelope is None:
            return self._dead_letter_unreadable(
                parsed.raw, parsed.problems, dead_letter.id, parsed.raw_encoding
            )
        env = parsed.envelope
        digest = payload_hash(env)
        record = self.store.inbox_record(env.message_id, str(env.source_system))
        if record is not None and record.payload_hash != digest:
            record = None  # the dead letter's message id was taken by another payload
        if record is not None and record.status is InboxStatus.POSTED:
            self._write(Commit(resolved_dead_letter=dead_letter.id, resolution="resolved"))
            return Outcome(Status.DUPLICATE, record.message_id, original=outcome_of_record(record))
        return Attempt(
            parsed.envelope,
            parsed.raw,
            self.clock.now(),
            inbox_id=record.inbox_id if record else None,
            seq_consumed=record is not None and record.code not in PARKED,
            dead_letter=dead_letter,
            sender=Sender(SourceSystem(dead_letter.sender)) if dead_letter.sender else None,
            digest=digest,
        )

    def _expire_holds(self, older_than: timedelta | None = None) -> list[Outcome]:
        outcomes: list[Outcome] = []
        now = self.clock.now()
        if older_than is None:
            expired, why = self.holds.expired(now), "held past the hold timeout"
            if not expired:  # the common case, asked twice per delivery (caller, then submit)
                return outcomes
        else:
            seconds = older_than.total_seconds()
            expired = self.holds.held_for(now, older_than)
            why = f"expired on request (held {seconds:g} s or longer)"
        for index, held in enumerate(expired):
            problem = Problem(held.code, f"{why}, waiting on {', '.join(held.waits_on)}")
            attempt = Attempt(held.envelope, held.raw, held.received_at, inbox_id=held.inbox_id)
            try:
                outcomes.append(self._reject(attempt, (problem,), {}, waits_on=held.waits_on)[0])
            except StoreError:
                for again in expired[index:]:  # still held: they expire on the next call
                    self.holds.add(again)
                raise
        return outcomes

    def _resume(self, held: list[InboxRecord]) -> list[Outcome]:
        """Index the held messages again, and release whatever waits on something that has
        arrived meanwhile (a commit whose releases never ran: a restart, another process)."""
        for record in held:
            envelope = Envelope.model_validate_json(record.envelope_json, context=STORED)
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
        keys = {key for record in held for key in record.waits_on} | self._parked_waits
        self._unreleased.extend(
            key for key in sorted(keys) if is_satisfied(key, self.state, self.streams)
        )
        return self._drain()

    # --- the steps -------------------------------------------------------------------------
    def _run(self, attempt: Attempt) -> Outcome:
        outcome, keys = self._process(attempt)
        self._unreleased.extend(keys)
        released = tuple(self._drain())
        if released or outcome.message_type is None:
            outcome = outcome._replace(
                message_type=attempt.envelope.message_type, released=released
            )
        return outcome

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
                letters = self._parked_on(key)
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

    def _parked_on(self, key: str) -> list[DeadLetter]:
        if key not in self._parked_waits:
            return []
        return self.store.dead_letters(DeadLetterFilter(waits_on=key))

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
        return outcome._replace(message_type=attempt.envelope.message_type), more
