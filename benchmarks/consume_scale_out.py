"""Scale-out of `twin consume` (`--members N`): how fast 1 and 2 member processes drain a
backlog on one PostgreSQL ledger, printed as one JSON object.

    python benchmarks/consume_scale_out.py [--messages 4000] [--queues 4] [--prefetch 500]
        [--members 1 2] [--pg-url postgresql://postgres@127.0.0.1:5432/test]

For each member count, on a fresh topology prefix and a fresh schema: the members start
together (`--member I --members N`, standby delay 5 s), the setup goes through them, they are
stopped (SIGTERM); the timed mix of benchmarks/workload.py (ordering on, as in
broker_throughput.py) is published as a backlog; the members start again together and drain
it. Rate: messages / (last outcome - first outcome). Per member: the deliveries it took from
each queue (its Prometheus metrics) and its CPU seconds while draining. The ledger must then
hold every message POSTED once, no dead letter.

Several members write one ledger: each commit takes the store's writer lock, so their
transactions serialise; what a second member adds is its own parsing, rules and broker work
overlapping the other one's commits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from urllib.request import urlopen

from broker_parts import (
    GUEST_URL,
    Collector,
    Publisher,
    declare,
    delete_topology,
    ensure_users,
    fresh_topology,
    run,
    setup_phases,
    with_streams,
    write_broker_config,
)
from checkout import ROOT
from service_cpu import _cpu_of, load_average
from service_postgres import drop_schema, pg_base, schema_name, with_query
from service_processes import free_port
from service_run import ledger_counts
from workload import build_workload

from integration import SourceSystem

STANDBY_DELAY_S = 5.0  # longer than the members' start-up skew: each takes its own share
TIMEOUT_S = 600.0


class Member:
    """One `twin consume --member I --members N` process, started again with `start`."""

    def __init__(self, number: int, members: int, db_url: str, topology, config, args, tmp):
        settings_path, keys_path = config
        self.port = free_port()
        self.log = tmp / f"member-{topology.prefix}-{number}.log"
        self.command = [
            sys.executable, "-m", "sim.cli", "consume", "--amqp", GUEST_URL, "--db", db_url,
            "--settings", str(settings_path), "--keys", str(keys_path),
            "--prefix", topology.prefix, "--queues", str(topology.queues),
            "--prefetch", str(args.prefetch), "--metrics-port", str(self.port),
            "--members", str(members), "--member", str(number),
            "--standby-delay", str(STANDBY_DELAY_S),
        ]  # fmt: skip
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.cpu_at_start = 0.0

    def launch(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=log, cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while self._log().count("consuming ") < self.starts:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"twin consume did not start: {self._log()[-3000:]}")
            time.sleep(0.02)
        self.cpu_at_start = _cpu_of(self.process.pid)

    def _log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def drained(self) -> dict:
        """Its deliveries by queue and its CPU seconds since it was ready."""
        text = urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10).read().decode()
        by_queue = {}
        for line in text.splitlines():
            if line.startswith("mfg_twin_broker_queue_deliveries_total{"):
                queue = line.split('queue="')[1].split('"')[0]
                by_queue[queue.rsplit(".", 1)[1]] = int(float(line.rsplit(" ", 1)[1]))
        cpu = _cpu_of(self.process.pid) - self.cpu_at_start
        return {"deliveries_by_queue": by_queue, "cpu_s": round(cpu, 2)}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_together(members: list[Member]) -> None:
    for member in members:
        member.launch()
    for member in members:
        member.wait_ready()


async def drain(count: int, db_url: str, config, tmp: Path, workload, args) -> dict:
    """One run (module docstring) with `count` members."""
    timed, setup = with_streams(workload), setup_phases(workload)
    topology = fresh_topology(args.queues)
    await declare(topology)
    members = [Member(n, count, db_url, topology, config, args, tmp) for n in range(count)]
    collector, publisher = Collector(topology), Publisher(topology)
    try:
        start_together(members)
        await collector.open()
        await publisher.open({source for source, _ in workload.setup} | {SourceSystem.MES})
        before = 0
        for phase in setup:
            await publisher.publish(phase)
            before += len(phase)
            await collector.wait_for(before, TIMEOUT_S)
        for member in members:
            member.stop()
        await publisher.publish(timed)  # the backlog
        load = load_average()
        start_together(members)
        last = await collector.wait_for(before + len(timed), TIMEOUT_S)
        first = collector.times[before]
        return {
            "members": count,
            "messages": len(timed),
            "messages_per_s": round(len(timed) / (last - first), 1),
            "drain_s": round(last - first, 3),
            "load_average_before": load,
            "load_average_after": load_average(),
            "per_member": [member.drained() for member in members],
        }
    finally:
        for member in members:
            member.stop()
        await publisher.close()
        with suppress(Exception):
            await collector.close()
        await delete_topology(topology)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--queues", type=int, default=4)
    parser.add_argument("--prefetch", type=int, default=500)
    parser.add_argument("--members", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    workload = build_workload(args.messages)
    pg_url = pg_base(args.pg_url)
    report: dict = {"queues": args.queues, "prefetch": args.prefetch, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp_name:
        tmp = Path(tmp_name)
        config = write_broker_config(tmp)
        ensure_users(config[1])
        runs = []
        for count in args.members:
            schema = schema_name(f"members{count}")
            db_url = with_query(pg_url, schema=schema)
            try:
                figures = run(drain(count, db_url, config, tmp, workload, args))
                counts = ledger_counts(db_url, schema)
                expected = workload.setup_count + len(workload.timed)
                if not counts["posted"] == counts["inbox"] == expected or counts["dead_letters"]:
                    raise RuntimeError(f"not exactly once: {counts}, expected {expected}")
                figures["ledger_all_posted_once"] = True
                runs.append(figures)
            finally:
                drop_schema(pg_url, schema)
    report["runs"] = runs
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
