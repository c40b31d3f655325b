"""The core's transactions on PostgreSQL, in process, by how many messages each holds; printed
as one JSON object.

    python benchmarks/postgres_groups.py [--messages 4800] [--repeat 3] [--baseline REV]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test]

What is measured: the timed mix of benchmarks/workload.py (the service benchmark's: a material
issue, an operation completion that backflushes 5 components and a finished-goods receipt) sent
to a `Core` on a fresh PostgreSQL schema, after its setup was posted untimed, in one of these
ways:

* `submit`: `Core.submit`, a plain commit per message;
* `batch_1`, `batch_8`, `batch_500`: `Core.submit_many` of 1, 8 or 500 messages, a batch's
  transaction each: what the service's group commit and its batch endpoint run (with 16
  requests in flight, service_throughput.py's single run forms groups of about 8);
* `transaction_1000`: `Core.transaction()` around 1,000 `Core.submit` calls, as an embedded
  caller that submits message by message;
* `joined_8`: a first core posts half the messages in batches of 500 (untimed); a second core
  then joins the ledger and the two take turns, `Core.submit_many` of 8 each: only the second
  core's batches are timed, what a process that joins a busy ledger pays (scaled-out consumers,
  a service beside a CLI).

For each way, the best of `--repeat` runs: milliseconds of wall and CPU time per transaction
and microseconds per message. CPU time is the core's process alone, so wall minus CPU is about
what the core waited on PostgreSQL (round trips, the server's work, the commit's WAL flush).

With `--baseline REV`, every way runs for git revision REV's `integration` too, each run in a
fresh subprocess, the two sides alternating: `speedup` is the baseline's wall time over this
checkout's, `speedup_cpu` the same for CPU time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from checkout import ROOT, export_packages, import_from_source_only, json_child, source_revision
from service_postgres import drop_schema, pg_base, schema_name, with_query
from workload import START, build_settings, build_workload

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
WAYS = {  # way -> (how, messages per transaction)
    "submit": ("submit", 1),
    "batch_1": ("submit_many", 1),
    "batch_8": ("submit_many", 8),
    "batch_500": ("submit_many", 500),
    "transaction_1000": ("transaction", 1000),
    "joined_8": ("joined", 8),
}


def measure_way(way: str, messages: int, pg_url: str) -> dict:
    """One timed run of `way` on a fresh schema (dropped after): wall and CPU seconds."""
    import_from_source_only()
    from integration import Core, ManualClock, open_store

    how, size = WAYS[way]
    workload = build_workload(messages)
    schema = schema_name("groups")

    def new_core() -> Core:
        url = with_query(pg_url, schema=schema)
        return Core(build_settings(), open_store(url), ManualClock(START + timedelta(days=1)))

    try:
        core = new_core()
        for chunk in _chunks(workload.setup_messages, 500):
            core.submit_many(chunk)
        if how == "joined":
            joined = new_core()
            transactions, wall, cpu = _taking_turns(core, joined, workload.timed, size)
            joined.close()
        else:
            transactions, wall, cpu = _alone(core, how, workload.timed, size)
        _check(core, workload)
        core.close()
    finally:
        drop_schema(pg_url, schema)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "transactions": len(transactions),
        "messages": sum(len(transaction) for transaction in transactions),
    }


def _alone(core, how: str, messages: list[str], size: int) -> tuple[list, float, float]:
    """Every message sent by `core` the way `how` says, `size` a transaction: the
    transactions, and their wall and CPU seconds."""
    transactions = _chunks(messages, size)
    send = _sender(core, how)
    start, start_cpu = time.perf_counter(), time.process_time()
    for messages_of_one in transactions:
        send(messages_of_one)
    return transactions, time.perf_counter() - start, time.process_time() - start_cpu


def _sender(core, how: str):
    """The call that sends one transaction's messages the way `how` says."""
    if how == "submit":
        return lambda messages: core.submit(messages[0])
    if how == "submit_many":
        return core.submit_many

    def in_transaction(messages: list[str]) -> None:
        with core.transaction():
            for message in messages:
                core.submit(message)

    return in_transaction


