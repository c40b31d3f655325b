"""The service benchmark's load client: what one timed run sends (`Load`: per in-flight slot,
its request bodies in order), sending it with aiohttp or httpx (both async, on uvloop when it is
installed) while the CPU is accounted, and the figures of the result.

Each in-flight slot owns whole work orders (round robin) and sends their messages in order, so a
work order's issue -> completion -> receipt rhythm is never reordered by the concurrency.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from service_cpu import CPUS, CpuWindow
from service_processes import Server, bearer
from workload import Workload

from integration import SourceSystem

BATCH_IN_FLIGHT = 2


@dataclass
class Load:
    """What one timed run sends: per in-flight slot, its requests in order."""

    path: str
    headers: dict[str, str]
    slots: list[list[bytes]]  # request bodies per slot
    messages_per_body: list[list[int]]
    batch: bool
    slot_headers: list[dict[str, str]] | None = None  # per slot, over `headers`


@dataclass
class LoadResult:
    wall: float
    requests: int
    messages: int
    latencies: list[float]
    failures: list[str]
    cpu: dict[str, float]


def slots(workload: Workload, count: int) -> list[list[int]]:
    """The timed messages' indexes per in-flight slot: work orders dealt round robin, each
    slot's messages in workload order."""
    owned: list[list[int]] = [[] for _ in range(count)]
    for index, w in enumerate(workload.work_order_of):
        owned[w % count].append(index)
    return [indexes for indexes in owned if indexes]


def single_load(workload: Workload, concurrency: int) -> Load:
    """One `POST /v1/messages` per timed message, `concurrency` requests in flight."""
    bodies = [raw.encode() for raw in workload.timed]
    owned = slots(workload, concurrency)
    return Load(
        "/v1/messages",
        bearer(SourceSystem.MES),
        [[bodies[i] for i in indexes] for indexes in owned],
        [[1] * len(indexes) for indexes in owned],
        batch=False,
    )


def receipts_load(workload: Workload, concurrency: int, senders: list[SourceSystem]) -> Load:
    """One `POST /v1/messages` per receipt of `build_receipts`, `concurrency` in flight, each
    under its sender's key (`senders[n]`, as the workload was built)."""
    load = single_load(workload, concurrency)
    owned = slots(workload, concurrency)
    for indexes in owned:
        if len({senders[i] for i in indexes}) != 1:
            raise ValueError("each in-flight slot must hold one sender's receipts")
    load.slot_headers = [bearer(senders[indexes[0]]) for indexes in owned]
    return load


def batch_load(workload: Workload, size: int, in_flight: int = BATCH_IN_FLIGHT) -> Load:
    """`POST /v1/messages/batch` with `size` messages per request, `in_flight` in flight."""
    timed = [raw.encode() for raw in workload.timed]
    bodies, counts = [], []
    for indexes in slots(workload, in_flight):
        chunks = [indexes[i : i + size] for i in range(0, len(indexes), size)]
        bodies.append([b"[" + b",".join(timed[i] for i in c) + b"]" for c in chunks])
        counts.append([len(c) for c in chunks])
    return Load("/v1/messages/batch", bearer(SourceSystem.MES), bodies, counts, batch=True)


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

        async def slot(bodies: list[bytes], counts: list[int], headers: dict | None) -> None:
            clock = time.perf_counter
            for body, expected in zip(bodies, counts, strict=True):
                began = clock()
                async with session.post(url, data=body, headers=headers) as answer:
                    content = await answer.read()
                    status = answer.status
                latencies.append(clock() - began)
                problem = _check(load, status, content, expected)
                if problem:
                    failures.append(problem)

        # one connection per slot, opened before the clock starts
        await asyncio.gather(*(session.get(base + "/healthz") for _ in load.slots))
        start = time.perf_counter()
        await asyncio.gather(*(slot(*each) for each in _slots_of(load)))
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

        async def slot(bodies: list[bytes], counts: list[int], headers: dict | None) -> None:
            clock = time.perf_counter
            for body, expected in zip(bodies, counts, strict=True):
                began = clock()
                answer = await client.post(load.path, content=body, headers=headers)
                latencies.append(clock() - began)
                problem = _check(load, answer.status_code, answer.content, expected)
                if problem:
                    failures.append(problem)

        await asyncio.gather(*(client.get("/healthz") for _ in load.slots))
        start = time.perf_counter()
        await asyncio.gather(*(slot(*each) for each in _slots_of(load)))
        wall = time.perf_counter() - start
    return wall, latencies, failures


def _slots_of(load: Load) -> zip:
    """Each slot's bodies, messages per body and headers (None: the load's)."""
    headers = load.slot_headers or [None] * len(load.slots)
    return zip(load.slots, load.messages_per_body, headers, strict=True)


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


def rate_of(result: LoadResult) -> float:
    return round(result.requests / result.wall, 1)


def best(results: list[LoadResult]) -> LoadResult:
    return min(results, key=lambda r: r.wall)
