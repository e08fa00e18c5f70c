"""What only a real control plane can show (issue #16 "Acceptance"): RBAC, PodSecurity and quota admission,
and Jobs ended the way the real Job controller, scheduler and kubelet end them.

1. RBAC: the dispatcher and the watcher run with ServiceAccount tokens bound only to deploy/kubernetes'
   Roles, straight at kube-apiserver (not the fault proxy, which would act as the admin): an upload
   becomes a Job, a pod on the node agent and a record, and nothing either process did was refused;
   the same tokens are refused (403) outside their Roles. `bucketrun api` likewise, with the token of
   bucketrun-api: every route that reaches the cluster answers as it should, and nothing else is allowed.
2. PodSecurity: in a namespace enforcing ``restricted``, a service with ``run_as_user`` gets its pod
   admitted (the Job controller records no FailedCreate) and run; one without (the script runs as its
   image's user, root included, as OSCAR runs it) is refused: the watcher finds the Job controller's
   FailedCreate Events, records the Job as ``pod-create-refused`` with the refusal well within the
   service's timeout, and deletes it, so its capacity slot comes back.
3. Quota: a ResourceQuota refusing the next Job makes the API server answer 403 "exceeded quota"; the
   event is neither acked as "exists" nor dead-lettered: it waits in a retry tier and becomes its Job
   once the quota frees.
4. Outcomes: a deadline, an OOM kill (a memory limit the node agent enforces by RSS), an image that
   cannot be pulled, a missing Secret and a cpu request no node has each end with the right record well
   within the service's timeout, and every capped service's slot comes back.

The emulator cannot show any of this (no admission, its own Job controller), so the module runs on a real
cluster only; RBAC needs the local control plane's ServiceAccount tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika  # noqa: TID251 - the test reads the dead-letter queue's depth
import pytest
import structlog
import yaml
from kubernetes_asyncio import client  # noqa: TID251 - the test plays the cluster's admin
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251

from dispatcher.adapters.kube import JobFeed, JobInformer, KubeApi
from dispatcher.domain.constants import ANNOTATION_KEY
from dispatcher.domain.jobs import JobIndex, finished_condition
from dispatcher.process.app import run_dispatcher
from dispatcher.runtime.settings import Settings
from tests.backends.kubernetes import KubeTestEnv, api_client_for
from tests.backends.local_kube import LocalClusterControl
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.deploy_support import KUSTOMIZE, load_documents
from tests.integration import api_calls
from tests.integration.stack import (
    amqp_settings,
    notify_upload,
    read_object,
    started,
    storage_settings,
    until,
)
from tests.integration.watcher_support import job_doc, make_settings
from watcher.app import run_watcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WITHIN = 60.0
"""Seconds any one wait of this module may take (a Job on the node agent takes a few)."""


@pytest.fixture
def real(kube: KubeTestEnv) -> KubeTestEnv:
    """The test's namespace, on a real cluster only."""
    if not kube.backend.real:
        pytest.skip(
            "needs a real control plane (admission plugins, the real Job controller and scheduler); "
            f"the backend is {kube.backend.name} (run `make servers`, unset BUCKETRUN_TEST_KUBE=emulator)"
        )
    return kube


def local_control(kube: KubeTestEnv) -> LocalClusterControl:
    """The local control plane's control, or skip: ServiceAccount tokens and the node agent are its."""
    if not isinstance(kube.control, LocalClusterControl):
        pytest.skip(f"needs the local control plane (`make servers`); the backend is {kube.backend.name}")
    return kube.control


