"""Hostile AMQP bodies through the real dispatcher: real RabbitMQ, the Kubernetes API emulator, an S3 server
for presigning. Every hostile message ends in the dead-letter queue with its `x-bucketrun-reason` (read
back from the DLQ and matched to the case by message id), the consumer keeps consuming, and a good event
published after them all still becomes its Job.

tests/unit/test_events_fuzz.py proves the parser raises nothing but EventError for any bytes; this proves
the running consumer turns each into a dead letter and survives (a RecursionError or MemoryError in the
handler would kill the consumer task, which this suite would see as no Job for the last good event).
"""

from __future__ import annotations

import copy
import json
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika  # noqa: TID251 - the test plays MinIO and reads the dead-letter queue
import pytest

from dispatcher.domain.events import build_message
from dispatcher.process.app import run_dispatcher
from dispatcher.runtime.settings import Settings
from tests.integration.stack import amqp_settings, started, storage_settings, until
from tests.integration.test_dispatcher import jobs

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

FDL = """
functions:
  oscar:
  - c:
      name: hostile
      image: busybox:1.36
      script: |
        cat "$INPUT_FILE_PATH"
      input: [{storage_provider: minio, path: photos/in}]
"""
MAX_BYTES = 1 << 20


def good(key: str, sequencer: str = "17A76FE05CF3469B") -> bytes:
    return build_message(
        event_name="s3:ObjectCreated:Put", bucket="photos", key=key, etag="e" * 32, sequencer=sequencer
    )


GOOD_RECORD: dict[str, Any] = json.loads(good("in/template.txt"))["Records"][0]


def with_field(path: tuple[str, ...], value: Any) -> bytes:
    record = copy.deepcopy(GOOD_RECORD)
    target = record
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return json.dumps({"Records": [record]}).encode()


def nested(depth: int) -> bytes:
    record = copy.deepcopy(GOOD_RECORD)
    record["s3"]["object"]["userMetadata"] = json.loads("[" * depth + "]" * depth)
    return json.dumps({"Records": [record]}).encode()


