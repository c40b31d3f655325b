"""The broker topology `twin consume` reads from and every publisher writes to.

    publisher ──(routing key: the stream)──▶ {prefix}.inbound   x-consistent-hash exchange
        ├─▶ {prefix}.inbound.0 … {prefix}.inbound.{N-1}   quorum queues, single active consumer
        │       └─(delivery limit passed)─▶ {prefix}.dead   at-least-once dead-lettering
    consumer ──(the core rejected it: code and problems in headers)──▶ {prefix}.dead   fanout
        └──▶ {prefix}.dead   quorum queue: every dead letter, once
    consumer ──(routing key: STATUS.MessageType; a group's outcomes of that key in one
                message, a JSON list: `replies.py`)──▶ {prefix}.outcomes   topic exchange

A stream (a work order's messages from one source) always hashes to the same queue, and a
queue has one active consumer at a time, so a stream's messages reach the core in the order
they were published, across consumer restarts and however many consumers run. Declaring is
idempotent: every consumer and publisher declares the same topology on start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "Topology",
    "routing_key",
    "outcome_routing_key",
    "HEADER_CODE",
    "HEADER_PROBLEMS",
    "HEADER_REASON",
    "HEADER_DEAD_LETTER_ID",
    "HEADER_SOURCE",
    "HEADER_COUNT",
]

HEADER_CODE = "x-mfg-code"  # the core's error code of a dead letter
HEADER_PROBLEMS = "x-mfg-problems"  # its problems, as JSON text
HEADER_REASON = "x-mfg-reason"  # rejected | unauthorised | delivery-limit
HEADER_DEAD_LETTER_ID = "x-mfg-dead-letter-id"  # the core's dead letter, for replay
HEADER_SOURCE = "x-mfg-source"  # the source system the consumer authenticated
HEADER_COUNT = "x-mfg-outcomes"  # how many outcomes a batch on the outcomes exchange holds


@dataclass(frozen=True)
class Topology:
    """Names and arguments of the exchanges and queues; `prefix` keeps deployments (and
    tests) apart on one broker."""

    prefix: str = "mfg"
    queues: int = 4
    delivery_limit: int = 5
    """redeliveries of one message before the broker dead-letters it, at its next return (a
    consumer that crashes on it every time cannot loop for ever)"""

    @property
    def inbound(self) -> str:
        return f"{self.prefix}.inbound"

    @property
    def inbound_queues(self) -> tuple[str, ...]:
        return tuple(f"{self.inbound}.{index}" for index in range(self.queues))

    @property
    def dead(self) -> str:
        """The dead-letter exchange and the queue behind it share this name."""
        return f"{self.prefix}.dead"

    @property
    def outcomes(self) -> str:
        return f"{self.prefix}.outcomes"

    def inbound_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-single-active-consumer": True,
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",  # at-least-once dead-lettering needs it
        }

    async def declare(self, channel: Any) -> None:
        """Declare everything on an aio-pika channel (idempotent)."""
        from aio_pika import ExchangeType

        inbound = await channel.declare_exchange(self.inbound, "x-consistent-hash", durable=True)
        dead = await channel.declare_exchange(self.dead, ExchangeType.FANOUT, durable=True)
        await channel.declare_exchange(self.outcomes, ExchangeType.TOPIC, durable=True)
        dead_queue = await channel.declare_queue(
            self.dead, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead_queue.bind(dead)
        for name in self.inbound_queues:
            queue = await channel.declare_queue(
                name, durable=True, arguments=self.inbound_arguments()
            )
            await queue.bind(inbound, routing_key="1")  # the weight on the hash ring


def routing_key(stream: str | None, message_id: str) -> str:
    """What a publisher routes a message by: its stream (so a stream keeps one queue and its
    order), else its message id (no order to keep)."""
    return stream or message_id


def outcome_routing_key(status: str, message_type: str | None) -> str:
    """`POSTED.OperationCompleted`, `REJECTED.unknown` for a payload that could not be read."""
    return f"{status}.{message_type or 'unknown'}"