@dataclass
class Env:
    """One test's servers, names and settings."""

    names: AmqpNames
    s3: S3Scope
    kube: KubeTestEnv
    inputs: str
    outputs: str
    records: str
    settings: Settings
    sequencer: int = 0x17A76FE05CF30000

    async def upload(self, key: str, body: bytes = b"hello\n") -> None:
        """Put *key* into the input bucket and publish MinIO's notification of it."""
        self.s3.endpoint.client().put_object(self.inputs, key, io.BytesIO(body), len(body))
        self.sequencer += 1
        await notify_upload(
            self.names.url,
            self.settings.amqp.exchange,
            self.s3.endpoint,
            self.inputs,
            key,
            sequencer=f"{self.sequencer:X}",
        )

    def records_of(self, service: str) -> list[dict[str, Any]]:
        """The service's job records (status.json) written so far."""
        minio = self.s3.endpoint.client()
        found = []
        for obj in minio.list_objects(self.records, prefix=f"records/{service}/", recursive=True):
            if (obj.object_name or "").endswith("/status.json"):
                raw = read_object(self.s3.endpoint, self.records, obj.object_name or "")
                if raw:
                    found.append(json.loads(raw))
        return found

    def explain(self, record: dict[str, Any]) -> str:
        """*record* and the logs it kept, for a failure message."""
        logs = {
            container: (read_object(self.s3.endpoint, self.records, key) or b"").decode(errors="replace")
            for container, key in record.get("logs", {}).items()
        }
        return json.dumps({"record": record, "logs": logs}, indent=1)

    async def jobs(self) -> list[dict[str, Any]]:
        """The namespace's Jobs, as the admin reads them."""
        async with await api_client_for(self.kube.kubeconfig) as api:
            listed = await client.BatchV1Api(api).list_namespaced_job(
                self.kube.namespace, _preload_content=False
            )
            items: list[dict[str, Any]] = (await listed.json())["items"]
            return items


def new_env(
    names: AmqpNames, s3: S3Scope, kube: KubeTestEnv, tmp_path: Path, *, fdl: str, services: tuple[str, ...]
) -> Env:
    """Buckets, the FDL (``IN_BUCKET``, ``OUT_BUCKET`` replaced by their names), settings with short waits."""
    inputs, outputs, records = s3.bucket("inputs"), s3.bucket("outputs"), s3.bucket("records")
    path = tmp_path / "services.yaml"
    path.write_text(fdl.replace("IN_BUCKET", inputs).replace("OUT_BUCKET", outputs))
    settings = make_settings(
        names,
        s3,
        kube,
        path,
        records_bucket=records,
        exchange=names.exchange("results"),
        services=services,
        retry_tiers=(1,),
        stuck_grace=1.0,
        stuck_interval=0.2,
    )
    return Env(names, s3, kube, inputs, outputs, records, settings)


def with_kubeconfig(settings: Settings, kubeconfig: Path) -> Settings:
    """*settings* reaching the cluster through *kubeconfig*."""
    return settings.model_copy(
        update={"cluster": settings.cluster.model_copy(update={"kubeconfig": kubeconfig})}
    )


