"""The broker objects bucketrun uses, named and argued from settings: pure data, declared by the client.

::

    MinIO ──► <exchange> (type and durability as MinIO declares it) ──► <ingress> (quorum)
                                                                          │ delivery limit reached
    retry_later ──► <retry exchange> (headers: tier) ──► <prefix>.<N>s ───┤ (quorum, TTL N s)
                            ▲                               │ expired:    ▼
                            │                               └─► default exchange ──► the queue it came from
    dead_letter ──► <dead-letter exchange> (fanout) ──► <dead-letter queue> (quorum)

Work queues (the ingress and the per-service queues) are quorum queues with ``x-delivery-limit``: a
message that keeps crashing its consumer is dead-lettered by the broker itself, at least once
(``x-dead-letter-strategy: at-least-once``, which needs ``x-overflow: reject-publish``).

Retry tiers are one queue per delay with a fixed ``x-message-ttl``. A per-message TTL in one shared
queue would block behind a longer-waiting head message; with one TTL per queue, the head always
expires first. A retry is published with its origin queue as routing key; when its TTL runs out the
broker dead-letters it to the default exchange with that routing key, i.e. straight back to the queue
it was consumed from (the ingress or a service queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from dispatcher.adapters.amqp.headers import RETRY_TIER, tier_label
from dispatcher.runtime.settings import AmqpSettings

DEFAULT_EXCHANGE = ""
"""The broker's nameless direct exchange: routes by queue name."""


@dataclass(frozen=True, slots=True)
class Topology:
    """Names and arguments of every exchange and queue bucketrun declares."""

    exchange: str
    exchange_type: Literal["fanout", "direct", "topic"]
    exchange_durable: bool
    routing_key: str
    ingress_queue: str
    dead_letter_exchange: str
    dead_letter_queue: str
    retry_exchange: str
    retry_queue_prefix: str
    service_queue_prefix: str
    retry_tiers: tuple[int, ...]
    delivery_limit: int

    @classmethod
    def from_settings(cls, settings: AmqpSettings) -> Topology:
        """The topology the settings describe."""
        return cls(
            exchange=settings.exchange,
            exchange_type=settings.exchange_type,
            exchange_durable=settings.exchange_durable,
            routing_key=settings.routing_key,
            ingress_queue=settings.ingress_queue,
            dead_letter_exchange=settings.dead_letter_exchange,
            dead_letter_queue=settings.dead_letter_queue,
            retry_exchange=settings.retry_exchange,
            retry_queue_prefix=settings.retry_queue_prefix,
            service_queue_prefix=settings.service_queue_prefix,
            retry_tiers=settings.retry_tiers,
            delivery_limit=settings.delivery_limit,
        )

    def work_queue_arguments(self) -> dict[str, Any]:
        """Arguments of the ingress and per-service queues."""
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def dead_letter_queue_arguments(self) -> dict[str, Any]:
        """Arguments of the dead-letter queue (kept until someone looks)."""
        return {"x-queue-type": "quorum"}

    def tier_queue(self, seconds: int) -> str:
        """Name of the retry queue that holds messages for ``seconds``."""
        return f"{self.retry_queue_prefix}.{tier_label(seconds)}"

    def tier_queue_arguments(self, seconds: int) -> dict[str, Any]:
        """A tier queue: fixed TTL, then back through the default exchange by the message's routing key."""
        return {
            "x-queue-type": "quorum",
            "x-message-ttl": seconds * 1000,
            "x-dead-letter-exchange": DEFAULT_EXCHANGE,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }

    def tier_binding(self, seconds: int) -> dict[str, Any]:
        """Headers-exchange binding that sends messages labelled with this tier to its queue."""
        return {"x-match": "all", RETRY_TIER: tier_label(seconds)}

    def service_queue(self, service: str) -> str:
        """Name of the queue holding events for one service."""
        if not service:
            raise ValueError("a service queue needs a service name")
        return f"{self.service_queue_prefix}.{service}"

    def queue_arguments(self, queue: str) -> dict[str, Any] | None:
        """The arguments bucketrun declares ``queue`` with, or None for a queue it does not manage."""
        if queue == self.ingress_queue or queue.startswith(f"{self.service_queue_prefix}."):
            return self.work_queue_arguments()
        if queue == self.dead_letter_queue:
            return self.dead_letter_queue_arguments()
        for seconds in self.retry_tiers:
            if queue == self.tier_queue(seconds):
                return self.tier_queue_arguments(seconds)
        return None
