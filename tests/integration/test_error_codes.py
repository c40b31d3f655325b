"""One test per `ErrorCode`: each code is produced the way a real client would produce it.

Codes a message can cause are produced by submitting that message through `Core.submit` and
checking the whole contract of a rejection (docs/architecture.md, The core): the outcome is
REJECTED (or HELD, then dead-lettered after the hold timeout) with the code, a dead letter keeps
the code and the raw payload, and nothing reaches the books. The three codes that travel on exceptions
(STORE_FAILURE, CONFIGURATION, NOT_FOUND) are produced by the API calls that raise them.

`covers(code)` registers a test as the one for `code`; the meta-test at the bottom checks that
every member of `ErrorCode` has one, so a new code cannot be added without a test here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pydantic
import pytest

import integration.rules
from integration import (
    Alternate,
    BomReleased,
    BomStatus,
    ConfigurationError,
    Core,
    CoreSettings,
    DeadLetter,
    DeadLetterFilter,
    ErrorCode,
    FinishedGoodsReceived,
    GoodsReceived,
    IntegrationError,
    ItemCreated,
    Location,
    ManualClock,
    MaterialIssued,
    NegativeStockPolicy,
    NotFound,
    OperationCompleted,
    Outcome,
    PeriodClosed,
    QualityHold,
    ScrapDeclared,
    SourceSystem,
    Status,
    StoreError,
    WorkOrderClosed,
    open_store,
)
from integration.ledger import Account, JournalLine, Posting
from integration.rules import Decision
from tests.builders import (
    FG_BOM,
    FG_ROUTING,
    ITEMS,
    LOCATIONS,
    START,
    D,
    Envelopes,
    adjustment,
    new_core,
    release,
    settings,
)

# --- registry of covered codes -------------------------------------------------------------

COVERED: dict[ErrorCode, str] = {}


def covers(code: ErrorCode) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a test as the one that produces `code` (registered at import, not at run time)."""

    def register(test: Callable[..., Any]) -> Callable[..., Any]:
        assert code not in COVERED, f"{code} is already covered by {COVERED[code]}"
        COVERED[code] = test.__name__
        return test

    return register


# --- fixtures and helpers ------------------------------------------------------------------

Started = tuple[Core, Envelopes, ManualClock]


@pytest.fixture
def make_core() -> Iterator[Callable[..., Started]]:
    """`new_core(**overrides)`, closing every core it made at teardown."""
    made: list[Core] = []

    def make(**overrides: Any) -> Started:
        started = new_core(**overrides)
        made.append(started[0])
        return started

    yield make
    for core in made:
        core.close()


@pytest.fixture
def started(make_core: Callable[..., Started]) -> Started:
    """A core with the test master data posted, under the default settings."""
    return make_core()


def books(core: Core) -> tuple[int, dict, dict]:
    """Everything a posting would change: entry count, GL balances, the stock sub-ledger."""
    return core.store.entry_count(), core.account_balances(), core.stock()


def goods_received(**overrides: Any) -> GoodsReceived:
    fields: dict[str, Any] = dict(
        plant="P1",
        item="RAW-A",
        qty=D(5),
        uom="EA",
        location="STORES",
        purchase_order="PO-1",
        supplier="SUP-1",
        unit_price=D("2.10"),
    )
    return GoodsReceived(**{**fields, **overrides})


def as_dict(envelope: Any, **message_overrides: Any) -> dict[str, Any]:
    """An envelope as the JSON-ready dict a client would send, with the body edited."""
    data = envelope.model_dump(mode="json")
    data["message"] = {**data["message"], **message_overrides}
    return data


def submit_ok(core: Core, envelope: Any) -> Outcome:
    outcome = core.submit(envelope)
    assert outcome.status is Status.POSTED, outcome
    return outcome


def assert_rejected(
    core: Core,
    outcome: Outcome,
    code: ErrorCode,
    before: tuple[int, dict, dict],
    *,
    message_id: str | None = None,
    raw: str | None = None,
) -> DeadLetter:
    """The whole contract of a rejection: status and code on the outcome, an open dead letter
    with the code and the raw payload, and the books exactly as they were."""
    assert outcome.status is Status.REJECTED, outcome
    assert outcome.code is code, outcome
    assert outcome.problems, outcome
    assert outcome.problems[0].code is code, outcome.problems
    assert outcome.entry_ids == ()
    assert outcome.dead_letter_id is not None, outcome

    letters = [
        d for d in core.dead_letters(DeadLetterFilter(code=code)) if d.id == outcome.dead_letter_id
    ]
    assert len(letters) == 1, f"no open {code} dead letter #{outcome.dead_letter_id}"
    letter = letters[0]
    assert letter.code is code
    assert letter.problems and letter.problems[0].code is code
    if raw is not None:
        assert letter.raw == raw
    if message_id is not None:
        assert letter.message_id == message_id
        assert message_id in letter.raw

    assert books(core) == before, "a rejected message changed the books"
    return letter


