"""The steps one message takes: authorise, sequence, validate and post — or hold, reject,
refuse, or answer as a duplicate.

Every step but the last is pure: it reads the in-memory book state and decides. The last step
writes the decision through the store's one atomic `commit`, and only once that has succeeded
does the in-memory state move, so a failed commit leaves both exactly as they were.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime

from integration.clock import Clock
from integration.envelope import Envelope, business_ids
from integration.errors import ErrorCode, MessageRejected, Problem
from integration.holds import HeldMessage, HoldIndex
from integration.ledger import imbalances, out_of_range
from integration.outcome import Outcome, Status
from integration.records import (
    Attempt,
    dead_letter_write,
    digest_of,
    entry_write,
    identity_of,
    inbox_write,
    outcome_of_record,
    unreadable_dead_letter,
)
from integration.rules import Decision, decide
from integration.sequencing import (
    Order,
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
    DeadLetterWrite,
    DuplicateDelivery,
    InboxRecord,
    InboxStatus,
    InboxWrite,
    LedgerStore,
)
from integration.text import TEXT
from integration.validation import authorise

__all__ = ["Steps", "PARKED"]

PARKED = (ErrorCode.SEQUENCE_GAP, ErrorCode.AWAITING_DEPENDENCY)
_REVISION_CODES = (
    ErrorCode.REVISION_UNKNOWN,
    ErrorCode.REVISION_NOT_RELEASED,
    ErrorCode.REVISION_NOT_EFFECTIVE,
)


class Steps:
    """The book state and the per-message steps over it."""

    def __init__(self, store: LedgerStore, settings: CoreSettings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.state = BookState(settings)
        self.holds = HoldIndex()
        self.streams: dict[str, int] = {}
        self._unreleased: deque[str] = deque()  # satisfied keys whose waiters are not yet run
        # Every key an open dead letter may wait on (a superset): the common key, which none
        # waits on, then costs no query for dead letters to replay.
        self._parked_waits: set[str] = set()
        self._applied_seq = 0  # the last posting (in order of effect) the state includes
        self._data_version: int | None = None  # the store's data version the state reflects
        self._transaction_thread: int | None = None  # the thread in `Pipeline.transaction()`

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
        if early := _not_ended(env, decision.period_end, self.clock.now()):
            return self._reject(attempt, early, advance)
        return self._post(attempt, decision, advance)

    def _advanced_keys(self, advance: dict[str, int]) -> list[str]:
        return [stream_waiting_key(stream, seq) for stream, seq in advance.items()]

    def _post(self, attempt, decision: Decision, advance) -> tuple[Outcome, list[str]]:
        env = attempt.envelope
        entries = tuple(
            [entry_write(self.state, env, plant, posting) for plant, posting in decision.entries]
        )
        for entry in entries:
            # The range first: far beyond it, sums are rounded (28 digits) and need not balance.
            if beyond := out_of_range(entry.posting):
                problem = Problem(
                    ErrorCode.AMOUNT_OUT_OF_RANGE, f"beyond the ledger's range: {', '.join(beyond)}"
                )
                return self._reject(attempt, (problem,), advance)
            if imbalances(entry.posting.lines):
                problem = Problem(
                    ErrorCode.UNBALANCED_ENTRY,
                    f"entry for {entry.plant} does not balance: {imbalances(entry.posting.lines)}",
                )
                return self._reject(attempt, (problem,), advance)
        now = self.clock.now()
        late = any([entry.late for entry in entries])
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
            env.message_type,
            entry_ids=committed.entry_ids,
            committed_at=now,
            late=late,
        )
        return outcome, [*provided_dependencies(env), *self._advanced_keys(advance)]

    def _write(self, commit: Commit) -> Committed:
        if commit.dead_letter is not None:
            self._parked_waits.update(commit.dead_letter.waits_on)
        committed = self.store.commit(commit)
        if committed.applied_seq is not None:
            self._applied_seq = committed.applied_seq
        if committed.data_version is not None:
            self._data_version = committed.data_version
        return committed

    def _find(self, env: Envelope) -> InboxRecord | None:
        if not self.settings.idempotency:
            return None
        return self.store.find_inbox(identity_of(env))

    def _commit(self, attempt: Attempt, commit: Commit) -> Committed | Outcome:
        """Commit, or — when the inbox already holds the message — answer as a duplicate."""
        try:
            return self._write(commit)
        except DuplicateDelivery:
            return self._duplicate(attempt, self._find(attempt.envelope))

    def _duplicate(self, attempt: Attempt, found: InboxRecord) -> Outcome:
        """The answer to a message whose id or key the inbox holds: a DUPLICATE of the same
        event (same key, or another id for it), or a conflict (the id reused for another
        event, or the key for another payload)."""
        env = attempt.envelope
        identity = identity_of(env)
        same_id = (found.source_system, found.message_id) == identity[:2]
        same_key = (found.message_type, found.idempotency_key) == identity[2:]
        if found.payload_hash != digest_of(attempt) or (same_id and not same_key):
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

    def _dead_letter_unreadable(
        self, raw: str, problems, dead_letter_id=None, raw_encoding: str = TEXT
    ) -> Outcome:
        write = unreadable_dead_letter(
            raw, problems, self.clock.now(), dead_letter_id, raw_encoding
        )
        committed = self._write(Commit(dead_letter=write))
        return Outcome(
            Status.REJECTED,
            write.message_id,
            write.message_type,
            code=write.code,
            problems=write.problems,
            dead_letter_id=committed.dead_letter_id or dead_letter_id,
        )

    def _inbox_write(self, attempt: Attempt, status, code, **outcome) -> InboxWrite:
        return inbox_write(self.state, attempt, status, code, self.settings.idempotency, **outcome)

    def _dead_letter_write(self, attempt: Attempt, problems, waits_on) -> DeadLetterWrite:
        return dead_letter_write(self.state, attempt, problems, waits_on, self.clock.now())


def _not_ended(env: Envelope, end: datetime | None, now: datetime) -> list[Problem]:
    """Why a period close (`end`: when its period ends in the plant's zone; None for every
    other message) is refused: dated before the end (a wrong message, refused for good), or
    the core's clock not there yet (premature: a replay once the period has ended posts it)."""
    problems: list[Problem] = []
    if end is None:
        return problems
    if env.occurred_at < end:
        problems.append(
            Problem(
                ErrorCode.PERIOD_NOT_ENDED,
                f"the period ends at {end.isoformat()}; the close occurred at "
                f"{env.occurred_at.isoformat()}",
                "occurred_at",
            )
        )
    if now < end:
        problems.append(
            Problem(
                ErrorCode.PERIOD_NOT_ENDED,
                f"the period ends at {end.isoformat()}; the core's clock is at {now.isoformat()}",
                "period",
            )
        )
    return problems
