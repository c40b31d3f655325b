"""Each posting rule of the README's table, with journal lines and stock moves worked out by hand.

Standard costs (plant P1, EUR): RAW-A 2.00, RAW-B 5.00/KG, RAW-B2 5.50/KG, RAW-C 0.50,
RAW-L 1.25, FG-1 40.00, BY-1 0.10, SEMI-S 20.00. Routing of FG-1: op 10 (0.1 h/unit, labour
30, overhead 20, backflush point), op 20 (0.2 h/unit, labour 30, overhead 40, backflush point).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from integration import (
    Account,
    BomLine,
    BomReleased,
    BomRevision,
    ByProductReported,
    EcoReleased,
    ErrorCode,
    FinishedGoodsReceived,
    GoodsReceived,
    InventoryTransferred,
    Item,
    ItemCreated,
    ItemType,
    MaterialIssued,
    MessageRejected,
    NegativeStockPolicy,
    Operation,
    OperationCompleted,
    QualityHold,
    Routing,
    ScrapDeclared,
    SubcontractReceived,
    SubcontractShipped,
    WorkOrderClosed,
    WorkOrderReleased,
)
from integration.ledger import imbalances
from integration.rules import decide
from tests.builders import (
    FG_BOM,
    FG_ROUTING,
    START,
    D,
    Envelopes,
    adjustment,
    book_state,
    master_data,
    release,
)

A = Account
E = ErrorCode


def receipt(env, item, qty, location="LINE", price="0", lot=None):
    return env(
        GoodsReceived(
            plant="P1",
            item=item,
            qty=D(qty),
            uom="KG" if "RAW-B" in item else "EA",
            location=location,
            lot=lot,
            purchase_order="PO-1",
            supplier="SUP-1",
            unit_price=D(price),
        )
    )


@pytest.fixture
def env():
    return Envelopes()


@pytest.fixture
def state(env):
    """Master data, WO-1 for 10 FG-1 released, and stock on the line."""
    return book_state(
        [
            *master_data(env),
            release(env),
            receipt(env, "RAW-A", "100"),
            receipt(env, "RAW-L", "50", lot="L1"),
            receipt(env, "RAW-B", "1"),
            receipt(env, "RAW-B2", "10"),
            receipt(env, "RAW-C", "100"),
        ]
    )


def lines_of(decision):
    ((plant, posting),) = decision.entries
    assert plant == "P1" and not imbalances(posting.lines)
    return Counter((ln.account, ln.amount, ln.work_order) for ln in posting.lines)


def moves_of(decision):
    ((_plant, posting),) = decision.entries
    return Counter((m.item, m.location, m.lot, m.qty, m.value, m.account) for m in posting.moves)


def post(state, envelope):
    decision = decide(state, envelope)
    decision.apply_to(state)
    return decision


def complete(env, op, good, scrap="0", labour="0", machine="0", lots=None, **kw):
    return env(
        OperationCompleted(
            work_order="WO-1",
            operation_seq=op,
            good_qty=D(good),
            scrap_qty=D(scrap),
            uom="EA",
            labour_hours=D(labour),
            machine_hours=D(machine),
            backflush_location="LINE",
            component_lots=lots if lots is not None else {"RAW-L": "L1"},
            **kw,
        )
    )


def test_goods_received_books_stock_at_standard_and_price_variance(env):
    state = book_state(master_data(env))
    decision = decide(state, receipt(env, "RAW-A", "100", "STORES", price="2.10"))
    assert lines_of(decision) == Counter(
        {
            (A.RAW_MATERIALS, D("200.00"), None): 1,
            (A.GRNI, D("-210.00"), None): 1,
            (A.PURCHASE_PRICE_VARIANCE, D("10.00"), None): 1,
        }
    )
    assert moves_of(decision) == Counter(
        {("RAW-A", "STORES", "", D(100), D("200.00"), A.RAW_MATERIALS): 1}
    )


def test_material_issued_moves_raw_materials_into_wip_in_base_uom(state, env):
    decision = post(
        state,
        env(
            MaterialIssued(
                work_order="WO-1", component="RAW-B", qty=D(500), uom="G", location="LINE"
            )
        ),
    )
    assert lines_of(decision) == Counter(
        {(A.RAW_MATERIALS, D("-2.50"), None): 1, (A.WIP, D("2.50"), "WO-1"): 1}
    )
    assert moves_of(decision) == Counter(
        {("RAW-B", "LINE", "", D("-0.5"), D("-2.50"), A.RAW_MATERIALS): 1}
    )
    assert state.work_orders["WO-1"].consumed == {"RAW-B": D("0.5")}


def test_completion_backflushes_absorbs_labour_and_scraps_at_cost_to_operation(state, env):
    decision = post(state, complete(env, 10, "4", scrap="1", labour="0.5", machine="0.4"))
    # Backflush of (4 + 1) units at op 10: RAW-A 2 each = 10 (20.00), RAW-L 1 each = 5 (6.25).
    # Scrap: 1 unit at the standard accumulated to op 10: 4.00 + 1.25 + 0.1 h × 50 = 10.25.
    assert lines_of(decision) == Counter(
        {
            (A.WIP, D("15.00"), "WO-1"): 1,
            (A.LABOUR_ABSORBED, D("-15.00"), None): 1,
            (A.WIP, D("8.00"), "WO-1"): 1,
            (A.OVERHEAD_ABSORBED, D("-8.00"), None): 1,
            (A.RAW_MATERIALS, D("-20.00"), None): 1,
            (A.RAW_MATERIALS, D("-6.25"), None): 1,
            (A.WIP, D("26.25"), "WO-1"): 1,
            (A.SCRAP_EXPENSE, D("10.25"), None): 1,
            (A.WIP, D("-10.25"), "WO-1"): 1,
        }
    )
    assert moves_of(decision) == Counter(
        {
            ("RAW-A", "LINE", "", D(-10), D("-20.00"), A.RAW_MATERIALS): 1,
            ("RAW-L", "LINE", "L1", D(-5), D("-6.25"), A.RAW_MATERIALS): 1,
        }
    )
    assert state.work_orders["WO-1"].wip == D("39.00")


def test_partial_completions_accumulate_until_the_tolerance(state, env):
    post(state, complete(env, 10, "4"))
    post(state, complete(env, 10, "6", partial=True))
    assert state.work_orders["WO-1"].good_by_op[10] == D(10)
    post(state, complete(env, 10, "0.5", partial=True))  # 10.5 is within 5 %
    with pytest.raises(MessageRejected) as rejected:
        decide(state, complete(env, 10, "0.01", partial=True))
    assert rejected.value.code is ErrorCode.OVER_COMPLETION


def test_backflush_explodes_the_phantom_and_takes_the_alternate_when_short(state, env):
    decision = post(state, complete(env, 20, "4"))
    # RAW-B needs 0.5 × 4 × 1.1 = 2.2 KG but only 1 KG is on hand: RAW-B2 (priority 1) is used.
    # PH-1 is a phantom: its 2 RAW-C per unit are consumed directly, 8 × 0.50 = 4.00.
    assert moves_of(decision) == Counter(
        {
            ("RAW-B2", "LINE", "", D("-2.2"), D("-12.10"), A.RAW_MATERIALS): 1,
            ("RAW-C", "LINE", "", D(-8), D("-4.00"), A.RAW_MATERIALS): 1,
        }
    )
    assert lines_of(decision) == Counter(
        {
            (A.RAW_MATERIALS, D("-12.10"), None): 1,
            (A.RAW_MATERIALS, D("-4.00"), None): 1,
            (A.WIP, D("16.10"), "WO-1"): 1,
        }
    )
    assert state.work_orders["WO-1"].consumed == {"RAW-B2": D("2.2"), "RAW-C": D(8)}


def test_backflush_shortage_records_an_exception_under_allow(env):
    state = book_state([*master_data(env), release(env)])
    decision = decide(state, complete(env, 10, "1"))
    ((_plant, posting),) = decision.entries
    assert {(e.item, e.qty_after) for e in posting.exceptions} == {
        ("RAW-A", D(-2)),
        ("RAW-L", D(-1)),
    }


def test_backflush_shortage_is_rejected_under_block(env):
    state = book_state([*master_data(env), release(env)], negative_stock=NegativeStockPolicy.BLOCK)
    with pytest.raises(MessageRejected) as rejected:
        decide(state, complete(env, 10, "1"))
    assert [p.code for p in rejected.value.problems] == [ErrorCode.BACKFLUSH_SHORTAGE] * 2


def test_scrap_declared_at_a_later_operation_carries_more_standard_cost(state, env):
    decision = post(
        state, env(ScrapDeclared(work_order="WO-1", operation_seq=20, qty=D(1), uom="EA"))
    )
    # To op 20: 10.25 (op 10) + RAW-B 0.5 × 1.1 × 5 = 2.75 + RAW-C 2 × 0.5 = 1.00 + 0.2 h × 70 = 14.
    assert lines_of(decision) == Counter(
        {(A.SCRAP_EXPENSE, D("28.00"), None): 1, (A.WIP, D("-28.00"), "WO-1"): 1}
    )
    assert state.work_orders["WO-1"].scrap_by_op == {20: D(1)}


def test_by_product_is_stocked_at_standard_out_of_wip(state, env):
    decision = post(
        state,
        env(
            ByProductReported(work_order="WO-1", item="BY-1", qty=D(3), uom="EA", location="STORES")
        ),
    )
    assert lines_of(decision) == Counter(
        {(A.BYPRODUCT_INVENTORY, D("0.30"), None): 1, (A.WIP, D("-0.30"), "WO-1"): 1}
    )
    assert moves_of(decision) == Counter(
        {("BY-1", "STORES", "", D(3), D("0.30"), A.BYPRODUCT_INVENTORY): 1}
    )


def test_finished_goods_receipt_is_partial_and_bounded(state, env):
    decision = post(
        state, env(FinishedGoodsReceived(work_order="WO-1", qty=D(4), uom="EA", location="FG"))
    )
    assert lines_of(decision) == Counter(
        {(A.FINISHED_GOODS, D("160.00"), None): 1, (A.WIP, D("-160.00"), "WO-1"): 1}
    )
    post(state, env(FinishedGoodsReceived(work_order="WO-1", qty=D(6), uom="EA", location="FG")))
    assert state.work_orders["WO-1"].received == D(10)
    with pytest.raises(MessageRejected) as rejected:
        decide(
            state, env(FinishedGoodsReceived(work_order="WO-1", qty=D(1), uom="EA", location="FG"))
        )
    assert rejected.value.code is ErrorCode.OVER_COMPLETION


def test_close_moves_residual_wip_to_production_variance(state, env):
    post(state, complete(env, 10, "2", labour="1"))
    post(state, env(FinishedGoodsReceived(work_order="WO-1", qty=D(2), uom="EA", location="FG")))
    # WIP: labour 30.00 + RAW-A 8.00 + RAW-L 2.50 - FG 80.00 = -39.50 (favourable residual).
    assert state.work_orders["WO-1"].wip == D("-39.50")
    decision = post(state, env(WorkOrderClosed(work_order="WO-1")))
    assert lines_of(decision) == Counter(
        {(A.WIP, D("39.50"), "WO-1"): 1, (A.PRODUCTION_VARIANCE, D("-39.50"), None): 1}
    )
    assert "WO-1" not in state.work_orders
    closed = state.closed_orders["WO-1"]
    assert closed.closed and closed.wip == 0 and closed.received == D(2)


def test_subcontract_shipment_moves_stock_to_the_subcontractor(state, env):
    decision = post(
        state,
        env(
            SubcontractShipped(
                plant="P1",
                item="RAW-A",
                qty=D(8),
                uom="EA",
                from_location="LINE",
                to_location="SUB",
                purchase_order="PO-S",
                supplier="SUBCO",
            )
        ),
    )
    assert lines_of(decision) == Counter(
        {(A.RAW_MATERIALS, D("-16.00"), None): 1, (A.AT_SUBCONTRACTOR, D("16.00"), None): 1}
    )
    assert moves_of(decision) == Counter(
        {
            ("RAW-A", "LINE", "", D(-8), D("-16.00"), A.RAW_MATERIALS): 1,
            ("RAW-A", "SUB", "", D(8), D("16.00"), A.AT_SUBCONTRACTOR): 1,
        }
    )


def test_subcontract_receipt_uses_the_plant_overlay_and_books_variance(state, env):
    post(
        state,
        env(
            SubcontractShipped(
                plant="P1",
                item="RAW-A",
                qty=D(8),
                uom="EA",
                from_location="LINE",
                to_location="SUB",
                purchase_order="PO-S",
                supplier="SUBCO",
            )
        ),
    )
    decision = post(
        state,
        env(
            SubcontractReceived(
                plant="P1",
                item="SEMI-S",
                qty=D(2),
                uom="EA",
                location="STORES",
                subcontractor_location="SUB",
                purchase_order="PO-S",
                supplier="SUBCO",
                service_unit_price=D(3),
            )
        ),
    )
    # P1's overlay sets RAW-A to 4 per unit (template: 3): 8 RAW-A leave the subcontractor.
    # SEMI-S 2 × 20 = 40.00 in; components 16.00 and service 6.00 out; variance -18.00.
    assert lines_of(decision) == Counter(
        {
            (A.SEMI_FINISHED, D("40.00"), None): 1,
            (A.AT_SUBCONTRACTOR, D("-16.00"), None): 1,
            (A.GRNI, D("-6.00"), None): 1,
            (A.SUBCONTRACT_VARIANCE, D("-18.00"), None): 1,
        }
    )
    assert state.stock[("P1", "RAW-A", "SUB", "")] == 0


def test_transfer_between_locations_of_one_account_nets_to_zero(state, env):
    decision = post(
        state,
        env(
            InventoryTransferred(
                plant="P1",
                item="RAW-A",
                qty=D(5),
                uom="EA",
                from_location="LINE",
                to_location="STORES",
            )
        ),
    )
    assert lines_of(decision) == Counter(
        {(A.RAW_MATERIALS, D("-10.00"), None): 1, (A.RAW_MATERIALS, D("10.00"), None): 1}
    )
    assert state.stock[("P1", "RAW-A", "STORES", "")] == D(5)


@pytest.mark.parametrize(
    "fields, account, qty, value",
    [
        # A count finds 4 more of lot L1: 4 × 1.25.
        (dict(item="RAW-L", lot="L1", qty="4"), A.RAW_MATERIALS, "4", "5.00"),
        # Stock found, counted in grams: 250 G = 0.25 KG × 5.00.
        (dict(item="RAW-B", qty="250", uom="G", reason="found"), A.RAW_MATERIALS, "0.25", "1.25"),
        # Damage writes 3 off: 3 × 2.00 out of stock, into the adjustment account.
        (dict(qty="-3", reason="damage"), A.RAW_MATERIALS, "-3", "-6.00"),
        # A count short by 0.1 of lot L1: 0.125 to the cent, half to even, is 0.12.
        (dict(item="RAW-L", lot="L1", qty="-0.1"), A.RAW_MATERIALS, "-0.1", "-0.12"),
        # Finished goods found at FG: the item type picks the account, 40.00.
        (dict(item="FG-1", location="FG", qty="1", reason="found"), A.FINISHED_GOODS, "1", "40.00"),
        # A correction at the subcontractor: the location's kind picks the account, 2 × 2.00.
        (dict(location="SUB", qty="2", reason="correction"), A.AT_SUBCONTRACTOR, "2", "4.00"),
    ],
    ids=["count-gain", "found-in-grams", "damage", "count-rounded", "finished", "subcontractor"],
)
def test_stock_adjustment_moves_the_change_at_standard_against_inventory_adjustment(
    state, env, fields, account, qty, value
):
    message = adjustment(**{"location": "LINE", **fields})
    key = ("P1", message.item, message.location, message.lot or "")
    before = state.stock[key]
    decision = post(state, env(message))
    assert lines_of(decision) == Counter(
        {(account, D(value), None): 1, (A.INVENTORY_ADJUSTMENT, -D(value), None): 1}
    )
    assert moves_of(decision) == Counter({(*key[1:], D(qty), D(value), account): 1})
    ((_plant, posting),) = decision.entries
    assert posting.exceptions == ()
    assert state.stock[key] == before + D(qty)


@pytest.mark.parametrize("policy", list(NegativeStockPolicy))
def test_a_write_off_beyond_the_book_posts_with_a_stock_exception_under_either_policy(env, policy):
    # The count's change was taken against the warehouse's books: a receipt still in flight
    # to the core makes it good later, so it posts like any reported consumption.
    state = book_state(
        [*master_data(env), receipt(env, "RAW-A", "2", "STORES")], negative_stock=policy
    )
    decision = post(state, env(adjustment("-5")))
    assert lines_of(decision) == Counter(
        {(A.RAW_MATERIALS, D("-10.00"), None): 1, (A.INVENTORY_ADJUSTMENT, D("10.00"), None): 1}
    )
    ((_plant, posting),) = decision.entries
    assert [(e.item, e.location, e.qty_after) for e in posting.exceptions] == [
        ("RAW-A", "STORES", D(-3))
    ]
    assert state.stock[("P1", "RAW-A", "STORES", "")] == D(-3)


def test_a_lot_on_quality_hold_can_be_written_off(state, env):
    post(state, env(QualityHold(plant="P1", item="RAW-L", lot="L1")))
    with pytest.raises(MessageRejected) as rejected:
        decide(
            state,
            env(
                MaterialIssued(
                    work_order="WO-1",
                    component="RAW-L",
                    qty=D(1),
                    uom="EA",
                    location="LINE",
                    lot="L1",
                )
            ),
        )
    assert rejected.value.code is ErrorCode.LOT_ON_HOLD
    decision = post(state, env(adjustment("-50", item="RAW-L", location="LINE", lot="L1")))
    assert lines_of(decision)[(A.INVENTORY_ADJUSTMENT, D("62.50"), None)] == 1
    assert state.stock[("P1", "RAW-L", "LINE", "L1")] == 0


@pytest.mark.parametrize(
    "fields, codes",
    [
        (dict(plant="P9"), [E.UNKNOWN_PLANT]),
        (dict(item="RAW-GHOST"), [E.UNKNOWN_ITEM]),
        (dict(plant="P2"), [E.PLANT_NOT_APPLICABLE]),  # RAW-A has no standard cost in P2
        (
            dict(item="RAW-L", location="NOWHERE", uom="KG"),
            [E.UNKNOWN_LOCATION, E.UOM_NO_CONVERSION, E.LOT_REQUIRED],
        ),
        (dict(item="RAW-B", qty="-0.0001", uom="G"), [E.INVALID_QUANTITY]),  # 1e-7 KG
        (dict(qty="3", reason="damage"), [E.INVALID_QUANTITY]),
        (dict(qty="-3", reason="found"), [E.INVALID_QUANTITY]),
    ],
    ids=[
        "plant",
        "item",
        "plant-not-applicable",
        "every-problem",
        "below-precision",
        "damage-adds",
        "found-removes",
    ],
)
def test_a_stock_adjustment_is_refused_with_every_problem(state, env, fields, codes):
    with pytest.raises(MessageRejected) as rejected:
        decide(state, env(adjustment(**fields)))
    assert [p.code for p in rejected.value.problems] == codes


def test_eco_with_cost_change_revalues_on_hand_and_open_wip(env):
    kit_bom = BomRevision(
        item="KIT-1",
        revision="1",
        effective_from=START - timedelta(days=1),
        plants=("P1",),
        lines=(BomLine(component="SEMI-S", qty_per=D(1), uom="EA"),),
    )
    semi_rev2 = BomRevision(
        item="SEMI-S",
        revision="2",
        effective_from=START,
        plants=("P1",),
        lines=(BomLine(component="RAW-A", qty_per=D(5), uom="EA"),),
    )
    state = book_state(
        [
            *master_data(env),
            env(
                ItemCreated(
                    item=Item(
                        id="KIT-1",
                        base_uom="EA",
                        type=ItemType.FINISHED,
                        standard_costs={"P1": D(30)},
                    )
                )
            ),
            env(
                BomReleased(
                    bom=kit_bom,
                    routing=Routing(
                        item="KIT-1",
                        revision="1",
                        operations=(Operation(seq=10, work_centre="PACK"),),
                    ),
                )
            ),
            env(
                BomReleased(
                    bom=semi_rev2,
                    routing=Routing(
                        item="SEMI-S",
                        revision="2",
                        operations=(Operation(seq=10, work_centre="SUBCON"),),
                    ),
                )
            ),
            receipt(env, "SEMI-S", "5", "STORES", price="20"),
            env(
                WorkOrderReleased(
                    work_order="WO-K",
                    plant="P1",
                    item="KIT-1",
                    qty=D(3),
                    uom="EA",
                    bom_revision="1",
                )
            ),
            env(
                MaterialIssued(
                    work_order="WO-K", component="SEMI-S", qty=D(1), uom="EA", location="STORES"
                )
            ),
        ]
    )
    decision = post(
        state,
        env(
            EcoReleased(
                eco="ECO-7",
                item="SEMI-S",
                from_revision="1",
                to_revision="2",
                effective_from=START,
                new_standard_costs={"P1": D(22)},
            )
        ),
    )
    # On hand 4 × 2.00 = 8.00; WIP of WO-K holds 1 SEMI-S: 2.00; the variance takes -10.00.
    assert lines_of(decision) == Counter(
        {
            (A.SEMI_FINISHED, D("8.00"), None): 1,
            (A.WIP, D("2.00"), "WO-K"): 1,
            (A.REVISION_VARIANCE, D("-10.00"), None): 1,
        }
    )
    assert moves_of(decision) == Counter(
        {("SEMI-S", "STORES", "", D(0), D("8.00"), A.SEMI_FINISHED): 1}
    )
    assert state.standard_cost("SEMI-S", "P1") == D(22)


def test_eco_switch_at_next_operation_changes_later_backflush_only(state, env):
    post(state, fg_revision_b(env))
    post(state, complete(env, 10, "1"))
    post(
        state,
        env(
            EcoReleased(
                eco="ECO-1",
                item="FG-1",
                from_revision="A",
                to_revision="B",
                effective_from=START,
                open_order_policy="switch_at_next_operation",
            )
        ),
    )
    order = state.work_orders["WO-1"]
    assert order.revision_for(10) == "A" and order.revision_for(20) == "B"
    decision = post(state, complete(env, 20, "1", bom_revision="B"))
    assert moves_of(decision) == Counter(
        {("RAW-C", "LINE", "", D(-3), D("-1.50"), A.RAW_MATERIALS): 1}
    )


def fg_revision_b(env):
    """FG-1 revision B: PH-1 and RAW-B replaced by 3 RAW-C at op 20."""
    bom = FG_BOM.model_copy(
        update={
            "revision": "B",
            "effective_from": START - timedelta(hours=1),
            "lines": (
                *FG_BOM.lines[:2],
                BomLine(component="RAW-C", qty_per=D(3), uom="EA", operation_seq=20),
            ),
        }
    )
    return env(BomReleased(bom=bom, routing=FG_ROUTING.model_copy(update={"revision": "B"})))
