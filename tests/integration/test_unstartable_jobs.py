"""Jobs whose pod can never start end with a record that says why, instead of hanging (issue #17 item 4).

On the Kubernetes API (the emulator, whose kubelet keeps such containers waiting as a node does): a
service whose Secret was never applied (``CreateContainerConfigError``) and a service whose image cannot
be pulled (the emulator's image-pull fault) each get their Job recorded by the watcher with the pod's
reason within the configured bound, published once, and deleted with its pods; the capacity slot comes
back: with ``max_concurrent_jobs: 1`` the second event's Job is created only once the first is gone,
and the dispatcher's count of active Jobs drops to zero. Real RabbitMQ, the session's S3 server.

The local executor (embedded mode): a ``run`` container that cannot run (its Secret is missing) ends the
Job, because stage-out gives up after its run start bound, instead of hanging until the grants expire.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from kubernetes_asyncio import client, watch  # noqa: TID251 - the test watches the Jobs come and go

from dispatcher.adapters.kube import JobFeed, JobInformer, KubeApi
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.constants import LABEL_SERVICE
from dispatcher.domain.events import build_message, parse_message
from dispatcher.domain.jobs import JobIndex, finished_condition
from dispatcher.domain.outcome import classify
from dispatcher.executors.local.executor import LocalExecutor
from dispatcher.fdl import load_services_text
from dispatcher.process.app import run_dispatcher
from dispatcher.rendering.context import RenderSettings
from dispatcher.rendering.render import JobRenderer
from dispatcher.runtime.settings import StorageSettings
from tests.backends.kubernetes import KubeTestEnv, api_client_for
from tests.backends.s3 import S3Scope
from tests.integration.stack import notify_upload, started, until
from tests.integration.watcher_support import WatcherEnv, bind_results_queue, make_settings, watcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FDL = """
functions:
  oscar:
  - c:
      name: needs-secret
      image: busybox:1.36
      script: |
        echo "$TOKEN" > "$TMP_OUTPUT_DIR/out.txt"
      environment:
        secrets:
          TOKEN: never-applied
      input: [{storage_provider: minio, path: INPUT/secret}]
      output: [{storage_provider: minio, path: OUTPUT/out}]
      bucketrun: {max_concurrent_jobs: 1}
  - c:
      name: bad-image
      image: registry.invalid/tools/upper:1.0
      script: |
        cat "$INPUT_FILE_PATH"
      input: [{storage_provider: minio, path: INPUT/image}]
      bucketrun: {max_concurrent_jobs: 1}
