"""Two checkouts' `twin serve` measured side by side in one invocation (`--compare-with DIR`).

A change to the service or the store is judged against the code before it under the same
machine load: for each measurement, the baseline checkout's service and this checkout's run
one after the other (baseline first), `repeat` times, and the faster run of each is kept. DIR
is any tree of the project's sources, e.g. `git archive REV | tar -x -C DIR`; its own code
serves (the subprocess runs `python -m sim.cli` from DIR), the load and the checks are this
checkout's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from service_load import Load
from service_run import ServiceRuns


def side_by_side(
    runs: ServiceRuns, baseline: Path, single: Load, batches: dict[int, Load], trivial_rate: float
) -> dict:
    """PostgreSQL single, the largest PostgreSQL batch and SQLite single, each measured for the
    baseline checkout and this one alternately."""
    largest = max(batches)
    theirs = replace(runs, root=baseline, repeat=1)
    ours = replace(runs, repeat=1)
    measurements = {  # name: (backend of a tag, load, batch size)
        "postgres_single": (runs.postgres, single, None),
        f"postgres_batch_{largest}": (runs.postgres, batches[largest], largest),
        "sqlite_file_single": (runs.sqlite, single, None),
    }
    figures: dict = {"baseline_checkout": str(baseline), "runs_each": runs.repeat}
    for name, (backend, load, size) in measurements.items():
        found: dict[str, list[dict]] = {"baseline": [], "this": []}
        for n in range(runs.repeat):  # a fresh ledger (file or schema) for every run
            found["baseline"].append(theirs.measure(backend(f"cmp_base{n}_{name}"), load, size))
            found["this"].append(ours.measure(backend(f"cmp_this{n}_{name}"), load, size))
        fastest = {side: max(runs_, key=_rate) for side, runs_ in found.items()}
        figures[name] = {
            **fastest,
            "speedup": round(_rate(fastest["this"]) / _rate(fastest["baseline"]), 3),
        }
        if size is None:
            figures[name]["over_trivial"] = {
                side: round(_rate(run) / trivial_rate, 4) for side, run in fastest.items()
            }
    return figures


def _rate(run: dict) -> float:
    return run["events_per_s"]
