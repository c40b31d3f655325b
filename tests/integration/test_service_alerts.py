"""Alerting in the service: every rule kind evaluated on a real ledger (SQLite and
PostgreSQL), and the webhook of `twin serve --alerts --webhook` against a real receiver.

The incident: a confirmation dead-lettered for a stock shortage (see `incident.py`) opens an
incident; receiving the stock and replaying it closes it. The receiver must get exactly one
FIRING and one RESOLVED notice, with the business and correlation ids, however many rounds
run, and a receiver that fails the first attempts must still get the notice once.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import yaml

from integration import AlertBook, AlertRule, AlertRules, OperationCompleted, evaluate_alert
from integration.service.alerts import LedgerSignals
from integration.service.metrics import ServiceMetrics
from integration.service.webhook import Webhook
from integration.store.base import FirstPass
from tests.builders import D, confirm, new_core, receipt, release
from tests.integration.incident import (  # noqa: F401 (ledger: a fixture)
    BLOCKING,
    CORRELATION_ID,
    Incident,
    Receiver,
    ledger,
    wait_for,
)
from tests.integration.served import Served

EXAMPLE_RULES = "examples/prometheus-alerts.yml"


def evaluate(core, clock, **rule):
    return evaluate_alert(AlertRule(name="r", **rule), LedgerSignals(core), clock.now())


def short_confirmation(core, envelopes, correlation_id: str = "c-1") -> int:
    envelope = confirm(envelopes).model_copy(update={"correlation_id": correlation_id})
    outcome = core.submit(envelope)
    assert outcome.code.value == "BACKFLUSH_SHORTAGE", outcome
    return outcome.dead_letter_id


def test_dead_letter_rules_count_the_open_ones_of_their_code_type_and_window(ledger):  # noqa: F811 - the fixture
    core, envelopes, clock = ledger
    assert not evaluate(core, clock, kind="dead_letters").firing
    letter = short_confirmation(core, envelopes)
    found = evaluate(core, clock, kind="dead_letters", code="BACKFLUSH_SHORTAGE")
    assert (found.firing, found.value) == (True, Decimal(1))
    [subject] = found.subjects
    assert (subject.ref, subject.code, subject.correlation_id) == (
        str(letter),
        "BACKFLUSH_SHORTAGE",
        "c-1",
    )
    assert (subject.business_ids.plant, subject.business_ids.work_order) == ("P1", "WO-1")
    assert not evaluate(core, clock, kind="dead_letters", code="LOT_REQUIRED").firing
    assert not evaluate(core, clock, kind="dead_letters", message_type="GoodsReceived").firing
    assert not evaluate(core, clock, kind="dead_letters", above=1).firing
    clock.advance(timedelta(minutes=11))
    assert not evaluate(core, clock, kind="dead_letters", window="10m").firing
    assert evaluate(core, clock, kind="dead_letters", window="12m").firing
    for goods in (receipt("2", location="LINE"), receipt("1", item="RAW-L", lot="L1",
                                                        location="LINE")):  # fmt: skip
        core.submit(envelopes(goods))
    assert [o.status.value for o in core.replay()] == ["POSTED"]
    assert not evaluate(core, clock, kind="dead_letters").firing  # replayed: no longer open


def test_hold_age_fires_once_a_message_is_held_longer_than_the_bound(ledger):  # noqa: F811 - the fixture
    core, envelopes, clock = ledger
    held = core.submit(confirm(envelopes, seq=2).model_copy(update={"correlation_id": "c-9"}))
    assert held.status.value == "HELD"
    clock.advance(timedelta(minutes=30))
    assert not evaluate(core, clock, kind="hold_age", older_than="30m").firing  # not longer
    clock.advance(timedelta(seconds=1))
    found = evaluate(core, clock, kind="hold_age", older_than="30m")
    assert (found.firing, found.value) == (True, Decimal(1801))
    [subject] = found.subjects
    assert subject.ref == f"MES/{held.message_id}"
    assert (subject.correlation_id, subject.business_ids.work_order) == ("c-9", "WO-1")
    assert not evaluate(core, clock, kind="hold_age", older_than="1m",
                        message_type="GoodsReceived").firing  # fmt: skip


def test_reconciliation_rule_fires_on_a_ledger_that_stops_balancing(ledger):  # noqa: F811 - the fixture
    core, envelopes, clock = ledger
    core.submit(envelopes(receipt("2")))
    assert not evaluate(core, clock, kind="reconciliation_exceptions").firing
    raw = core.store.connection  # fault injection in plain SQL: a line no posting rule wrote
    [entry_id] = raw.execute("SELECT MAX(entry_id) FROM journal_entry").fetchone()
    mark = "?" if raw.__class__.__module__ == "sqlite3" else "%s"
    raw.execute(
        "INSERT INTO journal_line VALUES"
        f" ({mark}, 99, 'P1', '1300-raw-materials', 'EUR', 100, NULL, NULL)",
        (entry_id,),
    )
    found = evaluate(core, clock, kind="reconciliation_exceptions")
    assert found.firing and found.value >= 1


def test_success_rate_compares_first_pass_in_the_window_once_the_volume_is_there(ledger):  # noqa: F811 - the fixture
    core, envelopes, clock = ledger
    for goods in (receipt("10", location="LINE"), receipt("10", item="RAW-L", lot="L1",
                                                          location="LINE")):  # fmt: skip
        assert core.submit(envelopes(goods)).status.value == "POSTED"
    clock.advance(timedelta(hours=2))  # the master data falls out of the window
    for _ in range(2):
        assert core.submit(confirm(envelopes)).status.value == "POSTED"
    no_lot = OperationCompleted(work_order="WO-1", operation_seq=10, good_qty=D(1), uom="EA",
                                backflush_location="LINE")  # fmt: skip
    assert core.submit(envelopes(no_lot)).code.value == "LOT_REQUIRED"
    rule = {"kind": "success_rate", "message_type": "OperationCompleted", "below": 90}
    rule["window"] = "1h"
    found = evaluate(core, clock, **rule, min_volume=3)
    assert (found.firing, found.value) == (True, Decimal("66.67"))
    assert not evaluate(core, clock, **rule, min_volume=4).firing  # too few to judge
    assert not evaluate(core, clock, **{**rule, "below": 60}, min_volume=3).firing
    assert core.store.first_pass(None, "OperationCompleted") == FirstPass(3, 2, 2)
    clock.advance(timedelta(hours=2))
    assert evaluate(core, clock, **rule).value == Decimal(100)  # nothing received in the window


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    pattern = rf"^{re.escape(name)}{re.escape('{' + wanted + '}') if labels else ''} (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found[1]) if found else 0.0


RULES = """
rules:
  - {name: shortages, kind: dead_letters, code: BACKFLUSH_SHORTAGE}
  - {name: books-disagree, kind: reconciliation_exceptions}
