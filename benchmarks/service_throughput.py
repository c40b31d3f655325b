"""Throughput of the core served over HTTP (`twin serve`), printed as one JSON object.

    python benchmarks/service_throughput.py [--messages 9600] [--repeat 1] [--concurrency 16]
        [--batch-sizes 100,500] [--pg-url postgresql://postgres@127.0.0.1:5432/test]
        [--client auto|aiohttp|httpx] [--no-async-commit] [--py-spy DIR]

What is measured (the issue's spec), each run on a fresh `twin serve` subprocess (uvicorn with
uvloop + httptools, one process) over a fresh ledger:

* single: every timed message is one `POST /v1/messages`, with `--concurrency` requests in
  flight. Each in-flight slot owns whole work orders (round robin) and sends their messages in
  order, so a work order's issue -> completion -> receipt rhythm is never reordered by the
  concurrency. Every request must answer 200 (POSTED).
* batch: `POST /v1/messages/batch` with `--batch-sizes` messages per request, 2 requests in
  flight (each slot again owning whole work orders), so the server always has the next batch
  waiting. Every outcome must be POSTED.
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
15,000) are checked in `target`.

Deterministic: the same master data and messages on every run; only the interleaving of the
in-flight slots varies. Self-contained: it builds its own plant network and starts its own
processes (no import from tests/). Subprocesses, temporary files and schemas are removed even
when a run fails or the script is interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Self
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from integration import (
    BomLine,
    BomReleased,
    BomRevision,
    CoreSettings,
    Envelope,
    FinishedGoodsReceived,
    GoodsReceived,
    Item,
    ItemCreated,
    ItemType,
    Location,
    LocationKind,
    MaterialIssued,
    Operation,
    OperationCompleted,
    Plant,
    Routing,
    SourceSystem,
    WorkOrderReleased,
)

D = Decimal
START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
PLANT = "P1"
FINISHED = "FG-100"
REVISION = "A"
BACKFLUSH_OP = 10
CYCLES_PER_WORK_ORDER = 16  # issue + completion + receipt: 48 messages per work order
MIX = ("MaterialIssued", "OperationCompleted", "FinishedGoodsReceived")
DEFAULT_PG_URL = os.environ.get("MFG_TWIN_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BATCH_IN_FLIGHT = 2
CPUS = os.cpu_count() or 1
NOISY_SHARE = 0.10  # other work used more than this share of the machine in a timed window
PROBE_MESSAGES = 2_400  # bodies per client in the client choice (httpx is slow)

TARGET_PG_SINGLE_MIN = 1_000
TARGET_PG_SINGLE_AIM = 1_500
TARGET_PG_SINGLE_RATIO_MIN = 0.40
TARGET_PG_BATCH_MIN = 10_000
TARGET_PG_BATCH_AIM = 15_000

KEYS = {
    SourceSystem.PLM: "bench-plm-key-0123456789abcdef",
    SourceSystem.ERP: "bench-erp-key-0123456789abcdef",
    SourceSystem.MES: "bench-mes-key-0123456789abcdef",
    SourceSystem.WMS: "bench-wms-key-0123456789abcdef",
}
READ_KEY = "bench-read-key-0123456789abcdef"

BACKFLUSHED = (  # item, base UoM, qty per FG, scrap factor, standard cost
    ("RM-STEEL", "KG", D("0.75"), D("0.02"), D("3.20")),
    ("RM-BOLT", "EA", D("8"), D(0), D("0.05")),
    ("RM-NUT", "EA", D("8"), D(0), D("0.03")),
    ("RM-PAINT", "L", D("0.2"), D("0.05"), D("12.50")),
    ("RM-LABEL", "EA", D("1"), D(0), D("0.10")),
)
ISSUED = ("RM-HOUSING", "EA", D("1"), D(0), D("7.40"))  # issued by hand, not backflushed
FINISHED_COST = D("40.00")

TRIVIAL_APP = textwrap.dedent(
    """
    import sys

    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()


    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}


    @app.post("/v1/messages")
    async def submit(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"status": "POSTED", "message_id": "x"})


    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    """
)


# --- the plant network and the messages ----------------------------------------------------
def build_settings() -> CoreSettings:
    return CoreSettings(
        plants=(Plant(id=PLANT, currency="EUR", timezone="Europe/Berlin"),),
        locations=(
            Location(id="STORES", plant=PLANT),
            Location(id="LINE", plant=PLANT, kind=LocationKind.SHOP_FLOOR),
            Location(id="FG", plant=PLANT),
        ),
    )


class _Envelopes:
    """Envelopes as JSON text, with deterministic ids and a business time moving 1 s each."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, message, source: SourceSystem) -> str:
        self.n += 1
        moment = START + timedelta(seconds=self.n)
        return Envelope(
            message_id=f"msg-{self.n:08d}",
            idempotency_key=f"{source.value}-{self.n:08d}",
            correlation_id=f"bench-{self.n}",
            source_system=source,
            occurred_at=moment,
            sent_at=moment,
            message=message,
        ).model_dump_json()


