"""The adapters of the `Target` port (`sim.model.target`): the in-process core, the default,
and a null target (the twin alone). An HTTP adapter (`sim.run.http_target`) implements the same
port.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from datetime import datetime
from decimal import Decimal

from integration import (
    Check,
    Core,
    CoreSettings,
    DeadLetterFilter,
    Envelope,
    ManualClock,
    Outcome,
    ParsedPayload,
    Status,
    StockBalance,
    open_store,
)
from sim.model.target import Books
from sim.model.truth import StockKey

__all__ = [
    "InProcessTarget",
    "NullTarget",
    "by_location",
    "finding_text",
    "first_codes",
    "replay_rounds",
]


def replay_rounds(replay: Callable[[], list[Outcome]], rounds: int = 3) -> list[Outcome]:
    """Replay open dead letters until a round posts nothing: a replay can free what another
    dead letter waits on."""
    replayed: list[Outcome] = []
    for _ in range(rounds):
        outcomes = replay()
        replayed += outcomes
        if not any(outcome.applied for outcome in outcomes):
            break
    return replayed


def first_codes(histories: Iterable[Sequence[Mapping[str, str]]]) -> dict[str, int]:
    """Dead letters per the code each first failed with, from their histories (oldest entry
    first, as the store appends them)."""
    return dict(Counter(history[0]["code"] for history in histories))


def finding_text(check: str, subject: str, expected, actual) -> str:
    """One reconciliation finding as `Books.findings` lists it."""
    return f"{check} {subject}: expected {expected}, actual {actual}"


def by_location(lots: Iterable[tuple[str, str, str, Decimal]]) -> dict[StockKey, Decimal]:
    """Stock quantities per (plant, item, location) from (plant, item, location, qty) per lot:
    the lots summed."""
    totals: dict[StockKey, Decimal] = {}
    for plant, item, location, qty in lots:
        key = (plant, item, location)
        totals[key] = totals.get(key, Decimal(0)) + qty
    return totals


def _lots(
    balances: dict[tuple[str, str, str, str], StockBalance],
) -> Iterator[tuple[str, str, str, Decimal]]:
    return ((plant, item, loc, b.qty) for (plant, item, loc, _lot), b in balances.items())


class InProcessTarget:
    """The real core in this process, on a store opened from a URL, with a virtual clock.

    Messages are committed in groups of `group` (`Core.transaction`): a run's ledger is its
    output, not a system of record, and a commit per message cost a six-day run about a quarter
    of its time in SQLite's commits. Outcomes are those of message-by-message commits."""

    def __init__(
        self, settings: CoreSettings, store_url: str, start: datetime, group: int = 1000
    ) -> None:
        self.clock = ManualClock(start)
        self.core = Core(settings, open_store(store_url), self.clock)
        self._group_size = group
        self._group = ExitStack()
        self._grouped = 0

    def submit(self, envelope: Envelope | ParsedPayload, at: datetime) -> Outcome:
        self.clock.set(at)
        self._join_group()
        return self.core.submit(envelope)

    def _join_group(self) -> None:
        """Before a write: commit the open group if it is full, and open one if none is."""
        if self._grouped >= self._group_size:
            self._commit_group()
        if self._grouped == 0:
            self._group.enter_context(self.core.transaction())
        self._grouped += 1

    def _commit_group(self) -> None:
        self._group.close()
        self._grouped = 0

    def expire(self, at: datetime) -> list[Outcome]:
        self.clock.set(at)
        return self.core.expire_holds()

    def stock(self) -> dict[StockKey, Decimal]:
        """The core's books, cheap to sample; `books()` reads the ledger itself."""
        return by_location(_lots(self.core.book_stock()))

    def replay(self, selection: DeadLetterFilter, at: datetime) -> list[Outcome]:
        self.clock.set(at)
        self._join_group()
        return self.core.replay(selection)

    def discard(self, selection: DeadLetterFilter, reason: str, at: datetime) -> int:
        self.clock.set(at)
        self._join_group()
        return len(self.core.discard(selection, reason))

    def heal(self, at: datetime) -> tuple[list[Outcome], list[Outcome]]:
        self.clock.set(at)
        return self.core.expire_holds(), replay_rounds(self.core.replay)

    def books(self) -> Books:
        reconciliation = self.core.reconcile()
        every = self.core.dead_letters(DeadLetterFilter(status=None))
        return Books(
            stock=by_location(_lots(self.core.stock())),
            open_dead_letters=[(dl.message_id, dl.code.value) for dl in self.core.dead_letters()],
            balanced=not any(f.check is Check.ENTRY_BALANCES for f in reconciliation.findings),
            reconciled=reconciliation.ok,
            entries=reconciliation.entries_checked,
            findings=[
                finding_text(f.check.value, f.subject, f.expected, f.actual)
                for f in reconciliation.findings
            ],
            negative_stock_events=self.core.store.stock_exception_count(),
            dead_letters_total=len(every),
            dead_letters_replayed=sum(letter.status == "replayed" for letter in every),
            dead_letters_by_first_code=first_codes(letter.history for letter in every),
        )

    def close(self) -> None:
        self._commit_group()
        self.core.close()


class NullTarget:
    """Accepts everything once (by message id per source, idempotency key per message type, as
    the core does) and books nothing: the twin alone, to split the twin's time from the core's
    in benchmarks."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def submit(self, envelope: Envelope, at: datetime) -> Outcome:
        keys = (
            f"id:{envelope.source_system}:{envelope.message_id}",
            f"key:{envelope.message.type}:{envelope.idempotency_key}",
        )
        if any(key in self._seen for key in keys):
            return Outcome(Status.DUPLICATE, envelope.message_id, envelope.message.type)
        self._seen.update(keys)
        return Outcome(Status.POSTED, envelope.message_id, envelope.message.type, committed_at=at)

    def expire(self, at: datetime) -> list[Outcome]:
        return []

    def stock(self) -> dict[StockKey, Decimal]:
        return {}

    def replay(self, selection: DeadLetterFilter, at: datetime) -> list[Outcome]:
        return []

    def discard(self, selection: DeadLetterFilter, reason: str, at: datetime) -> int:
        return 0

    def heal(self, at: datetime) -> tuple[list[Outcome], list[Outcome]]:
        return [], []

    def books(self) -> Books:
        return Books(stock={}, open_dead_letters=[], balanced=True, reconciled=True, entries=0)

    def close(self) -> None:
        pass