def held_then_dead_lettered(
    core: Core, clock: ManualClock, envelope: Any, code: ErrorCode
) -> tuple[Outcome, DeadLetter]:
    """Submit a message that must be held with `code`, let its hold time out, and check that
    it was dead-lettered with that code and nothing was posted."""
    before = books(core)
    held = core.submit(envelope)
    assert held.status is Status.HELD, held
    assert held.code is code, held
    assert held.dead_letter_id is None
    assert core.held_count == 1
    assert core.dead_letters(DeadLetterFilter(code=code)) == []
    assert books(core) == before

    clock.advance(core.settings.hold_timeout - timedelta(seconds=1))
    assert core.expire_holds() == [], "expired before the hold timeout"
    clock.advance(timedelta(seconds=2))
    expired = core.expire_holds()
    assert len(expired) == 1, expired
    assert core.held_count == 0
    letter = assert_rejected(core, expired[0], code, before, message_id=envelope.message_id)
    assert core.outcome(envelope.message_id).status is Status.REJECTED
    return expired[0], letter


# --- the payload could not become an envelope ----------------------------------------------


@covers(ErrorCode.MALFORMED_PAYLOAD)
@pytest.mark.parametrize(
    "raw",
    ['{"message_id": "bad-json", "message": {', "{not json", "", "   ", '{"a": 1,}'],
    ids=["truncated", "not-json", "empty", "blank", "trailing-comma"],
)
def test_malformed_payload(started: Started, raw: str) -> None:
    core, _env, _clock = started
    before = books(core)
    outcome = core.submit(raw)
    assert_rejected(core, outcome, ErrorCode.MALFORMED_PAYLOAD, before, raw=raw)


def test_malformed_payload_invalid_utf8_bytes(started: Started) -> None:
    core, _env, _clock = started
    before = books(core)
    outcome = core.submit(b"\xff\xfe{")
    letter = assert_rejected(core, outcome, ErrorCode.MALFORMED_PAYLOAD, before)
    assert letter.raw  # kept, with undecodable bytes replaced


def _nested_lists(depth: int) -> list:
    """`depth` lists, each inside the previous one, built without recursion."""
    outer: list = []
    current = outer
    for _ in range(depth - 1):
        inner: list = []
        current.append(inner)
        current = inner
    return outer


DEPTH = 100_000


def test_deeply_nested_body_as_json_text_is_rejected(started: Started) -> None:
    core, env, _clock = started
    before = books(core)
    data = as_dict(env(goods_received(), message_id="deep-text"))
    data["message"] = "__BODY__"
    raw = json.dumps(data).replace('"__BODY__"', "[" * DEPTH + "]" * DEPTH)
    outcome = core.submit(raw)
    letter = assert_rejected(core, outcome, ErrorCode.MALFORMED_PAYLOAD, before, raw=raw)
    assert '"message_id": "deep-text"' in letter.raw  # the raw text keeps the id


def test_deeply_nested_bare_json_text_is_rejected(started: Started) -> None:
    core, _env, _clock = started
    before = books(core)
    raw = "[" * DEPTH + "]" * DEPTH
    outcome = core.submit(raw)
    assert_rejected(core, outcome, ErrorCode.MALFORMED_PAYLOAD, before, raw=raw)


@pytest.mark.parametrize("where", ["body", "field-of-body"])
def test_deeply_nested_body_as_python_dict_is_rejected(started: Started, where: str) -> None:
    # A dict too deep to be written as JSON is as unreadable as such JSON text: the dead
    # letter keeps a bounded rendering of it.
    core, env, _clock = started
    before = books(core)
    data = as_dict(env(goods_received(), message_id=f"deep-dict-{where}"))
    if where == "body":
        data["message"] = _nested_lists(DEPTH)
    else:
        data["message"]["qty"] = _nested_lists(DEPTH)
    outcome = core.submit(data)  # must not raise
    letter = assert_rejected(core, outcome, ErrorCode.MALFORMED_PAYLOAD, before)
    assert letter.raw


