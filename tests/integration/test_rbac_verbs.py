"""The Roles of deploy/kubernetes grant exactly what bucketrun's code calls: no more, no less.

Each component's real code runs against the Kubernetes API emulator, one at a time, and the emulator's
request counters (every /api and /apis request, as verb, resource, subresource and namespace, the way
the apiserver's RBAC sees it: GET item = get, GET collection = list, ?watch = watch, POST = create,
PUT = update, PATCH = patch, DELETE = delete, pods/log a resource of its own) give what it used:

1. the dispatcher turns a MinIO event into a Job (ConfigMap, Job, the Job informer's list + watch);
2. the watcher leads through the Lease (create, get, renew, release), records the finished Job
   (list + watch Jobs, list its pods, read its logs, annotate it) and ends a Job whose pod can never
   start (list the Pending pods, get the Job, record it, delete it); each of those looks also lists the
   Job controller's FailedCreate Events (list events);
3. `bucketrun jobs list|show|logs` read the cluster as an operator does (Role `bucketrun-operator`),
   with a finished Job and one still pending (its pods are listed);
4. `bucketrun jobs delete` ends them (Role `bucketrun-jobs-admin`): a service's Jobs by status, which
   skips the pending one, then that one by name with --force;
5. `bucketrun services apply|list|delete` manage the services' ConfigMaps and Secrets (Role
   `bucketrun-admin`): apply creates, finds unchanged and replaces an outdated ConfigMap, creates and
   updates a Secret, list reads, delete removes both;
6. `bucketrun api` (Role `bucketrun-api`), every route that reaches the cluster (tests/integration/
   api_calls.py): a service with a secret created, read, updated, its Job listed, logged and deleted,
   an invocation, the service removed.

Used must equal granted, per Role; the failure message lists both differences.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika  # noqa: TID251 - the test plays MinIO: it publishes the bucket notification
import pytest

from bucketrun.admin.commands import EXIT_OK, apply_services, delete_services, list_services
from bucketrun.admin.jobs import EXIT_SKIPPED, delete_jobs
from bucketrun.cli.jobs import job_logs, list_jobs, show_job
from dispatcher.domain.events import build_message
from dispatcher.process.app import run_dispatcher
from dispatcher.runtime.settings import Settings
from tests.backends.kubernetes import KubeTestEnv
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.deploy_support import KUSTOMIZE, load_documents
from tests.integration import api_calls
from tests.integration.stack import amqp_settings, started, storage_settings, until
from tests.integration.watcher_support import FDL, job_doc, make_settings
from tests.k8s_emulator import EmulatorControl
from tests.k8s_emulator.resources import by_plural
from watcher.app import run_watcher

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Permission = tuple[str, str, str]
"""(API group, resource[/subresource], verb), as an RBAC rule names it."""


def granted(role: str) -> set[Permission]:
    """What Role *role* of deploy/kubernetes/base/rbac.yaml allows (resourceNames aside)."""
    (found,) = [
        doc
        for doc in load_documents(KUSTOMIZE / "base" / "rbac.yaml")
        if doc["kind"] == "Role" and doc["metadata"]["name"] == role
    ]
    return {
        (group, resource, verb)
        for rule in found["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def used(control: EmulatorControl, namespace: str) -> set[Permission]:
    """Every permission the requests in *namespace* needed since the last `reset_stats`."""
    permissions = set()
    for row in control.stats():
        if row["namespace"] != namespace or not row["resource"]:
            continue
        resource = row["resource"] + (f"/{row['subresource']}" if row["subresource"] else "")
        permissions.add((by_plural(row["resource"]).group, resource, row["verb"]))
    return permissions


def assert_same(role: str, calls: set[Permission]) -> None:
    grants = granted(role)
    missing, unused = sorted(calls - grants), sorted(grants - calls)
    difference = f"Role {role}: called but not granted {missing}; granted but never called {unused}"
    assert not missing, difference
    assert not unused, difference


def count(
    control: EmulatorControl, namespace: str, verb: str, resource: str, **extra: Any
) -> Callable[[], Any]:
    async def check() -> int:
        return control.request_count(verb=verb, resource=resource, namespace=namespace, **extra)

    return check


def _watching(control: EmulatorControl) -> Callable[[], Any]:
    async def check() -> bool:
        return control.open_watches() > 0

    return check


def settings_for(names: AmqpNames, s3: S3Scope, kube: KubeTestEnv, fdl: Path, records: str) -> Settings:
    return make_settings(
        names,
        s3,
        kube,
        fdl,
        records_bucket=records,
        exchange=names.exchange("results"),
        services=("upper",),
        retry_tiers=(1,),
        lease_renew_period=0.3,
        identity="rbac-watcher",
        stuck_grace=0.5,
        stuck_interval=0.2,
    )


async def publish(settings: Settings, body: bytes) -> None:
    connection = await aio_pika.connect(settings.amqp.url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.amqp.exchange)
        await exchange.publish(aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT), "")


async def test_each_role_grants_exactly_what_its_code_calls(amqp_names, s3, kube, tmp_path) -> None:
    control = kube.require_control()
    control.set_kubelet("instant")  # pods finish at once (exit 0): the Job completes for the watcher
    namespace = kube.namespace
    inputs, records = s3.bucket("inputs"), s3.bucket("records")
    fdl = tmp_path / "services.yaml"
    # With a secret: its Jobs reference the service's Secret, yet no component reads or writes Secrets.
    # With a cap: the dispatcher lists and watches the Jobs only while some service has one.
    fdl.write_text(
        FDL.replace("INPUT", inputs)
        + "      environment:\n        secrets:\n          TOKEN: x1\n"
        + "      bucketrun:\n        max_concurrent_jobs: 100\n"
    )
    settings = settings_for(amqp_names, s3, kube, fdl, records)

    # 1. The dispatcher: an event becomes a ConfigMap and a Job; the informer lists and watches Jobs.
    control.reset_stats()
    async with started(partial(run_dispatcher, settings), "dispatcher"):
        await publish(
            settings,
            build_message(
                event_name="s3:ObjectCreated:Put",
                bucket=inputs,
                key="in/a.txt",
                etag="e" * 32,
                sequencer="1A",
            ),
        )
        await until(count(control, namespace, "create", "jobs", code=201), "the Job created")
        await until(_watching(control), "the dispatcher's Job watch open")
    # A watch is counted when its stream ends, here when the dispatcher stops.
    await until(count(control, namespace, "watch", "jobs"), "the dispatcher's Job watch counted")
    assert_same("bucketrun-dispatcher", used(control, namespace))

    # 2. The watcher: leads through the Lease, records the finished Job, ends a Job whose image cannot
    # be pulled (the emulator's image-pull fault holds its pod Pending), releases the Lease on stop.
    name = await _only_job_name(settings)
    await _create_stuck_job(settings, control)
    control.reset_stats()
    async with started(partial(run_watcher, settings), "watcher"):
        await until(partial(_recorded, control, namespace, name), f"Job {name} annotated as recorded")
        await until(count(control, namespace, "patch", "jobs", code=200), "the Job annotated as recorded")
        await until(count(control, namespace, "update", "leases", code=200), "a Lease renewal")
        await until(count(control, namespace, "delete", "jobs", code=200), "the stuck Job deleted")
    await until(count(control, namespace, "watch", "jobs"), "the watcher's Job watch counted")
    assert_same("bucketrun-watcher", used(control, namespace))
    assert control.request_count(verb="get", resource="pods", subresource="log", namespace=namespace)

    # 3. The operator's read-only commands, with the Job still in the cluster, and one that cannot start.
    assert await _only_job_name(settings) == name
    control.set_kubelet("off")
    await _create_job(settings, job_doc("never-runs"))
    control.reset_stats()
    listing, code = await list_jobs(settings)
    assert code == 0
    assert name in listing
    assert any(line.split()[:3] == ["never-runs", "upper", "pending"] for line in listing.splitlines())
    shown, code = await show_job(settings, name)
    assert code == 0
    assert json.loads(shown)["job"] == name
    _, code = await job_logs(settings, name)
    assert code == 0
    assert await job_logs(settings, "never-runs") == (
        "error: Job 'never-runs' has no log of run yet: no container of it has started",
        1,
    )
    assert_same("bucketrun-operator", used(control, namespace))

    # 4. Deleting: the service's Jobs of any status (the pending one is skipped), then that one, forced.
    control.reset_stats()
    out: list[str] = []
    assert await delete_jobs(settings, service="upper", status="all", emit=out.append) == ("", EXIT_SKIPPED)
    assert f"delete job {name} (succeeded)" in out, out
    assert await delete_jobs(settings, ["never-runs"], force=True, emit=out.append) == ("", 0)
    assert "delete job never-runs (unfinished)" in out, out
    assert control.request_count(verb="delete", resource="jobs", namespace=namespace, code=200) == 2
    assert_same("bucketrun-jobs-admin", used(control, namespace))


async def test_the_admin_role_grants_exactly_what_services_apply_list_delete_call(s3, kube, tmp_path) -> None:
    control = kube.require_control()
    namespace = kube.namespace
    inputs, records = s3.bucket("inputs", create=False), s3.bucket("records", create=False)
    fdl = tmp_path / "services.yaml"
    secrets = "      environment:\n        secrets:\n          TOKEN: {}\n"
    fdl.write_text(FDL.replace("INPUT", inputs) + secrets.format("first-value"))
    settings = Settings.load(
        storage=storage_settings(s3.endpoint, records_bucket=records),
        cluster={"executor": "kubernetes", "namespace": namespace, "kubeconfig": kube.kubeconfig},
    )
    # The cluster verbs do not depend on the store taking MinIO's ARN (moto refuses it): leave the
    # notifications out, so the commands run the same on every S3 backend.
    apply = partial(apply_services, settings, [fdl], skip_notifications=True)
    calls: set[Permission] = set()

    # Apply on an empty namespace: reads the ConfigMap and the Secret (404), creates them.
    control.reset_stats()
    out: list[str] = []
    assert await apply(emit=out.append) == ("", EXIT_OK)
    (config_map,) = [line.split()[-1] for line in out if line.startswith("create configmap ")]
    calls |= used(control, namespace)

    # Apply over an outdated ConfigMap of that name (immutable): reads it, deletes it, creates it again.
    await _tamper_with(settings, config_map)
    control.reset_stats()
    out.clear()
    assert await apply(emit=out.append) == ("", EXIT_OK)
    assert any(line.startswith(f"replace configmap {config_map}") for line in out), out
    calls |= used(control, namespace)

    # Apply with a new secret value: reads the Secret, updates it.
    fdl.write_text(FDL.replace("INPUT", inputs) + secrets.format("second-value"))
    control.reset_stats()
    out.clear()
    assert await apply(emit=out.append) == ("", EXIT_OK)
    assert "update secret bucketrun-upper-secrets: change TOKEN" in out, out
    calls |= used(control, namespace)

    # List (against the FDL too), then delete by name: both find bucketrun's ConfigMaps by label and
    # read the services' Secrets by name.
    control.reset_stats()
    out.clear()
    assert await list_services(settings, [fdl], emit=out.append) == ("", EXIT_OK)
    assert any(line.startswith("upper") for line in out), out
    out.clear()
    assert await delete_services(settings, ["upper"], [], emit=out.append) == ("", EXIT_OK)
    assert f"delete configmap {config_map}" in out, out
    assert "delete secret bucketrun-upper-secrets" in out, out
    calls |= used(control, namespace)

    assert_same("bucketrun-admin", calls)


async def test_the_api_role_grants_exactly_what_its_routes_call(amqp_names, s3, kube) -> None:
    if s3.endpoint.notify_arn is None:
        pytest.skip("creating a service needs MinIO's AMQP notifications (moto has none): run make servers")
    control = kube.require_control()
    control.set_kubelet("run")
    namespace = kube.namespace
    settings = Settings.load(
        amqp=amqp_settings(amqp_names, services=(api_calls.SERVICE,)),
        storage=storage_settings(
            s3.endpoint, records_bucket=s3.bucket("records", create=False), notify_arn=s3.endpoint.notify_arn
        ),
        cluster={"executor": "kubernetes", "namespace": namespace, "kubeconfig": kube.kubeconfig},
    )
    # A finished Job of the service, made by the test (as the admin) before the API's calls are counted.
    await _create_job(settings, job_doc(api_calls.JOB))
    await until(partial(_finished, settings, api_calls.JOB), f"Job {api_calls.JOB} finished", 60)

    control.reset_stats()
    async with api_calls.api_client(settings, api_calls.api_settings(s3)) as http:
        await api_calls.call_every_cluster_route(http, s3.bucket("io", create=False))
    assert_same("bucketrun-api", used(control, namespace))


async def _finished(settings: Settings, name: str) -> bool:
    from dispatcher.adapters.kube import KubeApi, fetching  # noqa: PLC0415 - see _only_job_name
    from dispatcher.domain.jobs import finished_condition  # noqa: PLC0415

    async with await KubeApi.from_settings(settings.cluster) as api:
        job = await fetching.read_job(api, name)
    return job is not None and finished_condition(job) is not None


async def _create_stuck_job(settings: Settings, control: EmulatorControl) -> None:
    """A Job whose `run` image cannot be pulled: its pod stays Pending, waiting with ImagePullBackOff."""
    control.set_kubelet(failing_images=["registry.invalid/*"])
    doc = job_doc("cannot-pull")
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/tools/upper:1.0"
    doc["spec"]["template"]["metadata"]["labels"] = doc["metadata"]["labels"]  # as bucketrun's pods are
    await _create_job(settings, doc)


async def _create_job(settings: Settings, doc: dict[str, Any]) -> None:
    from kubernetes_asyncio import client  # noqa: PLC0415, TID251 - the test plays a user's Job

    from tests.backends.kubernetes import api_client_for  # noqa: PLC0415

    assert settings.cluster.kubeconfig is not None
    async with await api_client_for(settings.cluster.kubeconfig) as api:
        await client.BatchV1Api(api).create_namespaced_job(settings.cluster.namespace, doc)


async def _tamper_with(settings: Settings, name: str) -> None:
    """Put ConfigMap *name* back with other data, as an older template would have rendered it."""
    from dispatcher.adapters.kube import KubeApi, creating, deleting, fetching  # noqa: PLC0415 - see _only_job_name

    async with await KubeApi.from_settings(settings.cluster) as api:
        found = await fetching.read_config_map(api, name)
        assert found is not None
        assert await deleting.delete_config_map(api, name)
        metadata = {key: found["metadata"][key] for key in ("name", "labels") if key in found["metadata"]}
        older = {**found, "metadata": metadata, "data": {**found["data"], "run.sh": "#!/bin/sh\nexit 1\n"}}
        assert await creating.ConfigMapCreator(api).ensure(older)


async def _recorded(control: Any, namespace: str, name: str) -> bool:
    """Whether the Job *name* carries the watcher's recorded annotation: its pod may take a while to end
    on a real node, and the watcher may record the stuck Job first. Read past the fault proxy (the
    control plane's admin), so that the read is not counted as the watcher's."""
    from dispatcher.domain.jobs import is_recorded  # noqa: PLC0415

    plane = getattr(control, "plane", None)
    if plane is None:  # the emulator: its pods end at once, and the patch count says it
        return True
    status, job = await asyncio.to_thread(
        plane.request, "GET", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}"
    )
    return status == 200 and is_recorded(job)


async def _only_job_name(settings: Settings) -> str:
    from dispatcher.adapters.kube import KubeApi, fetching  # noqa: PLC0415 - the one place the test reads the cluster

    async with await KubeApi.from_settings(settings.cluster) as api:
        page = await asyncio.wait_for(fetching.list_job_documents(api, limit=10, continue_token=None), 10)
    (job,) = page.items
    return str(job["metadata"]["name"])
