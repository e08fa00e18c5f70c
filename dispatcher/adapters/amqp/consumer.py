"""Consuming one queue with a bounded number of messages in flight, until cancelled and drained."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from dispatcher.adapters.amqp.delivery import Delivery
from dispatcher.adapters.amqp.publisher import Publisher
from dispatcher.adapters.amqp.topology import Topology

Handler = Callable[[Delivery], Awaitable[None]]
"""Processes one delivery and settles it (``ack``, ``retry_later`` or ``dead_letter``)."""

_log = structlog.get_logger(__name__)


class Consumer:
    """Feeds each message of one queue to a handler, concurrently up to the channel's prefetch.

    Runs on its own robust channel: after a reconnection the library re-declares the queue and
    re-subscribes, so consumption resumes by itself. Messages in flight when the connection dropped
    cannot be acked any more (their actions report ``Settlement.LOST``); the broker redelivers them.

    A handler that raises, or returns without settling, gets its message requeued (one delivery
    towards ``x-delivery-limit``, after which the broker dead-letters it): a bug never loses a message
    and never loops for ever.
    """

    def __init__(
        self,
        channel: AbstractRobustChannel,
        queue: AbstractQueue,
        handler: Handler,
        *,
        publisher: Publisher,
        topology: Topology,
    ) -> None:
        """Prepare to consume ``queue`` (declared on ``channel``); nothing happens until ``start()``."""
        self._channel = channel
        self._queue = queue
        self._handler = handler
        self._publisher = publisher
        self._topology = topology
        self._tag: str | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queue(self) -> str:
        """Name of the consumed queue."""
        return self._queue.name

    @property
    def consuming(self) -> bool:
        """True between ``start()`` and ``cancel()``."""
        return self._tag is not None

    async def start(self) -> None:
        """Subscribe to the queue."""
        if self._tag is None:
            self._tag = await self._queue.consume(self._on_message, no_ack=False)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # The handler runs in a task of its own: the library cancels its callback tasks when the
        # connection drops, and a handler half-way through creating a Job should finish (its ack will
        # report LOST and the broker redelivers; the Job's name makes the second create a no-op).
        task = asyncio.create_task(self._handle(message), name=f"bucketrun-delivery:{self.queue}")
        self._in_flight.add(task)
        self._idle.clear()
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not self._in_flight:
            self._idle.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        delivery = Delivery(message, queue=self.queue, publisher=self._publisher, topology=self._topology)
        try:
            await self._handler(delivery)
        except Exception:  # noqa: BLE001 - whatever the handler's bug, the message must go back, not vanish
            _log.exception("handler failed", delivery=repr(delivery))
        if delivery.settlement is None:
            _log.error("handler returned without settling; requeueing the message", delivery=repr(delivery))
            await delivery.requeue()

    async def cancel(self) -> None:
        """Stop receiving messages (the in-flight ones go on). Safe to call twice or with no broker."""
        tag, self._tag = self._tag, None
        if tag is None:
            return
        try:
            await self._queue.cancel(tag)
        except Exception as error:  # noqa: BLE001 - a lost channel cancelled the subscription already
            _log.info("cancel on a lost channel", queue=self.queue, error=repr(error))

    async def drain(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds for in-flight messages; cancel the rest. True if all finished.

        Cancelled handlers leave their messages unsettled: the broker redelivers them once the channel
        closes.
        """
        try:
            async with asyncio.timeout(grace):
                await self._idle.wait()
        except TimeoutError:
            stragglers = list(self._in_flight)
            for task in stragglers:
                task.cancel()
            await asyncio.gather(*stragglers, return_exceptions=True)
            _log.warning(
                "drain timed out; cancelled in-flight handlers", queue=self.queue, count=len(stragglers)
            )
            return False
        return True

    async def close(self) -> None:
        """Cancel the subscription and close this consumer's channel (unsettled messages are redelivered)."""
        await self.cancel()
        if not self._channel.is_closed:
            await self._channel.close()

    async def __aenter__(self) -> Self:
        """Start consuming."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop consuming, wait for in-flight handlers (already bounded by ``drain`` if called), close."""
        await self.cancel()
        await self._idle.wait()
        await self.close()
