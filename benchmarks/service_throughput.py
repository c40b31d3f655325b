"""Throughput of the core served over HTTP (`twin serve`), printed as one JSON object.

    python benchmarks/service_throughput.py [--messages 9600] [--repeat 1] [--concurrency 16]
        [--batch-sizes 100,500] [--pg-url postgresql://postgres@127.0.0.1:5432/test]
        [--client auto|aiohttp|httpx] [--no-async-commit] [--py-spy DIR]
        [--compare-with DIR | --baseline REV] [--compare-only]

What is measured (the issue's spec), each run on a fresh `twin serve` subprocess (uvicorn with
uvloop + httptools, one process) over a fresh ledger, admitting every submission (the
back-pressure bound set far beyond any backlog here: throughput is measured, not refusals):

* single: every timed message is one `POST /v1/messages`, with `--concurrency` requests in
  flight. Each in-flight slot owns whole work orders (round robin) and sends their messages in
  order, so a work order's issue -> completion -> receipt rhythm is never reordered by the
  concurrency. Every request must answer 200 (POSTED).
* batch: `POST /v1/messages/batch` with `--batch-sizes` messages per request, 2 requests in
  flight (each slot again owning whole work orders), so the server always has the next batch
  waiting. Every outcome must be POSTED.
* senders: purchase receipts as single requests on PostgreSQL, all from the WMS, then the same
  number with the in-flight slots alternating between the WMS and the ERP keys (both may send
  receipts), so consecutive requests come from different senders; the interleaved rate is
  reported against the one-sender rate of the same run (`ratios.interleaved_vs_one_sender`,
  target >= 0.9: group commits take every pending message whatever its sender).
  `--senders-only` runs just these two.
* both against SQLite (a WAL file in a temporary directory) and PostgreSQL (a fresh schema
  `?schema=bench_…`, dropped afterwards).
* the workload: master data (items, BOM + routing), purchase receipts that put the stock on
  hand, and the work-order releases are posted first through the batch endpoint with each
  source's own key (untimed); then the timed mix -- a material issue, an operation completion
  that backflushes 5 components and a finished-goods receipt, 48 messages per work order --
  all from MES with the MES key, pre-built as JSON bodies.

Baselines in the same run:

* trivial: a one-endpoint FastAPI app (reads the body, answers a small JSON) on the same
  stack (uvicorn, uvloop, httptools, one process), fed the same bodies by the same client at
  the same concurrency. The client library (aiohttp or httpx, both async) is chosen by which
  drives this endpoint faster; both rates are reported.
* psycopg: the rows the PostgreSQL single run wrote (inbox, journal_entry, journal_line and
  stock_move, read back with their ids) inserted with psycopg `executemany` into a scratch
  schema of the same DDL: one transaction per message, and one per N messages for each batch
  size. No validation, no bookkeeping: the floor of "write these rows" on this server.
* async_commit (diagnostic, skip with --no-async-commit): PostgreSQL single and the largest
  batch again with `synchronous_commit=off` on the service's connection (libpq `options` in
  the store URL), and the per-message psycopg floor likewise: how much of the PostgreSQL
  figures is the WAL flush of one commit per message. Not the headline figures.

Server and PostgreSQL CPU seconds during each timed window are read from /proc, so a run says
whether the server process was CPU-bound or waiting. Targets (PostgreSQL single >= 1,000
events/s and >= 40 % of the trivial endpoint, aim 1,500; batched >= 10,000 events/s, aim
15,000) are checked in `target`; `single_budget` sets the server CPU a single request may
cost for the ratio beside what it does cost.

Deterministic: the same master data and messages on every run; only the interleaving of the
in-flight slots varies. Self-contained: it builds its own plant network (benchmarks/workload.py,
shared with core_throughput.py) and starts its own processes (no import from tests/).
Subprocesses, temporary files and schemas are removed even when a run fails or the script is
interrupted.

Side by side (`--compare-with DIR`, or `--baseline REV` for a git revision exported to a
temporary directory; service_compare.py): PostgreSQL single, the largest batch and SQLite single
again for the service of another checkout of the project and for this one, alternately, in the
same invocation (`side_by_side`: each side's best run, the speedup of the best runs and that of
the medians, `speedup_median`); with `--compare-only`, only the trivial baseline and these.

This script runs the measurements in order and prints the report; the parts, beside it:
service_processes.py (the subprocesses and their config), service_load.py (the load client and
the figures of a timed run), service_cpu.py (CPU accounting from /proc), service_run.py (one
service run: fresh ledger, untimed setup, timed load, ledger checked), service_postgres.py
(scratch schemas and the psycopg floor) and service_report.py (ratios, targets, definitions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

from checkout import ROOT, export_packages, source_revision

if str(ROOT) not in sys.path:  # `integration` and `sim` from this checkout
    sys.path.insert(0, str(ROOT))

from service_compare import side_by_side
from service_cpu import load_average
from service_load import (
    BATCH_IN_FLIGHT,
    Load,
    LoadResult,
    batch_load,
    best,
    client_event_loop,
    drive,
    rate_of,
    receipts_load,
    single_load,
    summary,
)
from service_postgres import (
    MessageRows,
    drop_schema,
    pg_base,
    psycopg_floor,
    psycopg_floors,
    read_rows,
)
from service_processes import running, stop_all_children, trivial_server, write_config
from service_report import (
    DEFINITIONS,
    mix_summary,
    noisy_measurements,
    ratios,
    single_budget,
    targets,
    versions,
)
from service_run import ServiceRuns
from workload import build_receipts, build_workload

from integration import SourceSystem

DEFAULT_PG_URL = os.environ.get("MFG_TWIN_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PROBE_MESSAGES = 2_400  # bodies per client in the client choice (httpx is slow)


def trivial_baseline(
    choice: str, concurrency: int, repeat: int, tmp: Path, single: Load, messages: int
) -> tuple[str, dict, dict]:
    """Drive the trivial endpoint: pick the faster client on a probe, then time the single
    load with it. Returns the client, the report's `client` and its `trivial`."""
    candidates = [choice] if choice != "auto" else ["aiohttp", "httpx"]
    available = []
    for name in candidates:
        try:
            __import__(name)
            available.append(name)
        except ImportError:
            pass
    if not available:
        raise SystemExit("no load client: pip install aiohttp (or httpx)")
    probe_runs: dict[str, list[LoadResult]] = {name: [] for name in available}
    trivial_runs: list[LoadResult] = []
    with running(trivial_server(tmp)) as trivial:
        probe = single_load(build_workload(min(messages, PROBE_MESSAGES)), concurrency)
        for name in available:
            drive(name, trivial, probe)  # warm-up
        for _ in range(repeat):
            for name in available:
                probe_runs[name].append(drive(name, trivial, probe))
        client = max(available, key=lambda name: rate_of(best(probe_runs[name])))
        for _ in range(repeat):
            trivial_runs.append(drive(client, trivial, single))
    for runs in (*probe_runs.values(), trivial_runs):
        failed = [f for r in runs for f in r.failures]
        if failed:
            raise RuntimeError(f"the trivial endpoint failed: {failed[0]}")
    figures = summary(best(trivial_runs), events=False)
    figures["in_flight"] = concurrency
    chosen = {
        "library": client,
        "event_loop": client_event_loop(),
        "chosen_by": f"higher requests/s on the trivial endpoint over the first "
        f"{sum(map(len, probe.slots))} bodies, "
        "same concurrency",
        "probe_requests_per_s": {name: rate_of(best(runs)) for name, runs in probe_runs.items()},
        "single_in_flight": concurrency,
        "batch_in_flight": BATCH_IN_FLIGHT,
    }
    return client, chosen, figures