@covers(ErrorCode.SCHEMA_INVALID)
@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d["message"].update(operation_seq="ten"), id="seq-not-int"),
        pytest.param(lambda d: d["message"].update(work_order=42), id="work-order-not-str"),
        pytest.param(lambda d: d["message"].update(component_lots=["L1"]), id="lots-not-dict"),
        pytest.param(lambda d: d["message"].update(partial="maybe"), id="partial-not-bool"),
        pytest.param(lambda d: d.update(source_system="SAP"), id="unknown-source"),
        pytest.param(lambda d: d.update(occurred_at="2026-03-02T06:00:00"), id="naive-time"),
        pytest.param(lambda d: d.update(occurred_at="yesterday"), id="time-not-a-time"),
        pytest.param(lambda d: d.update(schema_version=2), id="schema-version"),
        pytest.param(lambda d: d.update(message=5), id="body-not-object"),
        pytest.param(lambda d: d["message"].update(type="TeleportedGoods"), id="unknown-type"),
        pytest.param(lambda d: d.pop("idempotency_key"), id="missing-key"),
        pytest.param(lambda d: d.update(message_id=""), id="empty-id"),
        pytest.param(lambda d: d.update(stream="MES:WO-1"), id="stream-without-seq"),
    ],
)
def test_schema_invalid_wrong_types(started: Started, edit: Callable[[dict], Any]) -> None:
    core, env, _clock = started
    core.submit(release(env))
    before = books(core)
    envelope = env(
        OperationCompleted(
            work_order="WO-1", operation_seq=10, good_qty=D(1), uom="EA", backflush_location="LINE"
        ),
        message_id="wrong-types",
    )
    data = envelope.model_dump(mode="json")
    edit(data)
    raw = json.dumps(data)
    outcome = core.submit(raw)
    assert_rejected(core, outcome, ErrorCode.SCHEMA_INVALID, before, raw=raw)
    outcome = core.submit(data)  # the same as a dict: rejected the same way
    assert outcome.status is Status.REJECTED and outcome.code is ErrorCode.SCHEMA_INVALID


def test_schema_invalid_json_that_is_not_an_object(started: Started) -> None:
    core, _env, _clock = started
    for raw in ("[]", "null", "42", '"GoodsReceived"'):
        before = books(core)
        outcome = core.submit(raw)
        assert_rejected(core, outcome, ErrorCode.SCHEMA_INVALID, before, raw=raw)


@covers(ErrorCode.UNKNOWN_FIELD)
@pytest.mark.parametrize("where", ["envelope", "body", "nested-item"])
def test_unknown_field(started: Started, where: str) -> None:
    core, env, _clock = started
    before = books(core)
    if where == "nested-item":
        envelope = env(
            ItemCreated(item=ITEMS[0].model_copy(update={"id": "RAW-NEW"})),
            message_id="unknown-field",
        )
        data = envelope.model_dump(mode="json")
        data["message"]["item"]["colour"] = "blue"
    else:
        data = as_dict(env(goods_received(), message_id="unknown-field"))
        (data if where == "envelope" else data["message"])["priority"] = "urgent"
    raw = json.dumps(data)
    outcome = core.submit(raw)
    letter = assert_rejected(
        core, outcome, ErrorCode.UNKNOWN_FIELD, before, raw=raw, message_id="unknown-field"
    )
    assert letter.problems[0].field.endswith(("priority", "colour"))


@covers(ErrorCode.INVALID_QUANTITY)
@pytest.mark.parametrize(
    "literal",
    ['"NaN"', "NaN", '"Infinity"', "Infinity", '"-Infinity"', "-Infinity", "1e999999", '"sNaN"'],
)
def test_invalid_quantity_non_finite_json_text(started: Started, literal: str) -> None:
    core, env, _clock = started
    before = books(core)
    data = as_dict(env(goods_received(), message_id="nan-text"))
    data["message"]["qty"] = "__QTY__"
    raw = json.dumps(data).replace('"__QTY__"', literal)
    assert f'"qty": {literal}' in raw
    outcome = core.submit(raw)
    letter = assert_rejected(
        core, outcome, ErrorCode.INVALID_QUANTITY, before, raw=raw, message_id="nan-text"
    )
    assert letter.problems[0].field.endswith("qty")


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), D("NaN"), D("Infinity"), D("-Infinity")],
    ids=str,
)
def test_invalid_quantity_non_finite_python_dict(started: Started, value: Any) -> None:
    core, env, _clock = started
    before = books(core)
    data = as_dict(env(goods_received(), message_id="nan-dict"), qty=value)
    outcome = core.submit(data)
    assert_rejected(core, outcome, ErrorCode.INVALID_QUANTITY, before, message_id="nan-dict")


@pytest.mark.parametrize("value", [-5, -0.001, "-5", "-0.000001", 0, "0"], ids=str)
def test_invalid_quantity_negative_or_zero(started: Started, value: Any) -> None:
    core, env, _clock = started
    core.submit(release(env))
    before = books(core)
    for make in (
        lambda: as_dict(env(goods_received(), message_id="neg-gr"), qty=value),
        lambda: as_dict(
            env(
                MaterialIssued(
                    work_order="WO-1", component="RAW-A", qty=D(1), uom="EA", location="LINE"
                ),
                message_id="neg-mi",
            ),
            qty=value,
        ),
    ):
        data = make()
        outcome = core.submit(json.dumps(data))
        assert_rejected(
            core, outcome, ErrorCode.INVALID_QUANTITY, before, message_id=data["message_id"]
        )


@pytest.mark.parametrize("value", [0, "0", "-0", 0.0, "0e3", "-0.0000004"], ids=repr)
def test_invalid_quantity_a_stock_adjustment_that_changes_nothing(
    started: Started, value: Any
) -> None:
    core, env, _clock = started
    before = books(core)
    data = as_dict(env(adjustment(), message_id="zero-change"), qty=value)
    raw = json.dumps(data)
    outcome = core.submit(raw)
    letter = assert_rejected(
        core, outcome, ErrorCode.INVALID_QUANTITY, before, raw=raw, message_id="zero-change"
    )
    assert letter.problems[0].field == "message.StockAdjusted.qty"
    assert letter.ids.item == "RAW-A" and letter.ids.plant == "P1"


