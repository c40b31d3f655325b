"""The twin's queue model against the real broker, printed as one JSON object.

    python benchmarks/broker_model.py [--scenario scenarios/baseline.yaml]
        [--speeds 5000,50000] [--db sqlite|postgres] [--out DIR]

For each speed: `twin load --target amqp://…` drives the scenario against `twin consume` (a
process, a fresh topology prefix and ledger, 4 queues), then `twin run` simulates the same
scenario and seed with `integration.pattern: queue` set as the consumer runs, twice: with one
consumer (one `twin consume` process serves its queues on one core thread) and with as many
consumers as queues (each queue has one active consumer). The service time is calibrated
from this speed's real run: a lognormal through the median and 90th percentile of its
uncorrected latency (confirm to outcome, wall clock) times the speed (a load run's virtual
time runs `speed` times faster than the wall clock, so the real consumer looks `speed` times
slower in it). `sim.report.compare` sets each model run and the real run side by side (A: the
model, B: the real run; ratios B / A); the Markdown of each comparison goes to `--out`.

What the calibration cannot carry into the model (why the two differ) is in the README,
"The queue model against the real broker".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from checkout import ROOT, source_revision

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from broker_parts import (
    AMQP_URL,
    Consume,
    delete_topology,
    ensure_users,
    fresh_topology,
    run,
    user_name,
)
from service_postgres import drop_schema, pg_base, schema_name, with_query
from service_processes import KEYS, stop_all_children

from sim import load_scenario
from sim.load import LoadOptions, load_run
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams
from sim.report.compare import compare_runs, render_comparison
from sim.run.session import run_scenario

DEFAULT_PG_URL = os.environ.get("MFG_TWIN_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
Z90 = 1.2816  # the standard normal's 90th percentile


def write_config(directory: Path, scenario_path: str) -> tuple[Path, Path]:
    """The scenario's core settings and one key (an AMQP user) per benchmark source."""
    scenario = load_scenario(scenario_path)
    settings = Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()
    settings_path = directory / "core-settings.json"
    settings_path.write_text(settings.model_dump_json())
    keys = [{"name": user_name(s), "key": k, "source": s.value} for s, k in KEYS.items()]
    keys_path = directory / "keys.json"
    keys_path.write_text(json.dumps({"keys": keys}))
    return settings_path, keys_path


def lognormal_through(p50_ms: float, p90_ms: float, speed: float) -> dict:
    """The service time (virtual) of a lognormal with this median and 90th percentile (wall)."""
    sigma = max(math.log(max(p90_ms, p50_ms * 1.01) / p50_ms) / Z90, 0.05)
    mean = p50_ms * math.exp(sigma**2 / 2)
    sd = mean * math.sqrt(math.exp(sigma**2) - 1)
    virtual = lambda ms: f"{ms * speed / 1000:.3f}s"  # noqa: E731
    return {"kind": "lognormal", "mean": virtual(mean), "sd": virtual(sd)}


def real_run(scenario_path: str, speed: float, db_url: str, config, tmp: Path) -> Path:
    """`twin load` against a fresh `twin consume`: the run directory."""
    topology = fresh_topology()
    consume = Consume(db_url, topology, config, tmp / f"consume-{topology.prefix}.log")
    users = {source: (user_name(source), key) for source, key in KEYS.items()}
    options = LoadOptions(
        AMQP_URL, KEYS, ledger=db_url, prefix=topology.prefix, users=users, speed=speed
    )
    out = tmp / f"real-{speed:g}"
    try:
        consume.start()
        load_run(scenario_path, options, out_dir=out)
    finally:
        consume.stop()
        run(delete_topology(topology))
    return out


def calibration(real_dir: Path, speed: float) -> dict:
    """The model's service time from the real run's uncorrected latency over all workflows
    (the workflow with most messages; its median and 90th percentile)."""
    load = json.loads((real_dir / "summary.json").read_text())["load"]
    busiest = max(load["latency_ms"], key=lambda w: load["latency_ms"][w]["uncorrected"]["count"])
    figures = load["latency_ms"][busiest]["uncorrected"]
    return {
        "from_workflow": busiest,
        "real_p50_ms": figures["p50"],
        "real_p90_ms": figures["p90"],
        "service_time": lognormal_through(figures["p50"], figures["p90"], speed),
    }


QUEUES = 4  # the topology's default, as `twin consume` runs here


def model_run(scenario_path: str, service_time: dict, consumers: int, out: Path) -> Path:
    overrides = (
        "integration.pattern=queue",
        f"integration.consumers={consumers}",
        f"integration.service_time={json.dumps(service_time)}",
    )
    run_scenario(scenario_path, overrides, out, progress=False)
    return out


def one_speed(args, speed: float, config, tmp: Path, schemas: list[str]) -> dict:
    if args.db == "postgres":
        schema = schema_name("model")
        schemas.append(schema)
        db_url = with_query(pg_base(args.pg_url), schema=schema)
    else:
        db_url = f"sqlite:///{tmp / f'ledger-{speed:g}.db'}"
    real_dir = real_run(args.scenario, speed, db_url, config, tmp)
    calibrated = calibration(real_dir, speed)
    comparisons = {}
    for consumers in (1, QUEUES):
        out = tmp / f"model-{speed:g}-{consumers}"
        model_dir = model_run(args.scenario, calibrated["service_time"], consumers, out)
        comparison = compare_runs(model_dir, real_dir)
        comparisons[f"consumers_{consumers}"] = comparison
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            name = f"comparison-{speed:g}x-{consumers}-consumers.md"
            Path(args.out, name).write_text(render_comparison(comparison))
    real = json.loads((real_dir / "summary.json").read_text())
    return {
        "speed": speed,
        "calibration": calibrated,
        "real_load": {
            "rate_per_s": real["load"]["rate_per_s"],
            "late_share": real["load"]["sends"]["late_share"],
            "broker": real["load"]["broker"],
        },
        "comparisons": comparisons,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default=str(ROOT / "scenarios" / "baseline.yaml"))
    parser.add_argument("--speeds", default="5000,50000", help="virtual seconds per wall second")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--out", default=None, help="write each comparison's Markdown here")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    report: dict = {"scenario": args.scenario, "db": args.db, "runs": []}
    schemas: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="broker-model-") as tmp_name:
            tmp = Path(tmp_name)
            config = write_config(tmp, args.scenario)
            ensure_users(config[1])
            for speed in (float(s) for s in args.speeds.split(",")):
                report["runs"].append(one_speed(args, speed, config, tmp, schemas))
    finally:
        stop_all_children()
        for name in schemas:
            with suppress(Exception):
                drop_schema(pg_base(args.pg_url), name)
    report["revision"] = source_revision("integration", "sim")
    report["total_wall_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
