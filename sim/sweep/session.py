"""`twin sweep` end to end: plan the grid, pick the executor (a local process pool, or a Dask
cluster's `concurrent.futures` executor when a scheduler address is given), check every
variant, run every replication with progress over finished ones, and write the sweep report."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from integration import ConfigurationError
from sim.run.progress import ProgressDisplay
from sim.sweep.grid import Replication, SweepResult, failures_text, local_executor, plan, run_sweep

__all__ = ["SweepOutcome", "executor_for", "sweep_scenario"]


@dataclass(frozen=True)
class SweepOutcome:
    out: Path
    result: SweepResult

    def failure_lines(self) -> list[str]:
        return failures_text(self.result.failures)

    def headline(self) -> str:
        r = self.result
        total = len(r.variants) * r.replications
        return (
            f"{r.scenario.name} sweep: {len(r.variants)} variants x {r.replications} "
            f"replications (seeds {r.scenario.seed}..{r.scenario.seed + r.replications - 1}), "
            f"{total - len(r.failures)} of {total} finished"
        )


@contextmanager
def executor_for(workers: int = 2, scheduler: str | None = None) -> Iterator[Executor]:
    """A local process pool of `workers`, or the executor of a Dask cluster at `scheduler`."""
    if scheduler is None:
        with local_executor(workers) as pool:
            yield pool
        return
    try:
        from distributed import Client
    except ImportError as error:
        raise ConfigurationError("--scheduler needs Dask: pip install 'mfg-twin[dask]'") from error
    try:
        client = Client(scheduler, timeout=30)
    except OSError as error:
        raise ConfigurationError(f"cannot reach the Dask scheduler {scheduler}: {error}") from error
    try:
        yield client.get_executor(pure=False)
    finally:
        client.close()


def _default_out(name: str) -> Path:
    """reports/<scenario>/sweep-<UTC timestamp>/ (the only wall-clock read: a folder name)."""
    return Path("reports") / name / f"sweep-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"


def sweep_scenario(
    path: str | Path | dict[str, Any],
    sets: Sequence[str] = (),
    replications: int | None = None,
    metrics: Sequence[str] = (),
    *,
    seed: int | None = None,
    workers: int = 2,
    scheduler: str | None = None,
    out_dir: str | Path | None = None,
    keep_runs: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
) -> SweepOutcome:
    """Run the sweep of `path` (its `sweep:` section and `sets`) and write its report."""
    from sim.sweep.report import write_report

    document, result = plan(path, sets, replications, metrics, seed)
    out = Path(out_dir) if out_dir is not None else _default_out(result.scenario.name)
    runs = (out / "runs").resolve() if keep_runs else None  # a worker may have another cwd
    total = len(result.variants) * result.replications
    with _bar(result.scenario.name, total, progress) as advance:
        if executor is not None:
            run_sweep(executor, document, result, runs, advance)
        else:
            with executor_for(workers, scheduler) as chosen:
                run_sweep(chosen, document, result, runs, advance)
    write_report(out, result)
    return SweepOutcome(out, result)


@contextmanager
def _bar(name: str, total: int, shown: bool) -> Iterator[Callable[[Replication], None] | None]:
    """Progress over finished replications (`sim.run.progress`), or None when not shown."""
    if not shown:
        yield None
        return
    done = failed = 0
    with ProgressDisplay(f"twin sweep {name}", total) as display:

        def advance(replication: Replication) -> None:
            nonlocal done, failed
            done += 1
            failed += replication.error is not None
            display.update(done, f"{done} of {total} replications, {failed} failed")

        display.update(0, f"0 of {total} replications, 0 failed")
        yield advance