def test_invalid_quantity_negative_hours_and_scrap(started: Started) -> None:
    core, env, _clock = started
    core.submit(release(env))
    before = books(core)
    confirmation = env(
        OperationCompleted(
            work_order="WO-1", operation_seq=10, good_qty=D(1), uom="EA", backflush_location="LINE"
        ),
        message_id="neg-hours",
    )
    for field in ("good_qty", "scrap_qty", "labour_hours", "machine_hours"):
        outcome = core.submit(as_dict(confirmation, **{field: "-1"}))
        assert_rejected(core, outcome, ErrorCode.INVALID_QUANTITY, before, message_id="neg-hours")


# --- authorisation -------------------------------------------------------------------------


@covers(ErrorCode.UNAUTHORISED_SOURCE)
@pytest.mark.parametrize(
    ("source", "message"),
    [
        (SourceSystem.MES, goods_received()),
        (SourceSystem.MES, PeriodClosed(plant="P1", period="2026-02")),
        (SourceSystem.ERP, PeriodClosed(plant="P1", period="2026-02")),
        (SourceSystem.SUPPLIER, goods_received()),
        (SourceSystem.WMS, ItemCreated(item=ITEMS[0].model_copy(update={"id": "RAW-X"}))),
    ],
    ids=["mes-receipt", "mes-period", "erp-period", "supplier-receipt", "wms-item"],
)
def test_unauthorised_source(started: Started, source: SourceSystem, message: Any) -> None:
    core, env, _clock = started
    before = books(core)
    envelope = env(message, source=source, message_id="wrong-source")
    outcome = core.submit(envelope)
    assert_rejected(core, outcome, ErrorCode.UNAUTHORISED_SOURCE, before, message_id="wrong-source")
    assert outcome.problems[0].field == "source_system"


# --- master data and business rules --------------------------------------------------------


@covers(ErrorCode.UNKNOWN_PLANT)
def test_unknown_plant(started: Started) -> None:
    core, env, _clock = started
    before = books(core)
    envelope = env(goods_received(plant="P9"))
    outcome = core.submit(envelope)
    assert_rejected(core, outcome, ErrorCode.UNKNOWN_PLANT, before, message_id=envelope.message_id)


@covers(ErrorCode.UNKNOWN_LOCATION)
@pytest.mark.parametrize(
    "message",
    [goods_received(location="NOWHERE"), adjustment(location="NOWHERE")],
    ids=lambda m: m.type,
)
def test_unknown_location(started: Started, message: Any) -> None:
    core, env, _clock = started
    before = books(core)
    envelope = env(message)
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.UNKNOWN_LOCATION, before, message_id=envelope.message_id
    )


def test_a_bom_waits_for_its_alternates_and_overlay_items(started: Started) -> None:
    # Every item a BOM names is a sequencing dependency, alternates too: a BOM that overtakes
    # the ItemCreated of its alternate is held, not rejected, and posts once the item is known.
    core, env, _clock = started
    line = FG_BOM.lines[0].model_copy(
        update={"alternates": (Alternate(item="RAW-GHOST", priority=1),)}
    )
    bom = FG_BOM.model_copy(update={"revision": "D", "lines": (line, *FG_BOM.lines[1:])})
    envelope = env(BomReleased(bom=bom, routing=FG_ROUTING.model_copy(update={"revision": "D"})))
    held = core.submit(envelope)
    assert held.status is Status.HELD and held.code is ErrorCode.AWAITING_DEPENDENCY
    created = core.submit(env(ItemCreated(item=ITEMS[0].model_copy(update={"id": "RAW-GHOST"}))))
    assert [r.message_id for r in created.released] == [envelope.message_id]
    assert created.released[0].status is Status.POSTED


@covers(ErrorCode.UNKNOWN_ITEM)
@pytest.mark.parametrize(
    "message",
    [goods_received(item="RAW-GHOST"), adjustment(item="RAW-GHOST")],
    ids=lambda m: m.type,
)
def test_unknown_item_without_sequencing(make_core: Callable[..., Started], message: Any) -> None:
    core, env, _clock = make_core(sequencing=False)
    before = books(core)
    envelope = env(message)
    outcome = core.submit(envelope)
    assert_rejected(core, outcome, ErrorCode.UNKNOWN_ITEM, before, message_id=envelope.message_id)


def test_unknown_references_are_all_reported_at_once(started: Started) -> None:
    core, env, _clock = started
    before = books(core)
    envelope = env(goods_received(item="RAW-L", location="NOWHERE", uom="KG"))
    outcome = core.submit(envelope)
    letter = assert_rejected(
        core, outcome, ErrorCode.UNKNOWN_LOCATION, before, message_id=envelope.message_id
    )
    codes = [p.code for p in letter.problems]
    assert codes == [
        ErrorCode.UNKNOWN_LOCATION,
        ErrorCode.UOM_NO_CONVERSION,
        ErrorCode.LOT_REQUIRED,
    ]


