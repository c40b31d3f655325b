"""`twin consume` end to end: the core over a store, the consumer, signals and metrics."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

import uvloop

from integration.broker.consumer import Consumer, ConsumerOptions
from integration.broker.metrics import ConsumerMetrics
from integration.clock import SystemClock
from integration.core import Core, open_store
from integration.service import load_keys, load_settings

__all__ = ["run_consumer"]


def run_consumer(
    db_url: str,
    settings_path: str | Path,
    keys_path: str | Path | None,
    options: ConsumerOptions,
    metrics_port: int | None = None,
    announce: Callable[[str], None] = print,
) -> None:
    """Consume into the core over `db_url` until SIGTERM or SIGINT, then finish the group in
    hand, ack it and return. The keys file is `twin serve`'s: a broker user is the key of the
    same name. With `metrics_port` (0: any free port), Prometheus metrics on loopback."""
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("integration.broker").setLevel(logging.INFO)
    keys = load_keys(keys_path)
    clock = SystemClock()
    core = Core(load_settings(settings_path), open_store(db_url), clock)
    try:
        metrics = ConsumerMetrics()
        if metrics_port is not None:
            announce(f"metrics at http://127.0.0.1:{metrics.serve(metrics_port)}/metrics")
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_consume(Consumer(core, keys, options, clock, metrics), announce))
    finally:
        core.close()


async def _consume(consumer: Consumer, announce: Callable[[str], None]) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, consumer.stop)
    await consumer.run(announce)