@dataclass(frozen=True)
class Workload:
    setup: list[tuple[SourceSystem, list[str]]]  # untimed, in order, grouped by sender
    timed: list[bytes]  # the mix, as request bodies (MES)
    kinds: list[str]
    work_order_of: list[int]  # index of the work order of each timed message
    work_orders: int

    @property
    def setup_count(self) -> int:
        return sum(len(bodies) for _source, bodies in self.setup)


def build_workload(messages: int) -> Workload:
    envelope = _Envelopes()
    cycles = -(-messages // len(MIX))
    work_orders = -(-cycles // CYCLES_PER_WORK_ORDER)
    items = [
        Item(
            id=FINISHED,
            base_uom="EA",
            type=ItemType.FINISHED,
            standard_costs={PLANT: FINISHED_COST},
        ),
        *(
            Item(id=i, base_uom=u, type=ItemType.RAW, standard_costs={PLANT: c})
            for i, u, _q, _s, c in (*BACKFLUSHED, ISSUED)
        ),
    ]
    lines = (
        *(
            BomLine(component=i, qty_per=q, uom=u, scrap_factor=s, operation_seq=BACKFLUSH_OP)
            for i, u, q, s, _c in BACKFLUSHED
        ),
        BomLine(
            component=ISSUED[0],
            qty_per=ISSUED[2],
            uom=ISSUED[1],
            backflush=False,
            operation_seq=BACKFLUSH_OP,
        ),
    )
    bom = BomRevision(
        item=FINISHED,
        revision=REVISION,
        effective_from=START - timedelta(days=30),
        plants=(PLANT,),
        lines=lines,
    )
    routing = Routing(
        item=FINISHED,
        revision=REVISION,
        operations=(
            Operation(
                seq=BACKFLUSH_OP,
                work_centre="ASSY",
                run_hours_per_unit=D("0.1"),
                labour_rate=D(30),
                overhead_rate=D(20),
                backflush_point=True,
            ),
        ),
    )
    plm = [envelope(ItemCreated(item=it), SourceSystem.PLM) for it in items]
    plm.append(envelope(BomReleased(bom=bom, routing=routing), SourceSystem.PLM))
    wms = []  # stock for the whole run, received up front: the backflush never goes negative
    for i, u, q, s, c in BACKFLUSHED:
        need = (q * cycles * (1 + s)).quantize(D(1)) + 1
        receipt = GoodsReceived(
            plant=PLANT,
            item=i,
            qty=need,
            uom=u,
            location="LINE",
            purchase_order="PO-1",
            supplier="SUP-1",
            unit_price=c,
        )
        wms.append(envelope(receipt, SourceSystem.WMS))
    receipt = GoodsReceived(
        plant=PLANT,
        item=ISSUED[0],
        qty=D(cycles + 1),
        uom=ISSUED[1],
        location="STORES",
        purchase_order="PO-2",
        supplier="SUP-2",
        unit_price=ISSUED[4],
    )
    wms.append(envelope(receipt, SourceSystem.WMS))
    erp = [
        envelope(
            WorkOrderReleased(
                work_order=_wo(w),
                plant=PLANT,
                item=FINISHED,
                qty=D(CYCLES_PER_WORK_ORDER),
                uom="EA",
                bom_revision=REVISION,
            ),
            SourceSystem.ERP,
        )
        for w in range(work_orders)
    ]
    timed, kinds, owners = [], [], []
    for n in range(messages):
        w = n // len(MIX) // CYCLES_PER_WORK_ORDER
        kind = MIX[n % len(MIX)]
        if kind == "MaterialIssued":
            message = MaterialIssued(
                work_order=_wo(w),
                component=ISSUED[0],
                qty=ISSUED[2],
                uom=ISSUED[1],
                location="STORES",
            )
        elif kind == "OperationCompleted":
            message = OperationCompleted(
                work_order=_wo(w),
                operation_seq=BACKFLUSH_OP,
                good_qty=D(1),
                uom="EA",
                labour_hours=D("0.1"),
                machine_hours=D("0.1"),
                partial=True,
                bom_revision=REVISION,
                backflush_location="LINE",
            )
        else:
            message = FinishedGoodsReceived(work_order=_wo(w), qty=D(1), uom="EA", location="FG")
        timed.append(envelope(message, SourceSystem.MES).encode())
        kinds.append(kind)
        owners.append(w)
    setup = [(SourceSystem.PLM, plm), (SourceSystem.WMS, wms), (SourceSystem.ERP, erp)]
    return Workload(setup, timed, kinds, owners, work_orders)


def _wo(index: int) -> str:
    return f"WO-{index + 1:06d}"


def slots(workload: Workload, count: int) -> list[list[int]]:
    """The timed messages' indexes per in-flight slot: work orders dealt round robin, each
    slot's messages in workload order."""
    owned: list[list[int]] = [[] for _ in range(count)]
    for index, w in enumerate(workload.work_order_of):
        owned[w % count].append(index)
    return [indexes for indexes in owned if indexes]


def bearer(source: SourceSystem) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[source]}", "Content-Type": "application/json"}


# --- processes -----------------------------------------------------------------------------
_children: list[subprocess.Popen] = []


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, timeout: float = 30.0, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _post(url: str, body: bytes, headers: dict, timeout: float = 120.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class Server:
    """A server subprocess on a free loopback port, logging to a file."""

    command: list[str]
    log_path: Path
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> Server:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        _children.append(self.process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_text()}")
            try:
                if _get(f"{self.url}/healthz", timeout=1.0)[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not come up: {self.log_text()}")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        _stop(self.process)


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def _stop_all_children() -> None:
    for process in reversed(_children):
        with suppress(Exception):  # best effort on the way out
            _stop(process)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server.start()
    finally:
        server.stop()


def twin_serve(db_url: str, directory: Path, settings_path: Path, keys_path: Path) -> Server:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "sim.cli",
        "serve",
        "--db",
        db_url,
        "--settings",
        str(settings_path),
        "--keys",
        str(keys_path),
        "--port",
        str(port),
    ]
    return Server(command, directory / f"serve-{port}.log", port)


def trivial_server(directory: Path) -> Server:
    script = directory / "trivial_app.py"
    script.write_text(TRIVIAL_APP)
    port = free_port()
    return Server([sys.executable, str(script), str(port)], directory / f"trivial-{port}.log", port)


def write_config(directory: Path) -> tuple[Path, Path]:
    settings_path = directory / "core-settings.json"
    settings_path.write_text(build_settings().model_dump_json())
    keys = [
        {"name": source.value.lower(), "key": key, "source": source.value}
        for source, key in KEYS.items()
    ]
    keys.append({"name": "reader", "key": READ_KEY})
    keys_path = directory / "keys.json"
    keys_path.write_text(json.dumps({"keys": keys}))
    return settings_path, keys_path


# --- CPU accounting (/proc) ----------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _postgres_cpu() -> float:
    """CPU seconds of every local process named postgres (server, backends, WAL writer)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        total += _cpu_of(int(entry.name))
    return total


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs; /proc/stat less idle, iowait)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


@dataclass
class CpuWindow:
    """CPU seconds in a timed window: the server, PostgreSQL, this process (the client), and
    whatever else ran on the machine meanwhile (`other_cpu_s`: noise from other work)."""

    server_pid: int
    start: tuple[float, ...] = field(default=())
    used: dict[str, float] = field(default_factory=dict)

    def _now(self) -> tuple[float, ...]:
        return (_cpu_of(self.server_pid), _postgres_cpu(), time.process_time(), _machine_busy())

    def __enter__(self) -> Self:
        self.start = self._now()
        return self

    def __exit__(self, *_exc) -> None:
        server, pg, client, busy = (b - a for a, b in zip(self.start, self._now(), strict=True))
        self.used = {
            "server_cpu_s": round(server, 3),
            "postgres_cpu_s": round(pg, 3),
            "client_cpu_s": round(client, 3),
            "other_cpu_s": round(max(busy - server - pg - client, 0.0), 3),
        }


# --- the load client -----------------------------------------------------------------------
@dataclass
class Load:
    """What one timed run sends: per in-flight slot, its requests in order."""

    path: str
    headers: dict[str, str]
    slots: list[list[bytes]]  # request bodies per slot
    messages_per_body: list[list[int]]
    batch: bool


@dataclass
class LoadResult:
    wall: float
    requests: int
    messages: int
    latencies: list[float]
    failures: list[str]
    cpu: dict[str, float]


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def client_event_loop() -> str:
    return "uvloop" if _loop_factory() is not None else "asyncio"


def _check(load: Load, status: int, body: bytes, expected: int) -> str | None:
    if status != 200:
        return f"HTTP {status}: {body[:300]!r}"
    if load.batch:
        outcomes = json.loads(body)["outcomes"]
        statuses = Counter(outcome["status"] for outcome in outcomes)
        if statuses != Counter({"POSTED": expected}):
            bad = next(o for o in outcomes if o["status"] != "POSTED")
            return f"batch outcomes {dict(statuses)}: {json.dumps(bad)[:300]}"
    return None


async def _drive_aiohttp(base: str, load: Load) -> tuple[float, list[float], list[str]]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=len(load.slots), force_close=False)
    timeout = aiohttp.ClientTimeout(total=600)
    latencies: list[float] = []
    failures: list[str] = []
    url = base + load.path
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=load.headers
    ) as session:

        async def slot(bodies: list[bytes], counts: list[int]) -> None:
            clock = time.perf_counter
            for body, expected in zip(bodies, counts, strict=True):
                began = clock()
                async with session.post(url, data=body) as answer:
                    content = await answer.read()
                    status = answer.status
                latencies.append(clock() - began)
                problem = _check(load, status, content, expected)
                if problem:
                    failures.append(problem)

        # one connection per slot, opened before the clock starts
        await asyncio.gather(*(session.get(base + "/healthz") for _ in load.slots))
        start = time.perf_counter()
        await asyncio.gather(
            *(slot(b, c) for b, c in zip(load.slots, load.messages_per_body, strict=True))
        )
        wall = time.perf_counter() - start
    return wall, latencies, failures


async def _drive_httpx(base: str, load: Load) -> tuple[float, list[float], list[str]]:
    import httpx

    limits = httpx.Limits(
        max_connections=len(load.slots), max_keepalive_connections=len(load.slots)
    )
    latencies: list[float] = []
    failures: list[str] = []
    async with httpx.AsyncClient(
        base_url=base, limits=limits, timeout=600, headers=load.headers
    ) as client:

        async def slot(bodies: list[bytes], counts: list[int]) -> None:
            clock = time.perf_counter
            for body, expected in zip(bodies, counts, strict=True):
                began = clock()
                answer = await client.post(load.path, content=body)
                latencies.append(clock() - began)
                problem = _check(load, answer.status_code, answer.content, expected)
                if problem:
                    failures.append(problem)

        await asyncio.gather(*(client.get("/healthz") for _ in load.slots))
        start = time.perf_counter()
        await asyncio.gather(
            *(slot(b, c) for b, c in zip(load.slots, load.messages_per_body, strict=True))
        )
        wall = time.perf_counter() - start
    return wall, latencies, failures


DRIVERS = {"aiohttp": _drive_aiohttp, "httpx": _drive_httpx}


def drive(client: str, server: Server, load: Load) -> LoadResult:
    gc.collect()
    loop_factory = _loop_factory()
    with CpuWindow(server.pid) as cpu, asyncio.Runner(loop_factory=loop_factory) as runner:
        wall, latencies, failures = runner.run(DRIVERS[client](server.url, load))
    return LoadResult(
        wall,
        sum(len(bodies) for bodies in load.slots),
        sum(sum(counts) for counts in load.messages_per_body),
        latencies,
        failures,
        cpu.used,
    )


def single_load(workload: Workload, concurrency: int) -> Load:
    owned = slots(workload, concurrency)
    return Load(
        "/v1/messages",
        bearer(SourceSystem.MES),
        [[workload.timed[i] for i in indexes] for indexes in owned],
        [[1] * len(indexes) for indexes in owned],
        batch=False,
    )


def batch_load(workload: Workload, size: int, in_flight: int = BATCH_IN_FLIGHT) -> Load:
    bodies, counts = [], []
    for indexes in slots(workload, in_flight):
        chunks = [indexes[i : i + size] for i in range(0, len(indexes), size)]
        bodies.append([b"[" + b",".join(workload.timed[i] for i in c) + b"]" for c in chunks])
        counts.append([len(c) for c in chunks])
    return Load("/v1/messages/batch", bearer(SourceSystem.MES), bodies, counts, batch=True)


# --- one service run -----------------------------------------------------------------------
def post_setup(server: Server, workload: Workload) -> None:
    for source, bodies in workload.setup:
        for start in range(0, len(bodies), 500):
            chunk = bodies[start : start + 500]
            body = ("[" + ",".join(chunk) + "]").encode()
            status, answer = _post(f"{server.url}/v1/messages/batch", body, bearer(source))
            if status != 200:
                raise RuntimeError(f"setup batch answered {status}: {answer[:500]!r}")
            outcomes = json.loads(answer)["outcomes"]
            bad = [o for o in outcomes if o["status"] != "POSTED"]
            if bad:
                raise RuntimeError(f"setup message not posted: {json.dumps(bad[0])[:500]}")


def ledger_counts(db_url: str, pg_schema: str | None) -> dict[str, int]:
    queries = {
        "posted": "SELECT COUNT(*) FROM inbox WHERE status = 'POSTED'",
        "inbox": "SELECT COUNT(*) FROM inbox",
        "dead_letters": "SELECT COUNT(*) FROM dead_letter",
        "journal_entries": "SELECT COUNT(*) FROM journal_entry",
        "journal_lines": "SELECT COUNT(*) FROM journal_line",
        "stock_moves": "SELECT COUNT(*) FROM stock_move",
        "stock_exceptions": "SELECT COUNT(*) FROM stock_exception",
    }
    if pg_schema is None:
        db = sqlite3.connect(db_url.removeprefix("sqlite:///"))
        try:
            return {name: db.execute(sql).fetchone()[0] for name, sql in queries.items()}
        finally:
            db.close()
    with pg_connect(db_url, pg_schema) as db:
        return {name: db.execute(sql).fetchone()[0] for name, sql in queries.items()}


def check_ledger(server: Server, workload: Workload, db_url: str, schema: str | None) -> dict:
    """After timing: every message posted once, nothing dead-lettered, the books reconcile."""
    counts = ledger_counts(db_url, schema)
    expected = workload.setup_count + len(workload.timed)
    status, body = _get(
        f"{server.url}/v1/reconciliation",
        timeout=300,
        headers={"Authorization": f"Bearer {READ_KEY}"},
    )
    reconciliation = json.loads(body) if status == 200 else {"ok": False, "status": status}
    clean = (
        counts["posted"] == counts["inbox"] == expected
        and counts["dead_letters"] == 0
        and counts["stock_exceptions"] == 0
        and reconciliation.get("ok") is True
    )
    if not clean:
        raise RuntimeError(
            f"the run did not post cleanly: counts={counts} expected={expected} "
            f"reconciliation={json.dumps(reconciliation)[:1000]}"
        )
    return {"all_posted": True, "reconciled": True, **counts}


@dataclass
class Backend:
    name: str
    new_url: Callable[[int], tuple[str, str | None]]  # run number -> (store URL, pg schema)
    drop: Callable[[str | None], None]


def run_service(
    backend: Backend,
    run: int,
    load: Load,
    client: str,
    workload: Workload,
    tmp: Path,
    config: tuple[Path, Path],
    keep: Callable[[str, str | None], None] | None = None,
    spy: Path | None = None,
) -> tuple[LoadResult, dict]:
    """A fresh ledger and server; setup untimed; the load timed; the ledger checked."""
    db_url, schema = backend.new_url(run)
    try:
        server = twin_serve(db_url, tmp, *config)
        with running(server):
            post_setup(server, workload)
            with py_spy(server.pid, spy):
                result = drive(client, server, load)
            if result.failures:
                raise RuntimeError(
                    f"{backend.name}: {len(result.failures)} requests failed, first: "
                    f"{result.failures[0]}"
                )
            checks = check_ledger(server, workload, db_url, schema)
        if keep is not None:
            keep(db_url, schema)
    finally:
        backend.drop(schema)
    return result, checks


@contextmanager
def py_spy(pid: int, destination: Path | None) -> Iterator[None]:
    """Optionally sample the server with py-spy during the timed window (perturbs the run)."""
    if destination is None:
        yield
        return
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(destination),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _children.append(spy)
    time.sleep(0.5)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()


# --- PostgreSQL ----------------------------------------------------------------------------
def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def pg_base(url: str) -> str:
    """The URL without `schema=` (not a libpq parameter)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def pg_connect(url: str, schema: str | None = None):
    import psycopg
    from psycopg import sql

    db = psycopg.connect(pg_base(url), autocommit=True)
    if schema is not None:
        db.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
    return db


def drop_schema(pg_url: str, schema: str | None) -> None:
    if schema is None:
        return
    from psycopg import sql

    with pg_connect(pg_url) as db:
        db.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def schema_name(tag: str) -> str:
    return f"bench_{tag}_{uuid.uuid4().hex[:10]}"


_INBOX = (
    "inbox_id, message_id, idempotency_key, unique_ids, payload_hash, message_type,"
    " source_system, stream, source_seq, plant, item, work_order, lot, supplier, period, status,"
    " code, envelope, received_at, committed_at, hold_deadline, waits_on, late, applied_seq"
)
_ENTRY = (
    "entry_id, inbox_id, message_id, plant, currency, period, original_period, late,"
    " event_type, work_order, occurred_at, posted_at"
)
_LINE = "entry_id, line_no, plant, account, currency, amount_minor, work_order, item"
_MOVE = "move_id, entry_id, plant, item, location, lot, qty, value_minor, account"


def _insert(table: str, columns: str) -> str:
    return f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(columns.split(',')))})"


