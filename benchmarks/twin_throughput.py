"""The twin end to end at benchmark scale; prints JSON.

Runs scenarios/month_end_3_plants.yaml in process against the real core with a SQLite ledger
file, then the same scenario against a null target (the twin alone, to split twin time from
core time), then a 3-day run of it for the memory comparison. Each variant runs in a fresh
process so peak RSS is its own.

    .venv/bin/python benchmarks/twin_throughput.py [--set horizon=5d ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from checkout import ROOT, export_packages

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "month_end_3_plants.yaml"
TARGETS = {"wall_s_max": 120, "peak_rss_mb_max": 1536, "rss_ratio_max": 2.0}


def _variant(name: str, overrides: list[str]) -> dict:
    # the public API only: a baseline revision beside this checkout may lay sim/ out otherwise
    from sim import NullTarget, load_scenario, simulate

    scenario = load_scenario(SCENARIO, overrides)
    with tempfile.TemporaryDirectory() as out:
        target = NullTarget() if name == "null" else None
        run = simulate(scenario, Path(out), target=target)
    summary = run.summary
    # a null target books nothing, so its drift says nothing
    drift = None if name == "null" else summary["drift"]["final_unexplained_value"]
    return {
        "variant": name,
        "horizon_days": scenario.horizon.total_seconds() / 86400,
        "truth_events": summary["events"]["truth"],
        "messages": summary["events"]["messages"],
        "wall_s": summary["run"]["wall_s"],
        "truth_events_per_s": summary["run"]["events_per_s"],
        "messages_per_s": summary["run"]["messages_per_s"],
        "peak_rss_mb": summary["run"]["peak_rss_mb"],
        "duplicates_posted": summary["duplicates"]["posted"],
        "final_unexplained_value": drift,
    }


def _in_subprocess(name: str, overrides: list[str], source: Path = ROOT) -> dict:
    """One variant in a fresh process, importing `sim` and `integration` from `source`."""
    command = [sys.executable, __file__, "--variant", name]
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, "PYTHONPATH": str(source)}
    done = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(done.stdout)


def _side_by_side(revision: str, overrides: list[str], repeat: int) -> dict:
    """This checkout's wall times beside `revision`'s, alternating which goes first."""
    with tempfile.TemporaryDirectory() as work:
        sources = {"this_checkout": ROOT, "baseline": Path(work) / "baseline"}
        commit = export_packages(revision, sources["baseline"], "integration", "sim")
        walls: dict[str, list[float]] = {name: [] for name in sources}
        for turn in range(repeat):
            for name in list(sources) if turn % 2 else list(reversed(sources)):
                walls[name].append(_in_subprocess("core", overrides, sources[name])["wall_s"])
    return {
        "baseline_revision": commit,
        "wall_s": walls,
        "speedup": round(min(walls["baseline"]) / min(walls["this_checkout"]), 3),
    }


def _per_message(core: dict, null: dict) -> dict:
    """Wall microseconds per message: what the wall target allows, the twin alone (the null
    target) and what the core adds to it."""
    messages = core["messages"]
    return {
        "allowed_at_target": round(1e6 * TARGETS["wall_s_max"] / messages, 1),
        "twin_alone": round(1e6 * null["wall_s"] / null["messages"], 1),
        "core_added": round(1e6 * (core["wall_s"] - null["wall_s"]) / messages, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--variant", choices=("core", "null", "3day"))
    parser.add_argument("--baseline", metavar="REV", help="a git revision to run beside")
    parser.add_argument("--baseline-horizon", default="6d")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if args.variant:
        extra = ["horizon=3d"] if args.variant == "3day" else []
        print(json.dumps(_variant(args.variant, [*args.overrides, *extra])))
        return
    core = _in_subprocess("core", args.overrides)
    null = _in_subprocess("null", args.overrides)
    three_days = _in_subprocess("3day", args.overrides)
    report = {
        "scenario": SCENARIO.name,
        "core": core,
        "null_target": null,
        "three_days": three_days,
        "core_share_of_wall": round(1 - null["wall_s"] / core["wall_s"], 3),
        "rss_ratio_full_to_3_days": round(core["peak_rss_mb"] / three_days["peak_rss_mb"], 2),
        "per_message_us": _per_message(core, null),
        "targets": TARGETS,
    }
    if args.baseline:
        horizon = [*args.overrides, f"horizon={args.baseline_horizon}"]
        report["side_by_side"] = {
            "horizon": args.baseline_horizon,
            **_side_by_side(args.baseline, horizon, args.repeat),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
