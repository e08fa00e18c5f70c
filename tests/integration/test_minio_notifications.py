"""The first arrow of the product, for real: MinIO (built from source) publishes its bucket notifications
to RabbitMQ, and the dispatcher turns each one into exactly one Job, with no poller and no hand-made
payload anywhere.

Each test runs a MinIO of its own (`minio_events`, ~0.3 s to boot) whose AMQP target publishes to the
test's events exchange, wires it with `services apply` (`apply_services`, the command's own code), and
runs `bucketrun serve` (dispatcher and watcher) against it and the Kubernetes backend. A raw queue of
the test's own, bound to the same exchange, sees every notification MinIO sent, so "no Job for this
event" is checked after the event provably arrived and was consumed, never after a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika  # noqa: TID251 - the test reads MinIO's own notifications off the broker
import pytest
from kubernetes_asyncio import client  # noqa: TID251 - the test counts the Jobs the dispatcher created
from minio.commonconfig import GOVERNANCE, Tags  # noqa: TID251 - the test is MinIO's user here
from minio.retention import Retention  # noqa: TID251
from prometheus_client.parser import text_string_to_metric_families

from bucketrun.admin.commands import apply_services
from bucketrun.devtools.minio_server import AmqpTarget, MinioServer
from bucketrun.serve import run_serve
from dispatcher.adapters.kube.api import MANAGED_SELECTOR
from dispatcher.domain.constants import ANNOTATION_BUCKET, ANNOTATION_KEY, ANNOTATION_VERSION
from dispatcher.domain.events import parse_message
from dispatcher.runtime.settings import Settings
from tests.backends import free_port
from tests.backends.kubernetes import KubeTestEnv, api_client_for
from tests.backends.minio_server import endpoint_of, start_test_minio
from tests.backends.rabbit_node import PrivateRabbitNode
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.stack import read_object, started, until
from tests.integration.watcher_support import bind_results_queue, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CAPTURED = Path(__file__).parents[1] / "unit" / "fixtures" / "events" / "captured"
"""MinIO's notifications for HOSTILE_KEYS as this test received them, one file per key
(`minio-put-<n>.json`, n the key's index), parsed by tests/unit/test_events.py. Regenerate with
BUCKETRUN_CAPTURE_MINIO_EVENTS=1."""

HOSTILE_KEYS = (
    "in/a file with spaces.txt",
    "in/a+plus+sign.txt",
    "in/ünïcødé ☃.txt",
    "in/100% done.txt",
    "in/q?x=1&y=#2.txt",
)

FDL = """
functions:
  oscar:
  - c:
      name: digest
      image: busybox:1.36
      script: |
        name=$(basename "$INPUT_FILE_PATH")
        sha256sum < "$INPUT_FILE_PATH" | cut -d' ' -f1 > "$TMP_OUTPUT_DIR/$name.sha256"
        wc -c < "$INPUT_FILE_PATH" | tr -d ' ' > "$TMP_OUTPUT_DIR/$name.size"
      input:
      - {storage_provider: minio, path: DATA/in}
      - {storage_provider: minio, path: LOCKED/in}
      output: [{storage_provider: minio, path: DATA/out}]
"""
OUTAGE_UPLOADS = 200


@dataclass
class Notified:
    """One test's MinIO, the dispatcher running on it, and a raw view of the notifications."""

    minio: MinioServer
    s3: S3Scope
    kube: KubeTestEnv
    settings: Settings
    data: str
    locked: str
    """An input bucket created with object lock (so versioned, and retention can be set)."""
    records: str
    raw: aio_pika.abc.AbstractQueue

    @property
    def client(self) -> Any:
        return self.s3.endpoint.client()

    def put(self, key: str, body: bytes, *, bucket: str | None = None) -> Any:
        return self.client.put_object(bucket or self.data, key, io.BytesIO(body), len(body))

    def read(self, bucket: str, key: str) -> bytes | None:
        return read_object(self.s3.endpoint, bucket, key)

    async def notifications(self, count: int, within: float = 60.0) -> list[dict[str, Any]]:
        """The next *count* notifications MinIO published (raw JSON bodies), in arrival order."""
        found: list[dict[str, Any]] = []

        async def more() -> bool:
            while len(found) < count and (message := await self.raw.get(no_ack=True, fail=False)):
                found.append(json.loads(message.body))
            return len(found) >= count

        await until(more, f"{count} notifications from MinIO", within=within)
        return found

    async def jobs(self) -> list[dict[str, Any]]:
        """Every Job the dispatcher created in the test's namespace."""
        return await jobs_in(self.kube)

    def counter(self, name: str, **labels: str) -> float:
        """A counter of the running dispatcher (summed over the other labels), read from its /metrics
        endpoint as Prometheus would; blocking, so call it in a thread (the endpoint is served by the
        test's own event loop)."""
        return scraped(self.settings, name, **labels)


async def jobs_in(kube: KubeTestEnv) -> list[dict[str, Any]]:
    api = await api_client_for(kube.kubeconfig)
    async with api:
        listed = await client.BatchV1Api(api).list_namespaced_job(
            kube.namespace, label_selector=MANAGED_SELECTOR
        )
        return [api.sanitize_for_serialization(job) for job in listed.items]


def scraped(settings: Settings, name: str, **labels: str) -> float:
    url = f"http://127.0.0.1:{settings.metrics.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def annotations(jobs: list[dict[str, Any]], key: str) -> list[str]:
    return sorted(job["metadata"]["annotations"][key] for job in jobs)


async def wired_settings(
    s3: S3Scope, names: AmqpNames, kube: KubeTestEnv, tmp_path: Path
) -> tuple[Settings, str, str, str]:
    """Settings on the test's servers and the FDL's buckets, after `services apply` wired them:
    (settings, data bucket, locked bucket, records bucket)."""
    data, records = s3.bucket("data", create=False), s3.bucket("records", create=False)
    locked = s3.bucket("locked", create=False)
    s3.endpoint.client().make_bucket(locked, object_lock=True)  # apply keeps an existing bucket
    fdl = tmp_path / "services.yaml"
    fdl.write_text(FDL.replace("DATA", data).replace("LOCKED", locked))
    exchange, queue = names.exchange("results"), names.queue("results")
    await bind_results_queue(names, exchange, queue)
    names.queue("svc.digest")
    settings = make_settings(names, s3, kube, fdl, records_bucket=records, exchange=exchange)
    settings = settings.model_copy(
        update={"metrics": settings.metrics.model_copy(update={"port": free_port()})}
    )
    assert s3.endpoint.notify_arn == settings.storage.notify_arn  # MinIO's target is the default ARN
    lines: list[str] = []
    message, code = await apply_services(settings, [fdl], emit=lines.append)
    assert code == 0, (message, lines)
    for bucket in (data, locked):
        assert any(
            line.startswith(f"update notification {bucket}: add bucketrun-digest-") for line in lines
        ), lines
    return settings, data, locked, records


@contextlib.asynccontextmanager
async def notified_stack(
    minio_events: MinioServer, amqp_names: AmqpNames, kube: KubeTestEnv, tmp_path: Path, *, run_pods: bool
) -> AsyncIterator[Notified]:
    """`services apply`, then `bucketrun serve` on the test's own MinIO; yields once both are up."""
    kube.require_control().set_kubelet("run" if run_pods else "off")
    # The MinIO is the test's own and goes with it: nothing to clean up there (and the retained
    # object version could not be deleted anyway).
    s3 = S3Scope(endpoint_of(minio_events))
    settings, data, locked, records = await wired_settings(s3, amqp_names, kube, tmp_path)
    connection = await aio_pika.connect(amqp_names.url)
    async with connection:
        channel = await connection.channel()
        raw = await channel.declare_queue(amqp_names.queue("raw"), durable=False)
        # The same arguments as MinIO's and the dispatcher's declarations: durable fanout.
        events = await channel.declare_exchange(
            settings.amqp.exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        await raw.bind(events)
        async with started(partial(run_serve, settings), "dispatcher and watcher", within=60):
            yield Notified(minio_events, s3, kube, settings, data, locked, records, raw)


@pytest.fixture
async def stack(minio_events, amqp_names, kube, tmp_path) -> AsyncIterator[Notified]:
    async with notified_stack(minio_events, amqp_names, kube, tmp_path, run_pods=True) as running:
        yield running


@pytest.fixture
async def counting_stack(minio_events, amqp_names, kube, tmp_path) -> AsyncIterator[Notified]:
    """The same stack with pods left unstarted: what is checked is the Jobs the dispatcher creates."""
    async with notified_stack(minio_events, amqp_names, kube, tmp_path, run_pods=False) as running:
        yield running


def records_of(stack: Notified) -> list[dict[str, Any]]:
    found = []
    for item in stack.client.list_objects(stack.records, "records/digest/", recursive=True):
        if (item.object_name or "").endswith("/status.json"):
            found.append(json.loads(stack.read(stack.records, item.object_name or "") or b"{}"))
    return found


async def test_uploads_become_jobs_through_minio_notifications_with_its_own_event_fields(
    stack: Notified,
) -> None:
    bodies = {key: f"body of {key}\n".encode() for key in HOSTILE_KEYS}
    written = {key: stack.put(key, body) for key, body in bodies.items()}

    messages = await stack.notifications(len(HOSTILE_KEYS))
    records = [message["Records"][0] for message in messages]
    by_key = {urllib.parse.unquote_plus(record["s3"]["object"]["key"]): record for record in records}
    assert set(by_key) == set(HOSTILE_KEYS)
    for key, record in by_key.items():
        obj = record["s3"]["object"]
        # MinIO's own fields: the key escaped as a URL query value, its eTag, versionId and sequencer.
        assert obj["key"] == urllib.parse.quote_plus(key, safe=""), obj["key"]
        assert obj.get("versionId", "") == (written[key].version_id or "")  # none: not versioned
        assert obj["eTag"] == written[key].etag
        assert obj["sequencer"]
        assert record["eventName"] == "s3:ObjectCreated:Put"
        (event,) = parse_message(json.dumps({"Records": [record]}).encode())
        assert (event.bucket, event.key, event.etag) == (stack.data, key, written[key].etag)
    if os.environ.get("BUCKETRUN_CAPTURE_MINIO_EVENTS"):
        for message in messages:
            escaped = message["Records"][0]["s3"]["object"]["key"]
            index = HOSTILE_KEYS.index(urllib.parse.unquote_plus(escaped))
            text = json.dumps(message, indent=2, ensure_ascii=False) + "\n"
            (CAPTURED / f"minio-put-{index}.json").write_text(text)

    names = [key.rsplit("/", 1)[1] for key in HOSTILE_KEYS]

    async def outputs() -> dict[str, bytes | None] | None:
        found = {
            name: await asyncio.to_thread(stack.read, stack.data, f"out/{name}.sha256") for name in names
        }
        return found if all(found.values()) else None

    done = await until(outputs, "every upload's output", within=120)
    for key, body in bodies.items():
        assert done[key.rsplit("/", 1)[1]] == hashlib.sha256(body).hexdigest().encode() + b"\n"

    async def recorded() -> list[dict[str, Any]] | None:
        found = await asyncio.to_thread(records_of, stack)
        return found if len(found) >= len(HOSTILE_KEYS) else None

    assert sorted(r["key"] for r in await until(recorded, "the job records", within=60)) == sorted(
        HOSTILE_KEYS
    )
    assert annotations(await stack.jobs(), ANNOTATION_KEY) == sorted(HOSTILE_KEYS)


async def test_multipart_upload_gives_one_job_that_reads_the_whole_object(stack: Notified) -> None:
    body = os.urandom(20 * 1024 * 1024)
    result = stack.client.put_object(
        stack.data, "in/big.bin", io.BytesIO(body), len(body), part_size=5 * 1024 * 1024
    )
    assert result.etag.endswith("-4")  # MinIO assembled it from 4 parts

    (message,) = await stack.notifications(1)
    assert message["Records"][0]["eventName"] == "s3:ObjectCreated:CompleteMultipartUpload"

    async def digest() -> bytes | None:
        return await asyncio.to_thread(stack.read, stack.data, "out/big.bin.sha256")

    expected = hashlib.sha256(body).hexdigest().encode() + b"\n"
    assert await until(digest, "the digest of the 20 MB object", within=180) == expected
    assert stack.read(stack.data, "out/big.bin.size") == f"{len(body)}\n".encode()
    assert len(await stack.jobs()) == 1


async def test_a_versioned_key_uploaded_three_times_gives_three_jobs_and_tags_or_retention_none(
    counting_stack: Notified,
) -> None:
    stack = counting_stack
    versions = [
        stack.put("in/same.txt", f"version {n}\n".encode(), bucket=stack.locked).version_id for n in range(3)
    ]
    assert len(set(versions)) == 3
    assert all(versions)

    async def three_jobs() -> list[dict[str, Any]] | None:
        jobs = await stack.jobs()
        return jobs if len(jobs) >= 3 else None

    jobs = await until(three_jobs, "one Job per version", within=60)
    # The object-version annotation is <versionId>:<eTag>:<sequencer>: one Job per MinIO versionId.
    assert sorted(v.split(":")[0] for v in annotations(jobs, ANNOTATION_VERSION)) == sorted(versions)
    assert annotations(jobs, ANNOTATION_BUCKET) == [stack.locked] * 3
    assert len(await stack.notifications(3)) == 3

    tags = Tags.new_object_tags()
    tags["reviewed"] = "yes"
    stack.client.set_object_tags(stack.locked, "in/same.txt", tags)
    until_date = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    stack.client.set_object_retention(stack.locked, "in/same.txt", Retention(GOVERNANCE, until_date))
    changes = await stack.notifications(2)
    assert sorted(m["Records"][0]["eventName"] for m in changes) == [
        "s3:ObjectCreated:PutRetention",
        "s3:ObjectCreated:PutTagging",
    ]

    async def both_ignored() -> bool:
        ignored = await asyncio.to_thread(
            stack.counter, "bucketrun_events_ignored_total", reason="event-not-handled"
        )
        return ignored >= 2

    await until(both_ignored, "the dispatcher to consume and ignore both metadata events")
    assert len(await stack.jobs()) == 3, "a tag or retention change started a Job"


async def test_nothing_is_lost_while_rabbitmq_is_away(
    private_rabbitmq: PrivateRabbitNode, kube: KubeTestEnv, tmp_path: Path
) -> None:
    """Stop the broker, upload 200 objects, start it again: MinIO's queue_dir replays every event and
    the dispatcher creates exactly one Job per upload."""
    kube.require_control().set_kubelet("off")
    names = AmqpNames(private_rabbitmq.url)
    queue_dir = tmp_path / "minio" / "events-queue"
    minio = start_test_minio(tmp_path / "minio", amqp=AmqpTarget(names.url, f"{names.prefix}.events"))
    s3 = S3Scope(endpoint_of(minio))
    try:
        settings, data, _, _ = await wired_settings(s3, names, kube, tmp_path)
        async with started(partial(run_serve, settings), "dispatcher and watcher", within=60):
            await asyncio.to_thread(private_rabbitmq.stop)
            client_ = s3.endpoint.client()
            keys = [f"in/outage-{n:03d}.txt" for n in range(OUTAGE_UPLOADS)]
            for key in keys:
                await asyncio.to_thread(client_.put_object, data, key, io.BytesIO(b"x"), 1)

            def queued() -> int:
                return sum(1 for _ in queue_dir.rglob("*") if _.is_file())

            assert queued() > 0, "MinIO kept no event in its queue_dir while the broker was down"
            await asyncio.to_thread(private_rabbitmq.start)

            async def replayed() -> bool:
                return queued() == 0 and len(await jobs_in(kube)) >= OUTAGE_UPLOADS

            await until(replayed, "MinIO's replay and a Job per upload", within=180)

            async def all_received() -> bool:
                return (
                    await asyncio.to_thread(scraped, settings, "bucketrun_messages_received_total")
                    >= OUTAGE_UPLOADS
                )

            await until(all_received, "the dispatcher to take every replayed notification")
            jobs = await jobs_in(kube)
            assert annotations(jobs, ANNOTATION_KEY) == keys  # exactly one each: none lost, none doubled
    finally:
        minio.stop()
