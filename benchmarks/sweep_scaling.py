"""`twin sweep` scaling; prints JSON.

The same 8-replication sweep (scenarios/baseline.yaml at a 1-day horizon: one variant, seeds
1..8) on a local process pool of 1 and of 2 workers (parallel efficiency t1 / (2 t2)), and on a
Dask cluster of 2 single-threaded workers started here on loopback (overhead against the local
2-worker pool). Each time covers starting the executor and running every replication; the
forkserver that local pools fork from is started beforehand, as the Dask workers are, and the
report (identical for all three) is not timed. The Dask workers run with `QUIET_WORKERS`.
The per-replication summaries are compared.

    .venv/bin/python benchmarks/sweep_scaling.py [--replications 8] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sim.sweep.grid import plan, run_sweep
from sim.sweep.session import executor_for

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "scenarios" / "baseline.yaml"
BIN = Path(sys.executable).parent
# A Dask worker's event-loop thread wakes often (the statistical profiler every 10 ms, the
# event-loop health tick every 20 ms) and takes the GIL from the simulation each time: for
# CPU-bound pure-Python tasks, profiler off and the ticks slowed.
QUIET_WORKERS = {
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False",
    "DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL": "1s",
    "DASK_DISTRIBUTED__ADMIN__SYSTEM_MONITOR__INTERVAL": "2s",
}


def _best(repeat: int, replications: int, **executor) -> tuple[float, list[str]]:
    """The fastest of `repeat` timings (a shared machine only ever adds time)."""
    timings = [_timed(replications, **executor) for _ in range(repeat)]
    return min(wall for wall, _ in timings), timings[0][1]


def _timed(replications: int, **executor) -> tuple[float, list[str]]:
    document, result = plan(SCENARIO, ["horizon=1d"], replications)
    started = time.perf_counter()
    with executor_for(**executor) as chosen:
        run_sweep(chosen, document, result)
    wall = time.perf_counter() - started
    assert not result.failures, result.failures
    summaries = [
        json.dumps({k: v for k, v in r.summary.items() if k != "run"}, sort_keys=True)
        for r in result.results[result.variants[0].name]
    ]
    return wall, summaries


def _cluster(folder: Path, workers: int) -> tuple[str, list[subprocess.Popen]]:
    scheduler_file = folder / "scheduler.json"
    env = {**os.environ, **QUIET_WORKERS}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    processes = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            **quiet,
        )
    ]
    while not scheduler_file.exists() or not scheduler_file.read_text().strip():
        time.sleep(0.1)
    address = json.loads(scheduler_file.read_text())["address"]
    for _ in range(workers):
        processes.append(
            subprocess.Popen(
                [
                    str(BIN / "dask"),
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--no-nanny",
                    "--no-dashboard",
                    "--memory-limit",
                    "0",
                ],
                **quiet,
            )
        )
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(workers, timeout=60)
        client.run(lambda: __import__("sim.run.runner"))  # warm the workers' imports, as a pool's
    return address, processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many timings")
    args = parser.parse_args()
    _timed(1, workers=1)  # starts the forkserver (kept for later pools) outside the timings
    t1, s1 = _best(args.repeat, args.replications, workers=1)
    t2, s2 = _best(args.repeat, args.replications, workers=2)
    with tempfile.TemporaryDirectory() as folder:
        address, processes = _cluster(Path(folder), 2)
        try:
            td, sd = _best(args.repeat, args.replications, scheduler=address)
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(timeout=30)
    print(
        json.dumps(
            {
                "benchmark": "sweep_scaling",
                "scenario": "baseline (horizon 1d)",
                "replications": args.replications,
                "timing": f"best of {args.repeat}",
                "local_1_worker_s": round(t1, 3),
                "local_2_workers_s": round(t2, 3),
                "parallel_efficiency": round(t1 / (2 * t2), 3),
                "dask_2_workers_s": round(td, 3),
                "dask_overhead_vs_local_2": round(td / t2 - 1, 3),
                "identical_summaries": s1 == s2 == sd,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
