"""Reconciliation maths: findings for each broken invariant, none for sound books."""

from __future__ import annotations

from integration import Check
from integration.ledger import Account
from integration.reconcile import reconcile
from tests.builders import D

RAW, WIP = Account.RAW_MATERIALS.value, Account.WIP.value


def check(**overrides):
    sound = dict(
        unbalanced=[],
        account_balances={("P1", RAW, "EUR"): D("100.00"), ("P1", WIP, "EUR"): D("30.00")},
        stock_value_by_account={("P1", RAW): D("100.00")},
        wip_by_work_order={"WO-1": D("30.00"), "WO-2": D(0)},
        open_order_wip={"WO-1": D("30.00")},
        closed_orders=["WO-2"],
        entries_checked=3,
    )
    return reconcile(**{**sound, **overrides})


def test_sound_books_have_no_findings():
    result = check()
    assert result.ok and result.entries_checked == 3


def test_an_unbalanced_entry_is_a_finding():
    result = check(unbalanced=[(7, "P1", "EUR", D("0.01"))])
    assert [(f.check, f.actual) for f in result.findings] == [(Check.ENTRY_BALANCES, D("0.01"))]


def test_inventory_that_differs_from_the_stock_sub_ledger_is_a_finding():
    result = check(stock_value_by_account={("P1", RAW): D("90.00")})
    assert [(f.check, f.expected, f.actual) for f in result.findings] == [
        (Check.INVENTORY_EQUALS_STOCK, D("90.00"), D("100.00"))
    ]


def test_wip_that_differs_from_the_open_orders_is_a_finding_per_order_and_in_total():
    result = check(open_order_wip={"WO-1": D("25.00")})
    assert [(f.check, f.subject) for f in result.findings] == [
        (Check.WIP_EQUALS_OPEN_ORDERS, "WIP"),
        (Check.WIP_EQUALS_OPEN_ORDERS, "WO-1"),
    ]


def test_a_closed_order_left_with_wip_is_a_finding():
    result = check(
        wip_by_work_order={"WO-1": D("30.00"), "WO-2": D("5.00")},
        account_balances={("P1", RAW, "EUR"): D("100.00"), ("P1", WIP, "EUR"): D("35.00")},
    )
    assert (Check.CLOSED_ORDER_HAS_NO_WIP, "WO-2") in [
        (f.check, f.subject) for f in result.findings
    ]
