"""Embedded mode (`bucketrun serve`, local executor): a service's `environment.secrets` reach its script.

The dispatcher hands the local executor each service's Secret at start and on every reload, before a
Job of that service can be created: the script writes a digest of its secret to an output, and the
output proves which value arrived. The FDL has two services, the first with one secret (the shape that
used to end every `run` container in ContainerCannotRun, "secret ... not found"). Real RabbitMQ, the
session's S3 server; this test plays MinIO by publishing the notification of each upload.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import structlog

from bucketrun.serve import run_serve
from dispatcher.executors.local.executor import LocalExecutor
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

FIRST_TOKEN = "tok-Embedded-9f2c41d7e0"
SECOND_TOKEN = "tok-Rotated-5b8e17a3c6"

FDL = """
functions:
  oscar:
  - c:
      name: keyed
      image: busybox:1.36
      script: |
        name=$(basename "$INPUT_FILE_PATH")
        printf '%s' "$API_TOKEN" | sha256sum | cut -d' ' -f1 > "$TMP_OUTPUT_DIR/$name.sha256"
        echo "the token has ${#API_TOKEN} characters"
      environment:
        secrets:
          API_TOKEN: SECRET_VALUE
      input: [{storage_provider: minio, path: DATA/keyed-in}]
      output: [{storage_provider: minio, path: DATA/keyed-out}]
  - c:
      name: plain
      image: busybox:1.36
      script: |
        # Holds its pod while GATE names a file that does not exist (bounded: 60 s).
        for _ in $(seq 600); do [ -z "$GATE" ] || [ -e "$GATE" ] && break; sleep 0.1; done
        cp "$INPUT_FILE_PATH" "$TMP_OUTPUT_DIR/$(basename "$INPUT_FILE_PATH")"
      environment:
        variables:
          GATE: GATE_PATH
      input: [{storage_provider: minio, path: DATA/plain-in}]
      output: [{storage_provider: minio, path: DATA/plain-out}]
