"""The service benchmark's subprocesses: `twin serve` and the trivial FastAPI baseline, each on a
free loopback port and logging to a file, their config files, py-spy, and the cleanup of all of
them on the way out (`stop_all_children`).

Not tests/integration/served.py: that one serves the test network with the test keys; this
one serves the benchmark's own plant network and keys, runs the trivial app too, and registers
every child so that an interrupted run leaves no process behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from checkout import ROOT
from workload import build_settings

from integration import SourceSystem

KEYS = {
    SourceSystem.PLM: "bench-plm-key-0123456789abcdef",
    SourceSystem.ERP: "bench-erp-key-0123456789abcdef",
    SourceSystem.MES: "bench-mes-key-0123456789abcdef",
    SourceSystem.WMS: "bench-wms-key-0123456789abcdef",
}
ADMIT_ALL_S = 3600.0  # `twin serve --max-wait-s`: no backlog of a benchmark reaches it
READ_KEY = "bench-read-key-0123456789abcdef"

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

_children: list[subprocess.Popen] = []


def bearer(source: SourceSystem) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[source]}", "Content-Type": "application/json"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url: str, timeout: float = 30.0, headers: dict | None = None) -> tuple[int, bytes]:
    return _answer(urllib.request.Request(url, headers=headers or {}), timeout)


def http_post(url: str, body: bytes, headers: dict, timeout: float = 120.0) -> tuple[int, bytes]:
    return _answer(urllib.request.Request(url, data=body, headers=headers, method="POST"), timeout)


def _answer(request: urllib.request.Request, timeout: float) -> tuple[int, bytes]:
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
    cwd: Path = ROOT  # the checkout whose code `python -m` runs
    env: dict[str, str] = field(default_factory=dict)  # beside this process's environment
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
                cwd=self.cwd,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            )
        _children.append(self.process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_text()}")
            try:
                if http_get(f"{self.url}/healthz", timeout=1.0)[0] == 200:
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


def stop_all_children() -> None:
    for process in reversed(_children):
        with suppress(Exception):  # best effort on the way out
            _stop(process)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server.start()
    finally:
        server.stop()


def twin_serve(
    db_url: str, directory: Path, settings_path: Path, keys_path: Path, root: Path = ROOT
) -> Server:
    """`twin serve` of the checkout at `root` (this one by default), admitting every
    submission: the benchmarks measure throughput, and on a slow machine the default bound
    refuses the second of two batches of 500 in flight. Set through the environment, which a
    checkout without back-pressure ignores (an unknown option would stop its `twin serve`)."""
    port = free_port()
    command = [sys.executable, "-m", "sim.cli", "serve", "--db", db_url]
    command += ["--settings", str(settings_path), "--keys", str(keys_path), "--port", str(port)]
    admit_all = {"MFG_TWIN_MAX_WAIT_S": str(ADMIT_ALL_S)}
    return Server(command, directory / f"serve-{port}.log", port, cwd=root, env=admit_all)


def trivial_server(directory: Path) -> Server:
    script = directory / "trivial_app.py"
    script.write_text(TRIVIAL_APP)
    port = free_port()
    return Server([sys.executable, str(script), str(port)], directory / f"trivial-{port}.log", port)


def write_config(directory: Path) -> tuple[Path, Path]:
    """The benchmark's core settings, one key per sender and a read-only key, for `twin serve`."""
    settings_path = directory / "core-settings.json"
    # defaults left out: each checkout measured (a baseline too) applies its own, such as
    # the authorisation of message types an older build does not know
    settings_path.write_text(build_settings().model_dump_json(exclude_defaults=True))
    keys = [
        {"name": source.value.lower(), "key": key, "source": source.value}
        for source, key in KEYS.items()
    ]
    keys.append({"name": "reader", "key": READ_KEY})
    keys_path = directory / "keys.json"
    keys_path.write_text(json.dumps({"keys": keys}))
    return settings_path, keys_path


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
