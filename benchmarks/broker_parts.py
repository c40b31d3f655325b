"""The broker benchmark's parts: the workload with streams, the AMQP users, the publisher and
the outcome collector (in the benchmark's process), the floor's consumer (a process of its
own, no database) and `twin consume` (a process), all on one topology prefix per run.

Times are `time.time()` in every process (one machine, one clock).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from checkout import ROOT
from service_processes import KEYS, _children, write_config
from workload import Workload

from integration import SourceSystem
from integration.broker.topology import HEADER_COUNT, Topology, routing_key

GUEST_URL = "amqp://guest:guest@127.0.0.1:5672/"
AMQP_URL = "amqp://127.0.0.1:5672/"
WINDOW = 1000  # publishes awaiting their confirm at once
USER_PREFIX = "mfg-bench-"  # the benchmark's own broker users: no test's passwords change


def user_name(source: SourceSystem) -> str:
    """The broker user of a source (the name of its key)."""
    return f"{USER_PREFIX}{source.value.lower()}"


def write_broker_config(directory: Path) -> tuple[Path, Path]:
    """service_processes' settings and keys, each key named as its broker user."""
    settings_path, keys_path = write_config(directory)
    keys = json.loads(keys_path.read_text())["keys"]
    for key in keys:
        key["name"] = f"{USER_PREFIX}{key['name']}"
    broker_keys = directory / "broker-keys.json"
    broker_keys.write_text(json.dumps({"keys": keys}))
    return settings_path, broker_keys


@dataclass(frozen=True, slots=True)
class Publish:
    source: SourceSystem
    body: bytes
    message_id: str
    routing_key: str


def run(coroutine):
    """Run on uvloop (as `twin load` does): the client side of every measurement."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def with_streams(workload: Workload) -> list[Publish]:
    """The timed mix with ordering on: each work order's messages one stream (`MES:WO-…`),
    numbered 1, 2, … in send order, routed by the stream."""
    seqs: Counter[int] = Counter()
    publishes = []
    for raw, owner in zip(workload.timed, workload.work_order_of, strict=True):
        envelope = json.loads(raw)
        seqs[owner] += 1
        envelope["stream"] = f"MES:WO-{owner:06d}"
        envelope["source_seq"] = seqs[owner]
        body = json.dumps(envelope, separators=(",", ":")).encode()
        key = routing_key(envelope["stream"], envelope["message_id"])
        publishes.append(Publish(SourceSystem.MES, body, envelope["message_id"], key))
    return publishes


def setup_phases(workload: Workload) -> list[list[Publish]]:
    """The untimed setup, one phase per sender in order (items, stock, releases): a phase's
    messages are independent, so routing them by message id over the queues is safe."""
    phases = []
    for source, bodies in workload.setup:
        phase = []
        for raw in bodies:
            message_id = json.loads(raw)["message_id"]
            phase.append(Publish(source, raw.encode(), message_id, routing_key(None, message_id)))
        phases.append(phase)
    return phases


def ensure_users(keys_path: Path) -> None:
    """Every key of the benchmark's keys file as an AMQP user (password: the key), allowed
    everything on the default vhost. Needs rabbitmqctl (run as root)."""
    existing = subprocess.run(
        ["rabbitmqctl", "-q", "list_users"], check=True, capture_output=True, text=True
    ).stdout
    names = {line.split("\t")[0] for line in existing.splitlines()}
    for entry in json.loads(keys_path.read_text())["keys"]:
        verb = "change_password" if entry["name"] in names else "add_user"
        for command in (
            [verb, entry["name"], entry["key"]],
            ["set_permissions", "-p", "/", entry["name"], ".*", ".*", ".*"],
        ):
            subprocess.run(["rabbitmqctl", "-q", *command], check=True, capture_output=True)


def user_url(source: SourceSystem) -> str:
    return f"amqp://{user_name(source)}:{KEYS[source]}@127.0.0.1:5672/"


def fresh_topology(queues: int = 4) -> Topology:
    return Topology(prefix=f"bench-{uuid.uuid4().hex[:10]}", queues=queues)


async def delete_topology(topology: Topology) -> None:
    import aio_pika

    connection = await aio_pika.connect(GUEST_URL)
    async with connection:
        channel = await connection.channel()
        for queue in (*topology.inbound_queues, topology.dead):
            await channel.queue_delete(queue)
        for exchange in (topology.inbound, topology.dead, topology.outcomes):
            await channel.exchange_delete(exchange)


async def declare(topology: Topology) -> None:
    import aio_pika

    connection = await aio_pika.connect(GUEST_URL)
    async with connection:
        await topology.declare(await connection.channel())


class Publisher:
    """One confirming channel per source, each as the source's own user, `WINDOW` publishes
    in flight (pipelined confirms)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._connections: list = []
        self._exchanges: dict[SourceSystem, object] = {}

    async def open(self, sources: set[SourceSystem]) -> None:
        import aio_pika

        for source in sorted(sources):
            connection = await aio_pika.connect(user_url(source))
            self._connections.append(connection)
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchanges[source] = await channel.declare_exchange(
                self.topology.inbound, "x-consistent-hash", durable=True
            )

    async def publish(self, publishes: list[Publish]) -> tuple[float, float]:
        """Publish all, confirmed: (first publish, last confirm)."""
        import aio_pika

        loop = asyncio.get_running_loop()
        window = asyncio.Semaphore(WINDOW)

        async def one(item: Publish) -> None:
            message = aio_pika.Message(
                item.body,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=item.message_id,
                correlation_id=item.message_id,
                user_id=user_name(item.source),
            )
            try:
                await self._exchanges[item.source].publish(message, item.routing_key)
            finally:
                window.release()

        began = time.time()
        tasks = []
        for item in publishes:
            await window.acquire()
            tasks.append(loop.create_task(one(item)))
        await asyncio.gather(*tasks)
        return began, time.time()

    async def close(self) -> None:
        for connection in self._connections:
            await connection.close()


