"""The core on RabbitMQ: the topology every publisher and consumer declares, and the consumer
behind `twin consume`."""

from integration.broker.command import run_consumer
from integration.broker.consumer import Consumer, ConsumerOptions
from integration.broker.metrics import ConsumerMetrics
from integration.broker.topology import (
    HEADER_CODE,
    HEADER_DEAD_LETTER_ID,
    HEADER_PROBLEMS,
    HEADER_REASON,
    HEADER_SOURCE,
    Topology,
    outcome_routing_key,
    routing_key,
)

__all__ = [
    "Topology",
    "routing_key",
    "outcome_routing_key",
    "HEADER_CODE",
    "HEADER_PROBLEMS",
    "HEADER_REASON",
    "HEADER_DEAD_LETTER_ID",
    "HEADER_SOURCE",
    "Consumer",
    "ConsumerOptions",
    "ConsumerMetrics",
    "run_consumer",
]
