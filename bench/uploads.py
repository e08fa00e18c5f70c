"""Uploads through real MinIO notifications: the bare upload -> message path, and bucketrun's upload -> Job.

Run by ``run_all.py`` on the real stack only (the emulator has no object store that notifies).

- ``bare_notifications``: PUTs to a MinIO whose bucket notifies its AMQP target, and a bare aio-pika
  consumer on a queue bound to the target's exchange: upload -> message latency (from the PUT's answer:
  the object exists) and the rate messages arrive at. Run on the stack's MinIO (its target has a
  ``queue_dir``) and on a second one without (``real_stack.started_minio_without_queue_dir``).
- ``upload_to_created``: the bucket's rules written by ``bucketrun services apply``'s code
  (``apply_services``), a ``bucketrun dispatcher`` process consuming MinIO's exchange, PUTs at a steady
  rate (or all at once for the sustained rate), and a watch opened by the bench: upload -> Job created
  (the Job's ADDED event) per object, and the dispatcher process's CPU per event.

PUTs run in a thread pool of this process with the ``minio`` client (the bench plays the uploaders).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import aio_pika  # noqa: TID251 - the bench is the bare consumer of MinIO's messages
from bench_dispatch import (
    BUCKET,
    SERVICES,
    JobWatch,
    Progress,
    Stack,
    create_namespace,
    latency_summary,
    pods_taken_up,
    to_running,
    until,
)
from minio import Minio  # noqa: TID251 - the bench plays the uploaders
from minio.notificationconfig import NotificationConfig, PrefixFilterRule, QueueConfig  # noqa: TID251
from scale import started_child

from bucketrun.admin.commands import apply_services
from dispatcher.runtime.settings import Settings

PAYLOAD = b"hello bucketrun\n" * 64
"""Each upload's body (1 KiB)."""
UPLOADERS = 16
"""PUTs in flight at most (threads of this process)."""
NOTIFY_ARN = "arn:minio:sqs::_:amqp"


@dataclass(frozen=True)
class Store:
    """A MinIO and the exchange its AMQP target publishes to."""

    endpoint: str
    access_key: str
    secret_key: str
    exchange: str
    queue_dir: bool

    def client(self) -> Minio:
        """A ``minio`` client for it."""
        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)


@dataclass
class Uploads:
    """PUTs of this process: when each started and when MinIO answered, by key."""

    store: Store
    bucket: str
    started: dict[str, float] = field(default_factory=dict)
    stored: dict[str, float] = field(default_factory=dict)

    async def put_all(self, keys: list[str], rate: float | None) -> None:
        """PUT every key: each at its scheduled instant at *rate*, or all as fast as UPLOADERS allow."""
        client = self.store.client()
        loop = asyncio.get_running_loop()

        def put(key: str) -> None:
            self.started[key] = time.perf_counter()
            client.put_object(self.bucket, key, io.BytesIO(PAYLOAD), len(PAYLOAD), content_type="text/plain")
            self.stored[key] = time.perf_counter()

        with concurrent.futures.ThreadPoolExecutor(UPLOADERS, thread_name_prefix="upload") as pool:
            futures = []
            start = time.perf_counter()
            for index, key in enumerate(keys):
                if rate is not None:
                    # A schedule, not a wait for a condition: uploads must arrive at a steady rate.
                    await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
                futures.append(loop.run_in_executor(pool, put, key))
            await asyncio.gather(*futures)

    def latencies(self, arrived: Mapping[str, float]) -> list[float]:
        """Object stored (PUT answered) -> *arrived*, per key that arrived."""
        return [arrived[key] - stored for key, stored in self.stored.items() if key in arrived]

    def achieved_rate(self) -> float:
        """PUTs started per second."""
        span = max(self.started.values()) - min(self.started.values())
        return (len(self.started) - 1) / span if span > 0 else math.nan


def prepare_bucket(store: Store, bucket: str, prefix: str | None) -> None:
    """Create *bucket*; with *prefix*, one notification rule of its own for objects under it (the bare
    measurement; bucketrun's rules are written by ``apply_services``)."""
    client = store.client()
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    if prefix is not None:
        rule = QueueConfig(
            ["s3:ObjectCreated:*"],
            config_id="bench-bare",
            prefix_filter_rule=PrefixFilterRule(prefix),
            queue=NOTIFY_ARN,
        )
        client.set_bucket_notification(bucket, NotificationConfig(queue_config_list=[rule]))


def message_key(body: bytes) -> str:
    """The object key of a MinIO notification message."""
    record = json.loads(body)["Records"][0]
    return unquote_plus(record["s3"]["object"]["key"])


