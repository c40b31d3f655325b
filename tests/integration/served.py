"""Run `twin serve` for real: a subprocess on a free loopback port, its files in a tmp dir."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from integration import CoreSettings
from tests.builders import settings

KEYS = {
    "PLM": "plm-key-0123456789abcdef",
    "ERP": "erp-key-0123456789abcdef",
    "MES": "mes-key-0123456789abcdef",
    "WMS": "wms-key-0123456789abcdef",
    "FINANCE": "fin-key-0123456789abcdef",
    "SUPPLIER": "sup-key-0123456789abcdef",
}
OPS_KEY = "ops-key-0123456789abcdef"
READ_ONLY_KEY = "read-key-0123456789abcdef"


def write_config(directory: Path, core: CoreSettings | None = None) -> tuple[Path, Path]:
    """Core settings (the test network's by default) and one key per source, plus ops and
    read-only keys."""
    settings_path = directory / "core-settings.json"
    settings_path.write_text((core or settings()).model_dump_json())
    keys = [{"name": source.lower(), "key": key, "source": source} for source, key in KEYS.items()]
    keys += [
        {"name": "ops", "key": OPS_KEY, "operate": True},
        {"name": "reader", "key": READ_ONLY_KEY},
    ]
    keys_path = directory / "keys.json"
    keys_path.write_text(json.dumps({"keys": keys}))
    return settings_path, keys_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


ADMIT_ALL_S = 3600.0  # a `--max-wait-s` no test's backlog reaches
BIG_QUOTA = str(2**40)  # a dead-letter quota no test's rejections fill (soak runs included)


@dataclass
class Served:
    """A running `twin serve` process."""

    db_url: str
    directory: Path
    core: CoreSettings | None = None  # the test network's settings by default
    port: int = field(default_factory=free_port)
    # more `twin serve` options. Back-pressure and the dead-letter quota are off unless a test
    # sets `--max-wait-s` or `--dead-letter-quota`: on two shared cores the default bound would
    # refuse requests of tests about other things (retries, crashes, concurrency), and a soak
    # run of hostile values would fill the default quota; test_service_pressure.py sets its own.
    options: tuple[str, ...] = ()
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Served:
        settings_path, keys_path = write_config(self.directory, self.core)
        command = [
            sys.executable,
            "-m",
            "sim.cli",
            "serve",
            "--db",
            self.db_url,
            "--settings",
            str(settings_path),
            "--keys",
            str(keys_path),
            "--port",
            str(self.port),
            *(() if "--max-wait-s" in self.options else ("--max-wait-s", str(ADMIT_ALL_S))),
            *(() if "--dead-letter-quota" in self.options else ("--dead-letter-quota", BIG_QUOTA)),
            *self.options,
        ]
        with open(self.directory / f"serve-{self.port}.log", "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"twin serve exited: {self.log_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"twin serve did not come up: {self.log_text()}")

    def log_text(self) -> str:
        return (self.directory / f"serve-{self.port}.log").read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def auth(source: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[source]}"}
