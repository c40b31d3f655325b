"""Summary figures of whole runs: relational `assert:` lines, drift left by messages the heal
phase never delivered, messages still held at the end, and dead letters by their first code."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from integration import Core, ManualClock, Outcome, open_store
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from sim.run.rebuild import rebuild
from sim.run.runner import simulate
from sim.run.session import run_scenario
from sim.run.targets import InProcessTarget, replay_rounds
from sim.scenario.assertions import ANY, SUMMARY_KEYS, check_syntax
from tests.integration.test_http_target import asgi_target
from tests.scenarios import harness

LIBRARY = Path(__file__).resolve().parents[2] / "scenarios"
DETECTED_ALL = "duplicates.detected == duplicates.delivered"

# The heal phase ends a minute after the horizon while a long-tailed network still carries
# messages: their physical effects are missing from the books, through no fault of the core.
SHORT_HEAL = (
    "measures.heal=1m",
    "faults.network_delay={kind: lognormal, mean: 30m, sd: 2h}",
)
# ECOs the MES adopts late (REVISION_MISMATCH dead letters) on orders the ERP closes ten
# minutes after their last receipt: by the heal phase's replay the order is closed, and the
# letter fails again as WORK_ORDER_CLOSED.
RECODED = ("demand.close_delay=10m",)


def _with_line(tmp_path: Path, name: str, line: str) -> Path:
    document = yaml.safe_load((LIBRARY / f"{name}.yaml").read_text(encoding="utf-8"))
    document["assert"] = [*document["assert"], line]
    return harness.write_scenario(tmp_path / f"{name}.yaml", document)


def _line(summary: dict, expr: str) -> dict:
    return next(result for result in summary["assertions"] if result["expr"] == expr)


def test_every_duplicate_detected_holds_in_the_storm_and_fails_without_idempotency(tmp_path):
    source = _with_line(tmp_path, "duplicate_storm", DETECTED_ALL)
    healthy = run_scenario(source, ["horizon=12h"], out_dir=tmp_path / "on", progress=False)
    result = _line(healthy.summary, DETECTED_ALL)
    duplicates = healthy.summary["duplicates"]
    assert result["passed"] is True and duplicates["delivered"] > 0
    assert result["values"] == {
        "duplicates.detected": duplicates["detected"],
        "duplicates.delivered": duplicates["delivered"],
    }

    overrides = ["horizon=12h", "integration.idempotency=false"]
    broken = run_scenario(source, overrides, out_dir=tmp_path / "off", progress=False)
    result = _line(broken.summary, DETECTED_ALL)
    assert result["passed"] is False and "error" not in result
    seen = result["values"]
    assert seen["duplicates.detected"] < seen["duplicates.delivered"]
    assert f"{DETECTED_ALL} (duplicates.detected " in "\n".join(broken.failed_assertions())


def test_messages_the_heal_phase_never_delivered_are_undelivered_not_unexplained(tmp_path):
    source = harness.write_scenario(tmp_path / "small.yaml", harness.document())
    run = run_scenario(source, SHORT_HEAL, out_dir=tmp_path / "run", progress=False)
    drift, heal = run.summary["drift"], run.summary["heal"]
    assert drift["final_undelivered_messages"] > 0
    assert drift["final_undelivered_messages"] == heal["unsent"] + heal["in_flight"]
    assert float(drift["final_undelivered_value"]) > 0
    assert drift["final_unexplained_value"] == "0.00"
    assert float(drift["final_value"]) > 0
    # the same figures from the trace and the ledger alone
    rebuilt = rebuild(run.out).summary
    assert harness.without_run(rebuilt) == harness.without_run(run.summary)


class _NeverExpires(InProcessTarget):
    """The real core, healed by an operator who replays dead letters but expires no hold."""

    def heal(self, at: datetime) -> tuple[list[Outcome], list[Outcome]]:
        self.clock.set(at)
        return [], replay_rounds(self.core.replay)


def _settings(scenario):
    return Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()


def test_messages_still_held_at_the_end_are_counted(tmp_path):
    scenario = harness.scenario(SHORT_HEAL)
    assert simulate(scenario).summary["events"]["held_at_end"] == 0  # the heal expires holds

    ledger = str(tmp_path / "ledger.db")
    target = _NeverExpires(_settings(scenario), ledger, scenario.start)
    counted = simulate(scenario, target=target).summary["events"]["held_at_end"]
    reopened = Core(_settings(scenario), open_store(ledger), ManualClock(scenario.start))
    try:
        assert counted == reopened.held_count > 0  # the core's own count of what it holds
    finally:
        reopened.close()


def test_a_dead_letter_replayed_and_recoded_keeps_its_first_code():
    scenario = harness.scenario(("edge_cases.ecos_per_week=20", *RECODED))
    summary = simulate(scenario).summary
    dead = summary["dead_letters"]
    assert dead["by_code"].get("WORK_ORDER_CLOSED", 0) > 0
    assert dead["by_first_code"].get("REVISION_MISMATCH", 0) >= dead["by_code"]["WORK_ORDER_CLOSED"]
    assert "WORK_ORDER_CLOSED" not in dead["by_first_code"]
    assert sum(dead["by_first_code"].values()) == dead["total"]
    assert sum(dead["by_code"].values()) == dead["remaining"]

    over_http = simulate(scenario, target=asgi_target(_settings(scenario))).summary
    assert over_http["dead_letters"]["by_first_code"] == dead["by_first_code"]
    assert over_http["dead_letters"]["by_code"] == dead["by_code"]


def _figures(node: Any, path: str = "") -> Iterator[str]:
    """The dotted keys of a summary's figures (lists, such as findings, left out)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _figures(value, f"{path}{key}.")
    elif not isinstance(node, list):
        yield path.removesuffix(".")


def _fixed(node: Any, path: str = "") -> Iterator[str]:
    """The keys `SUMMARY_KEYS` names outright (no wildcard, not a section of codes)."""
    for key, value in node.items():
        if key in ("*", "#") or value is ANY or path.endswith(_OPEN_SECTIONS):
            continue
        if isinstance(value, dict):
            yield from _fixed(value, f"{path}{key}.")
        else:
            yield f"{path}{key}"


_OPEN_SECTIONS = ("by_code.", "by_first_code.", "outcomes.", "by_type.")  # name only what happened


def test_the_keys_assertions_accept_are_the_keys_a_summary_has():
    summary = harness.summary(*SHORT_HEAL)
    figures = set(_figures(summary))
    check_syntax([f"{figure} == {figure}" for figure in sorted(figures)])  # none refused
    assert set(_fixed(SUMMARY_KEYS)) <= figures  # and none promised that a summary lacks