INSERTS = {
    "inbox": _insert("inbox", _INBOX),
    "journal_entry": _insert("journal_entry", _ENTRY),
    "journal_line": _insert("journal_line", _LINE),
    "stock_move": _insert("stock_move", _MOVE),
}


@dataclass
class MessageRows:
    inbox: tuple
    entries: list[tuple]
    lines: list[tuple]
    moves: list[tuple]

    @property
    def rows(self) -> int:
        return 1 + len(self.entries) + len(self.lines) + len(self.moves)


def read_rows(pg_url: str, schema: str) -> list[MessageRows]:
    """Every inbox row the run wrote with its entries, lines and moves (ids kept), in order."""
    with pg_connect(pg_url, schema) as db:
        lines: dict[int, list[tuple]] = {}
        for row in db.execute(f"SELECT {_LINE} FROM journal_line ORDER BY entry_id, line_no"):
            lines.setdefault(row[0], []).append(row)
        moves: dict[int, list[tuple]] = {}
        for row in db.execute(f"SELECT {_MOVE} FROM stock_move ORDER BY move_id"):
            moves.setdefault(row[1], []).append(row)
        entries: dict[int, list[tuple]] = {}
        for row in db.execute(f"SELECT {_ENTRY} FROM journal_entry ORDER BY entry_id"):
            entries.setdefault(row[1], []).append(row)
        messages = []
        for row in db.execute(f"SELECT {_INBOX} FROM inbox ORDER BY inbox_id"):
            mine = entries.get(row[0], [])
            messages.append(
                MessageRows(
                    row,
                    mine,
                    [ln for e in mine for ln in lines.get(e[0], [])],
                    [mv for e in mine for mv in moves.get(e[0], [])],
                )
            )
    return messages


