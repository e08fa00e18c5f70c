"""End to end: an upload becomes a Job whose pod really runs (stage-in, the script, stage-out) on the
Kubernetes emulator, the results land in the output bucket, and the watcher writes the job record and
publishes the completion event. RabbitMQ, S3 (the MinIO built from source) and the API are real
servers. These tests publish the notification of each upload themselves, to control what arrives and
when; tests/integration/test_minio_notifications.py has MinIO send them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika  # noqa: TID251 - the test plays MinIO
import pytest
import structlog

from bucketrun.serve import run_serve
from dispatcher.runtime.settings import Settings
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.minio_server import with_credentials
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.dispatcher_process import settings_environment
from tests.integration.stack import notify_upload, read_object, started, until
from tests.integration.watcher_support import bind_results_queue, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Distinct, recognisable keys (a MinIO user of their own; moto takes any) let the test prove that no
# credential reaches a pod.
ACCESS_KEY = "AKIAE2EBUCKETRUNTEST"
SECRET_KEY = "e2e-secret-key-never-in-a-pod-spec"

FDL = """
functions:
  oscar:
  - c:
      name: upper
      image: busybox:1.36
      script: |
        name=$(basename "$INPUT_FILE_PATH")
        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$name"
        echo "{\\"source\\": \\"$STORAGE_OBJECT_KEY\\"}" > "$TMP_OUTPUT_DIR/$name.json"
        echo "upper-cased $STORAGE_OBJECT_KEY"
      input: [{storage_provider: minio, path: DATA/in}]
      output:
      - {storage_provider: minio, path: DATA/text, suffix: [.txt]}
      - {storage_provider: minio, path: DATA/meta, suffix: [.json]}
  - c:
      name: broken
      image: busybox:1.36
      script: |
        echo "partial" > "$TMP_OUTPUT_DIR/partial.txt"
        echo "something went wrong" >&2
        exit 1
      input: [{storage_provider: minio, path: DATA/fail}]
      output: [{storage_provider: minio, path: DATA/never}]
  - c:
      name: split-video
      image: grycap/ffmpeg
      script: |
        cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/part-1-$(basename "$INPUT_FILE_PATH")"
      input: [{storage_provider: minio, path: DATA/video/in}]
      output: [{storage_provider: minio, path: DATA/video/med}]
  - c:
      name: darknet
      image: grycap/darknet-v3
      script: |
        wc -c < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH").detections"
      input: [{storage_provider: minio, path: DATA/video/med}]
      output: [{storage_provider: minio, path: DATA/video/out}]
"""


@dataclass
class Stack:
    settings: Settings
    names: AmqpNames
    kube: KubeTestEnv
    s3: S3Scope
    data: str
    records: str
    results_queue: str
    sequencer: int = 0x17A76FE05CF30000

    def put(self, key: str, body: bytes) -> str:
        result = self.s3.endpoint.client().put_object(self.data, key, io.BytesIO(body), len(body))
        return str(result.etag)

    async def notify(self, key: str) -> None:
        """Publish the notification MinIO would send for the object now at *key*."""
        self.sequencer += 1
        exchange = self.settings.amqp.exchange
        await notify_upload(
            self.names.url, exchange, self.s3.endpoint, self.data, key, sequencer=f"{self.sequencer:X}"
        )

    def read(self, bucket: str, key: str) -> bytes | None:
        return read_object(self.s3.endpoint, bucket, key)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        return sorted(
            o.object_name or ""
            for o in self.s3.endpoint.client().list_objects(bucket, prefix, recursive=True)
        )

    def record(self, service: str) -> dict[str, Any] | None:
        for key in self.keys(self.records, f"records/{service}/"):
            if key.endswith("/status.json"):
                raw = self.read(self.records, key)
                return json.loads(raw) if raw else None
        return None

    async def completion_events(self) -> list[dict[str, Any]]:
        connection = await aio_pika.connect(self.names.url)
        found = []
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(self.results_queue, ensure=False)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                found.append(json.loads(message.body))
        return found


@contextlib.asynccontextmanager
async def running_stack(
    amqp_names: AmqpNames,
    s3: S3Scope,
    kube: KubeTestEnv,
    tmp_path: Path,
    *,
    fdl_text: str,
    services: Sequence[str],
) -> AsyncIterator[Stack]:
    """`bucketrun serve` on the test's servers with the services of *fdl_text* (``DATA``: the data bucket)."""
    kube.require_control().set_kubelet("run")
    data, records = s3.bucket("data"), s3.bucket("records")
    fdl = tmp_path / "services.yaml"
    fdl.write_text(fdl_text.replace("DATA", data))
    exchange, queue = amqp_names.exchange("results"), amqp_names.queue("results")
    await bind_results_queue(amqp_names, exchange, queue)
    for service in services:
        amqp_names.queue(f"svc.{service}")
    settings = make_settings(amqp_names, s3, kube, fdl, records_bucket=records, exchange=exchange)
    with_credentials(s3.endpoint, ACCESS_KEY, SECRET_KEY)  # a MinIO user with these recognisable keys
    settings = settings.model_copy(
        update={
            "storage": settings.storage.model_copy(
                update={"access_key": _secret(ACCESS_KEY), "secret_key": _secret(SECRET_KEY)}
            )
        }
    )
    async with started(partial(run_serve, settings), "dispatcher and watcher", within=60):
        yield Stack(settings, amqp_names, kube, s3, data, records, queue)


