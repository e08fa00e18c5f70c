"""The dispatcher's two message handlers: ingress (fan out to services) and service tasks (create Jobs).

Outcomes map to broker actions, never to lost messages:

- tasks published, or nothing to do on purpose: ack;
- body unusable (`EventError`), unroutable record, `PermanentError`: dead-letter with `x-bucketrun-reason`;
- `TransientError` (broker, API 5xx/429/timeouts, storage): `retry_later` with capped, jittered backoff
  honouring Retry-After;
- service at its `max_concurrent_jobs` cap: `retry_later` on the shortest tier (held durably in
  RabbitMQ) while the service's consumer pauses until one of its Jobs finishes;
- a copy back from a retry tier before its not-before time: parked again for the rest.

Every settle happens after its side effect (publish, Job create) is confirmed, so a crash in between
redelivers the message; idempotent Job names make the second attempt a no-op.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

from dispatcher.amqp import Delivery
from dispatcher.backoff import backoff_delay
from dispatcher.errors import PermanentError, TransientError
from dispatcher.events import EventError
from dispatcher.executors.base import Executor
from dispatcher.ingress import plan_ingress
from dispatcher.job_creation import JobCreator
from dispatcher.jobs import CreateOutcome
from dispatcher.routing import Router
from dispatcher.services import ServiceDefinition

_log = structlog.get_logger(__name__)


@dataclass
class Counters:
    """What the handlers did, by outcome (the metrics issue exports these to Prometheus)."""

    received: int = 0
    dispatched: int = 0
    ignored: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)
    created: int = 0
    existing: int = 0

    def count(self, table: dict[str, int], reason: str) -> None:
        """Add one to *reason* in *table*."""
        table[reason] = table.get(reason, 0) + 1


@dataclass(frozen=True)
class Catalog:
    """The services in force, and the router built from them (swapped whole on reload)."""

    services: Mapping[str, ServiceDefinition]
    router: Router[ServiceDefinition]

    @classmethod
    def of(cls, services: tuple[ServiceDefinition, ...]) -> Catalog:
        """Index *services* by name and build their router."""
        return cls({service.name: service for service in services}, Router(services))


class Handlers:
    """The ingress and service-task handlers, sharing the catalog, the executor and the counters."""

    def __init__(
        self,
        catalog: Callable[[], Catalog],
        publish_task: Callable[[str, bytes], Awaitable[None]],
        creator: JobCreator,
        executor: Executor,
        *,
        retry_base_delay: float,
        max_retry_delay: float,
        max_message_bytes: int,
        pause_service: Callable[[str], None],
    ) -> None:
        self._catalog = catalog
        self._publish_task = publish_task
        self._creator = creator
        self._executor = executor
        self._base = retry_base_delay
        self._cap = max_retry_delay
        self._max_bytes = max_message_bytes
        self._pause_service = pause_service
        self._admission: dict[str, asyncio.Lock] = {}
        self.counters = Counters()

    def _backoff(self, delivery: Delivery, error: TransientError) -> float:
        return backoff_delay(delivery.attempt, base=self._base, cap=self._cap, retry_after=error.retry_after)

    async def on_ingress(self, delivery: Delivery) -> None:
        """Fan one MinIO message out to the queues of the services it routes to."""
        if await _parked(delivery):
            return
        self.counters.received += 1
        log = _log.bind(queue=delivery.queue, message_id=delivery.message_id)
        try:
            plan = plan_ingress(delivery.body, self._catalog().router, max_bytes=self._max_bytes)
        except EventError as error:
            self.counters.count(self.counters.dead_lettered, str(error.reason))
            log.warning("message refused", reason=str(error.reason), error=error.message)
            await delivery.dead_letter(str(error.reason), error.message)
            return
        try:
            for task in plan.tasks:
                await self._publish_task(task.service, task.body)
        except TransientError as error:
            self.counters.count(self.counters.retried, error.kind)
            log.warning(
                "could not hand the event to its services; retrying", kind=error.kind, error=str(error)
            )
            await delivery.retry_later(self._backoff(delivery, error), error.kind)
            return
        self.counters.dispatched += len(plan.tasks)
        for why in plan.ignored:
            self.counters.count(self.counters.ignored, str(why.reason))
        if plan.unroutable:
            reason = str(plan.unroutable[0].reason)
            self.counters.count(self.counters.dead_lettered, reason)
            message = "; ".join(why.message for why in plan.unroutable)
            log.warning("event routes to no service", reason=reason, error=message)
            await delivery.dead_letter(reason, message)
            return
        await delivery.ack()

    async def on_task(self, service: str, delivery: Delivery) -> None:
        """Create the Job of one service task, within the service's cap."""
        if await _parked(delivery):
            return
        log = _log.bind(service=service, queue=delivery.queue, message_id=delivery.message_id)
        definition = self._catalog().services.get(service)
        cap = definition.options.max_concurrent_jobs if definition else None
        try:
            if cap is None:
                created = await self._creator.create(service, delivery.body)
            else:
                # For a capped service the check and the create are one step, so this replica never
                # over-admits; uncapped services create concurrently, up to the consumer's prefetch.
                async with self._admission.setdefault(service, asyncio.Lock()):
                    if self._executor.active_jobs(service) >= cap:
                        self.counters.count(self.counters.retried, "at-capacity")
                        self._pause_service(service)
                        await delivery.retry_later(0.0, "at-capacity")
                        return
                    created = await self._creator.create(service, delivery.body)
        except PermanentError as error:
            self.counters.count(self.counters.dead_lettered, error.reason)
            log.warning("task refused", reason=error.reason, error=str(error))
            await delivery.dead_letter(error.reason, str(error), service=service)
            return
        except TransientError as error:
            self.counters.count(self.counters.retried, error.kind)
            log.info("job creation failed for now; retrying", kind=error.kind, error=str(error))
            await delivery.retry_later(self._backoff(delivery, error), error.kind)
            return
        if created.outcome is CreateOutcome.CREATED:
            self.counters.created += 1
        else:
            self.counters.existing += 1
        log.info(
            "job " + created.outcome.value,
            job=created.name,
            bucket=created.event.bucket,
            key=created.event.key,
        )
        await delivery.ack()


async def _parked(delivery: Delivery) -> bool:
    """Re-park a copy that came back from a retry tier before the time it must wait for."""
    remaining = delivery.remaining_delay()
    if remaining > 0:
        await delivery.retry_later(remaining, "not-before")
        return True
    return False