"""


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).hexdigest().encode() + b"\n"


@dataclass
class Embedded:
    settings: Settings
    names: AmqpNames
    s3: S3Scope
    data: str
    fdl: Path
    sequencer: int = 0x17A76FE05CF30000

    def write_fdl(self, token: str, gate: str = "") -> None:
        text = FDL.replace("DATA", self.data).replace("SECRET_VALUE", token)
        self.fdl.write_text(text.replace("GATE_PATH", json.dumps(gate)))

    async def upload(self, key: str, body: bytes) -> None:
        """Put the object, then publish the notification MinIO would send for it."""
        self.s3.endpoint.client().put_object(self.data, key, io.BytesIO(body), len(body))
        self.sequencer += 1
        exchange = self.settings.amqp.exchange
        await notify_upload(
            self.names.url, exchange, self.s3.endpoint, self.data, key, sequencer=f"{self.sequencer:X}"
        )

    async def output(self, key: str) -> bytes | None:
        return read_object(self.s3.endpoint, self.data, key)


def embedded_settings(names: AmqpNames, s3: S3Scope, tmp_path: Path, **cluster: Any) -> Embedded:
    data, records = s3.bucket("data"), s3.bucket("records")
    fdl = tmp_path / "services.yaml"
    settings = Settings.load(
        amqp=amqp_settings(names, services=("keyed", "plain")),
        storage=storage_settings(s3.endpoint, records_bucket=records),
        cluster={"executor": "local", "local_state_dir": tmp_path / "state", **cluster},
        services={"paths": (fdl,), "reload_interval": 0.2},
        dispatch={"retry_base_delay": 0.1, "max_retry_delay": 1.0, "drain_timeout": 5.0},
        watcher={"results_exchange": names.exchange("results")},
        metrics={"host": "127.0.0.1", "port": 0},
    )
    stack = Embedded(settings, names, s3, data, fdl)
    stack.write_fdl(FIRST_TOKEN)
    return stack


def serving(stack: Embedded) -> Any:
    return started(partial(run_serve, stack.settings), "bucketrun serve", within=60)


async def test_the_script_gets_its_secret_at_start_and_the_new_value_after_a_reload(
    amqp_names: AmqpNames, s3: S3Scope, tmp_path: Path
) -> None:
    embedded = embedded_settings(amqp_names, s3, tmp_path)
    with structlog.testing.capture_logs() as logged:
        async with serving(embedded):
            await embedded.upload("keyed-in/a.txt", b"first")
            await embedded.upload("plain-in/b.txt", b"plain")
            first = await until(
                partial(embedded.output, "keyed-out/a.txt.sha256"), "the keyed service's output", within=60
            )
            assert first == digest(FIRST_TOKEN)
            # The service without secrets runs as before, next to it.
            plain = await until(partial(embedded.output, "plain-out/b.txt"), "the plain service's output")
            assert plain == b"plain"

            # A new value in the FDL reaches the next Job once the dispatcher has reloaded the definitions.
            reloads = sum(1 for line in logged if line["event"] == "service definitions reloaded")
            embedded.write_fdl(SECOND_TOKEN)

            async def reloaded() -> bool:
                return sum(1 for line in logged if line["event"] == "service definitions reloaded") > reloads

            await until(reloaded, "the dispatcher reloading the definitions")
            await embedded.upload("keyed-in/c.txt", b"second")
            second = await until(
                partial(embedded.output, "keyed-out/c.txt.sha256"), "the output after the reload", within=60
            )
            assert second == digest(SECOND_TOKEN)

            async def all_recorded() -> list[str]:
                records = embedded.settings.storage.records_bucket
                found = embedded.s3.endpoint.client().list_objects(records, recursive=True)
                keys = [item.object_name or "" for item in found]
                return keys if sum(key.endswith("/status.json") for key in keys) == 3 else []

            record_keys = await until(all_recorded, "the three Jobs' records")
        records = embedded.settings.storage.records_bucket
        stored = [read_object(embedded.s3.endpoint, records, key) or b"" for key in record_keys]
    # The values reached the scripts and nothing else: not the executor's state (the Jobs as created,
    # their status, the pods' logs and files), not a record, not a log line.
    places = {
        **{
            f"state {path.relative_to(tmp_path)}": path.read_bytes()
            for path in state_files(tmp_path / "state")
        },
        **{f"record {key}": body for key, body in zip(record_keys, stored, strict=True)},
        "log lines": repr(logged).encode(),
    }
    assert any("manifest.json" in where for where in places)
    for where, content in places.items():
        for value in (FIRST_TOKEN, SECOND_TOKEN):
            assert value.encode() not in content, f"a secret value is in {where}"
            assert base64.b64encode(value.encode()) not in content, f"a secret value is in {where}"


def state_files(directory: Path) -> list[Path]:
    return [path for path in directory.rglob("*") if path.is_file() and not path.is_symlink()]


async def test_a_job_left_unfinished_by_a_previous_process_gets_its_secret_after_a_restart(
    amqp_names: AmqpNames, s3: S3Scope, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The executor runs the unfinished Jobs as it starts: it must hold the Secrets by then. (The pod's
    # stage-in usually outlasts the gap, so the output alone would rarely show a late hand-over.)
    known_at_start: list[set[str]] = []
    original_start = LocalExecutor.start

    async def start(self: LocalExecutor, *, count_jobs: bool = True) -> None:
        known_at_start.append(set(self._secrets))
        await original_start(self, count_jobs=count_jobs)

    monkeypatch.setattr(LocalExecutor, "start", start)
    # One pod at a time: a held `plain` Job keeps the `keyed` one waiting, unfinished, when serve stops.
    embedded = embedded_settings(amqp_names, s3, tmp_path, local_max_running=1)
    gate = tmp_path / "gate"
    embedded.write_fdl(FIRST_TOKEN, gate=str(gate))
    jobs = tmp_path / "state" / "jobs"

    def claimed(service: str) -> Any:
        async def check() -> bool:
            return any(path.name.startswith(f"{service}-") for path in jobs.glob("*"))

        return check

    async with serving(embedded):
        await embedded.upload("plain-in/held.txt", b"held")
        await until(claimed("plain"), "the plain Job claimed")
        await embedded.upload("keyed-in/waiting.txt", b"waiting")
        await until(claimed("keyed"), "the keyed Job claimed")
    assert await embedded.output("keyed-out/waiting.txt.sha256") is None

    gate.touch()
    async with serving(embedded):  # runs both Jobs again, in creation order
        done = await until(
            partial(embedded.output, "keyed-out/waiting.txt.sha256"), "the recovered Job's output", within=60
        )
    assert done == digest(FIRST_TOKEN)
    assert known_at_start == [{"bucketrun-keyed-secrets"}] * 2
