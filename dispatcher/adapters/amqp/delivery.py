"""One received message and the three ways to settle it: ack, retry later, dead-letter.

Every action is safe against a lost channel: it never raises for broker trouble, it reports what became
of the message (``Settlement``). The copy a retry or a dead letter publishes is confirmed by the broker
*before* the original is acked, so a crash in between leaves the original to be redelivered: at least
once, never zero times. Duplicates are harmless downstream (Job names are idempotent).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

import structlog
from aio_pika.abc import AbstractIncomingMessage

from dispatcher.adapters.amqp import headers as h
from dispatcher.adapters.amqp.publisher import LOST_BROKER_ERRORS, Publisher
from dispatcher.adapters.amqp.topology import DEFAULT_EXCHANGE, Topology
from dispatcher.domain.backoff import retry_tier
from dispatcher.domain.errors import TransientError

_log = structlog.get_logger(__name__)


class Settlement(StrEnum):
    """What became of a delivery."""

    ACKED = "acked"
    """Done: acked (after the retry copy or dead letter was confirmed, for those actions)."""
    REQUEUED = "requeued"
    """The retry copy or dead letter could not be published; the original went back to its queue
    (counting one delivery towards ``x-delivery-limit``)."""
    LOST = "lost"
    """The channel was gone before the ack: the broker redelivers the original by itself."""


class AlreadySettledError(RuntimeError):
    """A delivery can be settled once; a second action is a bug in the caller."""


class Delivery:
    """A message consumed from ``queue``, with its broker metadata and settle actions."""

    def __init__(
        self,
        message: AbstractIncomingMessage,
        *,
        queue: str,
        publisher: Publisher,
        topology: Topology,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Wrap ``message``; retries and dead letters are published with ``publisher``."""
        self._message = message
        self._publisher = publisher
        self._topology = topology
        self._clock = clock
        self.queue: Final = queue
        """The queue this was consumed from (a retry comes back to it)."""
        self.headers: Final[Mapping[str, Any]] = MappingProxyType(dict(message.headers or {}))
        """The message's headers, read-only."""
        self.settlement: Settlement | None = None
        """How it was settled, once it has been."""

    def __repr__(self) -> str:
        """Queue, delivery tag, attempt and size; never the body."""
        return (
            f"Delivery(queue={self.queue!r}, tag={self._message.delivery_tag}, attempt={self.attempt}, "
            f"delivery_count={self.delivery_count}, bytes={len(self.body)})"
        )

    @property
    def body(self) -> bytes:
        """The message body."""
        return self._message.body

    @property
    def redelivered(self) -> bool:
        """The broker's redelivered flag: a consumer got this message before and did not settle it."""
        return bool(self._message.redelivered)

    @property
    def delivery_count(self) -> int:
        """Earlier deliveries of this very message (quorum ``x-delivery-count``; 0 the first time)."""
        return h.delivery_count_of(self.headers)

    @property
    def attempt(self) -> int:
        """Retries scheduled so far for this event (``x-bucketrun-attempt``; 0 on first arrival)."""
        return h.attempt_of(self.headers)

    @property
    def exchange(self) -> str:
        """The exchange this message was (last) published to."""
        return self._message.exchange or ""

    @property
    def routing_key(self) -> str:
        """The routing key it was (last) published with."""
        return self._message.routing_key or ""

    @property
    def message_id(self) -> str | None:
        """The publisher's message id, if it set one."""
        return self._message.message_id

    @property
    def not_before(self) -> float | None:
        """Unix time before which a retried message should not be processed, if it is a retry."""
        return h.not_before_of(self.headers)

    def remaining_delay(self) -> float:
        """Seconds still to wait before processing (0 when due): a retry longer than the longest tier
        comes back early and is parked again with ``retry_later(remaining_delay(), ...)``."""
        not_before = self.not_before
        return 0.0 if not_before is None else max(0.0, not_before - self._clock())

    def _claim(self) -> None:
        if self.settlement is not None:
            raise AlreadySettledError(f"{self!r} was already settled ({self.settlement})")

    async def ack(self) -> Settlement:
        """Acknowledge: the broker forgets the message."""
        self._claim()
        return await self._ack()

    async def _ack(self) -> Settlement:
        try:
            await self._message.ack()
        except LOST_BROKER_ERRORS as error:
            _log.warning(
                "ack lost with the channel; the broker will redeliver", delivery=repr(self), error=repr(error)
            )
            self.settlement = Settlement.LOST
        else:
            self.settlement = Settlement.ACKED
        return self.settlement

    async def requeue(self) -> Settlement:
        """Give the message back to its queue now (counts one delivery towards ``x-delivery-limit``)."""
        self._claim()
        return await self._requeue()

    async def _requeue(self) -> Settlement:
        try:
            await self._message.nack(requeue=True)
        except LOST_BROKER_ERRORS as error:
            _log.warning(
                "requeue lost with the channel; the broker will redeliver",
                delivery=repr(self),
                error=repr(error),
            )
            self.settlement = Settlement.LOST
        else:
            self.settlement = Settlement.REQUEUED
        return self.settlement

    async def retry_later(self, delay_s: float, reason: str, *, body: bytes | None = None) -> Settlement:
        """Park a copy in the retry tier that waits at least ``delay_s`` (the longest tier at most),
        confirmed, then ack this one. ``reason`` is a short label (e.g. ``api-5xx``) kept in a header;
        *body*, when given, replaces the copy's (the part of a batch still to do)."""
        self._claim()
        tier = int(retry_tier(delay_s, self._topology.retry_tiers))
        copy_headers = h.retry_headers(
            self.headers,
            tier_seconds=tier,
            not_before=self._clock() + max(0.0, delay_s),
            reason=reason,
            queue=self.queue,
            exchange=self.exchange,
            routing_key=self.routing_key,
        )
        # Routing key = the queue it came from: where the tier's expiry sends it back.
        return await self._publish_then_ack(self._topology.retry_exchange, self.queue, copy_headers, body)

    async def dead_letter(self, reason: str, error_text: str, service: str | None = None) -> Settlement:
        """Publish a copy to the dead-letter exchange with the reason headers, confirmed, then ack."""
        self._claim()
        copy_headers = self._dead_letter_headers(reason, error_text, service)
        return await self._publish_then_ack(
            self._topology.dead_letter_exchange, self.routing_key, copy_headers
        )

    async def dead_letter_part(self, body: bytes, reason: str, error_text: str, service: str | None) -> None:
        """Publish *body* (a part of this message, e.g. one record of a batch) to the dead-letter exchange
        with the reason headers, confirmed, leaving this delivery unsettled; ``TransientError`` when the
        broker does not take it."""
        copy_headers = self._dead_letter_headers(reason, error_text, service)
        await self._publish_copy(self._topology.dead_letter_exchange, self.routing_key, copy_headers, body)

    def _dead_letter_headers(self, reason: str, error_text: str, service: str | None) -> dict[str, Any]:
        return h.dead_letter_headers(
            self.headers,
            reason=reason,
            error_text=error_text,
            service=service,
            queue=self.queue,
            exchange=self.exchange,
            routing_key=self.routing_key,
        )

    async def split(self, bodies: Sequence[bytes]) -> Settlement:
        """Publish each of *bodies* to this delivery's own queue as a message of its own (the headers
        kept), each confirmed, then ack this one; when one is not taken, requeue this one instead (those
        already published are duplicates, which consumers tolerate)."""
        self._claim()
        copy_headers = h.own_copy(self.headers)
        try:
            for body in bodies:
                await self._publish_copy(DEFAULT_EXCHANGE, self.queue, copy_headers, body)
        except TransientError as error:
            _log.warning("could not split the message; requeueing it", delivery=repr(self), error=str(error))
            return await self._requeue()
        return await self._ack()

    async def _publish_copy(
        self, exchange: str, routing_key: str, copy_headers: dict[str, Any], body: bytes | None = None
    ) -> None:
        await self._publisher.publish(
            exchange,
            routing_key,
            self.body if body is None else body,
            copy_headers,
            content_type=self._message.content_type,
            message_id=self.message_id,
        )

    async def _publish_then_ack(
        self, exchange: str, routing_key: str, copy_headers: dict[str, Any], body: bytes | None = None
    ) -> Settlement:
        try:
            await self._publish_copy(exchange, routing_key, copy_headers, body)
        except TransientError as error:
            _log.warning(
                "could not publish the copy; requeueing the original", delivery=repr(self), error=str(error)
            )
            return await self._requeue()
        return await self._ack()