@dataclass
class Collector:
    """Outcomes from the outcomes exchange: counts by status, and when the `expected`-th came.
    A batch is read from its routing key (`STATUS.MessageType`) and its count header, not
    parsed: each of its outcomes came when it did."""

    topology: Topology
    statuses: Counter[str] = field(default_factory=Counter)
    times: list[float] = field(default_factory=list)  # when each outcome came
    _connection: object = None
    _target: int = 0
    _reached: asyncio.Event | None = None

    async def open(self) -> None:
        import aio_pika

        self._reached = asyncio.Event()
        self._connection = await aio_pika.connect(GUEST_URL)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=2000)
        exchange = await channel.declare_exchange(
            self.topology.outcomes, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on_message, no_ack=True)

    async def _on_message(self, message) -> None:
        count = message.headers[HEADER_COUNT]
        self.statuses[message.routing_key.partition(".")[0]] += count
        self.times.extend([time.time()] * count)
        if len(self.times) >= self._target:
            self._reached.set()

    async def wait_for(self, total: int, timeout: float) -> float:
        """When the `total`-th outcome (since `open`) came."""
        self._target = total
        if len(self.times) < total:
            self._reached.clear()
            await asyncio.wait_for(self._reached.wait(), timeout)
        return self.times[total - 1]

    async def close(self) -> None:
        await self._connection.close()


# The floor's consumer: every inbound queue on one channel, prefetch P, whatever has arrived
# (up to P) acked as one group with `multiple`, as `twin consume` groups; no database, on
# uvloop. With "outcomes", before the ack it publishes the group's outcomes to the outcomes
# exchange as one confirmed batch (a JSON list of a small object per delivery), as `twin
# consume` does for a group of one routing key. Prints the time of its first delivery and of
# its last ack, after N messages.
FLOOR_CONSUMER = textwrap.dedent(
    """
    import asyncio, json, sys, time
    import aio_pika, uvloop
    from integration.broker.topology import HEADER_COUNT, Topology

    async def main(prefix, queues, total, prefetch, outcomes):
        topology = Topology(prefix=prefix, queues=queues)
        connection = await aio_pika.connect(sys.argv[5])
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        await topology.declare(channel)
        replies = await connection.channel(publisher_confirms=True)
        exchange = await replies.get_exchange(topology.outcomes, ensure=False)

        async def reply(group):
            body = json.dumps([
                {"message_id": d.message_id, "correlation_id": d.correlation_id, "source": "MES",
                 "outcome": {"status": "POSTED", "message_id": d.message_id,
                             "message_type": "OperationCompleted", "entry_ids": ["e-1"]}}
                for d in group
            ])
            message = aio_pika.Message(body.encode(), content_type="application/json",
                                       headers={HEADER_COUNT: len(group)})
            await exchange.publish(message, "POSTED.OperationCompleted", mandatory=False)

        inbox = asyncio.Queue()
        for name in topology.inbound_queues:
            queue = await channel.get_queue(name, ensure=False)
            await queue.consume(inbox.put)
        print("consuming", flush=True)
        done, first = 0, None
        while done < total:
            group = [await inbox.get()]
            first = first or time.time()
            while len(group) < prefetch and not inbox.empty():
                group.append(inbox.get_nowait())
            if outcomes:
                await reply(group)
            await group[-1].ack(multiple=True)
            done += len(group)
        print(json.dumps({"first": first, "last": time.time(), "messages": done}), flush=True)
        await connection.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                        sys.argv[6] == "outcomes"))
    """
)


def start_floor_consumer(
    topology: Topology, total: int, prefetch: int, directory: Path, outcomes: bool = False
):
    script = directory / "floor_consumer.py"
    script.write_text(FLOOR_CONSUMER)
    process = subprocess.Popen(
        [sys.executable, str(script), topology.prefix, str(topology.queues), str(total),
         str(prefetch), GUEST_URL, "outcomes" if outcomes else "acks"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    _children.append(process)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "consuming":
        raise RuntimeError("the floor consumer did not start")
    return process


def floor_result(process: subprocess.Popen, timeout: float) -> dict:
    out, _ = process.communicate(timeout=timeout)
    return json.loads(out.strip().splitlines()[-1])


@dataclass
class Consume:
    """A `twin consume` process on the benchmark's keys and settings."""

    db_url: str
    topology: Topology
    config: tuple[Path, Path]
    log_path: Path
    prefetch: int = 500
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> float:
        """Start it; returns how long until it consumed (seconds)."""
        settings_path, keys_path = self.config
        command = [
            sys.executable, "-m", "sim.cli", "consume", "--amqp", GUEST_URL,
            "--db", self.db_url, "--settings", str(settings_path), "--keys", str(keys_path),
            "--prefix", self.topology.prefix, "--queues", str(self.topology.queues),
            "--prefetch", str(self.prefetch),
        ]  # fmt: skip
        before = self._log().count("consuming ")
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=log, cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        _children.append(self.process)
        while time.monotonic() - began < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"twin consume exited: {self._log()[-3000:]}")
            if self._log().count("consuming ") > before:
                return time.monotonic() - began
            time.sleep(0.02)
        raise RuntimeError(f"twin consume did not start: {self._log()[-3000:]}")

    def _log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
