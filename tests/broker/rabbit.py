"""The real RabbitMQ for the broker tests: users, a topology per test, publishing as a source
system's user, reading queues, and closing a consumer's connections from the broker's side.

Every call opens a connection of its own (the tests are synchronous; a connection is a few
milliseconds on loopback).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest

from integration import Envelope
from integration.broker import Topology, outcome_routing_key, routing_key
from integration.broker.topology import HEADER_COUNT
from tests.integration.served import KEYS

HOST = os.environ.get("MFG_TWIN_AMQP_HOST", "127.0.0.1:5672")
GUEST_URL = f"amqp://guest:guest@{HOST}/"
# Broker users are named like their keys. These names are the broker tests' own, so that
# nothing else on the broker (a benchmark, another suite) changes their passwords meanwhile.
USER_PREFIX = "mfg-broker-test-"
USERS = {f"{USER_PREFIX}{source.lower()}": key for source, key in KEYS.items()}


def user(source: str) -> str:
    """The broker user (the key's name) of a source system."""
    return f"{USER_PREFIX}{source.lower()}"


def user_of(envelope: Envelope) -> str:
    return user(envelope.source_system.value)


def write_keys(directory: Path) -> Path:
    """The consumer's keys file: a key per source, named as its broker user."""
    keys = [{"name": user(source), "key": key, "source": source} for source, key in KEYS.items()]
    path = directory / "broker-keys.json"
    path.write_text(json.dumps({"keys": keys}))
    return path


def url_of(user: str) -> str:
    return f"amqp://{user}:{USERS[user]}@{HOST}/"


def _run(coroutine):
    return asyncio.run(coroutine)


# --- the broker itself ----------------------------------------------------------------------------
def require_broker() -> None:
    """Fail (never skip) with what is missing: the broker, or its consistent-hash exchange."""

    async def probe() -> None:
        connection = await aio_pika.connect(GUEST_URL, timeout=5)
        try:
            channel = await connection.channel()
            name = f"probe-{uuid.uuid4().hex[:8]}"
            await channel.declare_exchange(name, "x-consistent-hash", auto_delete=True)
            await channel.exchange_delete(name)
        finally:
            await connection.close()

    try:
        _run(probe())
    except Exception as error:  # any failure: say what to do
        pytest.fail(
            f"RabbitMQ at {HOST} with rabbitmq_consistent_hash_exchange is needed "
            f"(tests/prepare_services.sh sets it up): {type(error).__name__}: {error}"
        )


def ensure_users() -> None:
    """A broker user per source key (name and password as in the keys file), with every
    permission on `/`: one `rabbitmqctl import_definitions`, skipped when they can log in."""
    if all(_can_log_in(user) for user in USERS):
        return
    salt = b"mfgt"  # a fixed salt: the hash is only a test fixture
    users, permissions = [], []
    for user, password in USERS.items():
        digest = hashlib.sha256(salt + password.encode()).digest()
        users.append({
            "name": user,
            "password_hash": base64.b64encode(salt + digest).decode(),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
        })  # fmt: skip
        permissions.append(
            {"user": user, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
        )
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as definitions:
        json.dump({"users": users, "permissions": permissions}, definitions)
    os.chmod(definitions.name, 0o644)  # the broker's own user reads it
    try:
        imported = subprocess.run(
            ["rabbitmqctl", "import_definitions", definitions.name],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.unlink(definitions.name)
    if imported.returncode != 0:
        pytest.fail(f"rabbitmqctl import_definitions failed: {imported.stderr[-2000:]}")
    deadline = time.monotonic() + 30  # the import finishes asynchronously
    while not all(_can_log_in(user) for user in USERS):
        if time.monotonic() > deadline:
            pytest.fail("the broker tests' users cannot log in after import_definitions")
        time.sleep(0.2)


def _can_log_in(user: str) -> bool:
    async def log_in() -> None:
        await (await aio_pika.connect(url_of(user), timeout=5)).close()

    try:
        _run(log_in())
    except Exception:
        return False
    return True


# --- one test's topology ------------------------------------------------------------------------
@dataclass
class Delivered:
    """A message read back from a queue."""

    body: bytes
    headers: dict[str, Any]
    routing_key: str
    correlation_id: str | None
    message_id: str | None

    def json(self) -> Any:
        return json.loads(self.body)


class Rabbit:
    """A topology of its own (a unique prefix), a tap queue on its outcomes exchange (each
    message there a batch: `integration/broker/replies.py`), and everything deleted by
    `cleanup`."""

    def __init__(self, queues: int = 4, delivery_limit: int = 5) -> None:
        prefix = f"t-{uuid.uuid4().hex[:10]}"
        self.topology = Topology(prefix=prefix, queues=queues, delivery_limit=delivery_limit)
        self.tap = f"{self.topology.prefix}.tap"
        self.extra_queues: list[str] = []
        self.answers: list[dict] = []  # every batch item read from the tap so far

    def declare(self) -> Rabbit:
        async def declare() -> None:
            connection = await aio_pika.connect(GUEST_URL)
            try:
                channel = await connection.channel()
                await self.topology.declare(channel)
                tap = await channel.declare_queue(self.tap, durable=True)
                await tap.bind(self.topology.outcomes, routing_key="#")
            finally:
                await connection.close()

        _run(declare())
        return self

    def block_outcomes(self) -> str:
        """A queue on the outcomes exchange that refuses every message, so the broker nacks
        every outcome the consumer publishes; its name, for `delete_queue`."""
        name = f"{self.topology.prefix}.block"

        async def declare() -> None:
            connection = await aio_pika.connect(GUEST_URL)
            try:
                channel = await connection.channel()
                arguments = {"x-max-length": 0, "x-overflow": "reject-publish"}
                queue = await channel.declare_queue(name, durable=True, arguments=arguments)
                await queue.bind(self.topology.outcomes, routing_key="#")
            finally:
                await connection.close()

        _run(declare())
        self.extra_queues.append(name)
        return name

    def delete_queue(self, name: str) -> None:
        async def delete() -> None:
            connection = await aio_pika.connect(GUEST_URL)
            try:
                await (await connection.channel()).queue_delete(name)
            finally:
                await connection.close()

        _run(delete())

    def publish(
        self,
        envelopes: list[Envelope],
        key: str | None = None,
        user: str | None = None,
    ) -> None:
        """Publish each envelope as its source's user (or `user`), confirmed, routed by its
        stream (or `key` for all), with its message and correlation ids."""
        by_user: dict[str, list[tuple[bytes, str, str]]] = {}
        for envelope in envelopes:
            body = envelope.model_dump_json().encode()
            route = key or routing_key(envelope.stream, envelope.message_id)
            by_user.setdefault(user or user_of(envelope), []).append(
                (body, route, envelope.message_id)
            )
        for name, messages in by_user.items():  # one user's messages keep their order
            self.publish_raw(name, messages)

    def publish_raw(
        self, user: str, messages: list[tuple[bytes, str, str]], user_id: str | None = "same"
    ) -> None:
        """Publish (body, routing key, message id) as `user`; `user_id` the same by default,
        None to leave the property out."""
        stamped = user if user_id == "same" else user_id

        async def publish() -> None:
            url = GUEST_URL if user == "guest" else url_of(user)
            connection = await aio_pika.connect(url)
            try:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(self.topology.inbound, ensure=False)
                for body, route, message_id in messages:
                    message = aio_pika.Message(
                        body,
                        message_id=message_id,
                        correlation_id=f"corr-{message_id}",
                        user_id=stamped,
                        timestamp=datetime.now(UTC),  # the consumer's lag starts here
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        content_type="application/json",
                    )
                    await exchange.publish(message, route)
            finally:
                await connection.close()

        _run(publish())

    def read_tap(self) -> None:
        """Read the batches published since the last read into `answers` (message_id,
        correlation_id, source, outcome), each batch checked: routed by its outcomes' key,
        counted in its header."""
        new = self.drain(self.tap)
        for batch in new:
            items = batch.json()
            keys = {outcome_routing_key(a["outcome"]["status"], a["outcome"]["message_type"])
                    for a in items}  # fmt: skip
            assert keys == {batch.routing_key}, f"{batch.routing_key} holds outcomes of {keys}"
            assert batch.headers[HEADER_COUNT] == len(items)
            self.answers.extend(items)

    @property
    def outcomes(self) -> list[dict]:
        """Every outcome read so far, in the order published."""
        return [answer["outcome"] for answer in self.answers]

    def by_message(self) -> dict[str, list[dict]]:
        """Every outcome read so far, by message id, in the order published."""
        found: dict[str, list[dict]] = {}
        for answer in self.answers:
            found.setdefault(answer["message_id"], []).append(answer["outcome"])
        return found

    def wait_outcomes(
        self, message_ids: list[str], statuses: tuple[str, ...] = ("POSTED",), timeout=30.0
    ) -> dict[str, list[dict]]:
        """Read the tap until each message has an outcome with one of `statuses`; fails
        naming how many are missing. Every outcome read so far, by message id."""
        deadline = time.monotonic() + timeout
        while True:
            self.read_tap()
            seen = self.by_message()
            missing = [m for m in message_ids
                       if not any(o["status"] in statuses for o in seen.get(m, ()))]  # fmt: skip
            if not missing:
                return seen
            if time.monotonic() > deadline:
                shown = {m: [o["status"] for o in seen.get(m, ())] for m in missing[:5]}
                raise AssertionError(
                    f"{len(missing)} messages without {statuses}; the first, with the "
                    f"outcomes they had: {shown}"
                )
            time.sleep(0.1)

    def drain(self, queue_name: str) -> list[Delivered]:
        """Every message ready in the queue, removed from it."""

        async def drain() -> list[Delivered]:
            connection = await aio_pika.connect(GUEST_URL)
            try:
                queue = await (await connection.channel()).get_queue(queue_name, ensure=False)
                read = []
                while (message := await queue.get(no_ack=True, fail=False)) is not None:
                    read.append(
                        Delivered(
                            message.body,
                            dict(message.headers or {}),
                            message.routing_key or "",
                            message.correlation_id,
                            message.message_id,
                        )
                    )
                return read
            finally:
                await connection.close()

        return _run(drain())

    def ready(self) -> dict[str, int]:
        """Messages ready in each inbound queue and the dead one."""

        async def depths() -> dict[str, int]:
            connection = await aio_pika.connect(GUEST_URL)
            try:
                channel = await connection.channel()
                names = (*self.topology.inbound_queues, self.topology.dead)
                found = {}
                for name in names:
                    queue = await channel.declare_queue(name, passive=True)
                    found[name] = queue.declaration_result.message_count
                return found
            finally:
                await connection.close()

        return _run(depths())

    def consumer_connections(self) -> list[str]:
        """The broker's ids of the open `twin consume` connections of this topology."""
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        name = f'{{"connection_name","twin consume {self.topology.prefix}"}}'
        return [line.split("\t")[0] for line in listed.stdout.splitlines() if name in line]

    def close_consumer_connections(self) -> int:
        """Close every `twin consume` connection of this topology from the broker's side (as
        `rabbitmqctl close_all_connections` does, but sparing other tests' connections)."""
        pids = self.consumer_connections()
        for pid in pids:
            subprocess.run(
                ["rabbitmqctl", "-q", "close_connection", pid, "closed by the test"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
        return len(pids)

    def cleanup(self) -> None:
        async def delete() -> None:
            connection = await aio_pika.connect(GUEST_URL)
            try:
                channel = await connection.channel()
                topology = self.topology
                for queue in (*topology.inbound_queues, topology.dead, self.tap,
                              *self.extra_queues):  # fmt: skip
                    await channel.queue_delete(queue)
                for exchange in (topology.inbound, topology.dead, topology.outcomes):
                    await channel.exchange_delete(exchange)
            finally:
                await connection.close()

        _run(delete())