@covers(ErrorCode.ITEM_EXISTS)
def test_item_exists(started: Started) -> None:
    core, env, _clock = started
    before = books(core)
    envelope = env(ItemCreated(item=ITEMS[0].model_copy(update={"description": "again"})))
    outcome = core.submit(envelope)
    assert_rejected(core, outcome, ErrorCode.ITEM_EXISTS, before, message_id=envelope.message_id)


@covers(ErrorCode.UOM_NO_CONVERSION)
def test_uom_no_conversion(started: Started) -> None:
    core, env, _clock = started
    before = books(core)
    envelope = env(goods_received(uom="KG"))  # RAW-A is counted in EA
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.UOM_NO_CONVERSION, before, message_id=envelope.message_id
    )


@covers(ErrorCode.PLANT_NOT_APPLICABLE)
def test_plant_not_applicable(started: Started) -> None:
    core, env, _clock = started
    before = books(core)
    envelope = env(goods_received(plant="P2"))  # RAW-A has a standard cost in P1 only
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.PLANT_NOT_APPLICABLE, before, message_id=envelope.message_id
    )


@covers(ErrorCode.REVISION_UNKNOWN)
def test_revision_unknown(started: Started) -> None:
    core, env, _clock = started
    before = books(core)
    envelope = env(release(env).message.model_copy(update={"bom_revision": "Z"}))
    outcome = core.submit(envelope)
    letter = assert_rejected(
        core, outcome, ErrorCode.REVISION_UNKNOWN, before, message_id=envelope.message_id
    )
    assert letter.waits_on == ("bom:FG-1",)  # replayed when a BOM of FG-1 is released


@covers(ErrorCode.REVISION_NOT_RELEASED)
def test_revision_not_released(started: Started) -> None:
    core, env, _clock = started
    draft = FG_BOM.model_copy(update={"revision": "B", "status": BomStatus.DRAFT})
    submit_ok(
        core, env(BomReleased(bom=draft, routing=FG_ROUTING.model_copy(update={"revision": "B"})))
    )
    before = books(core)
    envelope = env(release(env).message.model_copy(update={"bom_revision": "B"}))
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.REVISION_NOT_RELEASED, before, message_id=envelope.message_id
    )


@covers(ErrorCode.REVISION_NOT_EFFECTIVE)
def test_revision_not_effective(started: Started) -> None:
    core, env, _clock = started
    future = FG_BOM.model_copy(update={"revision": "C", "effective_from": START + timedelta(30)})
    submit_ok(
        core, env(BomReleased(bom=future, routing=FG_ROUTING.model_copy(update={"revision": "C"})))
    )
    before = books(core)
    envelope = env(release(env).message.model_copy(update={"bom_revision": "C"}))
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.REVISION_NOT_EFFECTIVE, before, message_id=envelope.message_id
    )


@covers(ErrorCode.REVISION_MISMATCH)
def test_revision_mismatch(started: Started) -> None:
    core, env, _clock = started
    submit_ok(core, release(env))
    before = books(core)
    envelope = env(
        OperationCompleted(
            work_order="WO-1",
            operation_seq=10,
            good_qty=D(1),
            uom="EA",
            backflush_location="LINE",
            bom_revision="B",
            component_lots={"RAW-L": "L1"},
        )
    )
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.REVISION_MISMATCH, before, message_id=envelope.message_id
    )


@covers(ErrorCode.WORK_ORDER_UNKNOWN)
def test_work_order_unknown(make_core: Callable[..., Started]) -> None:
    # With sequencing on (the default) a message for an unknown work order is held for it
    # (AWAITING_DEPENDENCY, see test_awaiting_dependency) and never reaches validation; the
    # WORK_ORDER_UNKNOWN rejection is what validation says when nothing is waited for.
    core, env, _clock = make_core(sequencing=False)
    before = books(core)
    envelope = env(
        MaterialIssued(work_order="WO-404", component="RAW-A", qty=D(1), uom="EA", location="LINE")
    )
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.WORK_ORDER_UNKNOWN, before, message_id=envelope.message_id
    )


@covers(ErrorCode.WORK_ORDER_EXISTS)
def test_work_order_exists(started: Started) -> None:
    core, env, _clock = started
    submit_ok(core, release(env))
    before = books(core)
    envelope = release(env)  # same order number, new message id and key
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.WORK_ORDER_EXISTS, before, message_id=envelope.message_id
    )


@covers(ErrorCode.WORK_ORDER_CLOSED)
def test_work_order_closed(started: Started) -> None:
    core, env, _clock = started
    submit_ok(core, release(env))
    submit_ok(core, env(WorkOrderClosed(work_order="WO-1")))
    before = books(core)
    envelope = env(
        MaterialIssued(work_order="WO-1", component="RAW-A", qty=D(1), uom="EA", location="LINE")
    )
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.WORK_ORDER_CLOSED, before, message_id=envelope.message_id
    )