"""
GRACE = 1.0
WITHIN = 60.0
KEYS = ("secret/a.txt", "secret/b.txt", "image/a.txt")


@dataclass
class Stuck:
    env: WatcherEnv
    inputs: str
    outputs: str


@pytest.fixture
async def stuck(amqp_names, s3, kube, tmp_path) -> Stuck:
    kube.require_control().set_kubelet("run", failing_images=["registry.invalid/*"])
    inputs, outputs, records = s3.bucket("inputs"), s3.bucket("outputs"), s3.bucket("records")
    s3.endpoint.client().set_bucket_versioning(records, _versioning_enabled())
    fdl = tmp_path / "services.yaml"
    fdl.write_text(FDL.replace("INPUT", inputs).replace("OUTPUT", outputs))
    exchange, queue = amqp_names.exchange("results"), amqp_names.queue("results")
    await bind_results_queue(amqp_names, exchange, queue)
    settings = make_settings(
        amqp_names,
        s3,
        kube,
        fdl,
        records_bucket=records,
        exchange=exchange,
        services=("needs-secret", "bad-image"),
        stuck_grace=GRACE,
        stuck_interval=0.2,
    )
    return Stuck(WatcherEnv(settings, amqp_names, kube, s3, records, queue), inputs, outputs)


def _versioning_enabled() -> Any:
    from minio.versioningconfig import ENABLED, VersioningConfig  # noqa: PLC0415, TID251

    return VersioningConfig(ENABLED)


def records(env: WatcherEnv, service: str) -> list[dict[str, Any]]:
    minio = env.s3.endpoint.client()
    found = []
    for obj in minio.list_objects(env.records_bucket, prefix=f"records/{service}/", recursive=True):
        if (obj.object_name or "").endswith("/status.json"):
            found.append(minio.get_object(env.records_bucket, obj.object_name or "").json())
    return found


async def watch_jobs(kube: KubeTestEnv, service: str, seen: list[tuple[str, str]]) -> None:
    """Append (event type, Job name) for each ADDED and DELETED Job of *service* until cancelled."""
    async with await api_client_for(kube.kubeconfig) as api:
        stream = watch.Watch().stream(
            client.BatchV1Api(api).list_namespaced_job,
            kube.namespace,
            label_selector=f"{LABEL_SERVICE}={service}",
            timeout_seconds=300,
        )
        async for event in stream:
            if event["type"] in ("ADDED", "DELETED"):
                seen.append((event["type"], event["object"].metadata.name))


async def test_jobs_whose_pods_cannot_start_are_recorded_deleted_and_give_their_slot_back(
    stuck: Stuck,
) -> None:
    env, control = stuck.env, stuck.env.kube.require_control()
    for key in KEYS:
        env.s3.endpoint.client().put_object(stuck.inputs, key, io.BytesIO(b"hello\n"), 6)
    seen: list[tuple[str, str]] = []
    watching = asyncio.create_task(watch_jobs(env.kube, "needs-secret", seen))
    api = await KubeApi.from_settings(env.settings.cluster)
    informer = JobInformer(JobFeed(api), JobIndex())  # the dispatcher's own count of active Jobs
    informer.start()
    try:
        await until(lambda: _true(control.open_watches() > 0), "the test's Job watch open")
        async with started(partial(run_dispatcher, env.settings), "dispatcher"), watcher(env.settings):
            await asyncio.wait_for(informer.wait_synced(), 10)
            for number, key in enumerate(KEYS, start=1):
                await notify_upload(
                    env.names.url,
                    env.settings.amqp.exchange,
                    env.s3.endpoint,
                    stuck.inputs,
                    key,
                    sequencer=f"{number}A",
                )

            async def all_recorded() -> bool:
                return len(records(env, "needs-secret")) == 2 and len(records(env, "bad-image")) == 1

            await until(all_recorded, "three records (two missing-Secret Jobs, one bad-image Job)", WITHIN)
            await until(_none_left(env), "every stuck Job deleted", WITHIN)
            async with asyncio.timeout(WITHIN):
                await informer.index.wait_until(
                    lambda: informer.index.active("needs-secret") == informer.index.active("bad-image") == 0
                )
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await informer.stop()
        await api.close()

    secret_records = records(env, "needs-secret")
    for record in secret_records:
        assert (record["outcome"], record["reason"], record["exit_code"]) == (
            "config-error",
            "CreateContainerConfigError",
            None,
        )
        assert "secret 'bucketrun-needs-secret-secrets' not found" in record["message"]
        assert record["outputs"] == []
    (image_record,) = records(env, "bad-image")
    assert image_record["outcome"] == "image-pull-failed"
    assert image_record["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "registry.invalid/tools/upper:1.0" in image_record["message"]
    assert not list(env.s3.endpoint.client().list_objects(stuck.outputs, recursive=True))

    # Exactly once, keyed on the UID: one status.json write and one completion event per Job.
    uids = {record["uid"] for record in [*secret_records, image_record]}
    assert {uid: len(keys) for uid, keys in env.record_versions().items()} == dict.fromkeys(uids, 1)
    events = await until(lambda: _events(env, 3), "three completion events")
    assert sorted(event["uid"] for event in events) == sorted(uids)
    assert {event["outcome"] for event in events} == {"config-error", "image-pull-failed"}

    # The slot came back: the second Job of the capped service was created once the first was deleted.
    first, second = (name for kind, name in seen if kind == "ADDED")
    assert seen == [("ADDED", first), ("DELETED", first), ("ADDED", second), ("DELETED", second)]


async def _true(value: bool) -> bool:
    return value


def _none_left(env: WatcherEnv) -> Any:
    async def check() -> bool:
        return not await env.jobs()

    return check


async def _events(env: WatcherEnv, count: int) -> list[dict[str, Any]] | None:
    events = await env.drain_events()
    return events if len(events) >= count else None


# -- the local executor -----------------------------------------------------------------------------------


async def test_a_local_run_container_that_cannot_run_ends_its_job(s3: S3Scope, tmp_path) -> None:
    inputs, outputs = s3.bucket("inputs"), s3.bucket("outputs")
    key = "secret/a.txt"
    s3.endpoint.client().put_object(inputs, key, io.BytesIO(b"hello\n"), 6)
    (service, _) = load_services_text(
        FDL.replace("INPUT", inputs).replace("OUTPUT", outputs), source="s.yaml", base_dir=tmp_path
    ).services
    (event,) = parse_message(
        build_message(event_name="s3:ObjectCreated:Put", bucket=inputs, key=key, etag="e" * 32, sequencer="1")
    )
    storage = Storage(
        StorageSettings(
            endpoint=s3.endpoint.endpoint,
            access_key=s3.endpoint.access_key,
            secret_key=s3.endpoint.secret_key,
            region=s3.endpoint.region,
            secure=s3.endpoint.secure,
        )
    )
    grants = storage.grants_for(service, inputs, key, expires=timedelta(hours=1))
    rendered = JobRenderer(RenderSettings(namespace="jobs", run_start_timeout=2)).render(
        service, event, grants
    )
    executor = LocalExecutor(tmp_path / "state", max_running=1, grace_seconds=0.5)
    await executor.start()
    try:
        # The service's Secret is never provided: the run container cannot run (ContainerCannotRun).
        await executor.ensure_config_map(rendered.config_map)
        began = time.monotonic()
        await executor.create_job(rendered.job)
        name, record = await asyncio.wait_for(_first_finished(executor), WITHIN)
        took = time.monotonic() - began
        stage_out_log = (executor.log_path(name, "stage-out") or tmp_path).read_text()
    finally:
        await executor.close()

    assert 2 <= took < WITHIN  # the run start bound, not the grants' hour
    assert finished_condition(record["job"]) == "Failed"
    (pod,) = record["pods"]
    states = {s["name"]: s["state"] for s in pod["status"]["containerStatuses"]}
    assert states["run"]["terminated"]["reason"] == "ContainerCannotRun"
    assert "secret 'bucketrun-needs-secret-secrets' not found" in states["run"]["terminated"]["message"]
    assert states["stage-out"]["terminated"]["exitCode"] == 4
    assert "the run container did not start within 2 s" in stage_out_log
    assert "nothing uploaded: the script never ran" in stage_out_log
    assert not list(s3.endpoint.client().list_objects(outputs, recursive=True))
    outcome = classify(record["job"], record["pods"])
    assert (outcome.kind.value, outcome.reason) == ("config-error", "ContainerCannotRun")


async def _first_finished(executor: LocalExecutor) -> tuple[str, Any]:
    iterator: AsyncIterator[tuple[str, Any]] = executor.finished()
    return await anext(iterator)