def _write_chunk(cursor, chunk: list[MessageRows]) -> None:
    cursor.executemany(INSERTS["inbox"], [m.inbox for m in chunk])
    cursor.executemany(INSERTS["journal_entry"], [e for m in chunk for e in m.entries])
    lines = [ln for m in chunk for ln in m.lines]
    if lines:
        cursor.executemany(INSERTS["journal_line"], lines)
    moves = [mv for m in chunk for mv in m.moves]
    if moves:
        cursor.executemany(INSERTS["stock_move"], moves)


_COPY = {
    "inbox": (f"COPY inbox ({_INBOX}) FROM STDIN", lambda m: [m.inbox]),
    "journal_entry": (f"COPY journal_entry ({_ENTRY}) FROM STDIN", lambda m: m.entries),
    "journal_line": (f"COPY journal_line ({_LINE}) FROM STDIN", lambda m: m.lines),
    "stock_move": (f"COPY stock_move ({_MOVE}) FROM STDIN", lambda m: m.moves),
}


def _copy_chunk(cursor, chunk: list[MessageRows]) -> None:
    for statement, rows_of in _COPY.values():
        with cursor.copy(statement) as copy:
            for message in chunk:
                for row in rows_of(message):
                    copy.write_row(row)


def psycopg_floor(
    pg_url: str,
    rows: list[MessageRows],
    setup_count: int,
    per: int,
    synchronous_commit: bool = True,
    copy: bool = False,
) -> dict:
    """Insert the timed messages' rows into a scratch schema of the ledger DDL, one transaction
    per `per` messages (1: per message), with executemany per table (or COPY per table);
    setup rows untimed."""
    write = _copy_chunk if copy else _write_chunk
    from integration.store.postgres import PostgresStore

    schema = schema_name("floor")
    try:
        PostgresStore(pg_base(pg_url), schema=schema).close()  # the same DDL as the ledger
        with pg_connect(pg_url, schema) as db:
            if not synchronous_commit:
                db.execute("SET synchronous_commit = off")
            cursor = db.cursor()
            with db.transaction():
                _write_chunk(cursor, rows[:setup_count])
            timed = rows[setup_count:]
            chunks = [timed[i : i + per] for i in range(0, len(timed), per)]
            gc.collect()
            start = time.perf_counter()
            for chunk in chunks:
                with db.transaction():
                    write(cursor, chunk)
            wall = time.perf_counter() - start
            written = db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0]
        if written != len(rows):
            raise RuntimeError(f"floor wrote {written} inbox rows, expected {len(rows)}")
    finally:
        drop_schema(pg_url, schema)
    n = len(timed)
    total_rows = sum(m.rows for m in timed)
    return {
        "messages_per_transaction": per,
        "method": "copy" if copy else "executemany",
        "synchronous_commit": "on" if synchronous_commit else "off",
        "messages_per_s": round(n / wall, 1),
        "rows_per_s": round(total_rows / wall, 1),
        "rows": total_rows,
        "wall_s": round(wall, 4),
    }