def _taking_turns(first, joined, messages: list[str], size: int) -> tuple[list, float, float]:
    """`first` posts half the messages in batches of 500; then `first` and `joined` take turns,
    `size` messages a batch. `joined`'s batches, and their wall and CPU seconds."""
    half = len(messages) // 2
    for chunk in _chunks(messages[:half], 500):
        first.submit_many(chunk)
    turns = _chunks(messages[half:], size)
    wall = cpu = 0.0
    for turn, chunk in enumerate(turns):
        if turn % 2:
            first.submit_many(chunk)
            continue
        start, start_cpu = time.perf_counter(), time.process_time()
        joined.submit_many(chunk)
        wall, cpu = wall + time.perf_counter() - start, cpu + time.process_time() - start_cpu
    return turns[0::2], wall, cpu


def _check(core, workload) -> None:
    """Every message posted once: the run measured the work it claims."""
    expected = len(workload.setup_messages) + len(workload.timed)
    posted = core.store.connection.execute(
        "SELECT COUNT(*) FROM inbox WHERE status = 'POSTED'"
    ).fetchone()[0]
    if posted != expected or not core.reconcile().ok:
        raise SystemExit(f"the run did not post cleanly: {posted} of {expected} posted")


def _chunks(items: list, size: int) -> list[list]:
    return [items[n : n + size] for n in range(0, len(items), size)]


def run_child(source: Path, way: str, messages: int, pg_url: str) -> dict:
    """`measure_way` in a fresh subprocess with the `integration` package of `source`."""
    command = [sys.executable, __file__, "--child", way, "--messages", str(messages)]
    return json_child([*command, "--pg-url", pg_url], source)


def figures(runs: list[dict]) -> dict:
    """The best run's wall and CPU time per transaction and per message."""
    wall = min(run["wall_s"] for run in runs)
    cpu = min(run["cpu_s"] for run in runs)
    transactions, messages = runs[0]["transactions"], runs[0]["messages"]
    return {
        "ms_per_transaction": round(wall / transactions * 1e3, 3),
        "cpu_ms_per_transaction": round(cpu / transactions * 1e3, 3),
        "us_per_message": round(wall / messages * 1e6, 1),
        "cpu_us_per_message": round(cpu / messages * 1e6, 1),
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4_800, help="timed messages per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way; best reported")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server (no schema)")
    parser.add_argument("--baseline", metavar="REV", help="a git revision to measure beside")
    parser.add_argument("--child", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    pg_url = pg_base(args.pg_url)
    if args.child:
        print(json.dumps(measure_way(args.child, args.messages, pg_url)))
        return 0

    with tempfile.TemporaryDirectory(prefix="postgres-groups-") as tmp:
        sources = {"this_checkout": ROOT}
        report: dict = {"repeat": args.repeat}
        if args.baseline:
            sources["baseline"] = Path(tmp) / "baseline"
            report["baseline_revision"] = export_packages(
                args.baseline, sources["baseline"], "integration"
            )
        runs: dict[str, dict[str, list[dict]]] = {name: {w: [] for w in WAYS} for name in sources}
        for repeat in range(args.repeat):
            for way in WAYS:
                order = list(sources) if repeat % 2 == 0 else list(reversed(sources))
                for name in order:
                    runs[name][way].append(run_child(sources[name], way, args.messages, pg_url))
    report["messages"] = runs["this_checkout"]["submit"][0]["messages"]
    for name, ways in runs.items():
        report[name] = {way: figures(done) for way, done in ways.items()}
    if args.baseline:
        report["speedup"] = _speedups(report, "wall_s")
        report["speedup_cpu"] = _speedups(report, "cpu_s")
    report["revision"] = source_revision("integration")
    print(json.dumps(report, indent=2))
    return 0


def _speedups(report: dict, clock: str) -> dict[str, float]:
    return {
        way: round(report["baseline"][way][clock] / report["this_checkout"][way][clock], 3)
        for way in WAYS
    }


if __name__ == "__main__":
    sys.exit(main())
