"""Handing events over to their service queues, in batches while a publish is under way.

Each service has at most one publish in flight. The events handed to a service while its publish awaits
the broker's confirm are gathered and go, once it is confirmed, as one message (`batch_body`): the
publish, and later the consume and the ack, are paid once for all of them. At low load no event waits
for another (the first one goes alone, at once); at high load the batches grow to what arrives in one
confirm's time, capped by ``max_events`` and ``max_bytes``.

``send`` returns once the message holding the event is confirmed, and raises the publish's
`TransientError` to every event of a message the broker did not take: each caller settles its own
ingress message by that, exactly as when it published alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dispatcher.adapters.amqp.headers import received_headers
from dispatcher.domain.events import ObjectEvent
from dispatcher.domain.ingress import batch_body, batches, record_bytes, task_body

Publish = Callable[[str, bytes, Mapping[str, Any]], Awaitable[None]]
"""Publish a body to a service's queue with confirm (``AmqpClient.publish_to_service``)."""


@dataclass(slots=True)
class _Waiting:
    event: ObjectEvent
    record: bytes
    received_at: float
    done: asyncio.Future[None]


@dataclass(slots=True)
class _Service:
    waiting: list[_Waiting] = field(default_factory=list)
    publishing: asyncio.Task[None] | None = None


class HandOff:
    """Publishes events to their service queues, one message per batch gathered (see the module)."""

    def __init__(
        self,
        publish: Publish,
        *,
        max_events: int,
        max_bytes: int,
        published: Callable[[str, int], None] = lambda service, events: None,
    ) -> None:
        """*published* is told (service, events) for each message the broker confirmed."""
        self._publish = publish
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._published = published
        self._services: dict[str, _Service] = {}

    async def send(
        self, service: str, event: ObjectEvent, received_at: float, *, alone: bool = False
    ) -> None:
        """Hand *event* to *service*'s queue; return once the broker has it. *alone*: in a message of its
        own, published at once (a capped service's events, which wait in its queue one by one)."""
        if alone or self._max_events <= 1:
            await self._publish(service, task_body(event), received_headers(received_at))
            self._published(service, 1)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane = self._services.setdefault(service, _Service())
        lane.waiting.append(_Waiting(event, record_bytes(event), received_at, done))
        if lane.publishing is None:
            name = f"bucketrun-handoff:{service}"
            lane.publishing = asyncio.create_task(self._drain(service, lane), name=name)
        await done  # a caller cancelled meanwhile cancels only its own wait; the batch still goes

    async def _drain(self, service: str, lane: _Service) -> None:
        """Publish what is waiting, one message at a time, until nothing is."""
        try:
            while lane.waiting:
                cut = batches(
                    [len(item.record) for item in lane.waiting],
                    max_events=self._max_events,
                    max_bytes=self._max_bytes,
                )[0]
                batch = lane.waiting[cut]
                del lane.waiting[cut]
                await self._send_batch(service, batch)
        finally:
            lane.publishing = None
            for item in lane.waiting:  # only when cancelled: their handlers are being cancelled too
                item.done.cancel()
            lane.waiting.clear()

    async def _send_batch(self, service: str, batch: list[_Waiting]) -> None:
        body = batch_body([item.event for item in batch], [item.record for item in batch])
        headers = received_headers(min(item.received_at for item in batch))
        try:
            await self._publish(service, body, headers)
        except Exception as error:  # noqa: BLE001 - every caller gets the publish's own error to settle by
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(error)
            return
        except BaseException:
            for item in batch:
                item.done.cancel()
            raise
        self._published(service, len(batch))
        for item in batch:
            if not item.done.done():
                item.done.set_result(None)

    async def close(self) -> None:
        """Cancel the publishes under way (their events' ingress messages stay unsettled: redelivered)."""
        tasks = [lane.publishing for lane in self._services.values() if lane.publishing is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
