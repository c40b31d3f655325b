"""`twin run` end to end: load the scenario, make the run directory, simulate with a progress
bar, and write the summary, the trace and the report."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim.report.output import write_run, write_scenario
from sim.report.trace import Trace
from sim.run.progress import ProgressDisplay
from sim.run.runner import simulate
from sim.scenario.assertions import AssertionResult, failure_lines, write_junit
from sim.scenario.document import Scenario, load_scenario

__all__ = ["RunOutcome", "run_scenario", "report_run", "default_run_dir", "prepare_run_dir"]

STALE = (
    *("ledger.db", "ledger.db-wal", "ledger.db-shm", "ledger.db.lock"),
    *("trace.jsonl.gz", "junit.xml", "books.json"),
    *("summary.json", "series.json", "histograms.json", "report.md", "report.html"),
)


@dataclass(frozen=True)
class RunOutcome:
    out: Path
    summary: dict[str, Any]

    def failed_assertions(self) -> list[str]:
        return failure_lines(self.summary["assertions"])

    def headline(self) -> str:
        s = self.summary
        return (
            f"{s['scenario']} seed {s['seed']}: {s['events']['messages']} messages, "
            f"duplicates posted {s['duplicates']['posted']}, "
            f"unexplained drift {s['drift']['final_unexplained_value']}, "
            f"dead letters remaining {s['dead_letters']['remaining']}"
            + (f", {s['run']['wall_s']} s" if "wall_s" in s.get("run", {}) else "")
        )


def default_run_dir(scenario: Scenario) -> Path:
    """reports/<scenario>/<UTC timestamp>-seed<N>/ (the only wall-clock read: a folder name)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path("reports") / scenario.name / f"{stamp}-seed{scenario.seed}"


def prepare_run_dir(scenario: Scenario, out_dir: str | Path | None) -> Path:
    """The run directory, emptied of an earlier run, with scenario.yaml written first so that
    even a run cut off can be rebuilt."""
    out = Path(out_dir) if out_dir is not None else default_run_dir(scenario)
    out.mkdir(parents=True, exist_ok=True)
    for stale in STALE:
        (out / stale).unlink(missing_ok=True)  # a run directory holds one run
    shutil.rmtree(out / "plots", ignore_errors=True)
    write_scenario(out, scenario)
    return out


def run_scenario(
    path: str | Path,
    overrides: Sequence[str] = (),
    out_dir: str | Path | None = None,
    progress: bool = True,
    junit: bool = False,
    processes: int | None = None,
) -> RunOutcome:
    """Run one scenario file into a run directory and return where it went and its summary
    (`processes`: 1 or 2, or None to let `simulate` choose)."""
    scenario = load_scenario(path, tuple(overrides))
    out = prepare_run_dir(scenario, out_dir)
    trace = Trace(out / "trace.jsonl.gz")
    try:
        if progress:
            run = _with_progress(scenario, out, trace, processes)
        else:
            run = simulate(scenario, out, trace=trace, processes=processes)
    finally:
        trace.close()
    write_run(out, run.summary, run.series, run.measures.encoded_histograms())
    if junit:
        results = [AssertionResult(**result) for result in run.summary["assertions"]]
        write_junit(out / "junit.xml", scenario.name, results)
    return RunOutcome(out, run.summary)


def report_run(out: Path) -> RunOutcome:
    """Rebuild a run directory's summary, series, histograms and report from its raw data."""
    from sim.run.rebuild import rebuild  # opens the ledger: only when asked

    run = rebuild(out)
    write_run(out, run.summary, run.series, run.measures.encoded_histograms())
    return RunOutcome(out, run.summary)


def _with_progress(scenario: Scenario, out: Path, trace: Trace, processes: int | None):
    horizon = scenario.horizon.total_seconds()
    with ProgressDisplay(f"twin run {scenario.name}", horizon) as shown:

        def advance(virtual_s: float, messages: int) -> None:
            rate = messages / max(shown.elapsed, 1e-9)
            days = f"day {virtual_s / 86400:.1f} of {horizon / 86400:.1f}"
            shown.update(virtual_s, f"{days}, {messages:,} messages ({rate:,.0f}/s)")

        return simulate(scenario, out, trace=trace, progress=advance, processes=processes)
