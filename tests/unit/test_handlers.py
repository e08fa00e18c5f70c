"""The ingress handler settles a message only after its side effects: no server, a recording delivery.

The ordering is the whole of "nothing is lost": an ingress message acked before its tasks are published
is gone if the publish then fails (or the process dies in between). The slow SIGKILL process test
catches that too; these catch it in milliseconds.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.events import ObjectEvent, build_message, parse_message
from dispatcher.domain.ingress import batch_body, parse_task, parse_tasks, record_bytes
from dispatcher.domain.jobs import CreateOutcome
from dispatcher.fdl import load_services_text
from dispatcher.fdl.catalog import Catalog
from dispatcher.process.handlers import Handlers, direct_create_bound
from dispatcher.process.handoff import Publish
from dispatcher.process.job_creation import CreatedJob
from dispatcher.runtime.metrics import DispatcherMetrics

FDL = """
functions:
  oscar:
  - c:
      name: thumbs
      image: busybox
      script: |
        true
      input: [{storage_provider: minio, path: media/in}]
  - c:
      name: archive
      image: busybox
      script: |
        true
      input: [{storage_provider: minio, path: media/in}]
"""


class RecordingDelivery:
    """The part of ``Delivery`` the ingress handler uses; every settle and publish goes to *steps*."""

    queue = "ingress"
    message_id = "m-1"
    attempt = 0
    headers: Mapping[str, Any] = {}

    def __init__(self, body: bytes, steps: list[str]) -> None:
        self.body = body
        self.steps = steps

    def remaining_delay(self) -> float:
        return 0.0

    async def ack(self) -> None:
        self.steps.append("ack")

    async def retry_later(self, delay_s: float, reason: str) -> None:
        self.steps.append(f"retry_later:{reason}")

    async def dead_letter(self, reason: str, error_text: str, service: str | None = None) -> None:
        self.steps.append(f"dead_letter:{reason}")


def build(catalog: Callable[[], Catalog], publish_task: Publish, **options: Any) -> Handlers:
    """Handlers over *catalog* with short retries; *options* as ``Handlers`` takes them (``creator``
    defaults to none: a fan-out never creates from the ingress)."""
    return Handlers(
        catalog,
        publish_task,
        creator=options.pop("creator", None),
        executor=None,  # type: ignore[arg-type] - uncapped services never ask for counts
        retry_base_delay=1.0,
        max_retry_delay=10.0,
        max_message_bytes=1 << 20,
        pause_service=lambda service: None,
        metrics=DispatcherMetrics(CollectorRegistry()),
        **options,
    )


def handlers(steps: list[str], *, fail_on: str | None = None) -> Handlers:
    catalog = Catalog.of(load_services_text(FDL, source="t.yaml", base_dir=None).services)

    async def publish_task(service: str, body: bytes, headers: Mapping[str, Any]) -> None:
        if service == fail_on:
            raise TransientError(f"publish to {service}: the broker did not confirm", kind="amqp")
        steps.append(f"publish:{service}")

    return build(lambda: catalog, publish_task, direct_creates=0)


def message(key: str = "in/cat.jpg") -> bytes:
    return build_message(event_name="s3:ObjectCreated:Put", bucket="media", key=key, etag="e", sequencer="1A")


async def test_the_ingress_message_is_acked_only_after_every_task_is_published() -> None:
    steps: list[str] = []
    await handlers(steps).on_ingress(RecordingDelivery(message(), steps))
    assert steps == ["publish:thumbs", "publish:archive", "ack"]


@pytest.mark.parametrize("failing", ["thumbs", "archive"])
async def test_a_task_that_cannot_be_published_sends_the_message_back_unacked(failing: str) -> None:
    steps: list[str] = []
    await handlers(steps, fail_on=failing).on_ingress(RecordingDelivery(message(), steps))
    assert "ack" not in steps
    assert steps[-1] == "retry_later:amqp"


NEW_SERVICE = """
functions:
  oscar:
  - c:
      name: fresh
      image: busybox
      script: |
        true
      input: [{storage_provider: minio, path: uploads/in}]
