"""Two checkouts' `twin serve` measured side by side in one invocation (`--compare-with DIR`).

A change to the service or the store is judged against the code before it under the same
machine load: for each measurement, the baseline checkout's service and this checkout's run
one after the other, `repeat` times, the first of the two taking turns (the machine's speed
drifts within an invocation), and the faster run of each is kept: `speedup` is theirs, and
`speedup_median` the ratio of the sides' median rates (a batch run of 20 requests is over in
two seconds, and its best can be an outlier). DIR
is any tree of the project's sources, e.g. `git archive REV | tar -x -C DIR`; its own code
serves (the subprocess runs `python -m sim.cli` from DIR), the load and the checks are this
checkout's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from statistics import median

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
        sides = {"baseline": theirs, "this": ours}
        for n in range(runs.repeat):  # a fresh ledger (file or schema) for every run
            for side in list(sides) if n % 2 == 0 else reversed(sides):
                tag = f"cmp_{side}{n}_{name}"
                found[side].append(sides[side].measure(backend(tag), load, size))
        fastest = {side: max(runs_, key=_rate) for side, runs_ in found.items()}
        medians = {side: median(_rate(run) for run in runs_) for side, runs_ in found.items()}
        figures[name] = {
            **fastest,
            "speedup": round(_rate(fastest["this"]) / _rate(fastest["baseline"]), 3),
            "speedup_median": round(medians["this"] / medians["baseline"], 3),
        }
        if size is None:
            figures[name]["over_trivial"] = {
                side: round(_rate(run) / trivial_rate, 4) for side, run in fastest.items()
            }
    return figures


def _rate(run: dict) -> float:
    return run["events_per_s"]
