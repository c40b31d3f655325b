"""Value types of the double-entry ledger: accounts, journal lines, stock moves, postings.

Amounts are signed like beancount's: a debit is positive, a credit negative, so an entry
balances when its amounts sum to zero for each plant and currency.

The value types are named tuples: immutable like frozen dataclasses, but made by one tuple
allocation rather than an `object.__setattr__` per field, and every message makes several.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from integration.master import ItemType, LocationKind
from integration.money import LEDGER_LIMIT, ZERO

__all__ = [
    "Account",
    "INVENTORY_ACCOUNTS",
    "inventory_account",
    "JournalLine",
    "StockMove",
    "StockException",
    "Posting",
    "imbalances",
    "out_of_range",
]


class Account(StrEnum):
    RAW_MATERIALS = "1300-raw-materials"
    SEMI_FINISHED = "1310-semi-finished"
    FINISHED_GOODS = "1320-finished-goods"
    BYPRODUCT_INVENTORY = "1330-byproduct-inventory"
    AT_SUBCONTRACTOR = "1340-inventory-at-subcontractor"
    WIP = "1400-work-in-progress"
    GRNI = "2100-goods-received-not-invoiced"
    LABOUR_ABSORBED = "5100-labour-absorbed"
    OVERHEAD_ABSORBED = "5110-overhead-absorbed"
    PURCHASE_PRICE_VARIANCE = "5200-purchase-price-variance"
    PRODUCTION_VARIANCE = "5210-production-variance"
    SUBCONTRACT_VARIANCE = "5220-subcontract-variance"
    REVISION_VARIANCE = "5230-revision-variance"
    SCRAP_EXPENSE = "5300-scrap-expense"
    INVENTORY_ADJUSTMENT = "5310-inventory-adjustment"


INVENTORY_ACCOUNTS: tuple[Account, ...] = (
    Account.RAW_MATERIALS,
    Account.SEMI_FINISHED,
    Account.FINISHED_GOODS,
    Account.BYPRODUCT_INVENTORY,
    Account.AT_SUBCONTRACTOR,
)

_BY_TYPE = {
    ItemType.RAW: Account.RAW_MATERIALS,
    ItemType.SEMI: Account.SEMI_FINISHED,
    ItemType.FINISHED: Account.FINISHED_GOODS,
    ItemType.BYPRODUCT: Account.BYPRODUCT_INVENTORY,
    ItemType.PHANTOM: Account.SEMI_FINISHED,
}


def inventory_account(item_type: ItemType, location_kind: LocationKind) -> Account:
    """The balance-sheet account that values stock of this item type at this kind of location."""
    if location_kind is LocationKind.SUBCONTRACTOR:
        return Account.AT_SUBCONTRACTOR
    return _BY_TYPE[item_type]


class JournalLine(NamedTuple):
    plant: str
    account: Account
    currency: str
    amount: Decimal
    work_order: str | None = None
    item: str | None = None


class StockMove(NamedTuple):
    """A change to one key of the stock sub-ledger; `value` is what its account moved by."""

    plant: str
    item: str
    location: str
    lot: str
    qty: Decimal
    value: Decimal
    account: Account

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.plant, self.item, self.location, self.lot)


class StockException(NamedTuple):
    """Stock went negative under the `allow` policy: posted, and recorded for follow-up."""

    plant: str
    item: str
    location: str
    lot: str
    qty_after: Decimal


class Posting(NamedTuple):
    """What a message does to the books: journal lines, stock moves and exceptions."""

    lines: tuple[JournalLine, ...] = ()
    moves: tuple[StockMove, ...] = ()
    exceptions: tuple[StockException, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.lines and not self.moves


def imbalances(
    lines: tuple[JournalLine, ...] | list[JournalLine],
) -> dict[tuple[str, str], Decimal]:
    """Per (plant, currency), the non-zero sums of an entry's lines; empty when it balances."""
    if not lines:
        return {}
    plant, currency = lines[0].plant, lines[0].currency
    total = ZERO
    for line in lines:
        if line.plant != plant or line.currency != currency:
            return _grouped_imbalances(lines)
        total += line.amount
    return {(plant, currency): total} if total else {}


def _grouped_imbalances(lines) -> dict[tuple[str, str], Decimal]:
    """`imbalances` of lines in several plants or currencies."""
    totals: dict[tuple[str, str], Decimal] = {}
    for line in lines:
        key = (line.plant, line.currency)
        totals[key] = totals.get(key, ZERO) + line.amount
    return {key: total for key, total in sorted(totals.items()) if total}


def out_of_range(posting: Posting) -> list[str]:
    """What in a posting is beyond the ledger's range (`LEDGER_LIMIT`), described."""
    low, high = -LEDGER_LIMIT, LEDGER_LIMIT
    too_large = [
        f"{ln.account} {ln.amount}" for ln in posting.lines if not low <= ln.amount <= high
    ]
    too_large += [
        f"{mv.item} qty {mv.qty}"
        for mv in posting.moves
        if not (low <= mv.qty <= high and low <= mv.value <= high)
    ]
    return too_large
