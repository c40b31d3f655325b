"""Throughput of the core as a RabbitMQ consumer (`twin consume`), printed as one JSON object.

    python benchmarks/broker_throughput.py [--messages 28800] [--queues 4] [--prefetch 500]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test] [--no-http] [--no-kill]
        [--no-profile]

What is measured, each run on a fresh topology prefix and (for the core) a fresh ledger:

* end_to_end_postgres, end_to_end_sqlite: the timed mix of benchmarks/workload.py with
  ordering on (each work order one stream, numbered, routed by the stream over `--queues`
  quorum queues with single active consumer) published by this process with publisher
  confirms (1,000 in flight) as the MES's own AMQP user; `twin consume` (a process, prefetch
  `--prefetch`) submits each group in one transaction, publishes the outcomes confirmed and
  acks; this process reads the outcomes. Rate: messages / (last outcome - first publish).
  The setup (master data, stock, releases) goes through the broker first, untimed. After
  the run the ledger must hold every message POSTED once, no dead letter.
* floor: the broker alone, same topology and bodies. publish_alone: publishing with confirms
  into the queues, nobody consuming; consume_alone: a consumer process (manual acks in groups
  of whatever arrived, up to the prefetch, no database) draining what was published;
  end_to_end: that consumer running while this process publishes, messages / (last ack -
  first publish). `floor.end_to_end` is the floor the targets compare with (the issue's).
  end_to_end_with_outcomes (diagnostic): the same consumer also publishing its group's
  outcomes as one confirmed batch before its acks, and this process reading them: the broker
  path of `twin consume` (which publishes a batch per routing key), without the core and the
  database.
* http_batch_postgres: the same mix through `twin serve`'s batch endpoint (500 per request,
  2 in flight), with service_throughput.py's helpers, back-pressure off: the synchronous
  path's best rate.
* recovery_after_sigkill (PostgreSQL): the end-to-end run again, the consumer SIGKILLed once
  40 % of the outcomes came and started again at once: how long until outcomes flow again,
  the run's extra wall time against the clean run, the redeliveries answered DUPLICATE, and
  the ledger still exactly once.
* profile: py-spy (200 Hz, active samples only) on the consumer during the PostgreSQL run:
  where its CPU goes, by part and by function.

Targets (issue 19): end to end on PostgreSQL >= 0.6 x the floor (aim 0.8) and >= 1,500
messages/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from contextlib import suppress
from pathlib import Path

from checkout import ROOT, source_revision

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from broker_parts import (
    Collector,
    Consume,
    Publisher,
    declare,
    delete_topology,
    ensure_users,
    floor_result,
    fresh_topology,
    run,
    setup_phases,
    start_floor_consumer,
    with_streams,
    write_broker_config,
)
from service_cpu import load_average
from service_load import batch_load
from service_postgres import drop_schema, pg_base, schema_name, with_query
from service_processes import py_spy, stop_all_children
from service_run import ServiceRuns, ledger_counts
from workload import build_workload

from integration import SourceSystem

DEFAULT_PG_URL = os.environ.get("MFG_TWIN_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
RUN_TIMEOUT_S = 300.0
KILL_AT = 0.4  # share of the timed outcomes heard before the SIGKILL


def rate(count: int, began: float, ended: float) -> float:
    return round(count / (ended - began), 1) if ended > began else 0.0


async def measure_floor(timed, queues: int, prefetch: int, tmp: Path) -> dict:
    """Publishing alone, consuming alone, and both at once (see the module docstring)."""
    n = len(timed)
    topology = fresh_topology(queues)
    try:
        await declare(topology)
        publisher = Publisher(topology)
        await publisher.open({SourceSystem.MES})
        began, ended = await publisher.publish(timed)
        await publisher.close()
        consumer = start_floor_consumer(topology, n, prefetch, tmp)
        alone = floor_result(consumer, RUN_TIMEOUT_S)
    finally:
        await delete_topology(topology)
    topology = fresh_topology(queues)
    try:
        consumer = start_floor_consumer(topology, n, prefetch, tmp)
        publisher = Publisher(topology)
        await publisher.open({SourceSystem.MES})
        both_began, both_published = await publisher.publish(timed)
        await publisher.close()
        both = floor_result(consumer, RUN_TIMEOUT_S)
    finally:
        await delete_topology(topology)
    return {
        "messages": n,
        "publish_alone_per_s": rate(n, began, ended),
        "consume_alone_per_s": rate(n, alone["first"], alone["last"]),
        "end_to_end_per_s": rate(n, both_began, both["last"]),
        "publishing_during_end_to_end_per_s": rate(n, both_began, both_published),
        "end_to_end_with_outcomes_per_s": await floor_with_outcomes(timed, queues, prefetch, tmp),
    }


async def floor_with_outcomes(timed, queues: int, prefetch: int, tmp: Path) -> float:
    """The floor's consumer publishing each group's outcomes as one confirmed batch before its
    acks, and this process reading them: the broker work of `twin consume`'s path without
    the core."""
    topology = fresh_topology(queues)
    try:
        consumer = start_floor_consumer(topology, len(timed), prefetch, tmp, outcomes=True)
        collector = Collector(topology)
        await collector.open()
        publisher = Publisher(topology)
        await publisher.open({SourceSystem.MES})
        began, _ = await publisher.publish(timed)
        last = await collector.wait_for(len(timed), RUN_TIMEOUT_S)
        floor_result(consumer, RUN_TIMEOUT_S)
        await publisher.close()
        await collector.close()
    finally:
        await delete_topology(topology)
    return rate(len(timed), began, last)


async def run_setup(publisher: Publisher, collector: Collector, setup) -> int:
    """The setup phases, each waited for: the outcomes counted so far."""
    total = 0
    for phase in setup:
        await publisher.publish(phase)
        total += len(phase)
        await collector.wait_for(total, RUN_TIMEOUT_S)
    return total


async def kill_and_restart(consume: Consume, collector: Collector, at: int) -> dict:
    """SIGKILL the consumer once `at` outcomes came, start it again at once."""
    await collector.wait_for(at, RUN_TIMEOUT_S)
    killed = time.time()
    consume.kill()
    restart_s = await asyncio.to_thread(consume.start)
    heard = len(collector.times)
    await collector.wait_for(heard + 1, RUN_TIMEOUT_S)
    return {
        "killed_after_outcomes": at,
        "restart_to_consuming_s": round(restart_s, 3),
        "kill_to_first_outcome_s": round(collector.times[heard] - killed, 3),
    }


async def end_to_end(db_url: str, config, tmp: Path, workload, args, spy: Path | None,
                     kill: bool = False) -> dict:  # fmt: skip
    """One `twin consume` run (module docstring); with `kill`, SIGKILLed mid-run."""
    timed, setup = with_streams(workload), setup_phases(workload)
    topology = fresh_topology(args.queues)
    consume = Consume(db_url, topology, config, tmp / f"consume-{topology.prefix}.log",
                      args.prefetch)  # fmt: skip
    collector = Collector(topology)
    publisher = Publisher(topology)
    figures: dict = {}
    try:
        consume.start()
        await collector.open()
        await publisher.open({source for source, _ in workload.setup} | {SourceSystem.MES})
        before = await run_setup(publisher, collector, setup)
        setup_statuses = dict(collector.statuses)
        with py_spy(consume.process.pid, spy):
            publishing = asyncio.ensure_future(publisher.publish(timed))
            if kill:
                at = before + int(KILL_AT * len(timed))
                figures["sigkill"] = await kill_and_restart(consume, collector, at)
            last = await collector.wait_for(before + len(timed), RUN_TIMEOUT_S)
            began, published = await publishing
        consume.stop()
        figures.update(
            messages=len(timed),
            messages_per_s=rate(len(timed), began, last),
            publishing_per_s=rate(len(timed), began, published),
            wall_s=round(last - began, 3),
            outcomes=dict(collector.statuses - Counter(setup_statuses)),
        )
        return figures
    finally:
        consume.stop()
        await publisher.close()
        await collector.close()
        await delete_topology(topology)


def checked(report: dict, db_url: str, schema: str | None, workload) -> dict:
    """Every message POSTED exactly once, no dead letter: else the run is not a result."""
    counts = ledger_counts(db_url, schema)
    expected = workload.setup_count + len(workload.timed)
    if not counts["posted"] == counts["inbox"] == expected or counts["dead_letters"]:
        raise RuntimeError(f"the ledger is not exactly once: {counts}, expected {expected}")
    report["ledger"] = {"all_posted_once": True, **counts}
    return report


def on_postgres(pg_url: str, tag: str, schemas: list[str]) -> tuple[str, str]:
    name = schema_name(tag)
    schemas.append(name)
    return with_query(pg_url, schema=name), name


def profile_summary(folded: Path) -> dict:
    """py-spy's raw stacks as shares of the consumer's active samples: by part (the first
    match from the leaf up) and the functions with most samples of their own."""
    parts = {
        "postgresql (psycopg)": "psycopg",
        "sqlite": "sqlite",
        "json and envelope parsing": ("json", "pydantic", "envelope.py"),
        "the core's rules and books": ("integration/rules", "integration/state", "ledger.py",
                                       "integration/bom", "records.py", "holds.py"),
        "the core's pipeline and store code": ("integration/pipeline", "integration/steps",
                                               "integration/store", "integration/core"),
        "amqp (aio-pika, aiormq, pamqp)": ("aio_pika", "aiormq", "pamqp"),
        "consumer and replies": "integration/broker",
        "event loop": ("asyncio", "uvloop"),
    }  # fmt: skip
    by_part: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # a frame name py-spy read with a line break inside
        frames, samples = stack.split(";"), int(count)
        total += samples
        by_function[frames[-1]] += samples
        part = next(
            (name for frame in reversed(frames) for name, marks in parts.items()
             if any(mark in frame for mark in ((marks,) if isinstance(marks, str) else marks))),
            "other",
        )  # fmt: skip
        by_part[part] += samples
    return {
        "samples": total,
        "by_part": {k: round(v / total, 3) for k, v in by_part.most_common()} if total else {},
        "top_functions": {k: round(v / total, 3) for k, v in by_function.most_common(12)}
        if total
        else {},
    }


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--messages",
        type=int,
        default=28_800,
        help="timed messages per run (sustained: ~10 s a path)",
    )
    parser.add_argument("--queues", type=int, default=4)
    parser.add_argument("--prefetch", type=int, default=500)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL server (no schema)")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP batch baseline")
    parser.add_argument("--no-kill", action="store_true", help="skip the SIGKILL recovery run")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy")
    parser.add_argument("--dir", default=None, help="where files and logs go (default: temp)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    began = time.perf_counter()
    workload = build_workload(args.messages)
    timed = with_streams(workload)
    pg_url = pg_base(args.pg_url)
    schemas: list[str] = []
    report: dict = {
        "messages": len(timed),
        "body_bytes_mean": round(sum(len(p.body) for p in timed) / len(timed)),
        "queues": args.queues,
        "prefetch": args.prefetch,
        "load_average_at_start": load_average(),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="broker-bench-", dir=args.dir) as tmp_name:
            tmp = Path(tmp_name)
            config = write_broker_config(tmp)
            ensure_users(config[1])
            report["floor"] = run(measure_floor(timed, args.queues, args.prefetch, tmp))
            spy = None if args.no_profile else tmp / "consumer.txt"
            db_url, schema = on_postgres(pg_url, "e2e", schemas)
            figures = run(end_to_end(db_url, config, tmp, workload, args, spy))
            report["end_to_end_postgres"] = checked(figures, db_url, schema, workload)
            sqlite_url = f"sqlite:///{tmp / 'ledger.db'}"
            figures = run(end_to_end(sqlite_url, config, tmp, workload, args, None))
            report["end_to_end_sqlite"] = checked(figures, sqlite_url, None, workload)
            if spy is not None and spy.exists():
                report["profile"] = profile_summary(spy)
            if not args.no_kill:
                db_url, schema = on_postgres(pg_url, "kill", schemas)
                figures = run(end_to_end(db_url, config, tmp, workload, args, None, True))
                figures["sigkill"]["extra_wall_s"] = round(
                    figures["wall_s"] - report["end_to_end_postgres"]["wall_s"], 3
                )
                report["recovery_after_sigkill"] = checked(figures, db_url, schema, workload)
            if not args.no_http:
                runs = ServiceRuns(workload, "aiohttp", tmp, config, 1, 16, pg_url, schemas)
                report["http_batch_postgres"] = runs.measure(
                    runs.postgres("http"), batch_load(workload, 500), 500
                )
    finally:
        stop_all_children()
        for name in schemas:
            with suppress(Exception):
                drop_schema(pg_url, name)
    floor = report["floor"]["end_to_end_per_s"]
    pg = report["end_to_end_postgres"]["messages_per_s"]
    report["ratios"] = {
        "postgres_vs_floor": round(pg / floor, 3),
        "sqlite_vs_floor": round(report["end_to_end_sqlite"]["messages_per_s"] / floor, 3),
        "postgres_vs_floor_with_outcomes": round(
            pg / report["floor"]["end_to_end_with_outcomes_per_s"], 3
        ),
    }
    if "http_batch_postgres" in report:
        report["ratios"]["postgres_vs_http_batch"] = round(
            pg / report["http_batch_postgres"]["events_per_s"], 3
        )
    report["target"] = {
        "postgres_vs_floor": {"min": 0.6, "aim": 0.8, "met": pg >= 0.6 * floor},
        "postgres_per_s": {"min": 1500, "met": pg >= 1500},
    }
    report["revision"] = source_revision("integration", "sim")
    report["platform"] = platform.platform()
    report["cpus"] = os.cpu_count()
    report["load_average_at_end"] = load_average()
    report["total_wall_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
