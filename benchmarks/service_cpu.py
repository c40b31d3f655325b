"""CPU accounting from /proc for the service benchmark's timed windows: the server process, every
local PostgreSQL process, this process (the load client) and the rest of the machine."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

CPUS = os.cpu_count() or 1
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
