"""The dispatcher's two message handlers: ingress (fan out to services) and service tasks (create Jobs).

An ingress message whose one event routes to one uncapped service is turned into its Job by the ingress
handler itself while fewer than ``direct_create_bound`` such creates are in flight: one publish and one
consume fewer per event. Everything else (capped services, several tasks in one message, the ingress
busy past that bound) is handed to the services' queues, so a flood or a slow create for one service
never holds the ingress for the others. An uncapped service's events handed over while its previous
publish awaits the broker's confirm travel together as one message (`HandOff`); its handler creates
their Jobs concurrently and settles each record by its own outcome:

- all created (or existing): ack;
- a record refused for good: that record alone is dead-lettered (confirmed) before the message is settled;
- records that failed for now: one retry copy holding just them;
- a batch delivered before (the dispatcher died or a bug raised while handling it), or one reaching a
  capped service: split into single messages first, so a record that crashes the dispatcher reaches the
  dead letters alone (``x-delivery-limit``) and a capped service admits its events one by one.

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
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import structlog

from dispatcher.adapters.amqp import Delivery
from dispatcher.adapters.amqp.headers import received_at_of
from dispatcher.domain.backoff import backoff_delay
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.events import EventError, ObjectEvent
from dispatcher.domain.ingress import (
    IngressPlan,
    ServiceTask,
    batch_body,
    parse_tasks,
    plan_ingress,
    record_bytes,
    task_body,
)
from dispatcher.domain.jobs import CreateOutcome
from dispatcher.executors.base import Executor
from dispatcher.fdl.catalog import Catalog
from dispatcher.process.handoff import HandOff, Publish
from dispatcher.process.job_creation import WORK_CONTEXT_KEYS, CreatedJob, JobCreator
from dispatcher.runtime.metrics import DispatcherMetrics, seconds_since

_log = structlog.get_logger(__name__)

SHARED_DIRECT_CREATES: Final = 16
"""The direct path's bound while several services share the ingress (``dispatch.direct_creates`` unset)."""


def direct_create_bound(configured: int | None, services: int) -> float:
    """How many direct creates may be in flight at once: *configured* when set; unset, 16 with several
    *services* loaded (past it, a backlog overflows into the service queues at publish speed, so another
    service's events behind it are not held at create speed), and no bound with one (the ingress prefetch
    bounds it: no other service's event can be waiting behind the backlog)."""
    if configured is not None:
        return configured
    return SHARED_DIRECT_CREATES if services > 1 else math.inf


