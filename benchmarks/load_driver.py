"""How fast the `twin load` driver sends, open-model, printed as one JSON object.

    python benchmarks/load_driver.py [--seconds 5] [--rates 1000,2000,...]
        [--clients http11,aiohttp,httpx-aiohttp,httpx] [--locust-users 64]
        [--scenario scenarios/shift_change_burst.yaml] [--serve-speed 100000]

What is measured, in one run, on this machine (the server and the driver share its cores):

* driver: against a trivial FastAPI endpoint (uvicorn, uvloop, httptools, one process; the
  service benchmark's baseline app), the driver sends a constant-rate schedule for `--seconds`
  at each of `--rates` in turn, with each client: the driver's HTTP/1.1 client (the default),
  aiohttp, httpx over aiohttp's transport (httpx-aiohttp) and httpx with its own transport.
  A step passes when fewer than 1 % of its sends started more than 10 ms late and every send
  was answered.
  `highest_rate` is the highest passing step: the rate the driver can promise to keep.
* locust: Locust headless, `FastHttpUser`, one process, `--locust-users` users with no wait
  time, against the same endpoint for `--seconds`: the closed-model rate of a common tool.
* twin_serve: the driver against `twin serve` (SQLite file) with `--scenario`'s traffic at
  `--serve-speed`: achieved rate, late sends, corrected and uncorrected latency, and whether
  the books read back agree with the truth (duplicates posted, unexplained drift).

Target (issue 6): >= 3,000 requests/s from one driver process with < 1 % late sends.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import replace
from pathlib import Path

from checkout import ROOT, source_revision
from service_processes import Server, free_port, running, stop_all_children, trivial_server

from integration import Outcome, SourceSystem
from sim import load_scenario
from sim.load import AiohttpClient, HttpxClient, LoadOptions, drive_scenario, make_schedule
from sim.load.driver import Driver, RetryPolicy, Timeline
from sim.load.figures import LoadFigures
from sim.load.http11 import Http11Client
from sim.load.schedule import Send
from sim.model.catalogue import Catalogue
from sim.model.streams import Streams

TARGET_RATE = 3000
LATE_AFTER_S = 0.010
IN_FLIGHT = 256
KEY = "bench-load-key-0123456789abcdef"
KEYS = {source: f"bench-{source.value.lower()}-key-0123456789abcdef" for source in SourceSystem}
OPERATE_KEY = "bench-ops-key-0123456789abcdef"

LOCUSTFILE = textwrap.dedent(
    """
    from locust import constant, task
    from locust.contrib.fasthttp import FastHttpUser

    BODY = open(__file__.replace("locustfile.py", "body.json"), "rb").read()


    class Sender(FastHttpUser):
        wait_time = constant(0)

        @task
        def submit(self):
            self.client.post("/v1/messages", data=BODY,
                             headers={"Content-Type": "application/json"})
    """
)


class _Quiet:
    def started(self, send: Send, wall: float) -> None: ...

    def answered(self, send: Send, outcome: Outcome, wall: float) -> None: ...


def _client(name: str, url: str):
    """The driver's own HTTP/1.1 client (its default); aiohttp; httpx with its own transport;
    httpx over aiohttp's transport (the httpx-aiohttp package, `pip install 'mfg-twin[bench]'`)."""
    if name == "http11":
        return Http11Client(url, 10.0)
    if name == "aiohttp":
        return AiohttpClient(url, IN_FLIGHT, 10.0)
    import httpx

    if name == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport()
        return HttpxClient(httpx.AsyncClient(base_url=url, timeout=10.0, transport=transport))
    limits = httpx.Limits(max_connections=IN_FLIGHT, max_keepalive_connections=IN_FLIGHT)
    return HttpxClient(httpx.AsyncClient(base_url=url, timeout=10.0, limits=limits))


def _constant_rate(template: Send, rate: float, seconds: float) -> list[Send]:
    return [replace(template, at=i / rate) for i in range(int(rate * seconds))]


def driver_step(url: str, client: str, template: Send, rate: float, seconds: float) -> dict:
    """One constant-rate run of the driver: its figures and whether it kept the schedule."""
    figures = LoadFigures(LATE_AFTER_S)
    driver = Driver(
        _client(client, url),
        {template.envelope.source_system: KEY},
        _Quiet(),
        figures,
        Timeline(1.0),
        max_in_flight=IN_FLIGHT,
        policy=RetryPolicy(max_attempts=1, backoff_s=0.0),
    )

    async def go() -> None:
        try:
            await driver.run(_constant_rate(template, rate, seconds))
        finally:
            await driver.client.close()

    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(go())
    summary = figures.summary()
    sends = summary["sends"]
    return {
        "rate": rate,
        "achieved_per_s": summary["rate_per_s"]["achieved"],
        "late_share": sends["late_share"],
        "answered": sends["answered"],
        "scheduled": sends["scheduled"],
        "loop_lag_p99_ms": summary["loop_lag_ms"]["p99"],
        "passed": sends["late_share"] < 0.01 and sends["answered"] == sends["scheduled"],
    }


