"""The AMQP adapter: RabbitMQ topology, confirmed publishing, and consumption that survives reconnects.

The only package of bucketrun that imports ``aio_pika``. The topology it declares is drawn in
``topology``; the header names it reads and writes are in ``headers``.

Typical use::

    async with await AmqpClient.connect(settings.amqp) as amqp:
        await amqp.declare_topology()
        async with await amqp.consume(amqp.topology.ingress_queue, handle) as consumer:
            await stopping.wait()
            await consumer.cancel()
            await consumer.drain(settings.dispatch.drain_timeout)
"""

from __future__ import annotations

from dispatcher.adapters.amqp.client import AmqpClient
from dispatcher.adapters.amqp.consumer import Consumer, Handler
from dispatcher.adapters.amqp.delivery import AlreadySettledError, Delivery, Settlement
from dispatcher.adapters.amqp.publisher import Publisher
from dispatcher.adapters.amqp.topology import Topology

__all__ = [
    "AlreadySettledError",
    "AmqpClient",
    "Consumer",
    "Delivery",
    "Handler",
    "Publisher",
    "Settlement",
    "Topology",
]