"""


def handlers_that_look_again(steps: list[str], *, finds: bool) -> Handlers:
    """Handlers whose definitions gain service `fresh` (bucket `uploads`) on their first look again."""
    catalogs = [Catalog.of(load_services_text(FDL, source="t.yaml", base_dir=None).services)]

    async def publish_task(service: str, body: bytes, headers: Mapping[str, Any]) -> None:
        steps.append(f"publish:{service}")

    async def look_again() -> bool:
        steps.append("look-again")
        if finds:
            catalogs.append(
                Catalog.of(load_services_text(NEW_SERVICE, source="n.yaml", base_dir=None).services)
            )
        return finds

    return build(lambda: catalogs[-1], publish_task, look_again=look_again)


async def test_an_event_for_a_service_newer_than_the_last_reload_is_routed_after_a_look_again() -> None:
    steps: list[str] = []
    body = build_message(
        event_name="s3:ObjectCreated:Put", bucket="uploads", key="in/a.txt", etag="e", sequencer="1"
    )
    await handlers_that_look_again(steps, finds=True).on_ingress(RecordingDelivery(body, steps))
    assert steps == ["look-again", "publish:fresh", "ack"]


async def test_an_event_that_still_routes_nowhere_after_the_look_is_dead_lettered() -> None:
    steps: list[str] = []
    body = build_message(
        event_name="s3:ObjectCreated:Put", bucket="uploads", key="in/a.txt", etag="e", sequencer="1"
    )
    await handlers_that_look_again(steps, finds=False).on_ingress(RecordingDelivery(body, steps))
    assert steps == ["look-again", "dead_letter:unknown-bucket"]


async def test_a_routed_event_never_looks_again() -> None:
    steps: list[str] = []
    await handlers_that_look_again(steps, finds=True).on_ingress(RecordingDelivery(message(), steps))
    assert steps == ["publish:thumbs", "publish:archive", "ack"]


def test_the_direct_bound_is_the_setting_or_else_16_while_services_share_the_ingress_and_none_for_one() -> (
    None
):
    assert direct_create_bound(None, 1) == math.inf
    assert direct_create_bound(None, 2) == 16
    assert direct_create_bound(None, 40) == 16
    assert direct_create_bound(0, 1) == 0
    assert direct_create_bound(5, 1) == 5
    assert direct_create_bound(128, 3) == 128


class BatchDelivery(RecordingDelivery):
    """A service-queue delivery: also records the parts it dead-letters, splits and retries."""

    queue = "bucketrun.service.thumbs"

    def __init__(self, body: bytes, steps: list[str], *, delivery_count: int = 0) -> None:
        super().__init__(body, steps)
        self.redelivered = delivery_count > 0
        self.delivery_count = delivery_count

    async def retry_later(self, delay_s: float, reason: str, *, body: bytes | None = None) -> None:
        keys = [event.key for event in parse_tasks(body or self.body)]
        self.steps.append(f"retry_later:{reason}:{','.join(keys)}")

    async def dead_letter_part(self, body: bytes, reason: str, error_text: str, service: str | None) -> None:
        (event,) = parse_tasks(body)
        if "dead-letter-fails" in self.steps:
            raise TransientError("the broker did not confirm", kind="amqp")
        self.steps.append(f"dead_letter_part:{reason}:{event.key}:{service}")

    async def split(self, bodies: list[bytes]) -> None:
        self.steps.append("split:" + ",".join(parse_task(body).key for body in bodies))

    async def requeue(self) -> None:
        self.steps.append("requeue")


class Creator:
    """Creates every event's Job but those whose key names a failure (``refused``, ``later``)."""

    def __init__(self, steps: list[str]) -> None:
        self.steps = steps

    async def create_event(self, service: str, event: ObjectEvent) -> CreatedJob:
        if "refused" in event.key:
            raise PermanentError(f"{event.key} cannot be rendered", reason="invalid-manifest")
        if "later" in event.key:
            raise TransientError("the API answered 503", kind="api-5xx")
        self.steps.append(f"created:{event.key}")
        return CreatedJob(service, f"job-{event.sequencer}", event, CreateOutcome.CREATED)