@pytest.fixture
async def stack(amqp_names, s3, kube, tmp_path) -> AsyncIterator[Stack]:
    services = ("upper", "broken", "split-video", "darknet")
    async with running_stack(amqp_names, s3, kube, tmp_path, fdl_text=FDL, services=services) as running:
        yield running


def _secret(value: str) -> Any:
    from pydantic import SecretStr  # noqa: PLC0415

    return SecretStr(value)


async def test_an_upload_runs_the_script_and_its_results_and_record_land_in_buckets(
    stack: Stack, monkeypatch, capsys
) -> None:
    stack.put("in/photo.txt", b"hello bucketrun\n")
    await stack.notify("in/photo.txt")

    async def output() -> bytes | None:
        return stack.read(stack.data, "text/photo.txt")

    assert await until(output, "the upper-cased output", within=90) == b"HELLO BUCKETRUN\n"

    async def recorded() -> dict[str, Any] | None:
        return stack.record("upper")

    record = await until(recorded, "the job record", within=60)
    assert record["outcome"] == "succeeded"
    assert (record["bucket"], record["key"], record["exit_code"]) == (stack.data, "in/photo.txt", 0)
    assert {(o["bucket"], o["key"]) for o in record["outputs"]} == {
        (stack.data, "text/photo.txt"),
        (stack.data, "meta/photo.txt.json"),
    }
    for moment in ("created", "started", "finished"):
        assert record[moment], moment
    # Output suffix filters: the .txt went to text/ only, the .json to meta/ only.
    assert stack.keys(stack.data, "text/") == ["text/photo.txt"]
    assert stack.keys(stack.data, "meta/") == ["meta/photo.txt.json"]
    assert json.loads(stack.read(stack.data, "meta/photo.txt.json") or b"{}") == {"source": "in/photo.txt"}
    logs = stack.keys(stack.records, f"records/upper/{record['job']}/logs/")
    assert any(key.endswith("/run.log") for key in logs), logs
    run_log = stack.read(stack.records, next(k for k in logs if k.endswith("/run.log"))) or b""
    assert b"upper-cased in/photo.txt" in run_log

    async def event() -> list[dict[str, Any]]:
        return [e for e in await stack.completion_events() if e.get("uid") == record["uid"]]

    (completion,) = await until(event, "the completion event")
    assert completion["outcome"] == "succeeded"

    # `bucketrun jobs show` prints it (the real command, configured by environment like an operator's).
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BUCKETRUN_")}
    environment.update(settings_environment(stack.settings))
    shown = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bucketrun.cli.main",
        "jobs",
        "show",
        record["job"],
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(shown.communicate(), 60)
    assert shown.returncode == 0, err.decode()
    assert record["uid"] in out.decode()


