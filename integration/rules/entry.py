"""Building blocks of the posting rules: the decision a rule returns and an entry builder."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from integration.errors import ErrorCode, Problem
from integration.ledger import Account, JournalLine, Posting, StockException, StockMove
from integration.money import ZERO, amount, quantity
from integration.settings import NegativeStockPolicy
from integration.state import BookState

__all__ = ["Decision", "EntryBuilder", "NO_CHANGE"]


def NO_CHANGE(state: BookState) -> None:  # noqa: N802 - a constant-like callable
    """The state change of a message that changes nothing but the ledger."""


class Decision(NamedTuple):
    """What a rule decided: one journal entry per plant whose books move, and the state change
    to apply once those entries have committed. `plant` names the plant the message concerns.

    `period_end` (a period close only) is when the closed period ends in the plant's time zone:
    the pipeline refuses the close (PERIOD_NOT_ENDED) if the message occurred before it or the
    core's clock has not reached it. It is checked on submission, not when the books are
    rebuilt from a ledger, which only re-applies what was posted."""

    plant: str | None
    entries: tuple[tuple[str, Posting], ...] = ()
    change: Callable[[BookState], None] = NO_CHANGE
    period_end: datetime | None = None

    def apply_to(self, state: BookState) -> None:
        """Move `state` by this decision; call only once its entries have committed."""
        for _plant, posting in self.entries:  # first: a close moves its order out of the open
            state.apply_posting(posting)
        self.change(state)

    @classmethod
    def of(cls, builder: EntryBuilder, change: Callable[[BookState], None] = NO_CHANGE) -> Decision:
        posting = builder.build()
        entries = () if posting.is_empty else ((builder.plant, posting),)
        return cls(builder.plant, entries, change)


class EntryBuilder:
    """Accumulates the lines and stock moves of one entry for one plant, rounding each amount
    to the plant currency; `balance_to` closes the entry onto a variance account."""

    def __init__(self, state: BookState, plant: str) -> None:
        self.state = state
        self.plant = plant
        self.currency = state.currency(plant)
        self._lines: list[JournalLine] = []
        self._moves: list[StockMove] = []
        self._exceptions: list[StockException] = []
        self._pending_stock: dict[tuple[str, str, str, str], Decimal] = {}

    def value(self, item: str, qty: Decimal) -> Decimal:
        """`qty` of `item` at the plant's standard cost, rounded to the currency."""
        return amount(qty * self.state.standard_cost(item, self.plant), self.currency)

    def line(
        self,
        account: Account,
        value: Decimal,
        *,
        work_order: str | None = None,
        item: str | None = None,
    ) -> None:
        """Add a signed line (debit positive); zero lines are dropped."""
        self._add_line(account, amount(value, self.currency), work_order, item)

    def _add_line(self, account: Account, value: Decimal, work_order, item) -> None:
        """`line` of a value already rounded to the currency."""
        if value:
            self._lines.append(
                JournalLine(self.plant, account, self.currency, value, work_order, item)
            )

    def balance_to(self, account: Account, *, work_order: str | None = None) -> None:
        """Add the line on `account` that makes the entry sum to zero."""
        self.line(account, -sum((ln.amount for ln in self._lines), ZERO), work_order=work_order)

    def move(
        self, item: str, location: str, lot: str, qty: Decimal, value: Decimal, account: Account
    ) -> Decimal:
        """Move stock and its value, with the matching line on the inventory account; returns
        the stock of that key after the move."""
        qty = quantity(qty)
        value = amount(value, self.currency)
        key = (self.plant, item, location, lot)
        pending = self._pending_stock
        after = pending[key] = pending.get(key, self.state.stock.get(key, ZERO)) + qty
        self._moves.append(StockMove(self.plant, item, location, lot, qty, value, account))
        self._add_line(account, value, None, item)
        return after

    def consume(
        self,
        item: str,
        location: str,
        lot: str,
        qty: Decimal,
        account: Account,
        problems: list[Problem] | None = None,
        field_name: str = "",
    ) -> Decimal:
        """Take `qty` out of stock at standard cost and return the (positive) value consumed.

        Stock may go negative; it is then recorded as an exception, unless `problems` is given
        (a backflush) and the policy is `block`, which adds a BACKFLUSH_SHORTAGE problem."""
        value = self.value(item, qty)
        after = self.move(item, location, lot, -qty, -value, account)
        if after < ZERO:
            blocking = self.state.settings.negative_stock is NegativeStockPolicy.BLOCK
            if problems is not None and blocking:
                problems.append(
                    Problem(
                        ErrorCode.BACKFLUSH_SHORTAGE,
                        f"{item} at {location} lot {lot or '-'} would go to {after}",
                        field_name,
                    )
                )
            else:
                self._exceptions.append(StockException(self.plant, item, location, lot, after))
        return value

    def available(self, item: str, location: str, lot: str) -> Decimal:
        key = (self.plant, item, location, lot)
        return self._pending_stock.get(key, self.state.stock.get(key, ZERO))

    def build(self) -> Posting:
        return Posting(tuple(self._lines), tuple(self._moves), tuple(self._exceptions))