def driver_search(url: str, client: str, template: Send, rates, seconds: float) -> dict:
    steps = []
    for rate in rates:
        steps.append(driver_step(url, client, template, rate, seconds))
        if not steps[-1]["passed"]:
            break
    passing = [step["rate"] for step in steps if step["passed"]]
    return {"highest_rate": max(passing, default=0), "steps": steps}


def locust(url: str, body: bytes, users: int, seconds: float, directory: Path) -> dict:
    """Locust's closed-model rate against the same endpoint (requests/s, from its CSV)."""
    (directory / "locustfile.py").write_text(LOCUSTFILE)
    (directory / "body.json").write_bytes(body)
    prefix = directory / "locust"
    command = [
        str(Path(sys.executable).with_name("locust")),
        *("-f", str(directory / "locustfile.py"), "--headless", "--host", url),
        *("--users", str(users), "--spawn-rate", str(users), "--run-time", f"{int(seconds)}s"),
        *("--csv", str(prefix), "--only-summary", "--loglevel", "WARNING"),
    ]
    subprocess.run(command, cwd=directory, capture_output=True, timeout=seconds + 120)
    with open(f"{prefix}_stats.csv", newline="") as stats:
        total = next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")
    return {
        "users": users,
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "rps": round(float(total["Requests/s"]), 1),
    }


def against_twin_serve(scenario_path: Path, speed: float, directory: Path) -> dict:
    """The driver against the real service with a scenario's traffic, read-back included."""
    scenario = load_scenario(scenario_path)
    settings = Catalogue.generate(scenario, Streams(scenario.seed)).core_settings()
    (directory / "settings.json").write_text(settings.model_dump_json())
    keys = [{"name": s.value.lower(), "key": k, "source": s.value} for s, k in KEYS.items()]
    keys.append({"name": "ops", "key": OPERATE_KEY, "operate": True})
    (directory / "keys.json").write_text(json.dumps({"keys": keys}))
    port = free_port()
    command = [sys.executable, "-m", "sim.cli", "serve", "--db", f"sqlite:///{directory}/l.db"]
    command += ["--settings", str(directory / "settings.json"), "--port", str(port)]
    command += ["--keys", str(directory / "keys.json")]
    with running(Server(command, directory / f"serve-{port}.log", port)) as server:
        options = LoadOptions(server.url, KEYS, OPERATE_KEY, speed, IN_FLIGHT, LATE_AFTER_S)
        summary, _measures, _books = drive_scenario(scenario, options)
    load = summary["load"]
    worst = max(load["latency_ms"].items(), key=lambda item: item[1]["corrected"]["count"])
    return {
        "scenario": scenario.name,
        "speed": speed,
        "sends": load["sends"],
        "rate_per_s": load["rate_per_s"],
        "fell_behind": load["fell_behind"],
        "busiest_workflow": {"name": worst[0], **worst[1]},
        "duplicates_posted": summary["duplicates"]["posted"],
        "final_unexplained_drift": summary["drift"]["final_unexplained_value"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", default="1000,2000,3000,4000,5000,6000,8000")
    parser.add_argument("--clients", default="http11,aiohttp,httpx-aiohttp,httpx")
    parser.add_argument("--locust-users", type=int, default=64)
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios/shift_change_burst.yaml")
    parser.add_argument("--serve-speed", type=float, default=100_000.0)
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    template = make_schedule(load_scenario(args.scenario)).sends[0]
    report: dict = {"revision": source_revision("sim", "integration", "benchmarks")}
    try:
        with tempfile.TemporaryDirectory() as scratch:
            directory = Path(scratch)
            with running(trivial_server(directory)) as trivial:
                report["driver"] = {
                    client: driver_search(trivial.url, client, template, rates, args.seconds)
                    for client in args.clients.split(",")
                }
                report["locust"] = locust(
                    trivial.url, template.body, args.locust_users, args.seconds, directory
                )
            report["twin_serve"] = against_twin_serve(args.scenario, args.serve_speed, directory)
    finally:
        stop_all_children()
    best = max((run["highest_rate"] for run in report["driver"].values()), default=0)
    report["target"] = {
        "rate": TARGET_RATE,
        "driver_highest_rate": best,
        "met": best >= TARGET_RATE,
        "ratio_to_locust": round(best / report["locust"]["rps"], 2)
        if report["locust"]["rps"]
        else None,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