CAPPED = FDL.replace(
    "      name: archive\n", "      name: archive\n      bucketrun:\n        max_concurrent_jobs: 2\n"
)


def batch_handlers(steps: list[str], fdl: str = FDL) -> Handlers:
    catalog = Catalog.of(load_services_text(fdl, source="t.yaml", base_dir=None).services)

    async def publish_task(service: str, body: bytes, headers: Mapping[str, Any]) -> None:
        raise AssertionError("a service task never publishes to a service queue")

    return build(lambda: catalog, publish_task, creator=Creator(steps), handoff_batch=64)


def batch(*keys: str) -> bytes:
    events = [parse_message(message(key))[0] for key in keys]
    return batch_body(events, [record_bytes(event) for event in events])


async def test_a_batch_is_acked_once_every_job_of_it_exists() -> None:
    steps: list[str] = []
    await batch_handlers(steps).on_task("thumbs", BatchDelivery(batch("in/a.jpg", "in/b.jpg"), steps))
    assert sorted(steps[:-1]) == ["created:in/a.jpg", "created:in/b.jpg"]
    assert steps[-1] == "ack"


async def test_a_refused_record_is_dead_lettered_alone_and_a_failed_one_retried_alone() -> None:
    steps: list[str] = []
    body = batch("in/a.jpg", "in/refused.jpg", "in/later-1.jpg", "in/later-2.jpg", "in/b.jpg")
    await batch_handlers(steps).on_task("thumbs", BatchDelivery(body, steps))
    created = [step for step in steps if step.startswith("created:")]
    assert sorted(created) == ["created:in/a.jpg", "created:in/b.jpg"]
    assert steps[len(created) :] == [
        "dead_letter_part:invalid-manifest:in/refused.jpg:thumbs",
        "retry_later:api-5xx:in/later-1.jpg,in/later-2.jpg",
    ]


async def test_a_batch_whose_dead_letter_is_not_taken_goes_back_whole() -> None:
    steps: list[str] = ["dead-letter-fails"]
    body = batch("in/a.jpg", "in/refused.jpg")
    await batch_handlers(steps).on_task("thumbs", BatchDelivery(body, steps))
    assert steps[-1] == "requeue"
    assert "ack" not in steps


async def test_a_batch_delivered_before_is_split_into_single_messages_before_any_create() -> None:
    steps: list[str] = []
    body = batch("in/a.jpg", "in/b.jpg")
    await batch_handlers(steps).on_task("thumbs", BatchDelivery(body, steps, delivery_count=1))
    assert steps == ["split:in/a.jpg,in/b.jpg"]


async def test_a_batch_reaching_a_capped_service_is_split_so_the_cap_admits_one_by_one() -> None:
    steps: list[str] = []
    body = batch("in/a.jpg", "in/b.jpg")
    await batch_handlers(steps, CAPPED).on_task("archive", BatchDelivery(body, steps))
    assert steps == ["split:in/a.jpg,in/b.jpg"]


async def test_an_unreadable_task_is_dead_lettered_with_its_service() -> None:
    steps: list[str] = []
    await batch_handlers(steps).on_task("thumbs", BatchDelivery(b'{"Records": "no"}', steps))
    assert steps == ["dead_letter:bad-record"]


async def test_the_ingress_hands_a_capped_service_its_events_alone() -> None:
    steps: list[str] = []
    catalog = Catalog.of(load_services_text(CAPPED, source="t.yaml", base_dir=None).services)
    bodies: dict[str, list[bytes]] = {}

    async def publish_task(service: str, body: bytes, headers: Mapping[str, Any]) -> None:
        bodies.setdefault(service, []).append(body)

    handler = build(lambda: catalog, publish_task, handoff_batch=64)
    deliveries = [RecordingDelivery(message(f"in/{index}.jpg"), steps) for index in range(4)]
    await asyncio.gather(*(handler.on_ingress(delivery) for delivery in deliveries))
    assert steps == ["ack"] * 4
    assert [len(parse_tasks(body)) for body in bodies["archive"]] == [1, 1, 1, 1]
    # The uncapped one's, handed over in the same turn of the loop, travelled together.
    assert [len(parse_tasks(body)) for body in bodies["thumbs"]] == [4]
