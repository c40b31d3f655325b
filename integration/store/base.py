"""The `LedgerStore` port: the records it keeps and the one atomic write it offers.

Every change the core makes to durable state for one message — the inbox record, its journal
entries with their lines and stock moves, a dead letter, stream positions — goes through one
`commit(Commit)` call, so an adapter has exactly one transaction to get right. The records of
that write (`Commit`, `InboxWrite`, `EntryWrite`, `Committed`) are named tuples: immutable, and
cheap to make for every message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple, Protocol

from integration.envelope import BusinessIds
from integration.errors import ErrorCode, Problem, StoreError
from integration.ledger import Posting
from integration.text import TEXT, decode_raw

__all__ = [
    "InboxStatus",
    "Identity",
    "InboxRecord",
    "InboxWrite",
    "EntryWrite",
    "DeadLetter",
    "DeadLetterWrite",
    "DeadLetterFilter",
    "Commit",
    "Committed",
    "LedgerStore",
    "DuplicateDelivery",
    "StockBalance",
    "EntrySummary",
    "FirstPass",
    "Story",
]


class InboxStatus(StrEnum):
    HELD = "HELD"
    POSTED = "POSTED"
    REJECTED = "REJECTED"


class Identity(NamedTuple):
    """What no two messages in the inbox share: a message id is a transport id, unique per
    source system; an idempotency key names a business event, unique per message type (so
    every source authorised for a type shares its keys, and no other source can take one)."""

    source_system: str
    message_id: str
    message_type: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class InboxRecord:
    """What the core remembers of a message it has accepted for processing."""

    inbox_id: int
    message_id: str
    idempotency_key: str
    payload_hash: str
    message_type: str
    source_system: str
    status: InboxStatus
    code: ErrorCode | None
    entry_ids: tuple[int, ...]
    envelope_json: str
    received_at: datetime
    committed_at: datetime | None
    hold_deadline: datetime | None
    waits_on: tuple[str, ...]
    late: bool
    applied_seq: int | None = None  # position in the order of effect, once POSTED


class InboxWrite(NamedTuple):
    """Insert (first sight) or update (a held or rejected message reaching an outcome)."""

    message_id: str
    idempotency_key: str
    payload_hash: str
    message_type: str
    source_system: str
    stream: str | None
    source_seq: int | None
    ids: BusinessIds
    status: InboxStatus
    code: ErrorCode | None
    envelope_json: str
    received_at: datetime
    committed_at: datetime | None = None
    hold_deadline: datetime | None = None
    waits_on: tuple[str, ...] = ()
    late: bool = False
    unique: bool = True  # False only with idempotency switched off (negative controls)
    inbox_id: int | None = None  # set: update that record instead of inserting
    correlation_id: str = ""  # the envelope's, which a correlation's story is found by

    @property
    def claims(self) -> Identity | None:
        """The identity a new record takes in the inbox; None for an update, or a record
        that keeps nothing unique."""
        if self.inbox_id is not None or not self.unique:
            return None
        return Identity(
            self.source_system, self.message_id, self.message_type, self.idempotency_key
        )


class EntryWrite(NamedTuple):
    """One balanced journal entry of one plant, with its lines and stock moves."""

    plant: str
    currency: str
    period: str
    original_period: str
    late: bool
    event_type: str
    work_order: str | None
    occurred_at: datetime
    posting: Posting


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    message_id: str | None
    idempotency_key: str | None
    message_type: str | None
    source_system: str | None
    sender: str | None  # the source an authenticated channel vouched for, if any
    code: ErrorCode
    problems: tuple[Problem, ...]
    raw: str
    ids: BusinessIds
    attempts: int
    history: tuple[dict[str, str], ...]
    status: str  # open | replayed | resolved | discarded
    waits_on: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    raw_encoding: str = TEXT  # "base64": `raw` is the base64 of bytes that are not text
    correlation_id: str = ""  # the raw payload's, when it is a JSON object that has one

    def raw_bytes(self) -> bytes:
        """The payload exactly as it was received."""
        return decode_raw(self.raw, self.raw_encoding)


@dataclass(frozen=True, slots=True)
class DeadLetterWrite:
    """A new dead letter (`id` None) or another failed attempt at an existing one."""

    code: ErrorCode
    problems: tuple[Problem, ...]
    raw: str
    ids: BusinessIds
    at: datetime
    message_id: str | None = None
    idempotency_key: str | None = None
    message_type: str | None = None
    source_system: str | None = None
    sender: str | None = None
    waits_on: tuple[str, ...] = ()
    id: int | None = None
    raw_encoding: str = TEXT


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Select dead letters; every given field must match. `status` None means any."""

    ids: tuple[int, ...] = ()
    code: ErrorCode | None = None
    status: str | None = "open"
    plant: str | None = None
    item: str | None = None
    work_order: str | None = None
    lot: str | None = None
    supplier: str | None = None
    period: str | None = None
    waits_on: str | None = None
    correlation_id: str | None = None


class Commit(NamedTuple):
    """Everything one step of the pipeline writes, atomically."""

    inbox: InboxWrite | None = None
    entries: tuple[EntryWrite, ...] = ()
    dead_letter: DeadLetterWrite | None = None
    resolved_dead_letter: int | None = None  # a dead letter that this commit settles
    resolution: str = "replayed"
    # a resolution by hand (`discarded`): when, and why; its history records both
    resolved_at: datetime | None = None
    reason: str = ""
    streams: Mapping[str, int] = MappingProxyType({})  # stream -> its next expected seq


