"""Same scenario, same seed, same code: the same summary outside `run` and the same series;
another seed gives another run (docs/architecture.md, Run outputs and Negative controls)."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from sim.run.runner import simulate
from sim.run.session import run_scenario
from sim.run.targets import InProcessTarget
from sim.scenario.document import load_scenario
from tests.integration.pg import PG_URL, fresh_schema
from tests.scenarios import harness

# Every source of randomness at once: network duplicates, loss, crashes, renumbered resends,
# reordering, batched reporting, ECOs and breakdowns.
BUSY = (
    "faults.duplicate_rate=0.05",
    "faults.loss_rate=0.02",
    "faults.crash_after_commit_rate=0.02",
    "faults.crash_before_commit_rate=0.02",
    "faults.renumbered_resend_rate=0.02",
    "faults.network_delay={kind: lognormal, mean: 2s, sd: 4s}",
    "mes.reporting=batched",
    "edge_cases.ecos_per_week=10",
    "plants.0.work_centres.0.mtbf=6h",
)


def test_the_same_seed_gives_the_same_summary_and_series():
    first = simulate(harness.scenario(BUSY))
    second = simulate(harness.scenario(BUSY))
    assert first.summary["events"]["messages"] > 300
    assert harness.without_run(first.summary) == harness.without_run(second.summary)
    assert json.dumps(first.series, sort_keys=True) == json.dumps(second.series, sort_keys=True)
    assert len(first.series) >= 24  # one sample an hour over a day


def test_another_seed_gives_another_summary_and_series():
    first = harness.run(*BUSY)
    other = harness.run(*BUSY, "seed=4")
    assert harness.without_run(first.summary) != harness.without_run(other.summary)
    assert json.dumps(first.series, sort_keys=True) != json.dumps(other.series, sort_keys=True)
    # ... and not merely in the echoed seed
    assert first.summary["events"] != other.summary["events"]


def test_where_the_ledger_lives_does_not_change_the_summary(tmp_path: Path, small_document):
    """A run directory (file ledger, trace written) and an in-memory run agree."""
    path = harness.write_scenario(tmp_path / "busy.yaml", small_document)
    outcome = run_scenario(path, BUSY, out_dir=tmp_path / "run", progress=False)
    in_memory = harness.run(*BUSY)
    assert harness.without_run(outcome.summary) == harness.without_run(in_memory.summary)
    series = json.loads((tmp_path / "run" / "series.json").read_text())
    assert series == json.loads(json.dumps(in_memory.series, default=str))


def test_a_postgresql_ledger_in_process_gives_the_same_summary():
    """The in-process target's groups on PostgreSQL (deferred batches) answer as SQLite does."""
    with fresh_schema() as schema:
        run = simulate(harness.scenario((*BUSY, f"store.url={PG_URL}?schema={schema}")))
    assert run.summary["ledger"]["entries"] > 0
    assert harness.without_run(run.summary) == harness.without_run(harness.run(*BUSY).summary)


def test_the_month_end_gives_the_same_summary_on_postgresql():
    """month_end_3_plants for two hours (about 2,400 messages): groups of 1,000 in which a
    held record whose row was already sent changes twice before it posts. PostgreSQL's one
    statement for a group's outcome changes once updated such a record once for two changes,
    took it for missing, and the run failed."""
    path = Path(__file__).parents[2] / "scenarios" / "month_end_3_plants.yaml"
    on_sqlite = simulate(load_scenario(path, ["horizon=2h"]), processes=1)
    with fresh_schema() as schema:
        store = f"store.url={PG_URL}?schema={schema}"
        on_postgres = simulate(load_scenario(path, ["horizon=2h", store]), processes=1)
    assert on_postgres.summary["events"]["messages"] > 2000
    assert harness.without_run(on_postgres.summary) == harness.without_run(on_sqlite.summary)


def test_how_the_in_process_core_groups_its_commits_does_not_change_the_summary():
    """The in-process target commits its messages in groups (1,000 by default, one group for
    this small run); groups of one, or of seven, give the same run."""
    scenario = harness.scenario(BUSY)
    settings = Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()
    grouped = harness.run(*BUSY)
    assert grouped.summary["events"]["messages"] > 300
    for size in (1, 7):
        target = InProcessTarget(settings, ":memory:", scenario.start, group=size)
        run = simulate(scenario, target=target)
        assert harness.without_run(run.summary) == harness.without_run(grouped.summary)


def test_the_summary_does_not_depend_on_the_interpreters_hash_seed(tmp_path: Path, small_document):
    """Set iteration order changes with PYTHONHASHSEED; none of it may reach the summary."""
    path = harness.write_scenario(tmp_path / "busy.yaml", small_document)
    summaries = []
    for hash_seed in ("1", "2"):
        out = tmp_path / f"hash{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        args = [sys.executable, "-m", "sim.cli", "run", str(path), "--out", str(out), "--quiet"]
        for override in BUSY:
            args += ["--set", override]
        subprocess.run(args, check=True, env=env, capture_output=True, timeout=120)
        summaries.append(json.loads((out / "summary.json").read_text()))
    assert harness.without_run(summaries[0]) == harness.without_run(summaries[1])


def test_a_run_collects_garbage_less_often_and_puts_the_collector_back():
    before = gc.get_threshold()
    during = []
    simulate(harness.scenario(), progress=lambda *_: during.append(gc.get_threshold()))
    assert during and all(threshold == (50_000, *before[1:]) for threshold in during)
    assert gc.get_threshold() == before
