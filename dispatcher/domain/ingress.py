"""What the dispatcher does with one message from the ingress queue: a pure plan, no I/O.

A MinIO message becomes one *task* per (record, routed service): the record in MinIO's single-record
envelope, addressed to that service's queue. Per-service queues are what let a busy or capped service
wait in RabbitMQ without holding up the others (no head-of-line blocking).

Records that route nowhere are sorted into two kinds:

- **ignored on purpose** (acked and counted): folder markers, event types the service did not ask for
  (deletes by default), keys its prefix/suffix filters exclude;
- **unroutable** (the message is dead-lettered with the reason): a bucket no service watches, or a key
  outside every input folder. MinIO is configured to notify only input paths (`services apply`), so
  these mean a configuration drift someone must see — never a silent drop.

Tasks of a message are published before the message is dead-lettered or acked, and Job names are
idempotent, so replaying a dead-lettered message later can never start a Job twice.

A service queue's message holds one task, or a *batch*: the tasks of one service handed over together
(`batch_body`), one MinIO ``{"Records": [...]}`` document, so that the publish, consume and ack are paid
once for all of them. Each record is still its own Job, its own outcome and, when it fails for good,
its own dead letter.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

from dispatcher.domain.events import EventError, EventErrorReason, ObjectEvent, parse_message
from dispatcher.domain.identity import object_version
from dispatcher.domain.routing import NoRoute, NoRouteReason, Routable, Router

S = TypeVar("S", bound=Routable)

IGNORED_REASONS: Final = frozenset(
    {NoRouteReason.FOLDER_MARKER, NoRouteReason.EVENT_NOT_HANDLED, NoRouteReason.FILTERED}
)


@dataclass(frozen=True, slots=True)
class ServiceTask:
    """One Job to create: an event routed to one service."""

    service: str
    event: ObjectEvent

    @property
    def body(self) -> bytes:
        """The task as its service queue carries it: a single-record MinIO message."""
        return task_body(self.event)

    @property
    def event_time(self) -> datetime | None:
        """When the event happened, as MinIO stamped it."""
        return self.event.event_time


@dataclass(frozen=True, slots=True)
class IngressPlan:
    """Everything one ingress message leads to."""

    tasks: tuple[ServiceTask, ...]
    ignored: tuple[NoRoute, ...]
    unroutable: tuple[NoRoute, ...]

    @property
    def dead_letter_reason(self) -> str | None:
        """The reason to dead-letter the message with, or None to ack it."""
        return str(self.unroutable[0].reason) if self.unroutable else None


def plan_ingress(body: bytes, router: Router[S], *, max_bytes: int = 1 << 20) -> IngressPlan:
    """Parse *body* and route every record. `EventError` (permanent) when the message is unusable."""
    events = parse_message(body, max_bytes=max_bytes)
    tasks: list[ServiceTask] = []
    ignored: list[NoRoute] = []
    unroutable: list[NoRoute] = []
    for event in events:
        routes = router.route(event)
        if routes:
            object_version(event)  # an unidentifiable version can't be deduplicated: refuse it now
            tasks.extend(ServiceTask(route.service.name, event) for route in routes)
            continue
        why = router.explain(event)
        if why is None:  # pragma: no cover - route() and explain() agree by construction
            raise AssertionError(f"event {event.key!r} neither routes nor has a reason")
        (ignored if why.reason in IGNORED_REASONS else unroutable).append(why)
    return IngressPlan(tuple(tasks), tuple(ignored), tuple(unroutable))


def task_body(event: ObjectEvent, record: bytes | None = None) -> bytes:
    """One event as a service queue carries it alone: its single-record MinIO envelope (*record*, when
    given, is its record as `record_bytes` wrote it, not serialised again)."""
    envelope = {"EventName": event.event_name, "Key": f"{event.bucket}/{event.key}"}
    head = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode()
    return head[:-1] + b',"Records":[' + (record_bytes(event) if record is None else record) + b"]}"


def parse_task(body: bytes) -> ObjectEvent:
    """The event of a task body (exactly one record, as `plan_ingress` wrote it)."""
    events = parse_message(body)
    if len(events) != 1:
        raise EventError(
            EventErrorReason.BAD_RECORD, f"a service task must hold exactly one record, got {len(events)}"
        )
    return events[0]


def parse_tasks(body: bytes, *, max_bytes: int = 1 << 20) -> tuple[ObjectEvent, ...]:
    """The events of a service-queue message: one task (`ServiceTask.body`) or a batch (`batch_body`)."""
    return parse_message(body, max_bytes=max_bytes)


def record_bytes(event: ObjectEvent) -> bytes:
    """One event's MinIO record, serialised for a batch (`batch_body`)."""
    return json.dumps(event.record, ensure_ascii=False, separators=(",", ":")).encode()


def batch_body(events: Sequence[ObjectEvent], records: Sequence[bytes]) -> bytes:
    """A service-queue message holding *events* (their *records* as `record_bytes` wrote them): one
    event's is its single-record envelope, exactly as `ServiceTask.body`; several share one
    ``{"Records": [...]}`` document, the shape MinIO's own multi-record messages have."""
    if len(events) == 1:
        return task_body(events[0], records[0])
    return b'{"Records":[' + b",".join(records) + b"]}"


def batches(sizes: Sequence[int], *, max_events: int, max_bytes: int) -> list[slice]:
    """Cut records of *sizes* bytes, in order, into consecutive batches of at most *max_events* records
    and, with the envelope, at most *max_bytes* (a record larger than that alone goes alone)."""
    cuts: list[slice] = []
    start, total = 0, _ENVELOPE_BYTES
    for index, size in enumerate(sizes):
        full = index - start >= max_events or (index > start and total + size + 1 > max_bytes)
        if full:
            cuts.append(slice(start, index))
            start, total = index, _ENVELOPE_BYTES
        total += size + 1
    if start < len(sizes):
        cuts.append(slice(start, len(sizes)))
    return cuts


_ENVELOPE_BYTES: Final = len(b'{"Records":[]}')
