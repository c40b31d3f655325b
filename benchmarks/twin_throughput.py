"""The twin end to end as `twin run` runs it, at benchmark scale; prints JSON.

    .venv/bin/python benchmarks/twin_throughput.py [--set horizon=5d ...]
        [--baseline REV [--baseline-horizon 6d] [--repeat 1]]

Variants of scenarios/month_end_3_plants.yaml, each in a fresh process so its peak RSS is its
own:

* `run`: `run_scenario`, the path of `twin run` -- the real core (in a process of its own where
  the run pipelines), its SQLite ledger a WAL file in the run directory, the gzip trace on, the
  summary and report written. `wall_s` is the whole call; `ledger_bytes_per_message` and
  `trace_bytes_per_message` are the run directory's files over the messages sent.
* `twin`: the twin alone with its trace, against a null target (books nothing).
* `3day`: `run` over 3 days, for the memory ratio.
* `core`: the core stage alone, over 2 days: the twin's calls on its target recorded (the flow
  does not depend on the answers), then replayed into `InProcessTarget` on a WAL file;
  `core_cpu_us_per_message` is the replay's CPU time per message (robust where the machine's
  speed wanders, as wall time is not).

`per_message_us` splits the wall time per message: what the wall target allows, the twin alone,
and what the core adds to it (run minus twin); `core_alone` is the `core` variant's CPU time per
message, what the core's stage costs in a pipelined run before the pipe's own costs.

With `--baseline REV` (e.g. `71a49ea`), the `run` and `twin` variants also run for git revision
REV's `sim` and `integration`, alternately with this checkout's, at `--baseline-horizon`, in the
same invocation: `side_by_side.speedup` is the baseline's run wall over this checkout's (the
best of `--repeat` each), `per_message_ratio` this checkout's per-message figures over the
baseline's. Both sides go through the public API only (`sim.run_scenario`, `sim.simulate`),
which a revision with another layout of `sim/` also has, and each imports from its own tree
only (`checkout.import_from_source_only`: the editable install would otherwise lend REV's
tree the modules it lacks, such as this checkout's faster trace writer).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from checkout import ROOT, export_packages, import_from_source_only, json_child, source_revision

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "month_end_3_plants.yaml"
TARGETS = {
    "wall_s_max": 120,
    "peak_rss_mb_max": 1536,
    "rss_ratio_max": 2.0,
    "speedup_min": 2.4,
    "per_message_ratio_max": 0.5,
}
VARIANTS = ("run", "twin", "3day", "core")
CORE_HORIZON = "horizon=2d"  # the recorded calls are kept in memory


def _trace(path: Path):
    """A trace file as `twin run` writes it, wherever the checkout keeps the class."""
    try:
        from sim.report.trace import Trace
    except ImportError:  # a revision before sim/ was regrouped
        from sim.output import Trace
    return Trace(path)


def _core_settings(scenario):
    """The core settings `twin run` gives its core, wherever the checkout keeps the catalogue."""
    try:
        from sim.model.catalogue import Catalogue
        from sim.model.streams import Streams
    except ImportError:  # a revision before sim/ was regrouped
        from sim.catalogue import Catalogue
        from sim.streams import Streams
    return Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()


def _core_alone(overrides: list[str], out: Path) -> dict:
    """The twin's calls on its target, recorded, then replayed into the in-process core."""
    from sim import InProcessTarget, NullTarget, load_scenario, simulate

    calls: list[tuple] = []

    class Recorder(NullTarget):
        def submit(self, envelope, at):
            calls.append(("submit", envelope, at))
            return super().submit(envelope, at)

        def expire(self, at):
            calls.append(("expire", at))
            return []

        def heal(self, at):
            calls.append(("heal", at))
            return [], []

    scenario = load_scenario(SCENARIO, [*overrides, CORE_HORIZON])
    simulate(scenario, out / "recording", target=Recorder())
    target = InProcessTarget(_core_settings(scenario), str(out / "ledger.db"), scenario.start)
    started, cpu = time.perf_counter(), time.process_time()
    for name, *args in calls:
        getattr(target, name)(*args)
    books = target.books()
    target.close()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - started
    messages = sum(1 for call in calls if call[0] == "submit")
    return {
        "variant": "core",
        "messages": messages,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "core_cpu_us_per_message": round(1e6 * cpu / messages, 1),
        "reconciled": books.reconciled,
    }


def _file_bytes(out: Path, *names: str) -> int:
    return sum((out / name).stat().st_size for name in names if (out / name).exists())


