"""OSCAR's ``mount`` under `bucketrun serve` with the local executor, on the real MinIO (built from source):
the dispatcher lists the folder and presigns its objects, stage-in stages them at ``/mnt/<bucket>/<folder>``
(read-only for the script), and the script's output is derived from a mounted file. A folder over the
object or byte bound fails its Job at stage-in, and the Job's record says why. Real RabbitMQ; this test
plays MinIO's notification of each upload."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bucketrun.serve import run_serve
from dispatcher.runtime.settings import Settings
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.stack import (
    amqp_settings,
    notify_upload,
    read_object,
    started,
    storage_settings,
    until,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES = ("detect", "too-big", "too-many")
FDL = """
functions:
  oscar:
  - c:
      name: detect
      image: busybox:1.36
      script: |
        set -e
        name=$(basename "$INPUT_FILE_PATH")
        {
          cat "$BUCKETRUN_MOUNT_DIR/weights.txt"
          cat "$BUCKETRUN_MOUNT_DIR/labels/names.txt"
          tr a-z A-Z < "$INPUT_FILE_PATH"
        } > "$TMP_OUTPUT_DIR/$name"
        (cd "$BUCKETRUN_MOUNT_DIR" && find . -type f | sort) > "$TMP_OUTPUT_DIR/$name.files"
      mount: {storage_provider: minio, path: MODELS/yolo}
      input: [{storage_provider: minio, path: DATA/in}]
      output: [{storage_provider: minio, path: DATA/out}]
  - c:
      name: too-big
      image: busybox:1.36
      script: echo "never runs" > "$TMP_OUTPUT_DIR/x"
      mount: {storage_provider: minio, path: MODELS/big}
      input: [{storage_provider: minio, path: DATA/big-in}]
      output: [{storage_provider: minio, path: DATA/big-out}]
  - c:
      name: too-many
      image: busybox:1.36
      script: echo "never runs" > "$TMP_OUTPUT_DIR/x"
      mount: {storage_provider: minio, path: MODELS/many}
      input: [{storage_provider: minio, path: DATA/many-in}]
      output: [{storage_provider: minio, path: DATA/many-out}]
"""
MAX_BYTES = 64
MAX_OBJECTS = 3


@dataclass
class Served:
    settings: Settings
    names: AmqpNames
    s3: S3Scope
    data: str
    models: str
    records: str
    sequencer: int = 0x17A76FE05CF30000

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self.s3.endpoint.client().put_object(bucket, key, io.BytesIO(body), len(body))

    async def upload(self, key: str, body: bytes) -> None:
        self.put(self.data, key, body)
        self.sequencer += 1
        await notify_upload(
            self.names.url,
            self.settings.amqp.exchange,
            self.s3.endpoint,
            self.data,
            key,
            sequencer=f"{self.sequencer:X}",
        )

    def read(self, bucket: str, key: str) -> bytes | None:
        return read_object(self.s3.endpoint, bucket, key)

    async def reading(self, bucket: str, key: str) -> bytes | None:
        return self.read(bucket, key)

    async def recorded(self, service: str) -> dict[str, Any] | None:
        return self.record(service)

    def keys(self, bucket: str, prefix: str) -> list[str]:
        client = self.s3.endpoint.client()
        return sorted(o.object_name or "" for o in client.list_objects(bucket, prefix, recursive=True))

    def record(self, service: str) -> dict[str, Any] | None:
        for key in self.keys(self.records, f"records/{service}/"):
            if key.endswith("/status.json"):
                raw = self.read(self.records, key)
                return json.loads(raw) if raw else None
        return None

    def log(self, service: str, job: str, container: str) -> str:
        key = next(
            k
            for k in self.keys(self.records, f"records/{service}/{job}/logs/")
            if k.endswith(f"/{container}.log")
        )
        return (self.read(self.records, key) or b"").decode()


@pytest.fixture
async def served(amqp_names: AmqpNames, s3: S3Scope, tmp_path: Path) -> AsyncIterator[Served]:
    data, models, records = s3.bucket("data"), s3.bucket("models"), s3.bucket("records")
    fdl = tmp_path / "services.yaml"
    fdl.write_text(FDL.replace("DATA", data).replace("MODELS", models))
    settings = Settings.load(
        amqp=amqp_settings(amqp_names, services=SERVICES),
        storage=storage_settings(
            s3.endpoint, records_bucket=records, mount_max_bytes=MAX_BYTES, mount_max_objects=MAX_OBJECTS
        ),
        cluster={"executor": "local", "local_state_dir": tmp_path / "state"},
        services={"paths": (fdl,)},
        dispatch={"retry_base_delay": 0.1, "max_retry_delay": 1.0, "drain_timeout": 5.0},
        watcher={"results_exchange": amqp_names.exchange("results")},
        metrics={"host": "127.0.0.1", "port": 0},
    )
    stack = Served(settings, amqp_names, s3, data, models, records)
    stack.put(models, "yolo/weights.txt", b"weights=42\n")
    stack.put(models, "yolo/labels/names.txt", b"cat,dog\n")
    stack.put(models, "yolo/labels/", b"")  # a console's folder marker: not a file
    stack.put(models, "big/blob.bin", b"x" * (MAX_BYTES + 1))
    for index in range(MAX_OBJECTS + 1):
        stack.put(models, f"many/{index}.txt", b"1")
    async with started(partial(run_serve, settings), "bucketrun serve", within=60):
        yield stack


async def test_the_script_reads_the_mounted_folder_and_derives_its_output(served: Served) -> None:
    await served.upload("in/photo.txt", b"a photo\n")

    output = partial(served.reading, served.data, "out/photo.txt")
    assert (
        await until(output, "the output derived from the mount", within=90)
        == b"weights=42\ncat,dog\nA PHOTO\n"
    )
    files = await until(partial(served.reading, served.data, "out/photo.txt.files"), "the mount's file list")
    assert files == b"./labels/names.txt\n./weights.txt\n"

    record = await until(partial(served.recorded, "detect"), "the job record", within=60)
    assert (record["outcome"], record["exit_code"]) == ("succeeded", 0)
    stage_in = served.log("detect", record["job"], "stage-in")
    assert "staged the mount: 2 objects, 19 bytes, read-only" in stage_in
    assert "X-Amz-Signature" not in stage_in


@pytest.mark.parametrize(
    ("service", "key", "reason"),
    [
        ("too-big", "big-in/a.txt", f"holds {MAX_BYTES + 1} bytes, more than {MAX_BYTES}"),
        ("too-many", "many-in/a.txt", f"holds more than {MAX_OBJECTS} objects"),
    ],
)
async def test_a_folder_over_its_bound_fails_the_job_at_stage_in_saying_why(
    served: Served, service: str, key: str, reason: str
) -> None:
    await served.upload(key, b"input")
    record = await until(partial(served.recorded, service), f"{service}'s record", within=90)
    assert (record["outcome"], record["reason"]) == ("stage-in-failed", "MountRefused")
    stage_in = served.log(service, record["job"], "stage-in")
    assert reason in stage_in
    assert "nothing was staged" in stage_in
    assert served.keys(served.data, f"{service.replace('too-', '')}-out/") == []