def measure_service(
    runs: ServiceRuns,
    single: Load,
    batches: dict[int, Load],
    sizes: list[int],
    spy_dir: Path | None,
    report: dict,
) -> list[MessageRows]:
    """The service on a SQLite WAL file, then on PostgreSQL: single, then each batch size.
    Returns the rows the first PostgreSQL single run wrote (for the psycopg floor)."""
    report["sqlite_file_single"] = runs.measure(
        runs.sqlite("single"),
        single,
        None,
        spy=spy_dir / "sqlite_single.txt" if spy_dir else None,
    )
    for size in sizes:
        report[f"sqlite_file_batch_{size}"] = runs.measure(
            runs.sqlite(f"batch{size}"), batches[size], size
        )

    kept: dict[str, list[MessageRows]] = {}

    def keep_rows(_db_url: str, schema: str | None) -> None:
        assert schema is not None
        kept["rows"] = read_rows(runs.pg_url, schema)

    report["postgres_single"] = runs.measure(
        runs.postgres("single"),
        single,
        None,
        keep=keep_rows,
        spy=spy_dir / "postgres_single.txt" if spy_dir else None,
    )
    for size in sizes:
        report[f"postgres_batch_{size}"] = runs.measure(
            runs.postgres(f"b{size}"), batches[size], size
        )
    return kept["rows"]