@covers(ErrorCode.OPERATION_UNKNOWN)
def test_operation_unknown(started: Started) -> None:
    core, env, _clock = started
    submit_ok(core, release(env))
    before = books(core)
    envelope = env(ScrapDeclared(work_order="WO-1", operation_seq=99, qty=D(1), uom="EA"))
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.OPERATION_UNKNOWN, before, message_id=envelope.message_id
    )


@covers(ErrorCode.COMPONENT_NOT_ON_BOM)
def test_component_not_on_bom(started: Started) -> None:
    core, env, _clock = started
    submit_ok(core, release(env))
    before = books(core)
    envelope = env(
        MaterialIssued(work_order="WO-1", component="SEMI-S", qty=D(1), uom="EA", location="STORES")
    )
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.COMPONENT_NOT_ON_BOM, before, message_id=envelope.message_id
    )


@covers(ErrorCode.LOT_REQUIRED)
@pytest.mark.parametrize(
    "message",
    [goods_received(item="RAW-L"), adjustment("3", item="RAW-L")],  # lot-controlled, no lot
    ids=lambda m: m.type,
)
def test_lot_required(started: Started, message: Any) -> None:
    core, env, _clock = started
    before = books(core)
    envelope = env(message)
    outcome = core.submit(envelope)
    assert_rejected(core, outcome, ErrorCode.LOT_REQUIRED, before, message_id=envelope.message_id)


@covers(ErrorCode.LOT_ON_HOLD)
def test_lot_on_hold(started: Started) -> None:
    core, env, _clock = started
    submit_ok(core, release(env))
    submit_ok(core, env(goods_received(item="RAW-L", lot="L1")))
    submit_ok(core, env(QualityHold(plant="P1", item="RAW-L", lot="L1")))
    before = books(core)
    envelope = env(
        MaterialIssued(
            work_order="WO-1", component="RAW-L", qty=D(1), uom="EA", location="STORES", lot="L1"
        )
    )
    outcome = core.submit(envelope)
    assert_rejected(core, outcome, ErrorCode.LOT_ON_HOLD, before, message_id=envelope.message_id)


@covers(ErrorCode.OVER_COMPLETION)
def test_over_completion(started: Started) -> None:
    core, env, _clock = started
    submit_ok(core, release(env))  # 10 EA, 5 % tolerance
    before = books(core)
    envelope = env(FinishedGoodsReceived(work_order="WO-1", qty=D(11), uom="EA", location="FG"))
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.OVER_COMPLETION, before, message_id=envelope.message_id
    )


@covers(ErrorCode.PERIOD_ALREADY_CLOSED)
def test_period_already_closed(started: Started) -> None:
    core, env, _clock = started
    submit_ok(core, env(PeriodClosed(plant="P1", period="2026-02")))
    before = books(core)
    envelope = env(PeriodClosed(plant="P1", period="2026-02"))  # a second close, new ids
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.PERIOD_ALREADY_CLOSED, before, message_id=envelope.message_id
    )


@covers(ErrorCode.PERIOD_NOT_ENDED)
def test_period_not_ended(started: Started) -> None:
    core, env, _clock = started  # 2 March 2026, by the message and by the core's clock
    before = books(core)
    envelope = env(PeriodClosed(plant="P1", period="2026-03"))
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.PERIOD_NOT_ENDED, before, message_id=envelope.message_id
    )
    assert [problem.field for problem in outcome.problems] == ["occurred_at", "period"]


@covers(ErrorCode.BACKFLUSH_SHORTAGE)
def test_backflush_shortage(make_core: Callable[..., Started]) -> None:
    core, env, _clock = make_core(negative_stock=NegativeStockPolicy.BLOCK)
    submit_ok(core, release(env))
    before = books(core)
    envelope = env(
        OperationCompleted(
            work_order="WO-1",
            operation_seq=10,
            good_qty=D(1),
            uom="EA",
            backflush_location="LINE",
            component_lots={"RAW-L": "L1"},
        )
    )
    outcome = core.submit(envelope)  # nothing at LINE to backflush
    assert_rejected(
        core, outcome, ErrorCode.BACKFLUSH_SHORTAGE, before, message_id=envelope.message_id
    )


# --- sequencing and idempotency ------------------------------------------------------------


@covers(ErrorCode.SEQUENCE_GAP)
def test_sequence_gap(started: Started) -> None:
    core, env, clock = started
    submit_ok(core, release(env))
    envelope = env(
        OperationCompleted(
            work_order="WO-1", operation_seq=10, good_qty=D(1), uom="EA", backflush_location="LINE"
        ),
        stream="MES:WO-1",
        seq=2,
    )  # 1 never arrives
    _outcome, letter = held_then_dead_lettered(core, clock, envelope, ErrorCode.SEQUENCE_GAP)
    assert letter.waits_on == ("stream:MES:WO-1@2",)


