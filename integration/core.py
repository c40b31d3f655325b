"""The core facade: `Core.submit(envelope) -> Outcome`, replay, and reconciliation reads."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from integration.clock import Clock
from integration.envelope import Payload
from integration.errors import ConfigurationError, ErrorCode, IntegrationError, NotFound
from integration.outcome import Outcome
from integration.pipeline import Pipeline
from integration.reconcile import Reconciliation, reconcile
from integration.records import outcome_of_record
from integration.settings import CoreSettings
from integration.store.base import (
    DeadLetter,
    DeadLetterFilter,
    LedgerStore,
    StockBalance,
    Story,
)
from integration.store.sqlite import SqliteStore
from integration.validation import Sender

__all__ = ["Core", "open_store"]


def open_store(url: str | Path = ":memory:") -> LedgerStore:
    """Open a ledger store from a URL: `:memory:`, `sqlite:///path/to/ledger.db`, a path, or
    `postgresql://user@host:5432/db` (also `postgres://`; `?schema=NAME` selects the schema,
    created if missing; needs the `postgres` extra)."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        from integration.store.postgres import PostgresStore, split_schema

        conninfo, schema = split_schema(text)
        return PostgresStore(conninfo, schema=schema)
    if text.startswith("sqlite:///"):
        return SqliteStore(text.removeprefix("sqlite:///") or ":memory:")
    if text.startswith("sqlite://"):
        return SqliteStore(text.removeprefix("sqlite://") or ":memory:")
    if "://" in text:
        raise ConfigurationError(f"unsupported store URL {text!r}")
    return SqliteStore(text)


