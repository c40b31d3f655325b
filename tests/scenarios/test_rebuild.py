"""`twin report RUN_DIR` rebuilds a run's summary from its raw data (trace + ledger)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from integration import ConfigurationError
from sim.cli import twin
from sim.run.rebuild import rebuild
from sim.run.session import run_scenario

FAULTS = [
    "horizon=12h",
    "mes.reporting=batched",
    "faults.duplicate_rate=0.05",
    "faults.crash_after_commit_rate=0.02",
    "faults.loss_rate=0.02",
    "edge_cases.missing_lot_rate=0.2",
    "edge_cases.ecos_per_week=20",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A run with duplicates, losses, holds, dead letters and ECO cost changes."""
    from tests.scenarios import harness

    out = tmp_path_factory.mktemp("run")
    source = harness.write_scenario(out / "small.yaml", harness.document())
    run_scenario(source, FAULTS, out_dir=out / "run", progress=False)
    return out / "run"


def _without_run(summary: dict) -> dict:
    return {key: value for key, value in summary.items() if key != "run"}


def test_the_report_of_a_copied_run_rebuilds_an_equal_summary(finished, tmp_path):
    copy = shutil.copytree(finished, tmp_path / "copy")
    (copy / "summary.json").unlink()
    (copy / "series.json").unlink()
    result = CliRunner().invoke(twin, ["report", str(copy)])
    assert result.exit_code == 0, result.output
    original = json.loads((finished / "summary.json").read_text())
    rebuilt = json.loads((copy / "summary.json").read_text())
    assert original["duplicates"]["delivered"] > 0 and original["dead_letters"]["total"] > 0
    kinds = {json.loads(line)["kind"] for line in gzip.open(copy / "trace.jsonl.gz", "rt")}
    assert {"truth", "message", "answer", "resolution", "cover", "cost", "sample"} <= kinds
    assert _without_run(rebuilt) == _without_run(original)
    assert json.loads((copy / "series.json").read_text()) == json.loads(
        (finished / "series.json").read_text()
    )
    assert (copy / "report.md").read_text() == (finished / "report.md").read_text()


def test_a_run_cut_off_mid_trace_is_still_reported(finished, tmp_path):
    copy = shutil.copytree(finished, tmp_path / "cut")
    (copy / "summary.json").unlink()
    lines = gzip.open(finished / "trace.jsonl.gz", "rt").read().splitlines(keepends=True)
    with gzip.open(copy / "trace.jsonl.gz", "wt") as cut:
        cut.writelines(lines[: len(lines) // 2])
        cut.write('{"kind": "answer", "t"')  # the line being written when it stopped
    run = rebuild(copy)
    original = json.loads((finished / "summary.json").read_text())
    assert 0 < run.summary["events"]["messages"] < original["events"]["messages"]
    assert run.summary["run"] == {}


def test_a_folder_that_is_not_a_run_is_a_usage_error(tmp_path):
    with pytest.raises(ConfigurationError, match="not a run directory"):
        rebuild(tmp_path)
    result = CliRunner().invoke(twin, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a run directory" in result.output and "Traceback" not in result.output