def round_trip(pg_url: str, count: int = 3000) -> dict:
    """One `SELECT 1` through psycopg: the wall time and this client's CPU per round trip,
    for scale (the core makes several per message)."""
    with pg_connect(pg_url) as db:
        for _ in range(200):
            db.execute("SELECT 1").fetchone()
        cpu, start = time.process_time(), time.perf_counter()
        for _ in range(count):
            db.execute("SELECT 1").fetchone()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"wall_us": round(wall / count * 1e6, 1), "client_cpu_us": round(cpu / count * 1e6, 1)}


# --- reporting -----------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(result: LoadResult, *, events: bool = True, batch: int | None = None) -> dict:
    unit = "events_per_s" if events else "requests_per_s"
    out = {
        unit: round(result.messages / result.wall, 1),
        "requests_per_s": round(result.requests / result.wall, 1),
        "wall_s": round(result.wall, 4),
        "messages": result.messages,
        "requests": result.requests,
        "in_flight": None,
        "latency_ms": {
            "p50": round(_pct(result.latencies, 0.50) * 1e3, 3),
            "p99": round(_pct(result.latencies, 0.99) * 1e3, 3),
            "mean": round(statistics.fmean(result.latencies) * 1e3, 3),
        },
        **result.cpu,
        "server_cpu_utilisation": round(result.cpu["server_cpu_s"] / result.wall, 3),
        "other_cpu_share": round(result.cpu["other_cpu_s"] / (result.wall * CPUS), 3),
    }
    if not events:
        out.pop("events_per_s", None)
    if batch is not None:
        out["batch_size"] = batch
    return out


