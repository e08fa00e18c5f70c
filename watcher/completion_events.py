"""Completion events: each job record, published to the results exchange once it is stored.

The exchange is a durable topic exchange and the routing key is the service name, so a consumer binds
``upper`` for one service or ``#`` for all. The body is the record (``status.json``), the message id the
Job's UID: delivery is at least once (a watcher stopped between the publish and marking the Job
recorded publishes again after its restart), so consumers deduplicate on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import structlog

from dispatcher.adapters.amqp import AmqpClient
from dispatcher.domain.errors import TransientError
from dispatcher.domain.record import encode

_log = structlog.get_logger(__name__)

EVENT_TYPE_HEADER: Final = "x-bucketrun-event"
EVENT_TYPE: Final = "job-finished"
_UNROUTABLE: Final = "amqp-unroutable"


class CompletionEvents:
    """Publishes completion events with publisher confirms."""

    def __init__(self, amqp: AmqpClient, exchange: str) -> None:
        self._amqp = amqp
        self.exchange = exchange

    async def declare(self) -> None:
        """Declare the results exchange (durable topic; idempotent)."""
        await self._amqp.declare_exchange(self.exchange, "topic")

    async def publish(self, record: Mapping[str, Any]) -> None:
        """Publish *record*; returns once the broker confirmed it. ``TransientError`` when it did not.

        An event no queue is bound for is confirmed and dropped by the broker: that is not an error
        (nobody subscribed), so it is logged and the call succeeds.
        """
        try:
            await self._amqp.publisher.publish(
                self.exchange,
                str(record.get("service") or ""),
                encode(record),
                {EVENT_TYPE_HEADER: EVENT_TYPE},
                content_type="application/json",
                message_id=str(record.get("uid") or ""),
            )
        except TransientError as error:
            if error.kind != _UNROUTABLE:
                raise
            _log.debug("completion event had no subscriber", job=record.get("job"), exchange=self.exchange)