def _variant(name: str, overrides: list[str]) -> dict:
    from sim import NullTarget, load_scenario, run_scenario, simulate

    with tempfile.TemporaryDirectory() as work:
        out = Path(work)
        if name == "core":
            return _core_alone(overrides, out)
        started = time.perf_counter()
        if name == "twin":
            trace = _trace(out / "trace.jsonl.gz")
            try:
                summary = simulate(
                    load_scenario(SCENARIO, overrides), out, target=NullTarget(), trace=trace
                ).summary
            finally:
                trace.close()
        else:
            summary = run_scenario(SCENARIO, overrides, out, progress=False).summary
        wall = time.perf_counter() - started
        messages = summary["events"]["messages"]
        figures = {
            "variant": name,
            "truth_events": summary["events"]["truth"],
            "messages": messages,
            "wall_s": round(wall, 3),
            "simulate_wall_s": summary["run"]["wall_s"],
            "messages_per_s": round(messages / wall, 1),
            "peak_rss_mb": summary["run"]["peak_rss_mb"],
            "trace_bytes_per_message": round(_file_bytes(out, "trace.jsonl.gz") / messages, 1),
        }
        if name == "twin":
            return figures
        ledger = _file_bytes(out, "ledger.db", "ledger.db-wal")
    return {
        **figures,
        "ledger_bytes_per_message": round(ledger / messages, 1),
        "duplicates_posted": summary["duplicates"]["posted"],
        "final_unexplained_value": summary["drift"]["final_unexplained_value"],
        "processes": summary["run"].get("processes", 1),
    }


def _in_subprocess(name: str, overrides: list[str], source: Path = ROOT) -> dict:
    """One variant in a fresh process, importing `sim` and `integration` from `source`."""
    command = [sys.executable, __file__, "--variant", name]
    for override in overrides:
        command += ["--set", override]
    return json_child(command, source)


def _per_message(run: dict, twin: dict, core: dict) -> dict:
    """Microseconds per message: the twin alone and what the core adds to it (wall), and the
    core's stage alone (CPU)."""
    return {
        "twin_alone": round(1e6 * twin["wall_s"] / twin["messages"], 1),
        "core_added": round(1e6 * (run["wall_s"] - twin["wall_s"]) / run["messages"], 1),
        "core_alone": core["core_cpu_us_per_message"],
    }


def _side_by_side(revision: str, overrides: list[str], repeat: int) -> dict:
    """This checkout's run and twin beside `revision`'s, alternating which goes first."""
    with tempfile.TemporaryDirectory() as work:
        sources = {"this_checkout": ROOT, "baseline": Path(work) / "baseline"}
        commit = export_packages(revision, sources["baseline"], "integration", "sim")
        found: dict[str, dict[str, list[dict]]] = {
            side: {"run": [], "twin": [], "core": []} for side in sources
        }
        for turn in range(repeat):
            for side in list(sources) if turn % 2 else list(reversed(sources)):
                for variant in ("run", "twin", "core"):
                    figures = _in_subprocess(variant, overrides, sources[side])
                    found[side][variant].append(figures)
    best = {
        side: {variant: min(runs, key=lambda r: r["wall_s"]) for variant, runs in kinds.items()}
        for side, kinds in found.items()
    }
    per_message = {side: _per_message(b["run"], b["twin"], b["core"]) for side, b in best.items()}
    ours, theirs = per_message["this_checkout"], per_message["baseline"]
    return {
        "baseline_revision": commit,
        "wall_s": {
            side: {v: [r["wall_s"] for r in runs] for v, runs in kinds.items()}
            for side, kinds in found.items()
        },
        "messages": {side: b["run"]["messages"] for side, b in best.items()},
        "speedup": round(
            best["baseline"]["run"]["wall_s"] / best["this_checkout"]["run"]["wall_s"], 3
        ),
        "per_message_us": per_message,
        "per_message_ratio": {part: round(ours[part] / theirs[part], 3) for part in ours},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--variant", choices=VARIANTS)
    parser.add_argument("--baseline", metavar="REV", help="a git revision to run beside")
    parser.add_argument("--baseline-horizon", default="6d")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.variant:
        import_from_source_only()
        extra = ["horizon=3d"] if args.variant == "3day" else []
        print(json.dumps(_variant(args.variant, [*args.overrides, *extra])))
        return
    figures = {name: _in_subprocess(name, args.overrides) for name in VARIANTS}
    run, twin, three_days, core = (figures[name] for name in VARIANTS)
    report = {
        "scenario": SCENARIO.name,
        "revision": source_revision("integration", "sim"),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        **figures,
        "rss_ratio_full_to_3_days": round(run["peak_rss_mb"] / three_days["peak_rss_mb"], 2),
        "per_message_us": {
            "allowed_at_target": round(1e6 * TARGETS["wall_s_max"] / run["messages"], 1),
            **_per_message(run, twin, core),
        },
        "targets": TARGETS,
    }
    if args.baseline:
        horizon = [*args.overrides, f"horizon={args.baseline_horizon}"]
        report["side_by_side"] = {
            "horizon": args.baseline_horizon,
            **_side_by_side(args.baseline, horizon, args.repeat),
        }
    report["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
