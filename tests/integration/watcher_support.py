"""Shared set-up of the watcher's integration tests: settings, hand-written Jobs, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika  # noqa: TID251 - the tests read the results exchange
from kubernetes_asyncio import client  # noqa: TID251 - the tests create and inspect Jobs

from dispatcher.domain.constants import (
    ANNOTATION_BUCKET,
    ANNOTATION_KEY,
    ANNOTATION_VERSION,
    LABEL_MANAGED_BY,
    LABEL_SERVICE,
    MANAGED_BY,
)
from dispatcher.runtime.settings import Settings
from tests.backends.kubernetes import KubeTestEnv, api_client_for
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.stack import DEFAULT_TIERS, amqp_settings, started, storage_settings
from watcher.app import WatcherState, run_watcher

FDL = """
functions:
  oscar:
  - c:
      name: upper
      image: busybox:1.36
      script: |
        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"
      input: [{storage_provider: minio, path: INPUT/in}]
      output: [{storage_provider: minio, path: INPUT/out}]
"""


def job_doc(name: str, *, exit_code: int = 0, service: str = "upper", key: str = "in/photo.txt") -> dict:
    """A minimal bucketrun-like Job: a `run` container that exits *exit_code*, a `stage-out` that reports
    one upload as the stager does."""
    upload = json.dumps({"event": "uploaded", "bucket": "outputs", "key": f"out/{name}.txt", "size": 3})
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SERVICE: service},
            "annotations": {ANNOTATION_BUCKET: "photos", ANNOTATION_KEY: key, ANNOTATION_VERSION: "v1"},
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"emulator.bucketrun.io/exit-code": str(exit_code)}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "run",
                            "image": "busybox:1.36",
                            "command": ["sh", "-c", f"echo running {name}; exit {exit_code}"],
                        },
                        {
                            "name": "stage-out",
                            "image": "bucketrun:test",
                            "command": ["sh", "-c", f"echo '{upload}'"],
                        },
                    ],
                },
            },
        },
    }


@dataclass
class WatcherEnv:
    """One test's servers and names."""

    settings: Settings
    names: AmqpNames
    kube: KubeTestEnv
    s3: S3Scope
    records_bucket: str
    results_queue: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def with_watcher(self, **changes: Any) -> Settings:
        """These settings with `watcher` fields changed (e.g. another identity)."""
        return self.settings.model_copy(update={"watcher": self.settings.watcher.model_copy(update=changes)})

    async def create_jobs(self, docs: list[dict]) -> None:
        async with await api_client_for(self.kube.kubeconfig) as api:
            batch = client.BatchV1Api(api)
            for doc in docs:
                await batch.create_namespaced_job(self.kube.namespace, doc)

    async def jobs(self) -> list[dict[str, Any]]:
        async with await api_client_for(self.kube.kubeconfig) as api:
            listed = await client.BatchV1Api(api).list_namespaced_job(
                self.kube.namespace, _preload_content=False
            )
            return (await listed.json())["items"]

    async def delete_job(self, name: str) -> None:
        async with await api_client_for(self.kube.kubeconfig) as api:
            await client.BatchV1Api(api).delete_namespaced_job(
                name, self.kube.namespace, propagation_policy="Background"
            )

    def record_versions(self) -> dict[str, list[str]]:
        """uid -> one entry per stored version of each status.json (counts record writes)."""
        minio = self.s3.endpoint.client()
        found: dict[str, list[str]] = {}
        for obj in minio.list_objects(self.records_bucket, recursive=True, include_version=True):
            if not (obj.object_name or "").endswith("/status.json"):
                continue
            response = minio.get_object(self.records_bucket, obj.object_name or "", version_id=obj.version_id)
            try:
                record = json.loads(response.read())
            finally:
                response.close()
                response.release_conn()
            found.setdefault(record["uid"], []).append(obj.object_name or "")
        return found

    async def drain_events(self) -> list[dict[str, Any]]:
        """Every completion event that reached the test queue so far (appended to `events`)."""
        connection = await aio_pika.connect(self.names.url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(self.results_queue, ensure=False)
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                body = json.loads(message.body)
                assert message.message_id == body["uid"]
                self.events.append(body)
        return self.events


async def bind_results_queue(names: AmqpNames, exchange: str, queue_name: str) -> None:
    """Declare the results exchange and a test queue bound to every service's events."""
    connection = await aio_pika.connect(names.url)
    async with connection:
        channel = await connection.channel()
        results = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(queue_name, durable=True)
        await queue.bind(results, routing_key="#")


def make_settings(
    names: AmqpNames,
    s3: S3Scope,
    kube: KubeTestEnv,
    fdl: Path,
    *,
    records_bucket: str,
    exchange: str,
    services: Sequence[str] = (),
    retry_tiers: Sequence[int] = DEFAULT_TIERS,
    **watcher: Any,
) -> Settings:
    """Settings for the dispatcher and the watcher on this test's servers, with short leases and waits;
    *services* and *retry_tiers* as `amqp_settings` takes them, *watcher* replacing `watcher` fields."""
    return Settings.load(
        amqp=amqp_settings(names, services=services, retry_tiers=retry_tiers),
        storage=storage_settings(s3.endpoint, records_bucket=records_bucket, records_prefix="records/"),
        cluster={"executor": "kubernetes", "namespace": kube.namespace, "kubeconfig": kube.kubeconfig},
        services={"paths": (fdl,)},
        dispatch={"retry_base_delay": 0.1, "max_retry_delay": 1.0, "drain_timeout": 5.0},
        watcher={
            "results_exchange": exchange,
            "lease_duration": 2.0,
            "lease_renew_period": 0.4,
            "identity": "watcher-a",
            "watch_timeout": 5,
            **watcher,
        },
        metrics={"host": "127.0.0.1", "port": 0},
    )


async def new_env(names: AmqpNames, s3: S3Scope, kube: KubeTestEnv, tmp_path: Path) -> WatcherEnv:
    inputs = s3.bucket("inputs")
    records = s3.bucket("records")
    s3.endpoint.client().set_bucket_versioning(records, _versioning_enabled())
    fdl = tmp_path / "services.yaml"
    # The paths only: the script's $INPUT_FILE_PATH holds the placeholder too.
    fdl.write_text(FDL.replace("path: INPUT/", f"path: {inputs}/"))
    exchange = names.exchange("results")
    queue = names.queue("results")
    await bind_results_queue(names, exchange, queue)
    settings = make_settings(names, s3, kube, fdl, records_bucket=records, exchange=exchange)
    return WatcherEnv(settings, names, kube, s3, records, queue)


def _versioning_enabled() -> Any:
    from minio.versioningconfig import ENABLED, VersioningConfig  # noqa: PLC0415, TID251

    return VersioningConfig(ENABLED)


def watcher(
    settings: Settings, state: WatcherState | None = None
) -> contextlib.AbstractAsyncContextManager[asyncio.Task[None]]:
    """A running watcher (ready), stopped cleanly at the end unless the test ended it already."""
    return started(partial(run_watcher, settings, state=state), "watcher")
