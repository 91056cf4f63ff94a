"""AMQP: topology as data, confirmed publishing, consuming with outcome-based acks."""

from smsgw_shared.amqp.batch import BatchConsumer, BatchHandler
from smsgw_shared.amqp.connection import AmqpConnection, BrokerUnavailable
from smsgw_shared.amqp.consumer import Consumer, Handler
from smsgw_shared.amqp.outcomes import (
    DeliveryInfo,
    Outcome,
    PermanentFailure,
    Poison,
    Requeue,
    RetryLater,
)
from smsgw_shared.amqp.packing import Packer
from smsgw_shared.amqp.publisher import (
    MissingExchangeError,
    Outgoing,
    Publisher,
    PublishError,
    UnroutableError,
)
from smsgw_shared.amqp.topology import QueueSpec, Topology, route_suffix

__all__ = [
    "AmqpConnection",
    "BatchConsumer",
    "BatchHandler",
    "BrokerUnavailable",
    "Consumer",
    "DeliveryInfo",
    "Handler",
    "MissingExchangeError",
    "Outcome",
    "Outgoing",
    "Packer",
    "PermanentFailure",
    "Poison",
    "PublishError",
    "Publisher",
    "QueueSpec",
    "Requeue",
    "RetryLater",
    "Topology",
    "UnroutableError",
    "route_suffix",
]
