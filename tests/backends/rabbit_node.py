"""A private RabbitMQ node that a test may stop and restart without touching the machine's broker: the
local stack's (``bucketrun.devtools.rabbit_node``), named here for the tests."""

from bucketrun.devtools.rabbit_node import CTL, SERVER, PrivateRabbitNode, private_node_supported

__all__ = ["CTL", "SERVER", "PrivateRabbitNode", "private_node_supported"]