GOOD_BODY = good("in/x.txt")
# (message id) -> (body, the reason it must be dead-lettered with)
HOSTILE: dict[str, tuple[bytes, str]] = {
    "truncated": (GOOD_BODY[: len(GOOD_BODY) // 2], "not-json"),
    "truncated-one-byte": (GOOD_BODY[:-1], "not-json"),
    "empty": (b"", "not-json"),
    "huge": (b'{"Records": [' + b" " * (4 * MAX_BYTES) + b"]}", "too-large"),
    "just-over-the-limit": (GOOD_BODY + b" " * (MAX_BYTES - len(GOOD_BODY) + 1), "too-large"),
    "nested-100k-lists": (b"[" * 100_000 + b"]" * 100_000, "too-deep"),
    "nested-100k-objects": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "too-deep"),
    "nested-in-records": (b'{"Records": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too-deep"),
    "nested-40-in-a-record": (nested(40), "too-deep"),
    "nul-byte-raw": (GOOD_BODY.replace(b'"eventVersion"', b'"event\x00Version"'), "not-json"),
    "nul-byte-in-key": (good("in/a\x00b.txt"), "bad-record"),
    "nul-byte-escaped-in-key": (GOOD_BODY.replace(b"in%2Fx.txt", b"in%2Fx%00.txt"), "bad-record"),
    "invalid-utf8": (GOOD_BODY.replace(b"x.txt", b"\xff\xfe.txt"), "not-utf8"),
    "overlong-utf8": (GOOD_BODY.replace(b"x.txt", b"\xc0\xaf.txt"), "not-utf8"),
    "lone-surrogate": (GOOD_BODY.replace(b"x.txt", b"\\ud800.txt"), "bad-record"),
    "bad-percent-escape": (GOOD_BODY.replace(b"in%2Fx.txt", b"in%2Fx%zz.txt"), "bad-record"),
    "nan": (b'{"Records": [NaN]}', "not-json"),
    "top-level-array": (b"[]", "not-an-object-event"),
    "top-level-number": (b"5", "not-an-object-event"),
    "top-level-string": (b'"Records"', "not-an-object-event"),
    "top-level-null": (b"null", "not-an-object-event"),
    "no-records-key": (b'{"EventName": "s3:ObjectCreated:Put"}', "not-an-object-event"),
    "records-empty": (b'{"Records": []}', "not-an-object-event"),
    "records-object": (b'{"Records": {}}', "bad-record"),
    "record-a-string": (b'{"Records": ["x"]}', "bad-record"),
    "record-null": (b'{"Records": [null]}', "bad-record"),
    "event-name-number": (with_field(("eventName",), 5), "bad-record"),
    "event-name-empty": (with_field(("eventName",), ""), "bad-record"),
    "s3-a-list": (with_field(("s3",), []), "bad-record"),
    "bucket-a-string": (with_field(("s3", "bucket"), "photos"), "bad-record"),
    "bucket-name-number": (with_field(("s3", "bucket", "name"), 7), "bad-record"),
    "bucket-name-with-slash": (with_field(("s3", "bucket", "name"), "photos/in"), "bad-record"),
    "object-null": (with_field(("s3", "object"), None), "bad-record"),
    "key-number": (with_field(("s3", "object", "key"), 12), "bad-record"),
    "key-list": (with_field(("s3", "object", "key"), ["in/x.txt"]), "bad-record"),
    "size-negative": (with_field(("s3", "object", "size"), -1), "bad-record"),
    "size-string": (with_field(("s3", "object", "size"), "10"), "bad-record"),
    "size-bool": (with_field(("s3", "object", "size"), True), "bad-record"),
    "etag-object": (with_field(("s3", "object", "eTag"), {"a": 1}), "bad-record"),
    "version-number": (with_field(("s3", "object", "versionId"), 3), "bad-record"),
    "sequencer-huge": (with_field(("s3", "object", "sequencer"), "9" * 5000), "bad-record"),
    "key-dotdot": (good("in/../../etc/passwd"), "bad-record"),
    "key-absolute": (good("/etc/passwd"), "bad-record"),
    "key-too-long": (good("in/" + "k" * 1030), "bad-record"),
    "no-version": (with_field(("s3", "object"), {"key": "in%2Fnoversion.txt"}), "no-version"),
    "unknown-bucket": (good("in/x.txt").replace(b"photos", b"nobody"), "unknown-bucket"),
    "outside-the-input-folder": (good("elsewhere/x.txt"), "folder-mismatch"),
    "too-many-records": (
        json.dumps({"Records": [GOOD_RECORD] * 1001}).encode(),
        "too-many-records",
    ),
}


def settings_for(names, s3_endpoint, kube, fdl: Path) -> Settings:
    return Settings.load(
        amqp=amqp_settings(names, services=("hostile",), retry_tiers=(1, 2)),
        storage=storage_settings(s3_endpoint),
        cluster={
            "executor": "kubernetes",
            "namespace": kube.namespace,
            "kubeconfig": kube.kubeconfig,
            "api_write_rate": 1000.0,
            "api_write_burst": 1000,
        },
        services={"paths": (fdl,), "reload_interval": 0.5},
        dispatch={"retry_base_delay": 0.2, "max_retry_delay": 2.0, "drain_timeout": 5.0},
        metrics={"host": "127.0.0.1", "port": 0},
    )


@pytest.fixture
def stack(amqp_names, s3_endpoint, kube, tmp_path) -> tuple[Settings, Any, Any]:
    fdl = tmp_path / "services.yaml"
    fdl.write_text(FDL)
    kube.require_control().set_kubelet("off")  # these tests count Jobs, they need no pods to run
    return settings_for(amqp_names, s3_endpoint, kube, fdl), amqp_names, kube


async def publish(settings: Settings, url: str, messages: list[tuple[str, bytes]]) -> None:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.amqp.exchange)
        for message_id, body in messages:
            await exchange.publish(
                aio_pika.Message(body, message_id=message_id, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                "",
            )


async def drain_dead_letters(settings: Settings, url: str, count: int) -> dict[str, dict[str, Any]]:
    """The dead letters by message id (their headers), once *count* of them are there."""
    found: dict[str, dict[str, Any]] = {}
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(settings.amqp.dead_letter_queue)

        async def enough() -> bool:
            while (message := await queue.get(fail=False)) is not None:
                await message.ack()
                found[message.message_id or f"?{len(found)}"] = {
                    **dict(message.headers or {}),
                    "bytes": len(message.body),
                }
            return len(found) >= count

        await until(enough, f"{count} dead letters", within=90)
    return found


async def test_every_hostile_body_is_dead_lettered_with_its_reason_and_the_consumer_goes_on(stack):
    settings, names, kube = stack
    async with started(partial(run_dispatcher, settings), "dispatcher") as task:
        await publish(settings, names.url, [("good-before", good("in/before.txt", "01"))])
        await publish(settings, names.url, [(case, body) for case, (body, _) in HOSTILE.items()])
        await publish(settings, names.url, [("good-after", good("in/after.txt", "02"))])
        letters = await drain_dead_letters(settings, names.url, len(HOSTILE))

        async def two_jobs() -> list[dict[str, Any]] | None:
            found = await jobs(kube)
            return found if len(found) >= 2 else None

        found = await until(two_jobs, "the Jobs of the good events before and after the hostile ones")
        assert not task.done(), "the dispatcher stopped"
    reasons = {case: str(headers.get("x-bucketrun-reason")) for case, headers in letters.items()}
    assert reasons == {case: reason for case, (_, reason) in HOSTILE.items()}
    for case, headers in letters.items():
        assert headers.get("x-bucketrun-error"), case
        assert headers["bytes"] == len(HOSTILE[case][0]), f"{case}: the dead letter is not the original body"
    keys = sorted(job["metadata"]["annotations"]["bucketrun.io/key"] for job in found)
    assert keys == ["in/after.txt", "in/before.txt"]


async def test_a_thousand_records_in_one_message_become_a_thousand_jobs(stack):
    settings, names, kube = stack
    records = []
    for index in range(1000):
        record = json.loads(good(f"in/batch/{index:04d}.txt", f"{index:04X}"))["Records"][0]
        records.append(record)
    body = json.dumps({"Records": records}).encode()
    assert len(body) <= MAX_BYTES, "the message must fit the documented size limit"
    async with started(partial(run_dispatcher, settings), "dispatcher") as task:
        await publish(settings, names.url, [("batch", body)])
        await publish(settings, names.url, [("batch-again", body)])  # redelivered: no new Job

        control = kube.require_control()

        def creates(code: int) -> int:
            return control.request_count(verb="create", resource="jobs", namespace=kube.namespace, code=code)

        # Counted at the API (cheap), not by listing 1,000 Jobs ten times a second.
        async def all_answered() -> bool:
            return creates(201) >= 1000 and creates(409) >= 1000

        await until(
            all_answered, "1,000 Jobs created, then the repeated message's 1,000 creates refused", within=90
        )
        assert not task.done()
    found = await jobs(kube)
    assert len(found) == 1000
    keys = {job["metadata"]["annotations"]["bucketrun.io/key"] for job in found}
    assert keys == {f"in/batch/{index:04d}.txt" for index in range(1000)}