"""


def _serve(tmp_path, receiver: Receiver) -> Served:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    options = ("--alerts", str(rules), "--alert-interval", "100ms", "--webhook", receiver.url)
    return Served(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path, BLOCKING, options=options)


def test_webhook_gets_one_firing_and_one_resolved_notice_per_incident(tmp_path):
    receiver = Receiver()
    served = _serve(tmp_path, receiver).start()
    try:
        incident = Incident(served.url)
        incident.prepare()
        rounds = lambda: _metric(httpx.get(f"{served.url}/metrics").text,
                                 "mfg_twin_alert_rounds_total", result="ok")  # fmt: skip
        start = rounds()
        wait_for(lambda: rounds() >= start + 3, what="three alert rounds")
        assert receiver.requests == []  # nothing failed yet: no notice
        letter = incident.fail()
        [firing] = wait_for(receiver.accepted, what="the firing notice")
        incident.fix()
        assert incident.replay().json()["outcomes"][0]["status"] == "POSTED"
        wait_for(lambda: len(receiver.accepted()) == 2, what="the resolved notice")
        start = rounds()
        wait_for(lambda: rounds() >= start + 5, what="five more rounds")
        firing, resolved = receiver.accepted()
        assert len(receiver.requests) == 2
        assert (firing["rule"], firing["state"], firing["value"]) == ("shortages", "firing", "1")
        assert (resolved["state"], resolved["value"]) == ("resolved", "0")
        assert resolved["since"] == firing["since"] and resolved["at"] > firing["at"]
        for notice in (firing, resolved):
            assert notice["dead_letter_ids"] == [letter]
            assert notice["correlation_ids"] == [CORRELATION_ID]
            [subject] = notice["subjects"]
            assert subject["business_ids"] == {"plant": "P1", "work_order": "WO-1",
                                               "period": "2026-03"}  # fmt: skip
            assert (subject["code"], subject["message_type"]) == (
                "BACKFLUSH_SHORTAGE",
                "OperationCompleted",
            )
        text = httpx.get(f"{served.url}/metrics").text
        assert _metric(text, "mfg_twin_alert_notices_total", rule="shortages", state="firing") == 1
        assert _metric(text, "mfg_twin_alert_firing", rule="shortages") == 0
        assert _metric(text, "mfg_twin_webhook_deliveries_total", result="delivered") == 2
    finally:
        served.stop()
        receiver.close()


def test_a_receiver_that_fails_the_first_attempts_gets_the_notice_once_retried(tmp_path):
    receiver = Receiver(fail_first=2)
    served = _serve(tmp_path, receiver).start()
    try:
        incident = Incident(served.url)
        incident.prepare()
        incident.fail()
        [notice] = wait_for(receiver.accepted, what="the notice, retried")
        assert [status for status, _ in receiver.requests] == [503, 503, 204]
        assert {body["notice_id"] for _, body in receiver.requests} == {notice["notice_id"]}
        text = httpx.get(f"{served.url}/metrics").text
        assert _metric(text, "mfg_twin_webhook_deliveries_total", result="delivered") == 1
        assert _metric(text, "mfg_twin_alert_firing", rule="shortages") == 1
    finally:
        served.stop()
        receiver.close()


def test_a_delivery_that_keeps_failing_is_counted_and_given_up():
    receiver = Receiver(fail_first=10**6)
    metrics = ServiceMetrics()
    webhook = Webhook(receiver.url, metrics, attempts=3, first_delay_s=0.01)
    core, envelopes, clock = new_core(negative_stock="block")
    core.submit(release(envelopes))
    short_confirmation(core, envelopes)
    evaluation = evaluate(core, clock, kind="dead_letters")
    [notice] = AlertBook().observe([evaluation], clock.now())

    async def deliver() -> None:
        task = asyncio.create_task(webhook.run())
        webhook.send(notice)
        while metrics.webhook_deliveries.labels("failed")._value.get() == 0:
            await asyncio.sleep(0.01)
        task.cancel()

    try:
        asyncio.run(asyncio.wait_for(deliver(), 10))
    finally:
        receiver.close()
        core.close()
    assert [status for status, _ in receiver.requests] == [503, 503, 503]
    assert metrics.webhook_deliveries.labels("delivered")._value.get() == 0


def test_the_example_prometheus_rules_name_only_metrics_the_service_exports(tmp_path):
    served = Served(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path).start()
    try:
        Incident(served.url).prepare()
        exported = set(re.findall(r"^# TYPE (\S+) (\S+)", httpx.get(f"{served.url}/metrics").text,
                                  re.MULTILINE))  # fmt: skip
    finally:
        served.stop()
    names = {name for name, _ in exported}
    names |= {f"{name}_total" for name, kind in exported if kind == "counter"}
    names |= {f"{name}_{part}" for name, kind in exported if kind == "histogram"
              for part in ("bucket", "sum", "count")}  # fmt: skip
    groups = yaml.safe_load(Path(EXAMPLE_RULES).read_text(encoding="utf-8"))["groups"]
    expressions = [rule["expr"] for group in groups for rule in group["rules"]]
    assert expressions
    used = {name for expr in expressions for name in re.findall(r"\bmfg_twin_\w+", expr)}
    assert used and used <= names, used - names


def test_the_readmes_example_rules_are_valid():
    readme = Path("README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### Console and alerting") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)[1]
    rules = AlertRules.model_validate(yaml.safe_load(block))
    assert {rule.kind.value for rule in rules.rules} == {
        "dead_letters", "hold_age", "reconciliation_exceptions", "success_rate",
    }  # fmt: skip
