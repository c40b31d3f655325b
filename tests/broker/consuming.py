"""Run `twin consume` for real: a subprocess on a test's topology, its log in a tmp dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from integration.broker import Topology
from tests.broker.rabbit import GUEST_URL
from tests.integration.served import free_port


@dataclass
class Consuming:
    """One `twin consume` process over `db_url`, with the settings and keys of `config`."""

    db_url: str
    topology: Topology
    config: tuple[Path, Path]  # (settings, keys) as `write_config` writes them
    log: Path
    options: tuple[str, ...] = ()
    metrics_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    def launch(self) -> Consuming:
        """Start the process without waiting for it (see `wait_ready`)."""
        settings_path, keys_path = self.config
        command = [
            sys.executable, "-m", "sim.cli", "consume",
            "--amqp", GUEST_URL,
            "--db", self.db_url,
            "--settings", str(settings_path),
            "--keys", str(keys_path),
            "--prefix", self.topology.prefix,
            "--queues", str(self.topology.queues),
            "--delivery-limit", str(self.topology.delivery_limit),
            "--prefetch", "100",
            "--metrics-port", str(self.metrics_port),
            *self.options,
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> Consuming:
        """Until its `consuming ...` line has been printed (it consumes from then on)."""
        return self.wait_logged("consuming ", timeout)

    def wait_logged(self, text: str, timeout: float = 30.0) -> Consuming:
        """Until `text` is in its log (fails if the process exits first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"twin consume exited: {self.log_text()}")
            if text in self.log_text():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"twin consume did not log {text!r}: {self.log_text()}")

    def start(self) -> Consuming:
        return self.launch().wait_ready()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on the Prometheus endpoint (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        samples = [line for line in text.splitlines() if line.startswith(name)]
        return sum(float(line.rsplit(" ", 1)[1]) for line in samples)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; its exit code (a kill after `timeout` is a failure: -9)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode
