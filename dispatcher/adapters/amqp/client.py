"""The broker connection: declares the topology, publishes with confirms, opens consumers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import unquote, urlsplit

import aio_pika
from aio_pika.abc import AbstractRobustChannel, AbstractRobustConnection

from dispatcher.adapters.amqp.consumer import Consumer, Handler
from dispatcher.adapters.amqp.publisher import LOST_BROKER_ERRORS, Publisher
from dispatcher.adapters.amqp.topology import DEFAULT_EXCHANGE, Topology
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.runtime.settings import MASK, AmqpSettings

_CONNECTION_NAME = "bucketrun-dispatcher"


class AmqpClient:
    """One robust connection to RabbitMQ: reconnects by itself and re-declares what it declared.

    Use ``async with await AmqpClient.connect(settings) as amqp:`` (or ``close()`` it). Channels: one for
    declarations, one confirm-mode channel for every publish, and one per consumer.
    """

    def __init__(
        self,
        settings: AmqpSettings,
        connection: AbstractRobustConnection,
        declarations: AbstractRobustChannel,
        publisher: Publisher,
    ) -> None:
        """Wrap an open connection; use ``connect()`` to make one."""
        self._settings = settings
        self._connection = connection
        self._declarations = declarations
        self.publisher = publisher
        """Publishes with broker confirms (used by retries, dead letters, the poller, completion events)."""
        self.topology = Topology.from_settings(settings)
        """Names and arguments of the exchanges and queues."""

    def __repr__(self) -> str:
        """The broker address without the password."""
        return f"AmqpClient({self._settings.redacted_url()})"

    @classmethod
    async def connect(cls, settings: AmqpSettings, *, connection_name: str = _CONNECTION_NAME) -> AmqpClient:
        """Connect, waiting at most ``settings.connect_timeout``; ``TransientError`` if that fails."""
        try:
            connection = await aio_pika.connect_robust(
                settings.url.get_secret_value(),
                timeout=settings.connect_timeout,
                reconnect_interval=settings.reconnect_interval,
                client_properties={"connection_name": connection_name},
            )
        except (aio_pika.exceptions.AMQPError, ConnectionError, OSError, TimeoutError) as error:
            # Not chained: the library's error may quote the URL, password included.
            password = urlsplit(settings.url.get_secret_value()).password
            detail = str(error) or type(error).__name__
            if password:
                for spelling in {password, unquote(password)}:
                    detail = detail.replace(spelling, MASK)
            raise TransientError(
                f"cannot connect to the AMQP broker at {settings.redacted_url()}: {detail}", kind="amqp"
            ) from None
        try:
            async with _declaring("the client's channels"):
                declarations = await connection.channel()
                confirms = await connection.channel(publisher_confirms=True, on_return_raises=True)
        except BaseException:
            await connection.close()
            raise
        publisher = Publisher(confirms, timeout=settings.publish_timeout)
        return cls(settings, connection, declarations, publisher)

    @property
    def connected(self) -> bool:
        """True while the connection is up (for readiness); False while it reconnects."""
        return self._connection.connected.is_set() and not self._connection.is_closed

    async def declare_topology(self) -> None:
        """Declare every exchange, queue and binding of ``topology``; idempotent.

        The MinIO exchange is declared with exactly the arguments MinIO uses (type, durability, not
        auto-deleted, not internal, no arguments), so whichever side declares first, the other agrees.
        ``PermanentError`` (reason ``topology-mismatch``) when an object exists with other arguments;
        ``TransientError`` when the broker is unreachable.
        """
        topology = self.topology
        channel = self._declarations
        hint = (
            " (MinIO must declare it the same way: "
            f"MINIO_NOTIFY_AMQP_EXCHANGE_TYPE={topology.exchange_type}, "
            f"MINIO_NOTIFY_AMQP_DURABLE={'on' if topology.exchange_durable else 'off'}, auto_deleted and "
            "internal off)"
        )
        async with _declaring(f"exchange {topology.exchange!r}", hint):
            events = await channel.declare_exchange(
                topology.exchange,
                aio_pika.ExchangeType(topology.exchange_type),
                durable=topology.exchange_durable,
                auto_delete=False,
                internal=False,
            )
        async with _declaring(f"dead-letter exchange {topology.dead_letter_exchange!r}"):
            dead_letters = await channel.declare_exchange(
                topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
            )
        async with _declaring(f"dead-letter queue {topology.dead_letter_queue!r}"):
            dead_letter_queue = await channel.declare_queue(
                topology.dead_letter_queue, durable=True, arguments=topology.dead_letter_queue_arguments()
            )
            await dead_letter_queue.bind(dead_letters, routing_key="")
        async with _declaring(f"retry exchange {topology.retry_exchange!r}"):
            retry = await channel.declare_exchange(
                topology.retry_exchange, aio_pika.ExchangeType.HEADERS, durable=True
            )
        for seconds in topology.retry_tiers:
            name = topology.tier_queue(seconds)
            async with _declaring(f"retry queue {name!r}"):
                tier = await channel.declare_queue(
                    name, durable=True, arguments=topology.tier_queue_arguments(seconds)
                )
                await tier.bind(retry, routing_key="", arguments=topology.tier_binding(seconds))
        async with _declaring(f"ingress queue {topology.ingress_queue!r}"):
            ingress = await channel.declare_queue(
                topology.ingress_queue, durable=True, arguments=topology.work_queue_arguments()
            )
            await ingress.bind(events, routing_key=topology.routing_key)

    async def declare_exchange(self, name: str, exchange_type: Literal["fanout", "direct", "topic"]) -> None:
        """Declare (idempotently) a durable exchange of *exchange_type*, e.g. the watcher's results exchange.

        ``PermanentError`` (reason ``topology-mismatch``) when it exists with other arguments.
        """
        async with _declaring(f"exchange {name!r}"):
            kind = aio_pika.ExchangeType(exchange_type)
            await self._declarations.declare_exchange(name, kind, durable=True)

    async def declare_service_queue(self, service: str) -> str:
        """Declare (idempotently) the work queue of ``service`` and return its name.

        It is fed by ``publish_to_service`` through the default exchange, so it needs no binding.
        """
        name = self.topology.service_queue(service)
        async with _declaring(f"service queue {name!r}"):
            await self._declarations.declare_queue(
                name, durable=True, arguments=self.topology.work_queue_arguments()
            )
        return name

    async def publish_to_service(
        self, service: str, body: bytes, headers: Mapping[str, Any] | None = None
    ) -> None:
        """Publish ``body`` to the work queue of ``service`` with confirm (``TransientError`` on failure)."""
        await self.publisher.publish(DEFAULT_EXCHANGE, self.topology.service_queue(service), body, headers)

    async def consume(self, queue: str, handler: Handler, *, prefetch: int | None = None) -> Consumer:
        """A started ``Consumer`` of ``queue`` on its own channel, at most ``prefetch`` messages in flight.

        Queues of the topology are declared with their arguments (so the library can re-declare them
        after a reconnection); any other queue must exist. Use as ``async with await amqp.consume(...)``.
        """
        async with _declaring(f"channel to consume {queue!r}"):
            channel = await self._connection.channel()
        try:
            async with _declaring(f"queue {queue!r}"):
                await channel.set_qos(prefetch_count=prefetch or self._settings.prefetch)
                arguments = self.topology.queue_arguments(queue)
                if arguments is None:
                    declared = await channel.declare_queue(queue, passive=True)
                else:
                    declared = await channel.declare_queue(queue, durable=True, arguments=arguments)
            consumer = Consumer(
                channel,
                declared,
                handler,
                publisher=self.publisher,
                topology=self.topology,
            )
            async with _declaring(f"consumer of {queue!r}"):
                await consumer.start()
        except BaseException:
            await channel.close()
            raise
        return consumer

    async def queue_depths(self, queues: Iterable[str]) -> dict[str, int]:
        """Messages ready in each of *queues* (passive declarations on a channel of their own, so a
        missing queue closes only that channel). A queue that does not exist is left out;
        ``TransientError`` when the broker is away."""
        depths: dict[str, int] = {}
        async with _declaring("a channel to sample queue depths"):
            channel = await self._connection.channel()
        try:
            for queue in queues:
                try:
                    async with _declaring(f"queue {queue!r}"):
                        declared = await channel.declare_queue(queue, passive=True)
                except PermanentError:
                    if channel.is_closed:
                        break
                    continue
                depths[queue] = declared.declaration_result.message_count or 0
        finally:
            if not channel.is_closed:
                await channel.close()
        return depths

    async def close(self) -> None:
        """Close every channel and the connection (unsettled messages go back to their queues)."""
        if not self._connection.is_closed:
            await self._connection.close()

    async def __aenter__(self) -> Self:
        """The client itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the connection."""
        await self.close()


@asynccontextmanager
async def _declaring(what: str, hint: str = "") -> AsyncIterator[None]:
    """Translate the broker's answers to a declaration into bucketrun's errors, naming ``what``."""
    try:
        yield
    except aio_pika.exceptions.ChannelPreconditionFailed as error:
        raise PermanentError(
            f"{what} exists on the broker with other arguments: {error}{hint}", reason="topology-mismatch"
        ) from error
    except aio_pika.exceptions.ChannelNotFoundEntity as error:
        raise PermanentError(
            f"{what} does not exist on the broker: {error}", reason="topology-missing"
        ) from error
    except aio_pika.exceptions.ChannelClosed as error:
        # Any other answer that closes the channel: access refused, locked by an exclusive consumer...
        raise PermanentError(f"the broker refused {what}: {error}", reason="amqp-refused") from error
    except (*LOST_BROKER_ERRORS, TimeoutError) as error:
        raise TransientError(f"lost the broker while declaring {what}: {error!r}", kind="amqp") from error