async def test_a_failing_script_fails_the_job_keeps_logs_and_uploads_nothing(stack: Stack) -> None:
    stack.put("fail/input.txt", b"x")
    await stack.notify("fail/input.txt")

    async def recorded() -> dict[str, Any] | None:
        return stack.record("broken")

    record = await until(recorded, "the failed job's record", within=90)
    assert record["outcome"] == "failed"
    assert record["exit_code"] == 1
    assert record["outputs"] == []
    assert stack.keys(stack.data, "never/") == []
    logs = stack.keys(stack.records, f"records/broken/{record['job']}/logs/")
    run_log = stack.read(stack.records, next(k for k in logs if k.endswith("/run.log"))) or b""
    assert b"something went wrong" in run_log


async def test_the_two_stage_chain_runs_both_stages_from_one_upload(stack: Stack) -> None:
    stack.put("video/in/clip.mp4", b"0123456789")
    await stack.notify("video/in/clip.mp4")

    async def middle() -> bytes | None:
        return stack.read(stack.data, "video/med/part-1-clip.mp4")

    assert await until(middle, "stage 1's output", within=90) == b"0123456789"
    await stack.notify("video/med/part-1-clip.mp4")  # what MinIO sends for stage 1's upload

    async def final() -> bytes | None:
        return stack.read(stack.data, "video/out/part-1-clip.mp4.detections")

    assert (await until(final, "stage 2's output", within=90)).strip() == b"10"

    async def both_recorded() -> bool:
        return stack.record("split-video") is not None and stack.record("darknet") is not None

    await until(both_recorded, "both stages' records")
    jobs = await _jobs(stack.kube)
    assert sorted(j["metadata"]["labels"]["bucketrun.io/service"] for j in jobs) == ["darknet", "split-video"]


async def test_no_pod_spec_holds_a_storage_credential(stack: Stack) -> None:
    stack.put("in/secret-check.txt", b"abc")
    await stack.notify("in/secret-check.txt")

    async def created() -> list[dict[str, Any]]:
        return await _jobs(stack.kube)

    (job,) = await until(created, "the Job")
    text = json.dumps(job)
    assert SECRET_KEY not in text
    env = [
        e
        for group in ("initContainers", "containers")
        for c in job["spec"]["template"]["spec"][group]
        for e in c.get("env", [])
    ]
    urls = [e["value"] for e in env if e["name"] == "BUCKETRUN_INPUT_URL"]
    assert urls
    assert all("X-Amz-Expires=" in url for url in urls)  # presigned, expiring
    outputs = json.loads(next(e["value"] for e in env if e["name"] == "BUCKETRUN_OUTPUTS"))
    for output in outputs:
        policy = json.loads(base64.b64decode(output["fields"]["policy"]))
        assert policy["expiration"]
        assert ["starts-with", "$key", f"{output['folder']}/"] in policy["conditions"]


async def test_log_lines_of_one_upload_carry_its_context_and_no_credential(stack: Stack) -> None:
    # Captured before any rendering or redaction: what the code itself hands to the logger.
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        stack.put("in/logged.txt", b"context please\n")
        await stack.notify("in/logged.txt")

        async def recorded() -> dict[str, Any] | None:
            record = stack.record("upper")
            return record if record and record["key"] == "in/logged.txt" else None

        record = await until(recorded, "the job record", within=90)

        async def recorded_line() -> list[dict[str, Any]]:
            return [line for line in lines if line["event"] == "job recorded"]

        await until(recorded_line, "the watcher's 'job recorded' line", within=30)
    expected = {"service": "upper", "bucket": stack.data, "key": "in/logged.txt", "job": record["job"]}
    created = [line for line in lines if line["event"] == "job created"]
    done = await recorded_line()
    for line in (*created, *done):
        assert {name: line.get(name) for name in expected} == expected, line
        assert line["event_id"] == record["version"], line
    assert created, [line["event"] for line in lines]
    dumped = json.dumps(lines, default=str)
    for secret in ("X-Amz-Signature", "X-Amz-Credential", "x-amz-signature", SECRET_KEY, "guest:guest"):
        assert secret not in dumped


async def _jobs(kube: KubeTestEnv) -> list[dict[str, Any]]:
    from kubernetes_asyncio import client  # noqa: PLC0415, TID251

    from tests.backends.kubernetes import api_client_for  # noqa: PLC0415

    async with await api_client_for(kube.kubeconfig) as api:
        listed = await client.BatchV1Api(api).list_namespaced_job(kube.namespace, _preload_content=False)
        return (await listed.json())["items"]
