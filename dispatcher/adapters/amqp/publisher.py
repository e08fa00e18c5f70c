"""Publishing with publisher confirms: a publish returns only once the broker has taken the message."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import aio_pika
from aio_pika.abc import AbstractExchange, AbstractRobustChannel

from dispatcher.adapters.amqp.topology import DEFAULT_EXCHANGE
from dispatcher.domain.errors import TransientError

LOST_BROKER_ERRORS: Final = (
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
    ConnectionError,
)
"""What the library raises when the channel or connection is gone (or the broker closed it)."""
_REOPEN_PAUSE = 0.05  # seconds between "ready" and the next try, so a flapping channel cannot spin


class Publisher:
    """Publishes persistent messages on one confirm-mode channel; failures become ``TransientError``.

    ``mandatory`` is set, so a message no queue would take is an error rather than silently dropped.
    """

    def __init__(self, channel: AbstractRobustChannel, *, timeout: float) -> None:
        """Use ``channel`` (opened with ``publisher_confirms`` and ``on_return_raises``)."""
        self._channel = channel
        self._timeout = timeout
        self._exchanges: dict[str, AbstractExchange] = {}

    async def _exchange(self, name: str) -> AbstractExchange:
        if name == DEFAULT_EXCHANGE:
            return self._channel.default_exchange
        exchange = self._exchanges.get(name)
        if exchange is None:
            exchange = await self._channel.get_exchange(name, ensure=False)
            self._exchanges[name] = exchange
        return exchange

    async def _publish_when_ready(self, exchange: str, routing_key: str, message: aio_pika.Message) -> None:
        while True:
            try:
                target = await self._exchange(exchange)
                await target.publish(message, routing_key, mandatory=True)
            except aio_pika.exceptions.ChannelInvalidStateError:
                # Raised before anything was sent: the channel is closed while the connection
                # recovers. Wait until the library has reopened it (the caller's timeout bounds this).
                await self._channel.ready()
                await asyncio.sleep(_REOPEN_PAUSE)
            else:
                return

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        headers: Mapping[str, Any] | None = None,
        *,
        content_type: str | None = None,
        message_id: str | None = None,
    ) -> None:
        """Publish ``body`` persistently and wait (bounded) for the broker's confirmation.

        Raises ``TransientError`` when the broker refuses it (nack: e.g. a full queue), cannot route it
        to any queue, or does not confirm within the timeout (connection lost or reconnecting). A
        publish that timed out may still have been taken: callers must tolerate duplicates.
        """
        message = aio_pika.Message(
            body,
            headers=dict(headers or {}),
            content_type=content_type,
            message_id=message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        where = f"exchange {exchange!r} with routing key {routing_key!r}"
        try:
            async with asyncio.timeout(self._timeout):
                await self._publish_when_ready(exchange, routing_key, message)
        except aio_pika.exceptions.PublishError as error:
            raise TransientError(
                f"no queue took the message published to {where}", kind="amqp-unroutable"
            ) from error
        except aio_pika.exceptions.DeliveryError as error:
            raise TransientError(
                f"the broker refused the message published to {where}", kind="amqp-nack"
            ) from error
        except TimeoutError as error:
            raise TransientError(
                f"the broker did not confirm a publish to {where} within {self._timeout}s", kind="amqp"
            ) from error
        except LOST_BROKER_ERRORS as error:
            raise TransientError(f"lost the broker while publishing to {where}", kind="amqp") from error