class Core:
    """The integration core over one ledger store.

    >>> core = Core(settings, open_store(), ManualClock(start))   # doctest: +SKIP
    >>> core.submit(envelope).status                               # doctest: +SKIP
    <Status.POSTED: 'POSTED'>

    Reopening a store rebuilds the in-memory book state by re-applying its posted messages.
    """

    def __init__(self, settings: CoreSettings, store: LedgerStore, clock: Clock) -> None:
        self._pipeline = Pipeline(store, settings, clock)
        self.store = store
        self.settings = settings
        self._pipeline.open()

    # --- writes ----------------------------------------------------------------------------
    def submit(self, payload: Payload, sender: Sender | None = None) -> Outcome:
        """Apply one message exactly once, or say why not. Never raises for bad input: a
        payload that cannot be read is dead-lettered with its code, raw text kept. The payload
        is JSON text or bytes, a dict, an `Envelope`, or what `parse_payload` read from one.

        `sender`, from an authenticated channel, must be the envelope's source system."""
        return self._pipeline.submit(payload, sender)

    def submit_many(
        self,
        payloads: list[Payload],
        sender: Sender | Sequence[Sender | None] | None = None,
    ) -> list[Outcome]:
        """Submit a batch in one store transaction: an outcome per message, as `submit` gives
        (one message's rejection does not affect the others). Much faster on PostgreSQL.

        `sender` is one sender for every message, or a sequence of one per message: several
        channels' messages share the transaction, each authorised as its own sender."""
        if sender is None or isinstance(sender, Sender):
            senders = [sender] * len(payloads)
        else:
            senders = list(sender)
            if len(senders) != len(payloads):
                raise ValueError("submit_many needs one sender per payload")
        return self._pipeline.submit_many(payloads, senders)

    def transaction(self) -> AbstractContextManager[None]:
        """Run every call inside in one store transaction, committed when the block ends.

        For an embedded caller that submits message by message (the twin's in-process target):
        one commit for many messages is much cheaper, at the price that nothing inside is
        durable before the block ends. Outcomes inside are those `submit` would give; a
        failure that escapes rolls all of it back and the books are rebuilt from the store. A
        block inside another is part of it.

        >>> with core.transaction():                                  # doctest: +SKIP
        ...     outcomes = [core.submit(envelope) for envelope in envelopes]
        """
        return self._pipeline.transaction()

    def replay(self, selection: DeadLetterFilter | None = None) -> list[Outcome]:
        """Re-run the selected open dead letters (all open ones by default), oldest first."""
        chosen = self.store.dead_letters(selection or DeadLetterFilter())
        outcomes = (self._pipeline.replay(dead_letter.id) for dead_letter in chosen)
        return [outcome for outcome in outcomes if outcome is not None]

    def discard(self, selection: DeadLetterFilter, reason: str) -> list[DeadLetter]:
        """Close the selected open dead letters without replaying them (a message superseded
        by a corrected one, say): each becomes `discarded`, its history saying when (by the
        core's clock) and `reason`. Returns them as closed. Raises `IntegrationError`
        (SCHEMA_INVALID) for a blank reason: a discard must say why."""
        if not reason.strip():
            raise IntegrationError("a discard needs a reason", code=ErrorCode.SCHEMA_INVALID)
        chosen = [letter.id for letter in self.store.dead_letters(selection)]
        closed = self._pipeline.discard(chosen, reason.strip())
        if not closed:
            return []
        return self.store.dead_letters(DeadLetterFilter(ids=tuple(closed), status=None))

    def expire_holds(self, older_than: timedelta | None = None) -> list[Outcome]:
        """Dead-letter held messages past their hold timeout (also done on every submit) or,
        given `older_than`, every message held at least that long by the core's clock
        (`timedelta(0)`: everything still held)."""
        return self._pipeline.expire_holds(older_than)

    # --- reads -----------------------------------------------------------------------------
    # Reads of the in-memory books catch up with other writers' commits first (`caught_up`),
    # so that they agree with the store.
    @property
    def held_count(self) -> int:
        with self._pipeline.caught_up():
            return len(self._pipeline.holds)

    def outcome(self, message_id: str, source: str | None = None) -> Outcome:
        """The recorded outcome of the message `source` sent with this id (a message id is
        unique per source system); without `source`, of the first received with it."""
        record = self.store.inbox_record(message_id, None if source is None else str(source))
        if record is None:
            raise NotFound(f"no message {message_id}" + (f" from {source}" if source else ""))
        return outcome_of_record(record)

    def dead_letters(self, selection: DeadLetterFilter | None = None) -> list[DeadLetter]:
        return self.store.dead_letters(selection or DeadLetterFilter())

    def story(self, correlation_id: str) -> Story:
        """What the ledger holds under one correlation id: its messages, their entries, and
        its dead letters with their histories (failures and replays)."""
        messages = tuple(self.store.correlated(correlation_id))
        entries = self.store.entry_summaries(message.inbox_id for message in messages)
        letters = self.store.dead_letters(
            DeadLetterFilter(status=None, correlation_id=correlation_id)
        )
        return Story(correlation_id, messages, tuple(entries), tuple(letters))

    def account_balances(self) -> dict[tuple[str, str, str], Decimal]:
        """GL balance per (plant, account, currency); debit positive."""
        return self.store.account_balances()

    def stock(self) -> dict[tuple[str, str, str, str], StockBalance]:
        """The valued stock sub-ledger per (plant, item, location, lot), read from the ledger."""
        return self.store.stock_balances()

    def book_stock(self) -> dict[tuple[str, str, str, str], StockBalance]:
        """The same sub-ledger as the in-memory books hold it, which the rules post against.
        Equal to `stock()`, but read without scanning the ledger: cheap enough to sample often
        however long the ledger grows."""
        with self._pipeline.caught_up():
            state = self._pipeline.state
            return {
                key: StockBalance(qty, state.stock_value[key])
                for key, qty in sorted(state.stock.items())
            }

    def work_order_wip(self) -> dict[str, Decimal]:
        """WIP per work order from the ledger."""
        return self.store.wip_by_work_order()

    def work_order_status(self, work_order: str) -> dict[str, Any]:
        """A work order as the books see it: quantities done, WIP, open or closed."""
        with self._pipeline.caught_up():
            order = self._pipeline.state.order(work_order)
            if order is None:
                raise NotFound(f"no work order {work_order}")
            return {
                "work_order": order.id,
                "plant": order.plant,
                "item": order.item,
                "qty": order.qty,
                "closed": order.closed,
                "wip": order.wip,
                "received": order.received,
                "good_by_operation": dict(sorted(dict(order.good_by_op).items())),
                "scrap_by_operation": dict(sorted(dict(order.scrap_by_op).items())),
            }

    def reconcile(self) -> Reconciliation:
        """Check every ledger invariant; returns findings rather than raising. Reads the
        books and the ledger under the writer lock, so another writer's step never falls
        between them."""
        with self._pipeline.caught_up():
            state = self._pipeline.state
            return reconcile(
                unbalanced=self.store.unbalanced_entries(),
                account_balances=self.store.account_balances(),
                stock_value_by_account=self.store.stock_value_by_account(),
                wip_by_work_order=self.store.wip_by_work_order(nonzero=True),
                open_order_wip={o.id: o.wip for o in state.work_orders.values()},
                closed_orders=state.closed_orders.keys(),
                entries_checked=self.store.entry_count(),
            )

    def close(self) -> None:
        self.store.close()