def in_namespace(doc: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A deploy/kubernetes document moved to *namespace*, RoleBinding subjects included (``kubectl apply
    --namespace`` moves the objects but not the ServiceAccounts their subjects name)."""
    moved = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
    if doc["kind"] == "RoleBinding":
        moved["subjects"] = [{**subject, "namespace": namespace} for subject in doc["subjects"]]
    return moved


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog line the processes write during the test."""
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        yield lines


_REFUSED = re.compile(r"HTTP 403\b|\(403\)|\bforbidden\b", re.IGNORECASE)
"""How a refused API call reads in a log line: the adapter's ``HTTP 403``, the client's ``(403)``, the API
server's ``forbidden`` (not a bare ``403``, which a UID or an event id may hold)."""


def refusals(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log lines that report a refused API call."""
    return [line for line in lines if _REFUSED.search(str(line))]


# -- 1. RBAC --------------------------------------------------------------------------------------------

RBAC_FDL = """
functions:
  oscar:
  - c:
      name: upper
      image: busybox:1.36
      script: |
        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"
      input: [{storage_provider: minio, path: IN_BUCKET/in}]
      output: [{storage_provider: minio, path: OUT_BUCKET/out}]
"""
STUCK_FDL = """
  - c:
      name: bad-image
      image: registry.invalid/tools/upper:1.0
      script: |
        cat "$INPUT_FILE_PATH"
      input: [{storage_provider: minio, path: IN_BUCKET/image}]
"""


async def test_dispatcher_and_watcher_run_with_their_service_account_tokens_only(
    amqp_names, s3, real, tmp_path, logs
) -> None:
    control = local_control(real)
    plane, namespace = control.plane, real.namespace
    documents = [
        in_namespace(doc, namespace)
        for name in ("serviceaccounts.yaml", "rbac.yaml")
        for doc in load_documents(KUSTOMIZE / "base" / name)
    ]
    await asyncio.to_thread(plane.kubectl, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    dispatcher_config, watcher_config = [
        await asyncio.to_thread(plane.service_account_kubeconfig, namespace, f"bucketrun-{name}", 600)
        for name in ("dispatcher", "watcher")
    ]
    assert plane.api_url in dispatcher_config.read_text()  # straight at kube-apiserver, past the proxy
    # A second service whose image cannot be pulled: the watcher also records and deletes a stuck Job.
    control.set_kubelet("run", failing_images=["registry.invalid/*"])
    env = new_env(amqp_names, s3, real, tmp_path, fdl=RBAC_FDL + STUCK_FDL, services=("upper", "bad-image"))

    async with (
        started(partial(run_dispatcher, with_kubeconfig(env.settings, dispatcher_config)), "dispatcher"),
        started(partial(run_watcher, with_kubeconfig(env.settings, watcher_config)), "watcher"),
    ):
        await env.upload("in/a.txt", b"rbac for real\n")
        await env.upload("image/a.txt")
        (record,) = await until(lambda: _some(env.records_of("upper")), "the job record", WITHIN)
        (stuck,) = await until(lambda: _some(env.records_of("bad-image")), "the stuck Job's record", WITHIN)
        await until(partial(_job_count, env, 1), "the stuck Job deleted by the watcher", WITHIN)
        output = read_object(env.s3.endpoint, env.outputs, "out/out.txt")

    assert record["outcome"] == "succeeded", env.explain(record)
    assert stuck["outcome"] == "image-pull-failed", env.explain(stuck)
    # The watcher read the pods' logs (pods/log) with its token.
    assert set(record["logs"]) == {"stage-in", "run", "stage-out"}, env.explain(record)
    assert not record["logs_missing"], env.explain(record)
    assert output == b"RBAC FOR REAL\n"
    assert logs, "no log line captured: the refusal check below would prove nothing"
    assert not refusals(logs), refusals(logs)

    # The same tokens, outside their Roles.
    outside = {
        dispatcher_config: [
            ("list secrets", lambda api: client.CoreV1Api(api).list_namespaced_secret(namespace)),
            ("create pods", lambda api: client.CoreV1Api(api).create_namespaced_pod(namespace, _POD)),
            (
                "delete configmaps",
                lambda api: client.CoreV1Api(api).delete_collection_namespaced_config_map(namespace),
            ),
            ("delete jobs", lambda api: client.BatchV1Api(api).delete_collection_namespaced_job(namespace)),
        ],
        watcher_config: [
            ("list secrets", lambda api: client.CoreV1Api(api).list_namespaced_secret(namespace)),
            ("create jobs", lambda api: client.BatchV1Api(api).create_namespaced_job(namespace, _JOB)),
            ("create pods", lambda api: client.CoreV1Api(api).create_namespaced_pod(namespace, _POD)),
            ("list configmaps", lambda api: client.CoreV1Api(api).list_namespaced_config_map(namespace)),
            # Events: list only (the refused-Job sweep), never write or delete.
            (
                "delete events",
                lambda api: client.CoreV1Api(api).delete_collection_namespaced_event(namespace),
            ),
        ],
    }
    for kubeconfig, calls in outside.items():
        async with await api_client_for(kubeconfig) as api:
            for what, call in calls:
                with pytest.raises(ApiException) as refused:
                    await call(api)
                assert refused.value.status == 403, f"{kubeconfig.name}: {what}: {refused.value}"


async def test_the_api_runs_with_its_service_account_token_only(amqp_names, s3, real, logs) -> None:
    control = local_control(real)
    if s3.endpoint.notify_arn is None:
        pytest.skip("creating a service needs MinIO's AMQP notifications (moto has none): run make servers")
    plane, namespace = control.plane, real.namespace
    documents = [
        in_namespace(doc, namespace)
        for name in ("serviceaccounts.yaml", "rbac.yaml")
        for doc in load_documents(KUSTOMIZE / "base" / name)
    ]
    await asyncio.to_thread(plane.kubectl, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    api_config = await asyncio.to_thread(plane.service_account_kubeconfig, namespace, "bucketrun-api", 600)
    assert plane.api_url in api_config.read_text()  # straight at kube-apiserver, past the proxy
    control.set_kubelet("run")
    settings = Settings.load(
        amqp=amqp_settings(amqp_names, services=(api_calls.SERVICE,)),
        storage=storage_settings(
            s3.endpoint, records_bucket=s3.bucket("records", create=False), notify_arn=s3.endpoint.notify_arn
        ),
        cluster={"executor": "kubernetes", "namespace": namespace, "kubeconfig": real.kubeconfig},
    )
    # A finished Job of the service, made by the admin: the API lists it, reads its log and deletes it.
    async with await api_client_for(real.kubeconfig) as admin:
        await client.BatchV1Api(admin).create_namespaced_job(namespace, job_doc(api_calls.JOB))
    await until(partial(_job_finished, real, api_calls.JOB), f"Job {api_calls.JOB} finished", WITHIN)

    async with api_calls.api_client(
        with_kubeconfig(settings, api_config), api_calls.api_settings(s3)
    ) as http:
        await api_calls.call_every_cluster_route(http, s3.bucket("io", create=False))

    assert logs, "no log line captured: the refusal check below would prove nothing"
    assert not refusals(logs), refusals(logs)
    async with await api_client_for(real.kubeconfig) as admin:
        # The dispatcher's source of the API's services, written with the API's token.
        await client.CoreV1Api(admin).read_namespaced_secret(api_calls.SERVICES_SECRET, namespace)

    # The same token, outside its Role: no Job or pod is created, no Secret listed (each is read by name),
    # no Job patched (that is the watcher's annotation), no Event read.
    outside = [
        ("list secrets", lambda api: client.CoreV1Api(api).list_namespaced_secret(namespace)),
        ("create jobs", lambda api: client.BatchV1Api(api).create_namespaced_job(namespace, _JOB)),
        ("create pods", lambda api: client.CoreV1Api(api).create_namespaced_pod(namespace, _POD)),
        (
            "patch jobs",
            lambda api: client.BatchV1Api(api).patch_namespaced_job("any", namespace, {"metadata": {}}),
        ),
        ("list events", lambda api: client.CoreV1Api(api).list_namespaced_event(namespace)),
        ("list leases", lambda api: client.CoordinationV1Api(api).list_namespaced_lease(namespace)),
    ]
    async with await api_client_for(api_config) as api:
        for what, call in outside:
            with pytest.raises(ApiException) as refused:
                await call(api)
            assert refused.value.status == 403, f"{what}: {refused.value}"


async def _job_finished(kube: KubeTestEnv, name: str) -> bool:
    """Whether the Job *name* has its Complete or Failed condition, as the admin reads it."""
    async with await api_client_for(kube.kubeconfig) as api:
        job = await client.BatchV1Api(api).read_namespaced_job(name, kube.namespace, _preload_content=False)
        return finished_condition(await job.json()) is not None


_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "not-allowed"},
    "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
}
_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "not-allowed"},
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [_POD["spec"]["containers"][0]]}}},
}


async def _some(found: list[Any]) -> list[Any] | None:
    return found or None


# -- 2. PodSecurity -------------------------------------------------------------------------------------

RESTRICTED_FDL = """
functions:
  oscar:
  - c:
      name: nonroot
      image: busybox:1.36
      script: |
        id -u > "$TMP_OUTPUT_DIR/uid.txt"
      input: [{storage_provider: minio, path: IN_BUCKET/in}]
      output: [{storage_provider: minio, path: OUT_BUCKET/out}]
      bucketrun: {run_as_user: 1000}
  - c:
      name: image-user
      image: busybox:1.36
      script: |
        id -u
      input: [{storage_provider: minio, path: IN_BUCKET/root}]
      bucketrun: {timeout: 40, max_concurrent_jobs: 1}
"""
REFUSED_TIMEOUT = 40
"""The refused service's timeout (activeDeadlineSeconds): its record must come well before it."""
RESTRICTED = "pod-security.kubernetes.io/enforce"


async def test_jobs_with_run_as_user_are_admitted_under_pod_security_restricted(
    amqp_names, s3, real, tmp_path
) -> None:
    """A service with run_as_user runs; one without is refused by PodSecurity, and the watcher ends its
    Job (recorded with the refusal, deleted) before the service's timeout."""
    namespace = real.namespace
    async with await api_client_for(real.kubeconfig) as api:
        await client.CoreV1Api(api).patch_namespace(
            namespace, {"metadata": {"labels": {RESTRICTED: "restricted"}}}
        )
    env = new_env(amqp_names, s3, real, tmp_path, fdl=RESTRICTED_FDL, services=("nonroot", "image-user"))

    async with (
        job_informer(env.settings) as informer,
        started(partial(run_dispatcher, env.settings), "dispatcher"),
        started(partial(run_watcher, env.settings), "watcher"),
    ):
        await env.upload("in/a.txt")
        began = time.monotonic()
        await env.upload("root/a.txt")
        (record,) = await until(lambda: _some(env.records_of("nonroot")), "the job record", WITHIN)
        (as_image_user,) = await until(
            lambda: _some(env.records_of("image-user")), "the refused Job's record", REFUSED_TIMEOUT
        )
        took = time.monotonic() - began
        async with asyncio.timeout(WITHIN):
            await informer.index.wait_until(lambda: informer.index.active("image-user") == 0)
        await until(partial(_job_count, env, 1), "the refused Job deleted by the watcher", WITHIN)
        freed = time.monotonic() - began

    assert record["outcome"] == "succeeded", env.explain(record)
    async with await api_client_for(real.kubeconfig) as api:
        events = await client.CoreV1Api(api).list_namespaced_event(namespace, _preload_content=False)
        refused = {
            e["involvedObject"]["name"]: e["message"]
            for e in (await events.json())["items"]
            if e["reason"] == "FailedCreate"
        }
        pods = await client.CoreV1Api(api).list_namespaced_pod(namespace, _preload_content=False)
        (pod,) = (await pods.json())["items"]
    assert record["job"] not in refused, refused
    assert pod["metadata"]["labels"]["job-name"] == record["job"]
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    (run,) = [c for c in pod["spec"]["containers"] if c["name"] == "run"]
    assert (run["securityContext"]["runAsUser"], run["securityContext"]["runAsNonRoot"]) == (1000, True)
    # Without run_as_user the script runs as its image's user, root included (OSCAR images expect it):
    # restricted refuses that pod; the Job, which never gets one, is recorded with the controller's
    # refusal and deleted by the watcher before its deadline.
    assert 'violates PodSecurity "restricted:latest"' in refused[as_image_user["job"]], refused
    assert 'container "run" must set securityContext.runAsNonRoot=true' in refused[as_image_user["job"]]
    got = (as_image_user["outcome"], as_image_user["reason"])
    assert got == ("pod-create-refused", "FailedCreate"), env.explain(as_image_user)
    assert 'violates PodSecurity "restricted:latest"' in as_image_user["message"], as_image_user
    assert freed < REFUSED_TIMEOUT, f"{freed:.1f} s to the slot back, the timeout is {REFUSED_TIMEOUT} s"
    print(f"refused Job: recorded {took:.1f} s after its upload, deleted (slot back) after {freed:.1f} s")


# -- 3. Quota -------------------------------------------------------------------------------------------


async def test_a_job_refused_by_quota_waits_in_a_retry_tier_until_the_quota_frees(
    amqp_names, s3, real, tmp_path, logs
) -> None:
    control = real.require_control()
    namespace = real.namespace
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "one-job"},
        "spec": {"hard": {"count/jobs.batch": "1"}},
    }
    async with await api_client_for(real.kubeconfig) as api:
        core = client.CoreV1Api(api)
        await core.create_namespaced_resource_quota(namespace, quota)

        async def quota_counted() -> bool:
            # Until the quota controller has filled in status.hard, admission refuses every Job.
            found = await core.read_namespaced_resource_quota("one-job", namespace)
            return bool(found.status and found.status.hard)

        await until(quota_counted, "the ResourceQuota's status computed")
    env = new_env(amqp_names, s3, real, tmp_path, fdl=RBAC_FDL, services=("upper",))

    async with started(partial(run_dispatcher, env.settings), "dispatcher"):
        await env.upload("in/a.txt")
        await until(partial(_job_count, env, 1), "the first Job")
        await env.upload("in/b.txt")

        async def refused_twice() -> bool:
            # Twice: the event came back from its retry tier and was refused again.
            return control.request_count(verb="create", resource="jobs", namespace=namespace, code=403) >= 2

        await until(refused_twice, "the second Job refused by quota (403), twice", WITHIN)
        (first,) = await env.jobs()
        assert first["metadata"]["annotations"][ANNOTATION_KEY] == "in/a.txt"
        assert await _dead_lettered(env) == 0

        # The quota frees: the first Job goes, and the waiting event becomes its Job.
        async with await api_client_for(real.kubeconfig) as api:
            await client.BatchV1Api(api).delete_namespaced_job(
                first["metadata"]["name"], namespace, propagation_policy="Background"
            )

        async def second_job() -> bool:
            return [job["metadata"]["annotations"][ANNOTATION_KEY] for job in await env.jobs()] == [
                "in/b.txt"
            ]

        await until(second_job, "the second Job, once the quota freed", WITHIN)
    assert await _dead_lettered(env) == 0
    assert control.request_count(verb="create", resource="jobs", namespace=namespace, code=201) == 2
    assert not [line for line in logs if line["event"] == "job exists"], "a refused create taken for exists"
    retried = [line for line in logs if line.get("kind") == "api-quota"]
    assert retried, "no retry of kind api-quota logged"
    assert {line["key"] for line in retried} == {"in/b.txt"}


