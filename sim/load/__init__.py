"""Live load tests (`twin load`): the twin's traffic sent open-model to a running target over
HTTP or through RabbitMQ to `twin consume` (`sim.load.amqp`), latency corrected for
coordinated omission, and the books read back and reconciled against the twin's truth. Needs
the `load` extra (aiohttp, httpx, httptools), and the `broker` extra (aio-pika) for amqp://."""

from sim.load.client import AiohttpClient, HttpxClient
from sim.load.http11 import Http11Client
from sim.load.schedule import Schedule, Send, make_schedule
from sim.load.session import LoadOptions, drive_scenario, load_run

__all__ = [
    "LoadOptions",
    "load_run",
    "drive_scenario",
    "make_schedule",
    "Schedule",
    "Send",
    "Http11Client",
    "AiohttpClient",
    "HttpxClient",
]
