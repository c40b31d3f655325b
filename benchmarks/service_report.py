"""The service benchmark's conclusions, drawn from the measured figures: the ratios between
them, the targets, the measurements that other work on the machine made noisy; and what the
report says about the mix, its definitions and the versions measured."""

from __future__ import annotations

import platform
import sqlite3
import statistics
from collections import Counter

from service_postgres import pg_connect
from workload import Workload, mix_shape

NOISY_SHARE = 0.10  # other work used more than this share of the machine in a timed window

TARGET_PG_SINGLE_MIN = 1_000
TARGET_PG_SINGLE_AIM = 1_500
TARGET_PG_SINGLE_RATIO_MIN = 0.40
TARGET_PG_BATCH_MIN = 10_000
TARGET_PG_BATCH_AIM = 15_000

DEFINITIONS = {
    "events_per_s": "timed messages posted / wall time of the timed window (client side, "
    "connections already open)",
    "trivial": "FastAPI app, one POST endpoint that reads the body and answers a 2-key "
    "JSON, uvicorn loop=uvloop http=httptools, one process, same bodies and client",
    "psycopg_floor": "executemany per table (inbox, journal_entry, journal_line, "
    "stock_move) of the rows the postgres single run wrote, ids included, into a scratch "
    "schema of the ledger DDL; one transaction per N messages. copy_per_N: the same rows "
    "by COPY (a supplementary floor, for scale)",
    "single_budget": "server CPU seconds per request in the timed window, in microseconds; "
    "allowed_at_target_us = 1e6 / (0.40 x the trivial endpoint's requests/s): above it, "
    "the one server process cannot serve 40 % of the trivial rate even fully busy",
    "cpu": "server_cpu_s: the twin serve process; postgres_cpu_s: all local postgres "
    "processes; client_cpu_s: this process (the load client); other_cpu_s: the rest of "
    "the machine (other work: the figures are noisy when it is not near 0); all in the "
    "timed window",
}


def ratios(report: dict, sizes: list[int]) -> dict:
    pg_single = report["postgres_single"]["events_per_s"]
    trivial_rate = report["trivial"]["requests_per_s"]
    floors = report["psycopg_floor"]
    return {
        "postgres_single_over_trivial": round(pg_single / trivial_rate, 4),
        "sqlite_file_single_over_trivial": round(
            report["sqlite_file_single"]["events_per_s"] / trivial_rate, 4
        ),
        "postgres_single_over_psycopg_per_message": round(
            pg_single / floors["per_message"]["messages_per_s"], 4
        ),
        **{
            f"postgres_batch_{s}_over_psycopg_per_{s}": round(
                report[f"postgres_batch_{s}"]["events_per_s"]
                / floors[f"per_{s}"]["messages_per_s"],
                4,
            )
            for s in sizes
            if f"per_{s}" in floors
        },
        **{
            f"postgres_batch_{s}_over_psycopg_per_message": round(
                report[f"postgres_batch_{s}"]["events_per_s"]
                / floors["per_message"]["messages_per_s"],
                4,
            )
            for s in sizes
        },
    }


def targets(report: dict, sizes: list[int]) -> dict:
    pg_single = report["postgres_single"]["events_per_s"]
    pg_batch = max(report[f"postgres_batch_{s}"]["events_per_s"] for s in sizes)
    trivial_rate = report["trivial"]["requests_per_s"]
    return {
        "postgres_single_min": TARGET_PG_SINGLE_MIN,
        "postgres_single_aim": TARGET_PG_SINGLE_AIM,
        "postgres_single_over_trivial_min": TARGET_PG_SINGLE_RATIO_MIN,
        "postgres_batch_min": TARGET_PG_BATCH_MIN,
        "postgres_batch_aim": TARGET_PG_BATCH_AIM,
        "postgres_single_met": pg_single >= TARGET_PG_SINGLE_MIN
        and pg_single / trivial_rate >= TARGET_PG_SINGLE_RATIO_MIN,
        "postgres_single_aim_met": pg_single >= TARGET_PG_SINGLE_AIM,
        "postgres_batch_best": pg_batch,
        "postgres_batch_met": pg_batch >= TARGET_PG_BATCH_MIN,
        "postgres_batch_aim_met": pg_batch >= TARGET_PG_BATCH_AIM,
    }


def single_budget(report: dict) -> dict:
    """Server CPU per request: what the ratio target allows a single submission, beside what
    the trivial endpoint and each single run cost. The server is one process whose Python
    runs one thread at a time, so at full use it serves at most 1 / (CPU per request)
    requests a second: a single run whose CPU per request is above the allowance cannot
    reach the ratio, however its waits are arranged."""
    trivial = report["trivial"]
    allowance = 1e6 / (TARGET_PG_SINGLE_RATIO_MIN * trivial["requests_per_s"])
    return {
        "allowed_at_target_us": round(allowance, 1),
        "trivial_us": _cpu_per_request_us(trivial),
        **{
            f"{name}_us": _cpu_per_request_us(report[name])
            for name in ("postgres_single", "sqlite_file_single")
        },
    }


def _cpu_per_request_us(run: dict) -> float:
    return round(1e6 * run["server_cpu_s"] / run["requests"], 1)


def noisy_measurements(report: dict) -> list[str]:
    """The timed measurements (diagnostic ones included) in which other work used more than
    NOISY_SHARE of the machine."""
    measured = {
        name: value
        for name, value in [
            *report.items(),
            *(
                (f"async_commit_diagnostic.{name}", value)
                for name, value in report.get("async_commit_diagnostic", {}).items()
            ),
        ]
        if isinstance(value, dict) and "other_cpu_share" in value
    }
    return sorted(
        name for name, value in measured.items() if value["other_cpu_share"] > NOISY_SHARE
    )


def mix_summary(workload: Workload) -> dict:
    return {
        "by_type": dict(Counter(workload.kinds)),
        **mix_shape(workload),
        "bytes_per_body_mean": round(statistics.fmean(len(b.encode()) for b in workload.timed), 1),
        "sender": "MES (bearer key per source; setup with PLM, WMS and ERP keys)",
    }


def versions(pg_url: str) -> dict:
    import fastapi
    import pydantic
    import uvicorn

    found = {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "sqlite": sqlite3.sqlite_version,
        "pydantic": pydantic.VERSION,
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
    }
    for name in ("uvloop", "httptools", "aiohttp", "httpx", "psycopg"):
        try:
            module = __import__(name)
            found[name] = getattr(module, "__version__", None)
        except ImportError:
            found[name] = None
    try:
        with pg_connect(pg_url) as db:
            found["postgres"] = db.execute("SHOW server_version").fetchone()[0]
            found["postgres_synchronous_commit"] = db.execute("SHOW synchronous_commit").fetchone()[
                0
            ]
            found["postgres_fsync"] = db.execute("SHOW fsync").fetchone()[0]
    except Exception as error:  # noqa: BLE001 - reported, and the PG runs fail loudly anyway
        found["postgres"] = f"unreachable: {error}"
    return found
