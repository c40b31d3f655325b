"""`twin settings` and `twin load` from the command line, the way a team would run them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from click.testing import CliRunner

from integration import CoreSettings
from sim import load_scenario
from sim.cli import twin
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from tests.integration.served import Served
from tests.load.test_live_target import DOCUMENT
from tests.scenarios.harness import write_scenario


def test_twin_settings_prints_the_core_settings_the_scenario_needs(tmp_path):
    path = write_scenario(tmp_path / "scenario.yaml", DOCUMENT)
    result = CliRunner().invoke(
        twin, ["settings", str(path), "--set", "integration.hold_timeout=5m"]
    )
    assert result.exit_code == 0, result.output
    printed = CoreSettings.model_validate_json(result.output)
    scenario = load_scenario(path, ("integration.hold_timeout=5m",))
    assert printed == Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()
    assert printed.hold_timeout.total_seconds() == 300


def test_twin_load_without_keys_is_a_usage_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MFG_TWIN_API_KEYS", raising=False)
    path = write_scenario(tmp_path / "scenario.yaml", DOCUMENT)
    result = CliRunner().invoke(twin, ["load", str(path), "--target", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "no API keys" in result.output


def test_twin_load_check_passes_against_twin_serve_and_writes_junit(tmp_path):
    scenario_path = write_scenario(tmp_path / "scenario.yaml", DOCUMENT)
    settings = CliRunner().invoke(twin, ["settings", str(scenario_path)]).output
    served = Served(
        f"sqlite:///{tmp_path}/ledger.db", tmp_path, CoreSettings.model_validate_json(settings)
    ).start()
    keys_path = tmp_path / "keys.json"  # the keys file the service was started with
    out = tmp_path / "run"
    try:
        result = CliRunner().invoke(
            twin,
            [
                *("load", str(scenario_path), "--target", served.url, "--keys", str(keys_path)),
                *("--speed", "20000", "--late-ms", "1000", "--out", str(out), "--check"),
            ],
        )
    finally:
        served.stop()
    assert result.exit_code == 0, result.output
    assert "duplicates posted 0, unexplained drift 0.00" in result.stdout
    assert "deliveries over" in result.stderr  # what is about to be driven, announced
    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    assert [case.get("name") for case in cases] == DOCUMENT["assert"]
    assert json.loads((out / "summary.json").read_text())["load"]["target"] == served.url
