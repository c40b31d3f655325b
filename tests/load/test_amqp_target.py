"""`twin load --target amqp://…` against `twin consume` in a subprocess, on the local RabbitMQ:
the same summary contract as an HTTP load run, the books read back from the consumer's ledger
agree with the twin's truth, and a consumer that loses messages (acks before it commits, then
is killed) or never answers is reported, not hidden and not waited for."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from typing import Any

import pytest
from click.testing import CliRunner

from sim import load_scenario, simulate
from sim.cli import twin
from sim.load import LoadOptions, load_run
from sim.load.figures import LoadFigures
from sim.load.keys import read_source_users
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from sim.run.session import report_run
from tests.broker.consuming import Consuming
from tests.broker.rabbit import Rabbit, ensure_users, require_broker, write_keys
from tests.integration.served import write_config
from tests.load.test_live_target import DOCUMENT, SPEED, document
from tests.scenarios.harness import write_scenario

SECTIONS = ("events", "duplicates", "drift", "dead_letters", "ledger", "heal", "run")


AMQP_URL = "amqp://127.0.0.1:5672/"  # the users come from the keys file


@pytest.fixture(scope="module")
def broker_users() -> None:
    require_broker()
    ensure_users()


@pytest.fixture
def consumer(broker_users, tmp_path):
    """`start(doc, *options)`: a `twin consume` over a SQLite ledger with `doc`'s core
    settings, on a topology of this test's own (one ledger and topology per test: a second
    start is a restart). Stopped and deleted afterwards."""
    rabbit = Rabbit().declare()
    started: list[Consuming] = []

    def start(doc: dict[str, Any], *options: str) -> Consuming:
        scenario = load_scenario(doc)
        settings = Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()
        settings_path, _http_keys = write_config(tmp_path, settings)
        config = (settings_path, write_keys(tmp_path))
        log = tmp_path / f"consume-{len(started)}.log"
        ledger = f"sqlite:///{tmp_path}/ledger.db"
        started.append(Consuming(ledger, rabbit.topology, config, log, options).start())
        return started[-1]

    yield start
    for consuming in started:
        consuming.stop()
    rabbit.cleanup()


def options_for(consuming: Consuming, **settings: Any) -> LoadOptions:
    users, _operate = read_source_users(consuming.config[1])
    keys = {source: key for source, (_name, key) in users.items()}
    prefix = consuming.topology.prefix
    return LoadOptions(
        AMQP_URL, keys, ledger=consuming.db_url, prefix=prefix, users=users,
        **{"speed": SPEED, **settings},
    )  # fmt: skip


def run_against(tmp_path, consuming: Consuming, doc: dict[str, Any], **settings: Any):
    path = write_scenario(tmp_path / "scenario.yaml", doc)
    return load_run(path, options_for(consuming, **settings), out_dir=tmp_path / "run")


def http_load_keys() -> set[str]:
    """The `load` section of an HTTP load run (`sim.load.session.drive_scenario`)."""
    fixed = {"target", "speed", "max_in_flight", "timeout_s", "client"}
    return fixed | set(LoadFigures(0.01).summary())


def test_a_broker_load_run_has_the_http_contract_and_books_that_agree(tmp_path, consumer):
    outcome = run_against(tmp_path, consumer(DOCUMENT), DOCUMENT)
    summary = outcome.summary
    simulated = simulate(load_scenario(DOCUMENT)).summary
    # the contract: the same keys as any run, section by section, and the load section's
    assert set(summary) == set(simulated) | {"load"}
    for section in SECTIONS:
        assert set(summary[section]) == set(simulated[section]), section
    assert set(summary["load"]) == http_load_keys() | {"broker"}
    assert json.loads((outcome.out / "summary.json").read_text()) == summary
    assert report_run(outcome.out).summary == summary  # `twin report` rebuilds it
    # the same traffic as the simulated run, and the books agree with the truth
    assert summary["events"] == simulated["events"]
    assert summary["duplicates"]["delivered"] == simulated["duplicates"]["delivered"] > 0
    assert summary["duplicates"]["posted"] == 0
    seen = {key: summary[key] for key in ("drift", "dead_letters", "outcomes", "heal")}
    seen["broker"] = summary["load"]["broker"]  # what a failure below needs to be explained
    assert summary["drift"]["final_unexplained_value"] == "0.00", seen
    assert summary["drift"]["final_undelivered_messages"] == 0, seen
    assert summary["ledger"]["balanced"] is summary["ledger"]["reconciled"] is True
    assert summary["dead_letters"]["remaining"] > 0  # the missing lots, named
    assert summary["heal"] == {"unsent": 0, "in_flight": 0}
    assert all(result["passed"] for result in summary["assertions"])
    # latency recorded per workflow, from the scheduled send to the outcome
    load = summary["load"]
    assert load["sends"]["scheduled"] == load["sends"]["started"] == load["sends"]["answered"]
    assert load["broker"]["unanswered"] == 0
    assert set(load["latency_ms"]) == set(simulated["latency_ms"])
    for figures in load["latency_ms"].values():
        assert 0 < figures["corrected"]["p50"] <= figures["corrected"]["max"]
    assert summary["latency_ms"]["confirmation"]["count"] > 0


def test_twin_load_on_the_command_line_drives_twin_consume(tmp_path, consumer):
    consuming = consumer(DOCUMENT)
    path = write_scenario(tmp_path / "scenario.yaml", DOCUMENT)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        twin,
        [
            *("load", str(path), "--target", AMQP_URL, "--ledger", consuming.db_url),
            *("--prefix", consuming.topology.prefix, "--keys", str(consuming.config[1])),
            *("--speed", str(SPEED), "--late-ms", "1000", "--out", str(out), "--check"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "duplicates posted 0, unexplained drift 0.00" in result.stdout
    assert json.loads((out / "summary.json").read_text())["load"]["target"] == AMQP_URL
    # the model of the same layer beside it
    model = tmp_path / "model"
    ran = CliRunner().invoke(
        twin, ["run", str(path), "--out", str(model), "--quiet", "--set", "integration.consumers=1"]
    )
    assert ran.exit_code == 0, ran.output
    compared = CliRunner().invoke(twin, ["compare", str(model), str(out), "--json"])
    assert compared.exit_code == 0, compared.output
    comparison = json.loads(compared.stdout)
    assert comparison["same_traffic"] is True
    assert comparison["a"]["kind"] == "model" and comparison["a"]["consumers"] == 1
    assert comparison["b"] == {"run": str(out), "kind": "load", "target": AMQP_URL, "speed": SPEED}
    confirmations = comparison["latency_ms"]["confirmation"]
    assert confirmations["count"]["a"] == confirmations["count"]["b"] > 0
    assert comparison["queue_depth"]["max"]["b"] > 0  # messages waited in the broker


def test_twin_compare_says_when_two_runs_saw_different_traffic(tmp_path):
    runs = []
    for seed in (11, 12):
        path = write_scenario(tmp_path / f"scenario-{seed}.yaml", document(seed=seed))
        runs.append(tmp_path / f"run-{seed}")
        result = CliRunner().invoke(twin, ["run", str(path), "--out", str(runs[-1]), "--quiet"])
        assert result.exit_code == 0, result.output
    report = tmp_path / "comparison.md"
    result = CliRunner().invoke(twin, ["compare", *map(str, runs), "--out", str(report)])
    assert result.exit_code == 0, result.output
    assert "**Not the same traffic**" in report.read_text()
    assert "| confirmation |" in result.stdout
    missing = CliRunner().invoke(twin, ["compare", str(runs[0]), str(tmp_path)])
    assert missing.exit_code == 2
    assert "not a complete run directory" in missing.output


def test_an_amqp_target_without_a_ledger_is_a_usage_error(tmp_path):
    path = write_scenario(tmp_path / "scenario.yaml", DOCUMENT)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"keys": [{"name": "mes", "key": "m" * 16, "source": "MES"}]}))
    result = CliRunner().invoke(
        twin, ["load", str(path), "--target", AMQP_URL, "--keys", str(keys)]
    )
    assert result.exit_code == 2
    assert "--ledger" in result.output


class LockedLedger:
    """The SQLite ledger's write lock held by the test: the consumer's next commit waits."""

    def __init__(self, path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.db.execute("ROLLBACK")
        self.db.close()


def crash_mid_group(tmp_path, consumer, *switches: str) -> dict[str, Any]:
    """Drive a two-hour schedule while the consumer's first group waits for the ledger's lock,
    SIGKILL the consumer then, and start it again (without `switches`): the summary."""
    doc = document(horizon="2h", **{"assert": ["drift.final_undelivered_messages == 0"]})
    consuming = consumer(doc, *switches)
    locked: list[LockedLedger] = []
    result: dict[str, Any] = {}

    def lock(_plan: str) -> None:  # once the schedule is made, before the first publish
        locked.append(LockedLedger(tmp_path / "ledger.db"))

    def drive() -> None:
        path = write_scenario(tmp_path / "scenario.yaml", doc)
        options = options_for(consuming, speed=2_000.0)  # outcomes may stall 10 s: a restart
        result["summary"] = load_run(path, options, out_dir=tmp_path / "run", announce=lock)

    runner = threading.Thread(target=drive)
    runner.start()
    deadline = time.monotonic() + 30
    while not locked and runner.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert locked, "the load run never started driving"
    try:
        time.sleep(1.0)  # the first deliveries arrive, and the consumer's group waits
        consuming.kill()
    finally:
        locked[0].release()
    consumer(doc)  # started again, acking after the commit
    runner.join(120)
    assert not runner.is_alive(), "the load run did not end"
    return result["summary"].summary


def test_messages_a_consumer_acked_before_committing_are_reported_lost(tmp_path, consumer):
    """Negative control: acked before the commit, killed before it: those messages are gone
    from the broker, their outcomes never come, the run ends anyway (it does not wait for
    ever) and names them undelivered; the assertion on it fails."""
    summary = crash_mid_group(tmp_path, consumer, "--ack-before-commit")
    lost = summary["load"]["broker"]["unanswered"]
    assert lost > 0
    assert summary["drift"]["final_undelivered_messages"] > 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"  # lost, not miscounted
    assert [r["passed"] for r in summary["assertions"]] == [False]


def test_a_consumer_killed_mid_group_loses_nothing_when_it_acks_after_the_commit(
    tmp_path, consumer
):
    """The control's other side: the same crash, acks after the commit: the group comes back
    from the broker, every message is answered and posted once."""
    summary = crash_mid_group(tmp_path, consumer)
    broker = summary["load"]["broker"]
    assert broker["unanswered"] == 0
    # every outcome of every batch heard once: an answer per send, the redelivered group's
    # outcomes (answered again after the restart) beyond them
    extra = sum(broker["extra_outcomes"].values())
    assert broker["outcomes_heard"] == summary["load"]["sends"]["answered"] + extra
    assert summary["drift"]["final_undelivered_messages"] == 0
    assert summary["duplicates"]["posted"] == 0
    assert summary["drift"]["final_unexplained_value"] == "0.00"
    assert [r["passed"] for r in summary["assertions"]] == [True]
