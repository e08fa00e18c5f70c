"""What the integration tests share to run bucketrun's processes in-process against the real servers:
settings pointing at one test's unique names, a bounded wait on a condition, a running process, and
MinIO's part played by hand (the notification of an upload, an object read back)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aio_pika  # noqa: TID251 - the tests play MinIO: they publish its bucket notifications
import pytest

from dispatcher.domain.events import build_message
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Endpoint

WAIT = 30.0
DEFAULT_TIERS = (1, 5, 30, 120)


def amqp_settings(
    names: AmqpNames, *, services: Sequence[str] = (), retry_tiers: Sequence[int] = DEFAULT_TIERS
) -> dict[str, Any]:
    """The `amqp` settings group on this test's unique names; every queue the topology declares for
    *services* and *retry_tiers* is registered with *names*, so the test deletes it afterwards."""
    for role in (
        "ingress",
        "dlq",
        *(f"retry.{tier}s" for tier in retry_tiers),
        *(f"svc.{s}" for s in services),
    ):
        names.queue(role)
    return {
        "url": names.url,
        "exchange": names.exchange("events"),
        "ingress_queue": f"{names.prefix}.ingress",
        "dead_letter_exchange": names.exchange("dlx"),
        "dead_letter_queue": f"{names.prefix}.dlq",
        "retry_exchange": names.exchange("retry"),
        "retry_queue_prefix": f"{names.prefix}.retry",
        "service_queue_prefix": f"{names.prefix}.svc",
        "retry_tiers": tuple(retry_tiers),
    }


def storage_settings(endpoint: S3Endpoint, **extra: Any) -> dict[str, Any]:
    """The `storage` settings group for the test's S3 server, plus *extra* fields."""
    return {
        "endpoint": endpoint.endpoint,
        "access_key": endpoint.access_key,
        "secret_key": endpoint.secret_key,
        "region": endpoint.region,
        **extra,
    }


async def until(check: Callable[[], Any], what: str, within: float = WAIT) -> Any:
    """Poll the async *check* until it returns something truthy; fail naming *what* after *within* s."""
    last: Any = None
    try:
        async with asyncio.timeout(within):
            # The state lives in other servers (cluster, broker, S3): polling is the only way to see it.
            while not (last := await check()):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"timed out after {within}s waiting for {what} (last: {last!r})"[:2000])
    return last


@contextlib.asynccontextmanager
async def started(
    main: Callable[[asyncio.Event, asyncio.Event], Awaitable[None]], what: str, within: float = WAIT
) -> AsyncIterator[asyncio.Task[None]]:
    """Run `main(stop, ready)` (a `run_dispatcher`/`run_watcher`/`run_serve`/`run_poller` with its
    settings bound) until it is ready; stop it cleanly at the end unless the test ended it already."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(main(stop, ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # it failed to start: show why
    assert ready.is_set(), f"{what} not ready within {within} s"
    try:
        yield task
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, within)


async def notify_upload(
    url: str, exchange: str, endpoint: S3Endpoint, bucket: str, key: str, *, sequencer: str
) -> None:
    """Publish to *exchange* the notification MinIO would send for the object now at *bucket*/*key*."""
    stat = endpoint.client().stat_object(bucket, key)
    body = build_message(
        event_name="s3:ObjectCreated:Put",
        bucket=bucket,
        key=key,
        size=stat.size,
        etag=stat.etag,
        sequencer=sequencer,
    )
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        target = await channel.get_exchange(exchange)
        await target.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), "")


def read_object(endpoint: S3Endpoint, bucket: str, key: str) -> bytes | None:
    """The object's body, or None while there is none."""
    client = endpoint.client()
    try:
        response = client.get_object(bucket, key)
    except Exception:  # noqa: BLE001 - absent (yet)
        return None
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()