async def bare_notifications(
    store: Store, amqp_url: str, queue: str, count: int, *, rate: float | None, progress: Progress
) -> dict[str, Any]:
    """*count* PUTs (at *rate*, or all at once) and a bare consumer of their messages: latency and rate."""
    tag = f"bare{'q' if store.queue_dir else 'n'}{'' if rate is None else int(rate)}"
    bucket = f"bench-bare-{tag}"
    await asyncio.to_thread(prepare_bucket, store, bucket, "in/")
    keys = [f"in/{tag}/object-{index:06d}.txt" for index in range(count)]
    arrived: dict[str, float] = {}
    everything = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        now = time.perf_counter()
        arrived.setdefault(message_key(message.body), now)
        await message.ack()
        if len(arrived) >= count:
            everything.set()

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=256)
        exchange = await channel.declare_exchange(store.exchange, aio_pika.ExchangeType.FANOUT, durable=True)
        declared = await channel.declare_queue(queue, exclusive=True)
        await declared.bind(exchange)
        consumer = await declared.consume(on_message)
        uploads = Uploads(store, bucket)
        progress(
            f"raw: {count} PUTs {'all at once' if rate is None else f'at {rate:,.0f}/s'} to MinIO "
            f"({'with' if store.queue_dir else 'without'} queue_dir) -> a bare AMQP consumer"
        )
        started = time.perf_counter()
        await uploads.put_all(keys, rate)
        put_seconds = time.perf_counter() - started
        await asyncio.wait_for(everything.wait(), 60 + count * 0.05)
        await declared.cancel(consumer)
    return {
        "uploads": count,
        "queue_dir": store.queue_dir,
        "target_rate": rate,
        "put_rate": count / put_seconds,
        "message_rate": count / (max(arrived.values()) - started),
        "upload_to_message": latency_summary(uploads.latencies(arrived)),
    }


def dispatcher_settings(stack: Stack, store: Store, namespace: str) -> Settings:
    """The dispatcher's settings for an upload phase: MinIO's exchange, a queue of the phase's own."""
    storage = {
        "endpoint": store.endpoint,
        "access_key": store.access_key,
        "secret_key": store.secret_key,
        "notify_arn": NOTIFY_ARN,
    }
    return stack.settings(namespace, exchange=store.exchange, storage=storage)


async def upload_to_created(
    stack: Stack,
    store: Store,
    *,
    count: int,
    rate: float | None,
    tag: str,
    work: Path,
    progress: Progress,
    running: bool = False,
    meter: Any = None,
) -> dict[str, Any]:
    """*count* uploads (at *rate*, or all at once) into the services' folders with a dispatcher process
    consuming MinIO's messages: upload -> Job created per object, the dispatcher's CPU per event. With
    *running*, also until every Job's pod is taken up by the node (``to_running``). A *meter*
    (``bench_dispatch.Meter``) started by the caller is stopped at the last Job created (under ``usage``),
    before the wait for the pods."""
    namespace = f"bench-{tag}"
    await create_namespace(stack.kubeconfig, namespace)
    settings = dispatcher_settings(stack, store, namespace)
    await asyncio.to_thread(prepare_bucket, store, BUCKET, None)
    message, code = await apply_services(settings, list(settings.services.paths), emit=lambda _: None)
    if code != 0:
        raise RuntimeError(f"applying the bench's services to {store.endpoint} failed ({code}): {message}")
    keys = [f"in/{SERVICES[index % len(SERVICES)]}/{tag}/upload-{index:06d}.txt" for index in range(count)]
    watch = JobWatch(count)
    uploads = Uploads(store, BUCKET)
    pods_watch = pods_taken_up(stack.kubeconfig, namespace, count if running else 0)
    with started_child("dispatcher", settings, work / f"{tag}-dispatcher.log") as child:
        await child.wait_ready()
        observer = asyncio.create_task(watch.run(stack.kubeconfig, namespace), name="the Job watch")
        try:
            await until(watch.opened, observer, 30, "the Job watch to open")
            before = child.usage()
            progress(
                f"upload -> Job: {count} uploads {'all at once' if rate is None else f'at {rate:,.1f}/s'} "
                f"({'with' if store.queue_dir else 'without'} queue_dir), a dispatcher process"
            )
            async with pods_watch as pods:
                started = time.perf_counter()
                await uploads.put_all(keys, rate)
                await until(watch.complete, observer, 60 + count * 0.1, f"{count} Jobs on the watch")
                after = child.usage()
                usage = {"usage": meter.stop()} if meter is not None else {}
                running_figures = await to_running(pods, started)
        finally:
            observer.cancel()
            await asyncio.gather(observer, return_exceptions=True)
    return (
        usage
        | running_figures
        | {
            "uploads": count,
            "queue_dir": store.queue_dir,
            "target_rate": rate,
            "achieved_rate": uploads.achieved_rate(),
            "rate": count / (max(watch.seen.values()) - started),
            "upload_to_created": latency_summary(uploads.latencies(watch.seen)),
            "latencies_ms": sorted(round(1000 * value, 2) for value in uploads.latencies(watch.seen)),
            "dispatcher_cpu_ms_per_event": (after["cpu_s"] - before["cpu_s"]) * 1000 / count,
            "dispatcher_peak_rss_mib": after["peak_rss_mib"],
        }
    )