async def _job_count(env: Env, count: int) -> bool:
    return len(await env.jobs()) == count


async def _dead_lettered(env: Env) -> int:
    """Messages in the test's dead-letter queue."""
    connection = await aio_pika.connect(env.names.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(env.settings.amqp.dead_letter_queue, passive=True)
        return int(queue.declaration_result.message_count or 0)


# -- 4. Outcomes ----------------------------------------------------------------------------------------

TIMEOUT = 30
"""The services' timeout (activeDeadlineSeconds) where the deadline is not what is tested."""
OUTCOMES_FDL = f"""
functions:
  oscar:
  - c:
      name: deadline
      image: busybox:1.36
      script: |
        sleep 120
      input: [{{storage_provider: minio, path: IN_BUCKET/deadline}}]
      bucketrun: {{timeout: 3, max_concurrent_jobs: 1}}
  - c:
      name: oom
      image: python:3.11
      memory: 64Mi
      script: |
        python3 -c 'import time; block = b"x" * (400 << 20); time.sleep(120)'
      input: [{{storage_provider: minio, path: IN_BUCKET/oom}}]
      bucketrun: {{timeout: {TIMEOUT}, max_concurrent_jobs: 1}}
  - c:
      name: bad-image
      image: registry.invalid/tools/upper:1.0
      script: |
        cat "$INPUT_FILE_PATH"
      input: [{{storage_provider: minio, path: IN_BUCKET/image}}]
      bucketrun: {{timeout: {TIMEOUT}, max_concurrent_jobs: 1}}
  - c:
      name: needs-secret
      image: busybox:1.36
      script: |
        echo "$TOKEN"
      environment:
        secrets:
          TOKEN: never-applied
      input: [{{storage_provider: minio, path: IN_BUCKET/secret}}]
      bucketrun: {{timeout: {TIMEOUT}, max_concurrent_jobs: 1}}
  - c:
      name: too-big
      image: busybox:1.36
      cpu: "512"
      script: |
        cat "$INPUT_FILE_PATH"
      input: [{{storage_provider: minio, path: IN_BUCKET/big}}]
      bucketrun: {{timeout: {TIMEOUT}, max_concurrent_jobs: 1}}
"""
EXPECTED = {
    "deadline": ("deadline-exceeded", {"DeadlineExceeded"}),
    "oom": ("oom-killed", {"OOMKilled"}),
    "bad-image": ("image-pull-failed", {"ErrImagePull", "ImagePullBackOff"}),
    "needs-secret": ("config-error", {"CreateContainerConfigError"}),
    "too-big": ("unschedulable", {"Unschedulable"}),
}
"""Service -> (recorded outcome, the reasons Kubernetes may give it)."""
KEYS = {
    "deadline": "deadline/a.txt",
    "oom": "oom/a.txt",
    "bad-image": "image/a.txt",
    "needs-secret": "secret/a.txt",
    "too-big": "big/a.txt",
}


@contextlib.asynccontextmanager
async def job_informer(settings: Settings) -> AsyncIterator[JobInformer]:
    """The dispatcher's own count of active Jobs per service (a JobInformer on the test's namespace)."""
    api = await KubeApi.from_settings(settings.cluster)
    watching = JobInformer(JobFeed(api), JobIndex())
    watching.start()
    try:
        await asyncio.wait_for(watching.wait_synced(), 10)
        yield watching
    finally:
        await watching.stop()
        await api.close()


async def test_jobs_end_with_the_outcome_the_real_controllers_give_them(
    amqp_names, s3, real, tmp_path
) -> None:
    local_control(real).set_kubelet("run", failing_images=["registry.invalid/*"])
    env = new_env(amqp_names, s3, real, tmp_path, fdl=OUTCOMES_FDL, services=tuple(EXPECTED))
    took: dict[str, float] = {}

    async with (
        job_informer(env.settings) as informer,
        started(partial(run_dispatcher, env.settings), "dispatcher"),
        started(partial(run_watcher, env.settings), "watcher"),
    ):
        began = time.monotonic()
        for key in KEYS.values():
            await env.upload(key)

        async def all_recorded() -> dict[str, dict[str, Any]] | None:
            for service in EXPECTED:
                if service not in took and env.records_of(service):
                    took[service] = time.monotonic() - began
            return {s: env.records_of(s)[0] for s in EXPECTED} if len(took) == len(EXPECTED) else None

        found = await until(all_recorded, f"a record of each of {sorted(EXPECTED)}", TIMEOUT)
        async with asyncio.timeout(WITHIN):
            await informer.index.wait_until(lambda: all(informer.index.active(s) == 0 for s in EXPECTED))

    got = {service: (record["outcome"], record["reason"]) for service, record in found.items()}
    wrong = {
        service: found[service]
        for service, (outcome, reasons) in EXPECTED.items()
        if got[service][0] != outcome or got[service][1] not in reasons
    }
    assert not wrong, f"expected {EXPECTED}, got {got}: " + "\n".join(map(env.explain, wrong.values()))
    assert found["oom"]["exit_code"] == 137, found["oom"]
    assert "registry.invalid/tools/upper:1.0" in found["bad-image"]["message"]
    assert "bucketrun-needs-secret-secrets" in found["needs-secret"]["message"]
    assert all(seconds < TIMEOUT for seconds in took.values()), took
    print(f"seconds from upload to record: { {s: round(t, 1) for s, t in sorted(took.items())} }")