def async_commit_diagnostic(
    runs: ServiceRuns, single: Load, batches: dict[int, Load], rows: list[MessageRows]
) -> dict:
    """PostgreSQL single, the largest batch and the per-message floor again, with
    synchronous_commit=off."""
    off = {"options": "-c synchronous_commit=off"}
    largest = max(batches)
    setup_count = runs.workload.setup_count
    return {
        "note": "synchronous_commit=off on the service's connection: commits do "
        "not wait for the WAL flush (a crash may lose the last acknowledged "
        "commits, never consistency). Not the headline figures.",
        "postgres_single": runs.measure(runs.postgres("single_async", off), single, None),
        f"postgres_batch_{largest}": runs.measure(
            runs.postgres(f"b{largest}_async", off), batches[largest], largest
        ),
        "psycopg_floor_per_message": psycopg_floor(
            runs.pg_url, rows, setup_count, 1, synchronous_commit=False
        ),
    }


def measure_all(
    runs: ServiceRuns,
    single: Load,
    batches: dict[int, Load],
    sizes: list[int],
    spy_dir: Path | None,
    args: argparse.Namespace,
    report: dict,
) -> None:
    """The service runs, the psycopg floors and (unless skipped) the async-commit diagnostic."""
    rows = measure_service(runs, single, batches, sizes, spy_dir, report)
    report["psycopg_floor"] = psycopg_floors(
        runs.pg_url, rows, runs.workload.setup_count, sizes, args.repeat
    )
    if not args.no_async_commit:
        report["async_commit_diagnostic"] = async_commit_diagnostic(runs, single, batches, rows)


def measure_senders(runs: ServiceRuns, messages: int, report: dict) -> None:
    """Receipts on PostgreSQL from one sender, then from two interleaved (see the module
    docstring), each on a fresh ledger."""
    alone = [SourceSystem.WMS] * messages
    slot_sender = (SourceSystem.WMS, SourceSystem.ERP)
    mixed = [slot_sender[n % runs.concurrency % 2] for n in range(messages)]
    for name, senders in (("one_sender", alone), ("interleaved", mixed)):
        workload = build_receipts(messages, senders)
        load = receipts_load(workload, runs.concurrency, senders)
        report[f"postgres_receipts_{name}"] = replace(runs, workload=workload).measure(
            runs.postgres(f"senders_{name}"), load, None
        )
    one, two = (
        report[f"postgres_receipts_{name}"]["events_per_s"]
        for name in ("one_sender", "interleaved")
    )
    report["interleaved_vs_one_sender"] = {
        "ratio": round(two / one, 3),
        "target": 0.9,
        "met": two / one >= 0.9,
    }


