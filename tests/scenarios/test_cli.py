"""`twin run`, `twin schema` and the committed scenarios (docs/architecture.md, Run outputs)."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from sim.cli import twin
from sim.run.session import run_scenario
from sim.scenario.document import load_scenario, scenario_schema

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
RUN_FILES = ("summary.json", "report.md", "series.json", "trace.jsonl.gz", "ledger.db")


def _run(*args: str):
    return CliRunner().invoke(twin, ["run", *args, "--quiet"], catch_exceptions=False)


def test_check_exits_1_when_an_assertion_fails(small_file, tmp_path):
    out = tmp_path / "run"
    result = _run(
        str(small_file), "--out", str(out), "--check", "--set", 'assert=["duplicates.posted > 5"]'
    )
    assert result.exit_code == 1, result.output
    assert "FAILED duplicates.posted > 5 (value 0)" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["assertions"] == [{"expr": "duplicates.posted > 5", "passed": False, "value": 0}]


def test_without_check_a_failed_assertion_still_exits_0(small_file, tmp_path):
    result = _run(
        str(small_file), "--out", str(tmp_path / "run"), "--set", 'assert=["duplicates.posted > 5"]'
    )
    assert result.exit_code == 0, result.output


def test_check_exits_0_and_writes_the_run_directory_when_assertions_hold(small_file, tmp_path):
    out = tmp_path / "run"
    asserts = (
        'assert=["duplicates.posted == 0", "ledger.balanced == true", "events.messages > 100"]'
    )
    result = _run(str(small_file), "--out", str(out), "--check", "--set", asserts)
    assert result.exit_code == 0, result.output
    for name in RUN_FILES:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert all(result["passed"] for result in summary["assertions"])
    assert len(summary["assertions"]) == 3
    assert "# small (seed 3)" in (out / "report.md").read_text()
    assert "small seed 3:" in result.output


def test_seed_option_overrides_the_scenarios_seed(small_file, tmp_path):
    result = _run(str(small_file), "--out", str(tmp_path / "run"), "--seed", "9")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["seed"] == 9


def test_check_writes_junit_xml(small_file, tmp_path):
    failing, passing = tmp_path / "failing", tmp_path / "passing"
    _run(
        str(small_file),
        "--out",
        str(failing),
        "--check",
        "--set",
        'assert=["duplicates.posted > 5"]',
    )
    _run(
        str(small_file),
        "--out",
        str(passing),
        "--check",
        "--set",
        'assert=["duplicates.posted == 0"]',
    )
    assert (failing / "junit.xml").exists()
    assert (passing / "junit.xml").exists()
    failed = ET.parse(failing / "junit.xml").getroot()
    assert failed.get("failures") == "1"
    assert failed.find(".//testcase/failure") is not None
    held = ET.parse(passing / "junit.xml").getroot()
    assert held.get("failures") == "0"
    assert held.find(".//testcase") is not None


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("faults.duplicate_rate=2", "faults.duplicate_rate"),
        ("plants.0.work_centres.0.capacity=zero", "plants.0.work_centres.0.capacity"),
        ("integration.pattern=carrier-pigeon", "integration.pattern"),
        ("faults.bogus=1", "faults.bogus"),
        ("horizon=soon", "horizon"),
    ],
)
def test_a_bad_override_is_a_usage_error_naming_the_field(small_file, tmp_path, override, field):
    result = CliRunner().invoke(
        twin, ["run", str(small_file), "--out", str(tmp_path / "run"), "--quiet", "--set", override]
    )
    assert result.exit_code == 2, result.output
    assert field in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "summary.json").exists()


def test_a_bad_override_in_a_real_process_has_no_traceback(small_file, tmp_path):
    twin_script = Path(sys.executable).with_name("twin")
    done = subprocess.run(
        [str(twin_script), "run", str(small_file), "--out", str(tmp_path / "run"), "--quiet",
         "--set", "faults.duplicate_rate=2"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "faults.duplicate_rate" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_an_unknown_override_is_blamed_with_the_nearest_key(small_file, tmp_path):
    result = CliRunner().invoke(
        twin, ["run", str(small_file), "--quiet", "--set", "duplicate_rate=0.1"]
    )
    assert result.exit_code == 2, result.output
    assert (
        "Error: --set duplicate_rate=0.1: duplicate_rate: unknown key; "
        "did you mean faults.duplicate_rate?"
    ) in result.stderr
    assert "is not a valid scenario" not in result.stderr


def test_a_file_that_is_not_yaml_is_named_with_the_line(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nplants:\n  - id: A\n   work_centres: []\n")
    result = CliRunner().invoke(twin, ["run", str(broken), "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"Error: {broken}:4:4: invalid YAML: expected <block end>" in result.stderr
    assert "<unicode string>" not in result.stderr


def test_version_is_the_installed_packages():
    result = CliRunner().invoke(twin, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"twin, version {importlib.metadata.version('mfg-twin')}\n"


def test_without_a_terminal_a_run_prints_progress_lines(small_file, tmp_path):
    result = CliRunner().invoke(twin, ["run", str(small_file), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("twin run small: ")]
    shares = [line.split(": ")[1].split(",")[0] for line in lines]
    assert shares == [f"{n}%" for n in range(10, 101, 10)]  # every tenth of the horizon
    assert lines[4].startswith("twin run small: 50%, day 0.5 of 1.0, ")
    assert " messages (" in lines[4] and " elapsed, ETA " in lines[4]
    assert "small seed 3:" in result.stdout and "twin run" not in result.stdout


def test_a_bad_assert_line_is_a_usage_error(small_file, tmp_path):
    result = CliRunner().invoke(
        twin,
        [
            "run",
            str(small_file),
            "--quiet",
            "--out",
            str(tmp_path / "r"),
            "--set",
            'assert=["duplicates.posted ~ 0"]',
        ],
    )
    assert result.exit_code == 2
    assert "assert line 1" in result.output


def test_schema_writes_the_scenario_schema(tmp_path):
    out = tmp_path / "nested" / "schema.json"
    result = CliRunner().invoke(twin, ["schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == scenario_schema()


def test_the_committed_schema_is_not_stale():
    committed = SCENARIOS / "schema.json"
    assert committed.exists(), "scenarios/schema.json is missing: run `twin schema`"
    assert json.loads(committed.read_text()) == scenario_schema(), "stale: run `twin schema`"


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_scenario_loads(path):
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.assertions


def test_there_are_committed_scenarios():
    assert {"baseline.yaml", "shift_change_burst.yaml"} <= {
        p.name for p in SCENARIOS.glob("*.yaml")
    }


@pytest.mark.parametrize("name", ["baseline", "shift_change_burst"])
def test_committed_scenarios_pass_their_own_assertions(name, tmp_path):
    outcome = run_scenario(SCENARIOS / f"{name}.yaml", out_dir=tmp_path, progress=False)
    assert outcome.failed_assertions() == []
    assert len(outcome.summary["assertions"]) == len(
        load_scenario(SCENARIOS / f"{name}.yaml").assertions
    )
