"""Reconciliation and ledger invariants as pure functions over ledger aggregates.

They return findings rather than raising (beancount's balance checks): a harness samples them
in flight, where differences are expected, and asserts on them after the books settle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from integration.ledger import INVENTORY_ACCOUNTS, Account
from integration.money import ZERO

__all__ = ["Check", "Finding", "Reconciliation", "reconcile"]


class Check(StrEnum):
    ENTRY_BALANCES = "ENTRY_BALANCES"
    INVENTORY_EQUALS_STOCK = "INVENTORY_EQUALS_STOCK"
    WIP_EQUALS_OPEN_ORDERS = "WIP_EQUALS_OPEN_ORDERS"
    CLOSED_ORDER_HAS_NO_WIP = "CLOSED_ORDER_HAS_NO_WIP"


@dataclass(frozen=True, slots=True)
class Finding:
    """One invariant that does not hold: which check, about what, and the two sides."""

    check: Check
    subject: str
    expected: Decimal
    actual: Decimal


@dataclass(frozen=True, slots=True)
class Reconciliation:
    findings: tuple[Finding, ...]
    entries_checked: int

    @property
    def ok(self) -> bool:
        return not self.findings


def reconcile(
    *,
    unbalanced: Iterable[tuple[int, str, str, Decimal]],
    account_balances: Mapping[tuple[str, str, str], Decimal],
    stock_value_by_account: Mapping[tuple[str, str], Decimal],
    wip_by_work_order: Mapping[str, Decimal],
    open_order_wip: Mapping[str, Decimal],
    closed_orders: Container[str],
    entries_checked: int,
) -> Reconciliation:
    """Check the ledger: every entry balances; each inventory account equals the valued stock
    sub-ledger of that account; the WIP account equals the sum of open orders' WIP as the work
    orders themselves carry it (`open_order_wip`), order by order; closed orders carry no WIP."""
    findings = [
        Finding(Check.ENTRY_BALANCES, f"entry {entry_id} {plant} {currency}", ZERO, total)
        for entry_id, plant, currency, total in unbalanced
    ]
    findings += _inventory_findings(account_balances, stock_value_by_account)
    findings += _wip_findings(account_balances, wip_by_work_order, open_order_wip, closed_orders)
    return Reconciliation(tuple(findings), entries_checked)


def _inventory_findings(account_balances, stock_value_by_account) -> list[Finding]:
    book: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    for (plant, account, _currency), balance in account_balances.items():
        if account in INVENTORY_ACCOUNTS:
            book[(plant, account)] += balance
    keys = sorted(set(book) | set(stock_value_by_account))
    return [
        Finding(
            Check.INVENTORY_EQUALS_STOCK,
            f"{plant} {account}",
            stock_value_by_account.get((plant, account), ZERO),
            book.get((plant, account), ZERO),
        )
        for plant, account in keys
        if book.get((plant, account), ZERO) != stock_value_by_account.get((plant, account), ZERO)
    ]


def _wip_findings(account_balances, wip_by_work_order, open_order_wip, closed) -> list[Finding]:
    gl_wip = sum(
        (
            balance
            for (_p, account, _c), balance in account_balances.items()
            if account == Account.WIP
        ),
        ZERO,
    )
    open_total = sum(open_order_wip.values(), ZERO)
    findings = []
    if gl_wip != open_total:
        findings.append(Finding(Check.WIP_EQUALS_OPEN_ORDERS, "WIP", open_total, gl_wip))
    for order in sorted(set(wip_by_work_order) | set(open_order_wip), key=str):
        ledger = wip_by_work_order.get(order, ZERO)
        if order in closed:
            if ledger != ZERO:
                findings.append(Finding(Check.CLOSED_ORDER_HAS_NO_WIP, str(order), ZERO, ledger))
        elif ledger != open_order_wip.get(order, ZERO):
            findings.append(
                Finding(
                    Check.WIP_EQUALS_OPEN_ORDERS,
                    str(order),
                    open_order_wip.get(order, ZERO),
                    ledger,
                )
            )
    return findings