@covers(ErrorCode.SEQUENCE_STALE)
def test_sequence_stale(started: Started) -> None:
    core, env, _clock = started
    submit_ok(core, release(env))
    confirmation = OperationCompleted(
        work_order="WO-1",
        operation_seq=10,
        good_qty=D(1),
        uom="EA",
        backflush_location="LINE",
        component_lots={"RAW-L": "L1"},
    )
    submit_ok(core, env(confirmation, stream="MES:WO-1", seq=1))
    before = books(core)
    envelope = env(confirmation, stream="MES:WO-1", seq=1)  # another message reusing seq 1
    outcome = core.submit(envelope)
    assert_rejected(core, outcome, ErrorCode.SEQUENCE_STALE, before, message_id=envelope.message_id)


@covers(ErrorCode.AWAITING_DEPENDENCY)
def test_awaiting_dependency(started: Started) -> None:
    core, env, clock = started
    envelope = env(
        MaterialIssued(work_order="WO-404", component="RAW-A", qty=D(1), uom="EA", location="LINE")
    )  # WO-404 is never released
    _outcome, letter = held_then_dead_lettered(core, clock, envelope, ErrorCode.AWAITING_DEPENDENCY)
    assert letter.waits_on == ("work_order:WO-404",)


@covers(ErrorCode.IDEMPOTENCY_CONFLICT)
@pytest.mark.parametrize("reuse", ["message_id", "idempotency_key", "both"])
@pytest.mark.parametrize(
    "first_message, other_payload",
    [(goods_received(), goods_received(qty=D(6))), (adjustment("4"), adjustment("5"))],
    ids=["GoodsReceived", "StockAdjusted"],
)
def test_idempotency_conflict(
    started: Started, reuse: str, first_message: Any, other_payload: Any
) -> None:
    core, env, _clock = started
    first = submit_ok(core, env(first_message, message_id="gr-1", key="gr-key"))
    before = books(core)
    envelope = env(
        other_payload,  # a different payload ...
        message_id="gr-1" if reuse in ("message_id", "both") else "gr-2",
        key="gr-key" if reuse in ("idempotency_key", "both") else "gr-key-2",
    )
    outcome = core.submit(envelope)  # ... under an id already used
    assert_rejected(
        core, outcome, ErrorCode.IDEMPOTENCY_CONFLICT, before, message_id=envelope.message_id
    )
    assert core.outcome("gr-1").entry_ids == first.entry_ids  # the original still stands


@covers(ErrorCode.AMOUNT_OUT_OF_RANGE)
@pytest.mark.parametrize("qty, unit_price", [("1e15", "2"), ("1e15", "1e15")])
def test_amount_out_of_range(started: Started, qty: str, unit_price: str) -> None:
    """Each value within the ledger's range (10^15), yet the line is beyond what a ledger
    line may carry: 2e15 EUR, and 1e30 EUR (more digits than Decimal's default context)."""
    core, env, _clock = started
    before = books(core)
    envelope = env(goods_received(qty=D(qty), unit_price=D(unit_price)))
    outcome = core.submit(envelope)
    assert_rejected(core, outcome, ErrorCode.AMOUNT_OUT_OF_RANGE, before)
    submit_ok(core, env(goods_received()))  # and the next message posts as usual


@pytest.mark.parametrize(
    "message, field, sign",
    [
        (goods_received(), "qty", ""),
        (goods_received(), "unit_price", ""),
        (adjustment(), "qty", ""),
        (adjustment(), "qty", "-"),  # a signed change: beyond -10^15 too
    ],
    ids=["GoodsReceived-qty", "GoodsReceived-unit_price", "StockAdjusted-qty", "negative"],
)
@pytest.mark.parametrize(
    "literal", ['"1e22"', "1e22", '"1000000000000000.000001"', "1e300", '"1e999"']
)
def test_a_value_beyond_the_ledgers_range_is_refused_when_read(
    started: Started, message: Any, field: str, sign: str, literal: str
) -> None:
    """Beyond 10^15 a quantity or amount never reaches a posting rule: the payload is
    refused as it is read, and its dead letter keeps it as sent."""
    core, env, _clock = started
    before = books(core)
    data = as_dict(env(message, message_id="huge"))
    data["message"][field] = "__VALUE__"
    raw = json.dumps(data).replace('"__VALUE__"', literal.replace("1", f"{sign}1", 1))
    outcome = core.submit(raw)
    letter = assert_rejected(
        core, outcome, ErrorCode.AMOUNT_OUT_OF_RANGE, before, raw=raw, message_id="huge"
    )
    assert letter.problems[0].field == f"message.{message.type}.{field}"
    submit_ok(core, env(goods_received()))


# --- failures of the core itself -----------------------------------------------------------


