"""`twin sweep`: the grid, common random numbers, confidence intervals, failed replications,
warm-up deletion, and the same sweep on a local process pool and on a Dask cluster."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from integration import ConfigurationError
from sim.cli import twin
from sim.run.session import report_run, run_scenario
from sim.sweep.grid import grid, parse_set, split_top_level
from sim.sweep.report import estimate, metric_value, t_quantile
from sim.sweep.session import sweep_scenario
from tests.scenarios import harness

BIN = Path(sys.executable).parent


def _per_replication(out: Path) -> dict[str, str]:
    """replications/<variant>/seed<N>.json -> the summary outside `run`, canonical."""
    found = {}
    for path in sorted((out / "replications").glob("*/*.json")):
        found[f"{path.parent.name}/{path.name}"] = harness.without_run(json.loads(path.read_text()))
    return found


# --- the Dask cluster, started here on loopback ---------------------------------------------
def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def dask_scheduler(tmp_path: Path) -> Iterator[str]:
    """A `dask scheduler` and two single-threaded `dask worker` subprocesses on 127.0.0.1."""
    from distributed import Client

    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    scheduler_file = tmp_path / "scheduler.json"
    logs = (tmp_path / "dask.log").open("wb")
    started = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            stdout=logs,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path.cwd(),
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() or not scheduler_file.read_text().strip():
            assert time.monotonic() < deadline, "the Dask scheduler did not start"
            assert started[0].poll() is None, "the Dask scheduler exited"
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            started.append(
                subprocess.Popen(
                    [
                        str(BIN / "dask"),
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nworkers",
                        "1",
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--no-dashboard",
                        "--memory-limit",
                        "0",
                    ],
                    stdout=logs,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=Path.cwd(),
                )
            )
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for process in reversed(started):
            _stop(process)
        logs.close()


def test_a_sweep_gives_the_same_replications_locally_and_on_dask(
    small_file, tmp_path, dask_scheduler
):
    sets = ["integration.consumers=2,4"]
    local = sweep_scenario(small_file, sets, 2, out_dir=tmp_path / "local", progress=False)
    dask = sweep_scenario(
        small_file, sets, 2, out_dir=tmp_path / "dask", progress=False, scheduler=dask_scheduler
    )
    assert not local.result.failures and not dask.result.failures
    replications = _per_replication(local.out)
    assert len(replications) == 4
    assert replications == _per_replication(dask.out)
    seeds = {json.loads(s)["seed"] for s in replications.values()}
    assert seeds == {3, 4}  # replication r uses seed 3 + r in both variants
    for name in ("sweep.csv", "sweep.md"):  # nothing in them reads the wall clock
        assert (local.out / name).read_text() == (dask.out / name).read_text()


def test_a_parameter_that_cannot_change_the_traffic_gives_identical_variants(small_file, tmp_path):
    # nothing is left to drain after the heal phase's first minutes, so its length cannot matter
    outcome = sweep_scenario(
        small_file, ["measures.heal=2h,3h"], 2, out_dir=tmp_path, progress=False, workers=2
    )
    first, second = (outcome.result.results[v.name] for v in outcome.result.variants)
    assert [harness.without_run(r.summary) for r in first] == [
        harness.without_run(r.summary) for r in second
    ]
    assert first[0].summary != first[1].summary  # but the replications do differ


def test_confidence_intervals_match_a_hand_computation():
    e = estimate([1.0, 2.0, 3.0, 4.0])
    s = math.sqrt(((1.5**2) * 2 + (0.5**2) * 2) / 3)  # sample sd = 1.2910
    assert e.n == 4 and e.mean == 2.5
    assert e.half_width == pytest.approx(3.182446 * s / 2)  # t(0.975, 3) = 3.182446
    assert (e.low, e.high) == pytest.approx(
        (2.5 - 2.0543, 2.5 + 2.0543), abs=1e-4
    )  # 3.1824 x 1.2910 / 2
    assert estimate([5.0]).half_width is None and estimate([]).mean is None
    summary = {"events": {"messages": 480}, "drift": {"max_value": "12.50"}}
    assert metric_value(summary, "throughput.messages_per_h", 86400) == 20
    assert metric_value(summary, "drift.max_value", 86400) == 12.5
    assert metric_value(summary, "latency_ms.confirmation.p99", 86400) is None


@pytest.mark.parametrize(
    ("df", "quantile"),
    [(1, 12.706), (2, 4.303), (3, 3.182), (10, 2.228), (30, 2.042), (31, 2.040), (100, 1.984),
     (1000, 1.962), (10**6, 1.960)],
)  # fmt: skip
def test_the_t_quantile_matches_the_tables(df, quantile):
    assert round(t_quantile(df), 3) == quantile


def test_the_t_quantile_needs_one_degree_of_freedom():
    with pytest.raises(ValueError, match="at least two values"):
        t_quantile(0)


def test_a_failed_replication_is_reported_with_its_seed_and_the_sweep_exits_1(small_file, tmp_path):
    # a store in a folder that does not exist: a valid scenario that fails when it runs
    missing = f"sqlite:///{tmp_path / 'no-such-folder' / 'ledger.db'}"
    out = tmp_path / "sweep"
    result = runner_sweep(small_file, out, f"store.url=run,{missing}", quiet=False)
    assert result.exit_code == 1, result.output
    assert "2 of 4 finished" in result.stdout
    failed = [line for line in result.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 2
    for line, seed in zip(failed, (3, 4), strict=True):
        assert line.startswith("FAILED v01-store.url=sqlite")
        assert f" seed {seed}: ConfigurationError: cannot open SQLite database" in line
    # the other variant finished, after which the sweep was written whole
    assert "twin sweep small: 100%, 4 of 4 replications, 2 failed" in result.stderr
    md = (out / "sweep.md").read_text()
    assert "seed 3: ConfigurationError: cannot open SQLite database" in md
    for name in ("sweep.csv", "sweep.html", "plots/comparison.png"):
        assert (out / name).exists()
    finished = sorted(p.relative_to(out).as_posix() for p in out.glob("runs/*/*/summary.json"))
    assert finished == ["runs/v00-store.url=run/seed3/summary.json",
                        "runs/v00-store.url=run/seed4/summary.json"]  # fmt: skip


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            ["faults.nosuch=0,1"],
            [
                "Error: 2 of 2 sweep variants are invalid; nothing ran:",
                "variant v00-faults.nosuch=0 (faults.nosuch=0):",
                "  --set faults.nosuch=0: faults.nosuch: unknown key",
                "variant v01-faults.nosuch=1 (faults.nosuch=1):",
                "  --set faults.nosuch=1: faults.nosuch: unknown key",
            ],
        ),
        (
            ["faults.duplicate_rat=0,0.1"],
            [
                (
                    "  --set faults.duplicate_rat=0: faults.duplicate_rat: unknown key; "
                    "did you mean faults.duplicate_rate?"
                )
            ],
        ),
        (
            ["integration.consumers=1,2", "faults.duplicate_rate=0,-1"],
            [
                "Error: 2 of 4 sweep variants are invalid; nothing ran:",
                (
                    "variant v01-integration.consumers=1__faults.duplicat (integration.consumers=1, "
                    "faults.duplicate_rate=-1):"
                ),
                (
                    "  --set faults.duplicate_rate=-1: faults.duplicate_rate: "
                    "Input should be greater than or equal to 0"
                ),
                (
                    "variant v03-integration.consumers=2__faults.duplicat (integration.consumers=2, "
                    "faults.duplicate_rate=-1):"
                ),
            ],
        ),
    ],
)
def test_every_variant_is_checked_before_anything_runs(small_file, tmp_path, sets, expected):
    out = tmp_path / "sweep"
    result = runner_sweep(small_file, out, *sets)
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    first = lines.index(expected[0])
    assert lines[first : first + len(expected)] == expected
    assert "Traceback" not in result.output
    assert not out.exists()  # no replication ran: none left a run directory, nor a summary


def runner_sweep(small_file: Path, out: Path, *sets: str, quiet: bool = True):
    args = ["sweep", str(small_file), "--replications", "2", "--workers", "2", "--out", str(out)]
    args += [f"--set={s}" for s in sets] + ["--keep-runs"] + ["--quiet"] * quiet
    return CliRunner().invoke(twin, args)


def test_set_values_split_on_top_level_commas_only():
    assert split_top_level("1,2, 3") == ["1", "2", "3"]
    assert split_top_level("{kind: lognormal, mean: 30s},{kind: constant, mean: 1s}") == [
        "{kind: lognormal, mean: 30s}",
        "{kind: constant, mean: 1s}",
    ]
    assert split_top_level("[1, 2],'a,b',x") == ["[1, 2]", "'a,b'", "x"]
    key, values = parse_set("faults.network_delay={kind: lognormal, mean: 30s, sd: 60s},0.1")
    assert key == "faults.network_delay"
    assert values == [{"kind": "lognormal", "mean": "30s", "sd": "60s"}, 0.1]
    with pytest.raises(ConfigurationError):
        split_top_level("{a: 1")
    with pytest.raises(ConfigurationError):
        parse_set("no-equals")
    variants = grid({"a": [1, 2], "b": ["x", "y"]})
    assert [v.values for v in variants] == [
        (("a", 1), ("b", "x")),
        (("a", 1), ("b", "y")),
        (("a", 2), ("b", "x")),
        (("a", 2), ("b", "y")),
    ]
    assert variants[0].overrides() == ["a=1", 'b="x"']


def test_the_sweep_section_and_warm_up_deletion(small_document, tmp_path):
    small_document["sweep"] = {
        "parameters": {"measures.heal": ["2h"]},
        "replications": 1,
        "metrics": ["latency_ms.confirmation.count"],
        "warmup": "12h",
    }
    path = harness.write_scenario(tmp_path / "s.yaml", small_document)
    outcome = sweep_scenario(path, out_dir=tmp_path / "sweep", progress=False, workers=1)
    (replication,) = outcome.result.results[outcome.result.variants[0].name]
    warm = replication.summary["latency_ms"]["confirmation"]["count"]
    whole = harness.summary()["latency_ms"]["confirmation"]["count"]
    assert 0 < warm < whole
    assert replication.summary["duplicates"] == harness.summary()["duplicates"]  # whole-run
    assert replication.summary["events"] == harness.summary()["events"]


def test_the_warm_up_survives_a_rebuild(small_file, tmp_path):
    run = run_scenario(small_file, ["measures.warmup=8h"], tmp_path / "run", progress=False)
    rebuilt = report_run(run.out)
    assert harness.without_run(rebuilt.summary) == harness.without_run(run.summary)
    assert run.summary["latency_ms"] != harness.summary()["latency_ms"]
