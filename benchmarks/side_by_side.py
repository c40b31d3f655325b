"""core_throughput.py --baseline REV: this checkout's core beside git revision REV's.

Both run the same core measurement (`core_throughput.py --core-only`) in fresh subprocesses,
this checkout's `integration` package or REV's (exported with `git archive`) first on the
PYTHONPATH, alternating which goes first from one repeat to the next, so that they share the
machine's load and neither inherits the other's heap. Each run reports wall and CPU time;
on a shared machine the CPU time is the steadier of the two.
"""

from __future__ import annotations

import sys
from pathlib import Path

from checkout import ROOT, export_packages, json_child

KINDS = ("memory", "wal_file")


def core_times(
    script: str, source: Path, messages: int, directory: str, group: int
) -> dict[str, dict]:
    """{kind: {"wall": s, "cpu": s}} of one core run per kind, `group` messages per
    transaction, with the `integration` package found under `source`, in a subprocess."""
    command = [sys.executable, script, "--core-only", "--messages", str(messages)]
    return json_child([*command, "--group", str(group), "--dir", directory], source)


class SideBySide:
    """The runs of this checkout and of the baseline, repeat after repeat."""

    def __init__(self, script: str, revision: str, workdir: Path) -> None:
        self.script = script
        self.sources = {"this_checkout": ROOT, "baseline": workdir / "baseline"}
        self.commit = export_packages(revision, self.sources["baseline"], "integration")
        self.times: dict[str, list[dict]] = {name: [] for name in self.sources}

    def run(self, repeat: int, messages: int, directory: str, group: int) -> None:
        """One run of each, the baseline first on odd repeats."""
        names = list(self.sources)
        for name in names if repeat % 2 == 0 else reversed(names):
            self.times[name].append(
                core_times(self.script, self.sources[name], messages, directory, group)
            )

    def report(self, messages: int) -> dict:
        """Best wall and CPU time of each kind and side, and this checkout's speedups."""
        best = {
            name: {
                kind: {clock: min(run[kind][clock] for run in runs) for clock in ("wall", "cpu")}
                for kind in KINDS
            }
            for name, runs in self.times.items()
        }
        figures = {
            name: {kind: _figures(messages, times) for kind, times in kinds.items()}
            for name, kinds in best.items()
        }
        speedups = {
            f"speedup_{kind}{suffix}": round(
                best["baseline"][kind][clock] / best["this_checkout"][kind][clock], 3
            )
            for kind in KINDS
            for clock, suffix in (("wall", ""), ("cpu", "_cpu"))
        }
        return {"baseline_revision": self.commit, **figures, **speedups}


def _figures(messages: int, times: dict[str, float]) -> dict:
    return {
        "messages_per_s": round(messages / times["wall"], 1),
        "wall_s": round(times["wall"], 4),
        "cpu_s": round(times["cpu"], 4),
    }