@covers(ErrorCode.UNBALANCED_ENTRY)
def test_unbalanced_entry(started: Started, monkeypatch: pytest.MonkeyPatch) -> None:
    """A defensive check no correct rule can trip: a broken rule is patched in to prove that
    an unbalanced entry is rejected before anything is written."""
    core, env, _clock = started

    def broken_rule(state: Any, envelope: Any) -> Decision:
        msg = envelope.message
        line = JournalLine(msg.plant, Account.RAW_MATERIALS, "EUR", D("10.00"), item=msg.item)
        return Decision(msg.plant, ((msg.plant, Posting(lines=(line,))),))

    monkeypatch.setitem(integration.rules.RULES, "GoodsReceived", broken_rule)
    before = books(core)
    envelope = env(goods_received())
    outcome = core.submit(envelope)
    assert_rejected(
        core, outcome, ErrorCode.UNBALANCED_ENTRY, before, message_id=envelope.message_id
    )
    assert core.store.unbalanced_entries() == []

    monkeypatch.undo()  # the real rule posts the next receipt
    submit_ok(core, env(goods_received()))
    assert core.reconcile().ok, core.reconcile()


@covers(ErrorCode.STORE_FAILURE)
def test_store_failure(started: Started) -> None:
    core, env, _clock = started
    db = core.store.connection
    tables = ("inbox", "journal_entry", "journal_line", "stock_move", "dead_letter")

    def counts() -> dict[str, int]:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}

    before, rows_before, stock_before = books(core), counts(), core.stock()
    db.execute(
        "CREATE TEMP TRIGGER fail_lines BEFORE INSERT ON main.journal_line"
        " BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    envelope = env(goods_received(), message_id="store-fails")
    with pytest.raises(StoreError) as raised:
        core.submit(envelope)
    assert raised.value.code is ErrorCode.STORE_FAILURE
    assert isinstance(raised.value, IntegrationError)
    assert "boom" in str(raised.value)
    assert not db.in_transaction
    assert counts() == rows_before, "a failed commit left rows behind"
    assert books(core) == before
    assert core.stock() == stock_before
    with pytest.raises(NotFound):
        core.outcome("store-fails")

    db.execute("DROP TRIGGER fail_lines")  # the same message then posts, once
    outcome = submit_ok(core, envelope)
    assert core.store.entry_count() == before[0] + 1
    assert len(outcome.entry_ids) == 1


@covers(ErrorCode.CONFIGURATION)
@pytest.mark.parametrize("url", ["mysql://x", "postgres+unknown://db/ledger", "ftp://a/b"])
def test_configuration_unsupported_store_url(url: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        open_store(url)
    assert raised.value.code is ErrorCode.CONFIGURATION
    assert isinstance(raised.value, IntegrationError)


def test_configuration_rebuild_under_other_settings(tmp_path: Any) -> None:
    path = str(tmp_path / "ledger.db")
    core, env, _clock = new_core(path)
    submit_ok(core, env(goods_received(location="LINE")))
    core.close()
    fewer_locations = settings(locations=tuple(loc for loc in LOCATIONS if loc.id != "LINE"))
    with pytest.raises(ConfigurationError) as raised:
        Core(fewer_locations, open_store(path), ManualClock(START))
    assert raised.value.code is ErrorCode.CONFIGURATION


def test_settings_with_a_location_in_an_unknown_plant() -> None:
    # What is real: CoreSettings is a pydantic model, so an inconsistent plant network fails
    # at construction as a pydantic ValidationError, not a ConfigurationError.
    with pytest.raises(pydantic.ValidationError, match="unknown plant P9"):
        settings(locations=(*LOCATIONS, Location(id="X", plant="P9")))


def test_settings_with_a_plant_in_an_unknown_time_zone() -> None:
    # Periods are months in the plant's zone: a zone the database lacks is refused up front.
    with pytest.raises(pydantic.ValidationError, match="unknown IANA time zone 'Mars/Base'"):
        CoreSettings.model_validate(
            {"plants": [{"id": "P9", "currency": "EUR", "timezone": "Mars/Base"}]}
        )


@covers(ErrorCode.NOT_FOUND)
def test_not_found(started: Started) -> None:
    core, _env, _clock = started
    with pytest.raises(NotFound) as raised:
        core.outcome("nope")
    assert raised.value.code is ErrorCode.NOT_FOUND
    assert isinstance(raised.value, IntegrationError)
    with pytest.raises(NotFound) as raised:
        core.work_order_status("WO-nope")
    assert raised.value.code is ErrorCode.NOT_FOUND


# --- the meta-test -------------------------------------------------------------------------


@pytest.mark.parametrize("code", list(ErrorCode), ids=str)
def test_every_error_code_has_a_test(code: ErrorCode) -> None:
    assert code in COVERED, f"no test in this file produces {code}"
    assert callable(globals().get(COVERED[code])), COVERED[code]
    assert COVERED[code].startswith("test_")


def test_covered_codes_are_exactly_the_error_codes() -> None:
    assert set(COVERED) == set(ErrorCode)
    assert len(COVERED) == len(ErrorCode)
