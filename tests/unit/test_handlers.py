"""The ingress handler settles a message only after its side effects: no server, a recording delivery.

The ordering is the whole of "nothing is lost": an ingress message acked before its tasks are published
is gone if the publish then fails (or the process dies in between). The slow SIGKILL process test
catches that too; these catch it in milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from dispatcher.domain.errors import TransientError
from dispatcher.domain.events import build_message
from dispatcher.fdl import load_services_text
from dispatcher.fdl.catalog import Catalog
from dispatcher.process.handlers import Handlers, direct_create_bound
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


def handlers(steps: list[str], *, fail_on: str | None = None) -> Handlers:
    catalog = Catalog.of(load_services_text(FDL, source="t.yaml", base_dir=None).services)

    async def publish_task(service: str, body: bytes, headers: Mapping[str, Any]) -> None:
        if service == fail_on:
            raise TransientError(f"publish to {service}: the broker did not confirm", kind="amqp")
        steps.append(f"publish:{service}")

    return Handlers(
        lambda: catalog,
        publish_task,
        creator=None,  # type: ignore[arg-type] - a fan-out never creates from the ingress
        executor=None,  # type: ignore[arg-type]
        retry_base_delay=1.0,
        max_retry_delay=10.0,
        max_message_bytes=1 << 20,
        pause_service=lambda service: None,
        metrics=DispatcherMetrics(CollectorRegistry()),
        direct_creates=0,
    )


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

    return Handlers(
        lambda: catalogs[-1],
        publish_task,
        creator=None,  # type: ignore[arg-type] - a fan-out never creates from the ingress
        executor=None,  # type: ignore[arg-type]
        retry_base_delay=1.0,
        max_retry_delay=10.0,
        max_message_bytes=1 << 20,
        pause_service=lambda service: None,
        metrics=DispatcherMetrics(CollectorRegistry()),
        look_again=look_again,
    )


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
