"""The rows one batch has written and not yet sent, shared by the SQL adapters' batches.

Inside `store.batch()`, an adapter keeps the new inbox records, journal entries with their
lines, stock moves and stock exceptions, outcome changes and stream positions here, and sends
them together: when a group of `chunk` new records is full, before anything else touches the
database (a read must see the batch's writes), and when the batch ends. What a commit must
answer at once is known without writing:

* ids: inbox and journal entry ids come from the adapter (`_next_id`): counted on from the
  MAX read at the start (SQLite, one writer) or drawn from the sequences in blocks (PostgreSQL).
* the order of effect: the batch holds the writer lock, so it reads MAX(applied_seq) once and
  counts on from there.
* clashes: the identities (`Identity`: message id per source, key per message type) the batch
  was told to expect are looked up at once when it begins, and every one it inserts since is
  remembered; a message it was not told about is looked up on its own (`_present`). A clash
  raises `DuplicateDelivery` before anything of its commit is kept, and the batch goes on.

Any other failure of a commit or of sending rows cannot be pinned on one commit (nothing is
undone by a savepoint): it marks the batch broken, every later commit and the batch's end
raise, and the transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from integration.errors import StoreError
from integration.store.base import DuplicateDelivery, Identity

__all__ = ["POSTING_TABLES", "DeferredRows"]

POSTING_TABLES = ("journal_line", "stock_move", "stock_exception")
# A pending inbox row is [inbox_id, *values (`INBOX_COLUMNS`), applied_seq]: its outcome columns
# (status to late, `sql_writes.INBOX_OUTCOME`) and applied_seq are the last seven.
_OUTCOME = slice(-7, None)


class DeferredRows:
    """The pending rows of one batch and what it knows without asking. An adapter's batch
    supplies `_next_id(table)`, `_present(identity)` and `flush()` (which sends `pending()`,
    then `_sent()`), and sets `_applied` (MAX(applied_seq)) and the identities found present
    (`_take`) when it begins."""

    chunk = 25  # new inbox records kept before they are sent

    def __init__(self, expected: Iterable[Identity]) -> None:
        expected = list(expected)
        self.failure: BaseException | None = None  # the first write that failed, if any
        self.expected = expected
        self._checked_ids = {_scoped_id(identity) for identity in expected}
        self._checked_keys = {_scoped_key(identity) for identity in expected}
        self._taken_ids: set[tuple[str, str]] = set()
        self._taken_keys: set[tuple[str, str]] = set()
        self._applied = 0
        self._new_inbox: dict[int, list] = {}  # inbox_id -> its row, until sent
        # The last change of each record sent before: inbox_id -> (*outcome, seq, id). One row
        # a record: a statement that updates a row from two rows of its input updates it once.
        self._outcomes: dict[int, tuple] = {}
        self._entries: list[tuple] = []
        self._posting: dict[str, list[tuple]] = {table: [] for table in POSTING_TABLES}
        self._streams: dict[str, int] = {}

    def _next_id(self, table: str) -> int:
        raise NotImplementedError

    def _present(self, identity: Identity) -> bool:
        """Whether the database holds this identity's id or key (rows sent or committed)."""
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """Raise if an earlier write of this batch failed: nothing more may be written. The
        error names that failure (a caller may have swallowed it, as a release does)."""
        if self.failure is not None:
            raise StoreError(
                f"an earlier write of this batch failed ({self.failure}): the batch rolls back"
            ) from self.failure

    def fail(self, error: BaseException) -> None:
        """A write failed: the batch is broken; `check` raises from then on."""
        if self.failure is None:
            self.failure = error

    # --- what a commit adds ----------------------------------------------------------------
    def claim(self, identity: Identity) -> None:
        """Take a new record's message id (in its source) and idempotency key (in its type),
        or raise `DuplicateDelivery` when the inbox (or this batch) already holds either."""
        scoped_id, scoped_key = _scoped_id(identity), _scoped_key(identity)
        clash = scoped_id in self._taken_ids or scoped_key in self._taken_keys
        checked = scoped_id in self._checked_ids and scoped_key in self._checked_keys
        if not clash and not checked:
            clash = self._present(identity)
        if clash:
            raise DuplicateDelivery(f"inbox already holds the id or the key of {identity}")
        self._take(identity)

    def add_inbox(self, values: tuple, posted: bool) -> tuple[int, int | None]:
        """A new inbox record (`INBOX_COLUMNS`); its id and place in the order of effect."""
        if len(self._new_inbox) >= self.chunk:
            self.flush()
        inbox_id, applied = self._next_id("inbox"), self._next_applied(posted)
        self._new_inbox[inbox_id] = [inbox_id, *values, applied]
        return inbox_id, applied

    def update_inbox(self, outcome: tuple, inbox_id: int, posted: bool) -> tuple[int, int | None]:
        """A record's outcome (`INBOX_OUTCOME`) changes; its id and place in the order of
        effect. A record not sent yet is sent with its new outcome."""
        applied = self._next_applied(posted)
        unsent = self._new_inbox.get(inbox_id)
        if unsent is None:
            self._outcomes[inbox_id] = (*outcome, applied, inbox_id)
        else:
            unsent[_OUTCOME] = (*outcome, applied)
        return inbox_id, applied

    def add_entry(self, values: tuple) -> int:
        """A journal entry (`ENTRY_COLUMNS`); its id, for its lines, moves and exceptions."""
        entry_id = self._next_id("journal_entry")
        self._entries.append((entry_id, *values))
        return entry_id

    def add_posting(self, rows: Iterable[list[tuple]]) -> None:
        """An added entry's lines, moves and exceptions (rows of `POSTING_TABLES`, in order)."""
        for table, more in zip(POSTING_TABLES, rows, strict=True):
            self._posting[table].extend(more)

    def add_streams(self, streams: Mapping[str, int]) -> None:
        self._streams.update(streams)

    # --- sending ---------------------------------------------------------------------------
    def pending(self) -> dict[str, list] | None:
        """The rows to send, by table, in an order the foreign keys accept ("outcomes": the
        updates of records sent before; "stream_position": (stream, next_seq)); None when
        there are none."""
        if not (self._new_inbox or self._outcomes or self._entries or self._streams):
            return None
        return {
            "inbox": list(self._new_inbox.values()),
            "outcomes": list(self._outcomes.values()),
            "journal_entry": self._entries,
            **self._posting,
            "stream_position": list(self._streams.items()),
        }

    def _sent(self) -> None:
        """The pending rows have been sent: forget them."""
        self._new_inbox = {}
        self._outcomes = {}
        self._entries = []
        self._posting = {table: [] for table in POSTING_TABLES}
        self._streams = {}

    # --- what the batch knows without asking -----------------------------------------------
    def _take(self, identity: Identity) -> None:
        self._taken_ids.add(_scoped_id(identity))
        self._taken_keys.add(_scoped_key(identity))

    def _next_applied(self, posted: bool) -> int | None:
        if not posted:
            return None
        self._applied += 1
        return self._applied


def _scoped_id(identity: Identity) -> tuple[str, str]:
    return identity.source_system, identity.message_id


def _scoped_key(identity: Identity) -> tuple[str, str]:
    return identity.message_type, identity.idempotency_key