def _interrupted(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def parse_arguments(argv: list[str] | None) -> tuple[argparse.Namespace, list[int]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=9_600, help="timed messages per run")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each measurement; the fastest is reported"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="in-flight single requests")
    parser.add_argument("--batch-sizes", default="100,500", help="messages per batch request")
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server (no schema)")
    parser.add_argument("--client", choices=("auto", "aiohttp", "httpx"), default="auto")
    parser.add_argument(
        "--no-async-commit",
        action="store_true",
        help="skip the synchronous_commit=off diagnostic runs",
    )
    parser.add_argument(
        "--dir", default=None, help="where the SQLite files and logs go (default: system temp)"
    )
    parser.add_argument(
        "--compare-with",
        metavar="DIR",
        default=None,
        help="another checkout of the project: measure its service and this one's side by side",
    )
    parser.add_argument(
        "--baseline",
        metavar="REV",
        default=None,
        help="a git revision: export it and measure it side by side (as --compare-with)",
    )
    parser.add_argument(
        "--compare-only",
        action="store_true",
        help="with a baseline: only the trivial baseline and the side-by-side runs",
    )
    parser.add_argument(
        "--senders-only",
        action="store_true",
        help="only the trivial baseline and the one-sender and interleaved receipt runs",
    )
    parser.add_argument(
        "--py-spy",
        metavar="DIR",
        default=None,
        help="also record the server of the sqlite and postgres single runs with py-spy "
        "(raw folded stacks into DIR); perturbs the figures",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    if args.messages < 1 or args.repeat < 1 or args.concurrency < 1 or not sizes:
        parser.error("--messages, --repeat, --concurrency and --batch-sizes must be positive")
    if min(sizes) < 1 or max(sizes) > 1000:
        parser.error("batch sizes must be 1..1000 (the service's limit)")
    if args.baseline and args.compare_with:
        parser.error("--baseline REV and --compare-with DIR: choose one")
    if args.compare_only and not (args.compare_with or args.baseline):
        parser.error("--compare-only needs --compare-with DIR or --baseline REV")
    return args, sizes


def _baseline_checkout(args: argparse.Namespace, tmp: Path) -> Path | None:
    """The checkout to measure beside this one: --compare-with DIR, or --baseline REV exported."""
    if args.baseline:
        export_packages(args.baseline, tmp / "baseline", "integration", "sim")
        return tmp / "baseline"
    return Path(args.compare_with).resolve() if args.compare_with else None


def main(argv: list[str] | None = None) -> int:
    args, sizes = parse_arguments(argv)
    spy_dir = Path(args.py_spy).resolve() if args.py_spy else None
    if spy_dir:
        spy_dir.mkdir(parents=True, exist_ok=True)

    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    began = time.perf_counter()
    workload = build_workload(args.messages)
    n = len(workload.timed)
    single = single_load(workload, args.concurrency)
    batches = {size: batch_load(workload, size) for size in sizes}
    pg_url = pg_base(args.pg_url)
    schemas: list[str] = []

    report: dict = {"messages": n, "repeat": args.repeat, "load_average_at_start": load_average()}
    try:
        with tempfile.TemporaryDirectory(prefix="service-bench-", dir=args.dir) as tmp_name:
            tmp = Path(tmp_name)
            config = write_config(tmp)
            client, report["client"], report["trivial"] = trivial_baseline(
                args.client, args.concurrency, args.repeat, tmp, single, n
            )
            runs = ServiceRuns(
                workload, client, tmp, config, args.repeat, args.concurrency, pg_url, schemas
            )
            baseline = _baseline_checkout(args, tmp)
            if baseline is not None:
                report["side_by_side"] = side_by_side(
                    runs,
                    baseline,
                    single,
                    batches,
                    report["trivial"]["requests_per_s"],
                )
            if not (args.compare_only or args.senders_only):
                measure_all(runs, single, batches, sizes, spy_dir, args, report)
            if not args.compare_only:
                measure_senders(runs, n, report)
    finally:
        stop_all_children()
        for name in schemas:
            with suppress(Exception):  # best effort; the schema name is unique
                drop_schema(pg_url, name)

    if not (args.compare_only or args.senders_only):
        report["ratios"] = ratios(report, sizes)
        report["target"] = targets(report, sizes)
        report["single_budget"] = single_budget(report)
    report["noisy_measurements"] = noisy_measurements(report)
    report["mix"] = mix_summary(workload)
    report["definitions"] = DEFINITIONS
    report["versions"] = versions(pg_url)
    report["revision"] = source_revision("integration", "sim")
    report["platform"] = platform.platform()
    report["cpus"] = os.cpu_count()
    report["load_average_at_end"] = load_average()
    report["total_wall_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