class Committed(NamedTuple):
    """What a commit wrote: the inbox record's id, its journal entries' ids, the dead letter's."""

    inbox_id: int | None = None
    entry_ids: tuple[int, ...] = ()
    dead_letter_id: int | None = None
    applied_seq: int | None = None  # the inbox record's position in the order of effect
    data_version: int | None = None  # the store's data version after this commit, if it moved


@dataclass(frozen=True, slots=True)
class StockBalance:
    qty: Decimal
    value: Decimal


@dataclass(frozen=True, slots=True)
class EntrySummary:
    """One journal entry as a person reads it: what it was, where, and how much it moved."""

    entry_id: int
    inbox_id: int
    plant: str
    currency: str
    period: str
    event_type: str
    work_order: str | None
    posted_at: datetime
    debits: Decimal  # the sum of its debit lines (an entry balances: credits are the same)


@dataclass(frozen=True, slots=True)
class Story:
    """Everything the ledger holds under one correlation id: the messages (inbox records),
    the entries they posted, and the dead letters with their histories (failures, replays)."""

    correlation_id: str
    messages: tuple[InboxRecord, ...]
    entries: tuple[EntrySummary, ...]
    dead_letters: tuple[DeadLetter, ...]


class FirstPass(NamedTuple):
    """Messages received in a window: how many, how many posted without ever being
    dead-lettered (first pass), and how many are posted now (final)."""

    received: int
    first_pass: int
    posted: int


class DuplicateDelivery(StoreError):
    """The inbox already holds this message's id or key (`Identity`; another writer won)."""

    code = ErrorCode.IDEMPOTENCY_CONFLICT


class LedgerStore(Protocol):
    """Durable storage of the inbox, the ledger, the stock sub-ledger and dead letters."""

    def commit(self, commit: Commit) -> Committed:
        """Write everything in `commit` in one transaction and say what it created.
        Raises `DuplicateDelivery` on a unique inbox clash, `StoreError` otherwise; either
        way nothing was written."""

    def exclusive(self) -> AbstractContextManager[None]:
        """Hold the store's writer lock for one pipeline step (decide, then commit), so that
        several processes on one database decide against books that include each other's
        postings. A no-op where the adapter has one writer."""

    def batch(self, expected: Iterable[Identity] = ()) -> AbstractContextManager[None]:
        """Make the commits inside one transaction; the batch commits at the end, or rolls
        back entirely if the store fails. A commit that clashes (`DuplicateDelivery`) writes
        nothing and the batch goes on; any other failure of a commit may fail the batch. The
        batch holds the writer lock (as `exclusive`) from its start to its end.

        `expected`: the identity of each message the batch will submit, so that an adapter
        may look them all up at once."""

    def data_version(self) -> int:
        """A number that changes whenever another connection has committed since this one
        last looked (the core then catches up before deciding). First thing in a batch: as
        of the batch's start, what the other connections had committed."""

    def posted_after(self, applied_seq: int) -> Iterator[InboxRecord]:
        """POSTED records whose effect came after `applied_seq`, in order of effect."""

    def find_inbox(self, identity: Identity) -> InboxRecord | None:
        """The record that holds this message's id (in its source) or its key (in its
        type), the id's first; None when neither is held (or idempotency is off)."""

    def inbox_record(self, message_id: str, source_system: str | None = None) -> InboxRecord | None:
        """The first record received with this message id from `source_system`, or from
        any source when None."""

    def held(self) -> list[InboxRecord]: ...
    def stream_positions(self) -> dict[str, int]: ...
    def dead_letters(self, selection: DeadLetterFilter) -> list[DeadLetter]: ...
    def waiting_keys(self) -> list[str]:
        """Every dependency an open dead letter waits for, sorted."""

    def correlated(self, correlation_id: str) -> list[InboxRecord]:
        """The inbox records whose envelope carries this correlation id, oldest first
        (an indexed column, filled on write)."""

    def entry_summaries(self, inbox_ids: Iterable[int]) -> list[EntrySummary]:
        """The journal entries these inbox records posted, in order."""

    def first_pass(self, since: datetime | None, message_type: str | None = None) -> FirstPass:
        """Counts of the messages (of `message_type`) received at or after `since`."""

    def dead_letter_counts(self) -> dict[str, int]:
        """Dead letters by status (open, replayed, resolved)."""

    def account_balances(self) -> dict[tuple[str, str, str], Decimal]: ...
    def stock_balances(self) -> dict[tuple[str, str, str, str], StockBalance]: ...
    def stock_value_by_account(self) -> dict[tuple[str, str], Decimal]: ...
    def wip_by_work_order(self, nonzero: bool = False) -> dict[str, Decimal]:
        """WIP per work order; `nonzero`: only orders whose WIP is not zero (every closed
        order drops out, so the answer follows the open orders, not the ledger's age)."""

    def unbalanced_entries(self) -> list[tuple[int, str, str, Decimal]]: ...
    def entry_count(self) -> int: ...
    def stock_exception_count(self) -> int: ...
    def late_entry_count(self) -> int: ...
    def close(self) -> None: ...