def _rate_of(result: LoadResult) -> float:
    return round(result.requests / result.wall, 1)


def best(results: list[LoadResult]) -> LoadResult:
    return min(results, key=lambda r: r.wall)


def mix_summary(workload: Workload) -> dict:
    return {
        "by_type": dict(Counter(workload.kinds)),
        "backflushed_components": len(BACKFLUSHED),
        "work_orders": workload.work_orders,
        "messages_per_work_order": CYCLES_PER_WORK_ORDER * len(MIX),
        "setup_messages_untimed": workload.setup_count,
        "bytes_per_body_mean": round(statistics.fmean(len(b) for b in workload.timed), 1),
        "sender": "MES (bearer key per source; setup with PLM, WMS and ERP keys)",
    }


def source_revision() -> str | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "integration", "sim"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


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


# --- main ----------------------------------------------------------------------------------
def _interrupted(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
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

    def new_pg(tag: str, extra: dict[str, str] | None = None) -> Callable:
        def make(_run: int) -> tuple[str, str | None]:
            name = schema_name(tag)
            schemas.append(name)
            return with_query(pg_url, schema=name, **(extra or {})), name

        return make

    def drop_pg(schema: str | None) -> None:
        drop_schema(pg_url, schema)

    report: dict = {"messages": n, "repeat": args.repeat, "load_average_at_start": load_average()}
    try:
        with tempfile.TemporaryDirectory(prefix="service-bench-", dir=args.dir) as tmp_name:
            tmp = Path(tmp_name)
            config = write_config(tmp)

            # --- baseline 1: the trivial endpoint; pick the client --------------------------
            candidates = [args.client] if args.client != "auto" else ["aiohttp", "httpx"]
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
                probe = single_load(build_workload(min(n, PROBE_MESSAGES)), args.concurrency)
                for name in available:
                    drive(name, trivial, probe)  # warm-up
                for _ in range(args.repeat):
                    for name in available:
                        probe_runs[name].append(drive(name, trivial, probe))
                client = max(available, key=lambda name: _rate_of(best(probe_runs[name])))
                for _ in range(args.repeat):
                    trivial_runs.append(drive(client, trivial, single))
            for runs in (*probe_runs.values(), trivial_runs):
                failed = [f for r in runs for f in r.failures]
                if failed:
                    raise RuntimeError(f"the trivial endpoint failed: {failed[0]}")
            trivial = summary(best(trivial_runs), events=False)
            trivial["in_flight"] = args.concurrency
            report["client"] = {
                "library": client,
                "event_loop": client_event_loop(),
                "chosen_by": f"higher requests/s on the trivial endpoint over the first "
                f"{sum(map(len, probe.slots))} bodies, "
                "same concurrency",
                "probe_requests_per_s": {
                    name: _rate_of(best(runs)) for name, runs in probe_runs.items()
                },
                "single_in_flight": args.concurrency,
                "batch_in_flight": BATCH_IN_FLIGHT,
            }
            report["trivial"] = trivial

            # --- the service ----------------------------------------------------------------
            def sqlite_url(tag: str) -> Callable:
                def make(run: int) -> tuple[str, str | None]:
                    return f"sqlite:///{tmp / f'{tag}-{run}.sqlite'}", None

                return make

            def measure(backend: Backend, load: Load, batch: int | None, **kw) -> dict:
                results, checks = [], None
                for run in range(args.repeat):
                    result, checks = run_service(
                        backend, run, load, client, workload, tmp, config, **kw
                    )
                    results.append(result)
                    kw.pop("keep", None)  # rows are kept from the first run only
                    kw.pop("spy", None)
                out = summary(best(results), batch=batch)
                out["in_flight"] = args.concurrency if batch is None else BATCH_IN_FLIGHT
                out["checks"] = checks
                return out

            for tag in ("sqlite_file",):
                for_single = Backend(tag, sqlite_url(f"{tag}-single"), lambda _s: None)
                report[f"{tag}_single"] = measure(
                    for_single,
                    single,
                    None,
                    spy=spy_dir / "sqlite_single.txt" if spy_dir else None,
                )
                for size in sizes:
                    backend = Backend(tag, sqlite_url(f"{tag}-batch{size}"), lambda _s: None)
                    report[f"{tag}_batch_{size}"] = measure(backend, batches[size], size)

            kept: dict[str, list[MessageRows]] = {}

            def keep_rows(db_url: str, schema: str | None) -> None:
                assert schema is not None
                kept["rows"] = read_rows(pg_url, schema)

            report["postgres_single"] = measure(
                Backend("postgres", new_pg("single"), drop_pg),
                single,
                None,
                keep=keep_rows,
                spy=spy_dir / "postgres_single.txt" if spy_dir else None,
            )
            for size in sizes:
                report[f"postgres_batch_{size}"] = measure(
                    Backend("postgres", new_pg(f"b{size}"), drop_pg), batches[size], size
                )

            # --- baseline 2: raw psycopg executemany of the same rows ------------------------
            rows = kept["rows"]
            setup_count = workload.setup_count
            floors = {
                "per_message": max(
                    (psycopg_floor(pg_url, rows, setup_count, 1) for _ in range(args.repeat)),
                    key=lambda f: f["messages_per_s"],
                )
            }
            for per in sorted({*sizes, n}):
                floors[f"per_{per}" if per != n else "one_transaction"] = max(
                    (psycopg_floor(pg_url, rows, setup_count, per) for _ in range(args.repeat)),
                    key=lambda f: f["messages_per_s"],
                )
            largest = max(sizes)
            floors[f"copy_per_{largest}"] = max(
                (
                    psycopg_floor(pg_url, rows, setup_count, largest, copy=True)
                    for _ in range(args.repeat)
                ),
                key=lambda f: f["messages_per_s"],
            )
            timed_rows = rows[setup_count:]
            floors["rows_per_message"] = round(sum(m.rows for m in timed_rows) / n, 3)
            floors["rows_written"] = {
                "inbox": n,
                "journal_entry": sum(len(m.entries) for m in timed_rows),
                "journal_line": sum(len(m.lines) for m in timed_rows),
                "stock_move": sum(len(m.moves) for m in timed_rows),
            }
            floors["select_1_round_trip"] = round_trip(pg_url)
            report["psycopg_floor"] = floors

            # --- diagnostic: the WAL flush per commit ---------------------------------------
            if not args.no_async_commit:
                off = {"options": "-c synchronous_commit=off"}
                report["async_commit_diagnostic"] = {
                    "note": "synchronous_commit=off on the service's connection: commits do "
                    "not wait for the WAL flush (a crash may lose the last acknowledged "
                    "commits, never consistency). Not the headline figures.",
                    "postgres_single": measure(
                        Backend("postgres", new_pg("single_async", off), drop_pg), single, None
                    ),
                    f"postgres_batch_{largest}": measure(
                        Backend("postgres", new_pg(f"b{largest}_async", off), drop_pg),
                        batches[largest],
                        largest,
                    ),
                    "psycopg_floor_per_message": psycopg_floor(
                        pg_url, rows, setup_count, 1, synchronous_commit=False
                    ),
                }
    finally:
        _stop_all_children()
        for name in schemas:
            with suppress(Exception):  # best effort; the schema name is unique
                drop_schema(pg_url, name)

    pg_single = report["postgres_single"]["events_per_s"]
    pg_batch = max(report[f"postgres_batch_{s}"]["events_per_s"] for s in sizes)
    trivial_rate = report["trivial"]["requests_per_s"]
    floors = report["psycopg_floor"]
    report["ratios"] = {
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
    report["target"] = {
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
    report["noisy_measurements"] = sorted(
        name for name, value in measured.items() if value["other_cpu_share"] > NOISY_SHARE
    )
    report["mix"] = mix_summary(workload)
    report["definitions"] = {
        "events_per_s": "timed messages posted / wall time of the timed window (client side, "
        "connections already open)",
        "trivial": "FastAPI app, one POST endpoint that reads the body and answers a 2-key "
        "JSON, uvicorn loop=uvloop http=httptools, one process, same bodies and client",
        "psycopg_floor": "executemany per table (inbox, journal_entry, journal_line, "
        "stock_move) of the rows the postgres single run wrote, ids included, into a scratch "
        "schema of the ledger DDL; one transaction per N messages. copy_per_N: the same rows "
        "by COPY (a supplementary floor, for scale)",
        "cpu": "server_cpu_s: the twin serve process; postgres_cpu_s: all local postgres "
        "processes; client_cpu_s: this process (the load client); other_cpu_s: the rest of "
        "the machine (other work: the figures are noisy when it is not near 0); all in the "
        "timed window",
    }
    report["versions"] = versions(pg_url)
    report["revision"] = source_revision()
    report["platform"] = platform.platform()
    report["cpus"] = os.cpu_count()
    report["load_average_at_end"] = load_average()
    report["total_wall_s"] = round(time.perf_counter() - began, 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
