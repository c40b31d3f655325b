"""The consumer's deliveries, read straight from aiormq's channel.

aio-pika would wrap each delivery in an `IncomingMessage` (every property copied and checked)
and run its callback in a task of its own; on the consumer's event loop, which shares the
GIL with the core's thread, that was as much work as publishing outcomes. Here a delivery is
the frame's properties as they were read, and aiormq's one task per delivery puts it in the
inbox: the tasks run in arrival order, so the inbox keeps the delivery order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp.commands import Basic

__all__ = ["Delivery", "subscribe", "ack_up_to", "settle"]


@dataclass(frozen=True, slots=True, eq=False)
class Delivery:
    """One message from an inbound queue (`queue`): its body and AMQP properties."""

    body: bytes
    properties: Basic.Properties
    delivery_tag: int
    redelivered: bool
    queue: str

    @property
    def message_id(self) -> str | None:
        return self.properties.message_id

    @property
    def correlation_id(self) -> str | None:
        return self.properties.correlation_id

    @property
    def user_id(self) -> str | None:
        return self.properties.user_id

    @property
    def timestamp(self) -> datetime | None:
        return self.properties.timestamp

    @property
    def headers(self) -> dict[str, Any]:
        return self.properties.headers or {}

    @property
    def content_type(self) -> str | None:
        return self.properties.content_type

    @property
    def content_encoding(self) -> str | None:
        return self.properties.content_encoding


async def subscribe(channel: AbstractChannel, queue: str, inbox: asyncio.Queue) -> str:
    """Consume `queue` (manual acks) into `inbox`; the consumer tag."""

    def arrived(message: DeliveredMessage) -> None:
        deliver = message.delivery
        inbox.put_nowait(
            Delivery(
                message.body,
                message.header.properties,
                deliver.delivery_tag,
                deliver.redelivered,
                queue,
            )
        )

    consuming = await channel.basic_consume(queue, arrived)
    return consuming.consumer_tag


async def ack_up_to(channel: AbstractChannel, delivery: Delivery) -> None:
    """Ack every unacked delivery of the channel up to `delivery`."""
    await channel.basic_ack(delivery.delivery_tag, multiple=True)


async def settle(channel: AbstractChannel, group: list[Delivery], failed: list[Delivery]) -> None:
    """Ack the group, the failed deliveries excepted: those go back to their queue."""
    if not failed:
        await ack_up_to(channel, group[-1])  # the group is every unacked delivery up to it
        return
    for delivery in failed:
        await channel.basic_nack(delivery.delivery_tag, requeue=True)
    for delivery in group:
        if delivery not in failed:
            await channel.basic_ack(delivery.delivery_tag)