class Handlers:
    """The ingress and service-task handlers, sharing the catalog, the executor and the metrics."""

    def __init__(
        self,
        catalog: Callable[[], Catalog],
        publish_task: Publish,
        creator: JobCreator,
        executor: Executor,
        *,
        retry_base_delay: float,
        max_retry_delay: float,
        max_message_bytes: int,
        pause_service: Callable[[str], None],
        metrics: DispatcherMetrics,
        direct_creates: int | None = 0,
        handoff_batch: int = 1,
        batch_creates: int = 64,
        look_again: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._catalog = catalog
        self._look_again = look_again
        self.handoff = HandOff(
            publish_task,
            max_events=handoff_batch,
            max_bytes=max_message_bytes,
            published=lambda service, events: metrics.handoff_messages.labels(service).inc(),
        )
        """Hands events to their service queues (``close`` it on shutdown)."""
        self._batch_creates = batch_creates
        self._batch_slots: dict[str, asyncio.Semaphore] = {}
        self._creator = creator
        self._executor = executor
        self._base = retry_base_delay
        self._cap = max_retry_delay
        self._max_bytes = max_message_bytes
        self._pause_service = pause_service
        self._admission: dict[str, asyncio.Lock] = {}
        self._direct_limit = direct_creates
        self._direct_in_flight = 0
        self.metrics = metrics

    def _backoff(self, delivery: Delivery, error: TransientError) -> float:
        return backoff_delay(delivery.attempt, base=self._base, cap=self._cap, retry_after=error.retry_after)

    async def on_ingress(self, delivery: Delivery) -> None:
        """Fan one MinIO message out to the queues of the services it routes to."""
        if await _parked(delivery):
            return
        metrics = self.metrics
        metrics.messages_received.inc()
        received_at = received_at_of(delivery.headers) or time.time()
        log = _log.bind(queue=delivery.queue, message_id=delivery.message_id)
        try:
            plan = plan_ingress(delivery.body, self._catalog().router, max_bytes=self._max_bytes)
            if plan.unroutable and self._look_again is not None and await self._look_again():
                plan = plan_ingress(delivery.body, self._catalog().router, max_bytes=self._max_bytes)
        except EventError as error:
            metrics.dead_lettered.labels(str(error.reason)).inc()
            log.warning("message refused", reason=str(error.reason), error=error.message)
            await delivery.dead_letter(str(error.reason), error.message)
            return
        direct = self._direct_task(plan)
        if direct is not None:
            await self._create_direct(direct, delivery, received_at)
            return
        try:
            await self._hand_off(plan.tasks, received_at)
        except TransientError as error:
            metrics.retries.labels(error.kind).inc()
            log.warning(
                "could not hand the event to its services; retrying", kind=error.kind, error=str(error)
            )
            await delivery.retry_later(self._backoff(delivery, error), error.kind)
            return
        for task in plan.tasks:
            metrics.events_dispatched.labels(task.service).inc()
            waited = seconds_since(task.event_time, received_at)
            if waited is not None and delivery.attempt == 0:
                metrics.event_to_received.observe(waited)
        for why in plan.ignored:
            metrics.events_ignored.labels(str(why.reason)).inc()
        reason = plan.dead_letter_reason
        if reason is not None:
            metrics.dead_lettered.labels(reason).inc()
            message = "; ".join(why.message for why in plan.unroutable)
            log.warning("event routes to no service", reason=reason, error=message)
            await delivery.dead_letter(reason, message)
            return
        await delivery.ack()

    async def _hand_off(self, tasks: tuple[ServiceTask, ...], received_at: float) -> None:
        """Hand every task to its service queue (a capped service's alone); the first failure, once all
        have been tried."""
        catalog = self._catalog()
        sent = [
            self.handoff.send(task.service, task.event, received_at, alone=not catalog.uncapped(task.service))
            for task in tasks
        ]
        for outcome in await asyncio.gather(*sent, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome

    def _direct_task(self, plan: IngressPlan) -> ServiceTask | None:
        """The plan's one task when the ingress handler may create its Job itself, else None."""
        if len(plan.tasks) != 1 or plan.unroutable:
            return None
        catalog = self._catalog()
        if self._direct_in_flight >= direct_create_bound(self._direct_limit, len(catalog.services)):
            return None
        (task,) = plan.tasks
        if not catalog.uncapped(task.service):
            return None  # a capped service's events wait in its queue while it is at its cap
        return task

    async def _create_direct(self, task: ServiceTask, delivery: Delivery, received_at: float) -> None:
        """Create the Job of an ingress message's one task and settle the ingress message by the outcome
        (a transient failure sends it back to the ingress through a retry tier; the next attempt may take
        either path)."""
        waited = seconds_since(task.event_time, received_at)
        if waited is not None and delivery.attempt == 0:  # observed at receipt, as on the queue path
            self.metrics.event_to_received.observe(waited)
        log = _log.bind(queue=delivery.queue, message_id=delivery.message_id, path="direct")
        self._direct_in_flight += 1
        try:
            with _unit_of_work(task.service):
                created = await self._settle(
                    task.service,
                    delivery,
                    received_at,
                    lambda: self._creator.create_event(task.service, task.event),
                    log,
                )
        finally:
            self._direct_in_flight -= 1
        if created is not None:
            self.metrics.events_dispatched.labels(task.service).inc()
            self.metrics.direct_creates.inc()

    async def on_task(self, service: str, delivery: Delivery) -> None:
        """Create the Jobs of a service-queue message (one task or a batch), within the service's cap."""
        if await _parked(delivery):
            return
        with _unit_of_work(service):
            log = _log.bind(queue=delivery.queue, message_id=delivery.message_id)
            try:
                events = parse_tasks(delivery.body, max_bytes=self._max_bytes)
            except EventError as error:
                self.metrics.dead_lettered.labels(str(error.reason)).inc()
                log.warning("task refused", reason=str(error.reason), error=error.message)
                await delivery.dead_letter(str(error.reason), error.message, service=service)
                return
            if len(events) == 1:
                await self._create(service, delivery, events[0], log)
                return
            capped = self._catalog().cap_of(service) is not None
            if capped or delivery.redelivered or delivery.delivery_count > 0:
                log.info("batch split into single messages", events=len(events), capped=capped)
                await delivery.split([task_body(event) for event in events])
                return
            await self._create_batch(service, delivery, events, log.bind(events=len(events)))

    async def _create(self, service: str, delivery: Delivery, event: ObjectEvent, log: Any) -> None:
        cap = self._catalog().cap_of(service)

        async def create() -> CreatedJob | None:
            if cap is None:
                return await self._creator.create_event(service, event)
            # For a capped service the check and the create are one step, so this replica never
            # over-admits; uncapped services create concurrently, up to the consumer's prefetch.
            async with self._admission.setdefault(service, asyncio.Lock()):
                if self._executor.active_jobs(service) >= cap:
                    self.metrics.retries.labels("at-capacity").inc()
                    self._pause_service(service)
                    await delivery.retry_later(0.0, "at-capacity")
                    return None
                return await self._creator.create_event(service, event)

        await self._settle(service, delivery, received_at_of(delivery.headers), create, log)

    async def _create_batch(
        self, service: str, delivery: Delivery, events: tuple[ObjectEvent, ...], log: Any
    ) -> None:
        """Create a batch's Jobs concurrently (at most ``batch_creates`` of the service's at once), then
        settle the message by their outcomes (the module docstring has the rules)."""
        received_at = received_at_of(delivery.headers)
        created = (self._create_record(service, event, received_at, log) for event in events)
        outcomes = await asyncio.gather(*created)
        refused: list[tuple[ObjectEvent, PermanentError]] = []
        failed: list[tuple[ObjectEvent, TransientError]] = []
        for event, outcome in zip(events, outcomes, strict=True):
            if isinstance(outcome, PermanentError):
                refused.append((event, outcome))
            elif outcome is not None:
                failed.append((event, outcome))
        try:
            for event, refusal in refused:
                await delivery.dead_letter_part(task_body(event), refusal.reason, str(refusal), service)
                self.metrics.dead_lettered.labels(refusal.reason).inc()
                log.warning("task refused", reason=refusal.reason, error=str(refusal), key=event.key)
        except TransientError as error:
            log.warning("could not dead-letter a refused record; the batch goes back", error=str(error))
            await delivery.requeue()
            return
        if not failed:
            await delivery.ack()
            return
        for _, failure in failed:
            self.metrics.retries.labels(failure.kind).inc()
        kind = failed[0][1].kind
        delay = max(self._backoff(delivery, failure) for _, failure in failed)
        log.info("job creation failed for now; retrying", kind=kind, failed=len(failed))
        rest = [event for event, _ in failed]
        await delivery.retry_later(delay, kind, body=batch_body(rest, [record_bytes(e) for e in rest]))

    async def _create_record(
        self, service: str, event: ObjectEvent, received_at: float | None, log: Any
    ) -> PermanentError | TransientError | None:
        """One record of a batch: its Job created (counted, logged), or why not. Runs in a task of its own
        (``gather``): the creator's log context stays with this record."""
        slots = self._batch_slots.setdefault(service, asyncio.Semaphore(self._batch_creates))
        async with slots:
            try:
                created = await self._creator.create_event(service, event)
            except (PermanentError, TransientError) as error:
                log.info("job not created", error=str(error))
                return error
        self._count(created, received_at)
        log.info("job " + created.outcome.value)
        return None

    def _count(self, created: CreatedJob, received_at: float | None) -> None:
        metrics = self.metrics
        metrics.jobs_created.labels(created.service, created.outcome.value).inc()
        if created.outcome is CreateOutcome.CREATED and received_at is not None:
            waited = max(time.time() - received_at, 0.0)
            metrics.received_to_created.labels(created.service).observe(waited)

    async def _settle(
        self,
        service: str,
        delivery: Delivery,
        received_at: float | None,
        create: Callable[[], Awaitable[CreatedJob | None]],
        log: Any,
    ) -> CreatedJob | None:
        """Run *create*, then settle *delivery* by its outcome: ack after 201 or 409, dead-letter a permanent
        failure naming the service, park a transient one for its backoff. The Job, or None when there is
        none (*create* returns None once it has settled the delivery itself)."""
        metrics = self.metrics
        try:
            created = await create()
        except PermanentError as error:
            metrics.dead_lettered.labels(error.reason).inc()
            log.warning("task refused", reason=error.reason, error=str(error))
            await delivery.dead_letter(error.reason, str(error), service=service)
            return None
        except TransientError as error:
            metrics.retries.labels(error.kind).inc()
            log.info("job creation failed for now; retrying", kind=error.kind, error=str(error))
            await delivery.retry_later(self._backoff(delivery, error), error.kind)
            return None
        if created is None:
            return None
        self._count(created, received_at)
        log.info("job " + created.outcome.value)
        await delivery.ack()
        return created


@contextmanager
def _unit_of_work(service: str) -> Iterator[None]:
    """The service on every log line of one task's handling, and the event's keys the creator binds
    (``WORK_CONTEXT_KEYS``) taken off again at the end."""
    with structlog.contextvars.bound_contextvars(service=service):
        try:
            yield
        finally:
            structlog.contextvars.unbind_contextvars(*WORK_CONTEXT_KEYS)


async def _parked(delivery: Delivery) -> bool:
    """Re-park a copy that came back from a retry tier before the time it must wait for."""
    remaining = delivery.remaining_delay()
    if remaining > 0:
        await delivery.retry_later(remaining, "not-before")
        return True
    return False
