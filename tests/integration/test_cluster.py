"""The cluster adapter against a real API (the emulator here): outcomes, errors, the informer, rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - the tests drive the API directly too

from dispatcher.adapters.kube import JobFeed, JobInformer, KubeApi, runs_in_cluster
from dispatcher.adapters.kube.creating import ConfigMapCreator, create_job
from dispatcher.adapters.kube.deleting import delete_job
from dispatcher.adapters.kube.fetching import (
    api_answers,
    job_events,
    pending_pods,
    read_job,
    refused_job_events,
)
from dispatcher.adapters.kube.patching import ensure_secret
from dispatcher.domain.constants import LABEL_MANAGED_BY, LABEL_SERVICE, MANAGED_BY
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.jobs import CreateOutcome, JobIndex
from dispatcher.executors.kubernetes import KubernetesExecutor, connect_kubernetes_executor
from dispatcher.runtime.ratelimit import TokenBucket
from dispatcher.runtime.settings import ClusterSettings
from tests.backends import free_port
from tests.backends.kubernetes import api_client_for
from tests.emulator.helpers import wait_for
from tests.k8s_emulator import WRITE_VERBS

pytestmark = pytest.mark.integration

EXIT_CODE_ANNOTATION = "emulator.bucketrun.io/exit-code"
WITHIN = 20.0  # seconds any awaited condition may take before the test fails


def job(name: str, service: str = "svc", *, exit_code: int = 0, **spec: Any) -> dict[str, Any]:
    """A minimal bucketrun-labelled Job (the instant kubelet ends its pod with *exit_code*)."""
    labels = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SERVICE: service}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels, "annotations": {EXIT_CODE_ANNOTATION: str(exit_code)}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
                },
            },
            **spec,
        },
    }


def config_map(name: str) -> dict[str, Any]:
    """An immutable ConfigMap like the per-service one."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
        "immutable": True,
        "data": {"script.sh": "echo hi\n"},
    }


@pytest.fixture
async def api(kube):
    connected = await KubeApi.connect(kube.namespace, kubeconfig=kube.kubeconfig, request_timeout=5.0)
    yield connected
    await connected.close()


@pytest.fixture
async def informer(api):
    """A Job informer over the test's API, not started; stopped at the end."""
    made = JobInformer(JobFeed(api), JobIndex())
    yield made
    await made.stop()


async def until(index: JobIndex, predicate, what: str) -> None:
    """Wait (bounded) for the informer's counts to satisfy *predicate*."""
    try:
        async with asyncio.timeout(WITHIN):
            await index.wait_until(predicate)
    except TimeoutError:
        raise AssertionError(f"timed out after {WITHIN} s waiting for {what}") from None


async def test_creating_a_job_twice_is_created_then_exists(kube, api):
    control = kube.require_control()
    control.set_kubelet("off")
    control.reset_stats()
    assert await create_job(api, job("twice")) is CreateOutcome.CREATED
    assert await create_job(api, job("twice")) is CreateOutcome.EXISTS
    assert control.request_count(verb="create", resource="jobs", namespace=kube.namespace, code=201) == 1
    assert control.request_count(verb="create", resource="jobs", namespace=kube.namespace, code=409) == 1


async def test_a_409_conflict_is_transient_and_never_taken_for_an_existing_object(kube, api):
    """Quota admission answers 409 Conflict when its quota update races another write: nothing exists."""
    control = kube.require_control()
    control.set_kubelet("off")
    control.set_faults(error_rates={409: 1.0}, verbs=["create"])
    config_maps = ConfigMapCreator(api)
    try:
        with pytest.raises(TransientError) as raised:
            await create_job(api, job("conflicted"))
        assert raised.value.kind == "api-409"
        with pytest.raises(TransientError):
            await config_maps.ensure(config_map("bucketrun-svc-conflicted"))
    finally:
        control.clear_faults()
    # Retried once the conflict is gone: both are created now (neither was remembered as existing).
    assert await create_job(api, job("conflicted")) is CreateOutcome.CREATED
    assert await config_maps.ensure(config_map("bucketrun-svc-conflicted")) is True


async def test_a_config_map_ensured_for_100_jobs_costs_one_write(kube, api):
    control = kube.require_control()
    control.set_kubelet("off")
    control.reset_stats()
    executor = KubernetesExecutor(api, TokenBucket(1000, 1000))

    async def dispatch(index: int) -> CreateOutcome:
        await executor.ensure_config_map(config_map("bucketrun-svc-0123456789"))
        return await executor.create_job(job(f"cm-{index}"))

    # Half of them at once (racing for the same new name), then one after the other.
    outcomes = list(await asyncio.gather(*(dispatch(i) for i in range(50))))
    outcomes += [await dispatch(i) for i in range(50, 100)]

    assert outcomes == [CreateOutcome.CREATED] * 100
    namespace = kube.namespace
    assert control.request_count(verb=WRITE_VERBS, resource="configmaps", namespace=namespace) == 1
    assert control.request_count(verb="create", resource="jobs", namespace=namespace, code=201) == 100
    # A second replica learns the name from the 409 and then stops asking too.
    async with await KubeApi.connect(namespace, kubeconfig=kube.kubeconfig, request_timeout=5.0) as other:
        replica = ConfigMapCreator(other)
        assert await replica.ensure(config_map("bucketrun-svc-0123456789")) is False
        assert await replica.ensure(config_map("bucketrun-svc-0123456789")) is False
    assert control.request_count(verb=WRITE_VERBS, resource="configmaps", namespace=namespace) == 2


async def test_injected_5xx_and_429_are_transient_errors_with_their_kind(kube, api, kube_api):
    control = kube.require_control()
    control.set_kubelet("off")
    control.set_faults(
        error_rates={500: 0.15, 503: 0.15, 429: 0.1}, resources=["jobs"], retry_after_seconds=2, seed=11
    )
    names = [f"faulty-{i}" for i in range(40)]
    errors: list[TransientError] = []
    pending = list(names)
    for _round in range(50):
        retry = []
        for name in pending:
            try:
                outcome = await create_job(api, job(name))
            except TransientError as error:
                errors.append(error)
                retry.append(name)
            else:
                assert outcome in (CreateOutcome.CREATED, CreateOutcome.EXISTS)
        pending = retry
        if not pending:
            break
    assert not pending, f"still failing after 50 rounds: {pending}"
    assert {error.kind for error in errors} == {"api-5xx", "api-429"}
    assert {error.retry_after for error in errors if error.kind == "api-429"} == {2}
    assert all(error.__cause__ is not None for error in errors)  # raised from the client's failure
    control.clear_faults()
    listed = await client.BatchV1Api(kube_api).list_namespaced_job(kube.namespace)
    assert sorted(item.metadata.name for item in listed.items) == sorted(names)


async def test_timeouts_and_refused_connections_are_transient(kube, api):
    control = kube.require_control()
    control.set_kubelet("off")
    control.set_faults(latency=1.0, resources=["jobs"])
    async with await KubeApi.connect(kube.namespace, kubeconfig=kube.kubeconfig, request_timeout=0.2) as slow:
        with pytest.raises(TransientError) as timed_out:
            await create_job(slow, job("slow"))
        assert timed_out.value.kind == "api-timeout"
        assert timed_out.value.__cause__ is not None
        assert await api_answers(slow) is False
    control.clear_faults()

    unreachable = KubeApi(await _api_client_at(f"http://127.0.0.1:{free_port()}"), "x", request_timeout=2.0)
    async with unreachable:
        with pytest.raises(TransientError) as refused:
            await create_job(unreachable, job("nowhere"))
        assert refused.value.kind == "api-connection"
        assert await api_answers(unreachable) is False
    assert await api_answers(api) is True


async def _api_client_at(url: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = url
    return client.ApiClient(configuration=configuration)


async def test_client_errors_are_permanent_with_a_reason(kube, api):
    control = kube.require_control()
    control.set_kubelet("off")
    invalid = job("invalid")
    invalid["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(PermanentError) as refused:
        await create_job(api, invalid)
    assert refused.value.reason == "invalid-manifest"
    assert "restartPolicy" in str(refused.value)
    assert "HTTP 422" in str(refused.value)

    # The emulator does not check that a namespace exists, so the 404 of a missing one is injected.
    answers = ((404, "api-not-found"), (403, "forbidden"), (400, "invalid-manifest"), (401, "api-4xx"))
    for code, reason in answers:
        control.set_faults(error_rates={code: 1.0}, verbs=["create"], resources=["jobs"])
        with pytest.raises(PermanentError) as error:
            await create_job(api, job(f"refused-{code}"))
        assert error.value.reason == reason, code
        assert error.value.__cause__.status == code  # raised from the client library's ApiException


async def test_secrets_are_created_then_replaced_only_when_they_differ(kube, api, kube_api):
    kube.require_control().reset_stats()
    assert await ensure_secret(api, "bucketrun-svc-secrets", {"TOKEN": "one"}) is True
    assert await ensure_secret(api, "bucketrun-svc-secrets", {"TOKEN": "one"}) is False
    assert await ensure_secret(api, "bucketrun-svc-secrets", {"TOKEN": "two", "X": b"\x00"}) is True
    secret = await client.CoreV1Api(kube_api).read_namespaced_secret("bucketrun-svc-secrets", kube.namespace)
    assert secret.data == {"TOKEN": "dHdv", "X": "AA=="}
    assert secret.metadata.labels[LABEL_MANAGED_BY] == MANAGED_BY


async def test_the_informer_counts_active_jobs_per_service_through_completions(kube, api):
    control = kube.require_control()
    control.set_kubelet("off")
    # Jobs that exist before the informer starts are counted by its first list.
    for name in ("old-a1", "old-a2"):
        await create_job(api, job(name, "a"))
    fresh = await KubeApi.connect(kube.namespace, kubeconfig=kube.kubeconfig, request_timeout=5.0)
    executor = KubernetesExecutor(fresh, TokenBucket(1000, 1000), sync_timeout=WITHIN)
    try:
        await executor.start()
        assert executor.informer.synced.is_set()
        assert executor.active_jobs("a") == 2

        # A Job created here counts at once, before the watch reports it.
        await executor.create_job(job("new-a3", "a"))
        assert executor.active_jobs("a") == 3
        for name, service, code in (("b-ok", "b", 0), ("b-fails", "b", 1)):
            await executor.create_job(job(name, service, exit_code=code))
        await executor.create_job(job("b-suspended", "b", suspend=True))  # Kueue has not admitted it
        assert executor.active_jobs("b") == 3

        control.set_kubelet("instant")  # every pod ends now, with its annotated exit code
        index = executor.informer.index
        await until(index, lambda: executor.active_jobs("a") == 0, "service a to finish")
        await until(index, lambda: executor.active_jobs("b") == 1, "service b's two runnable Jobs to finish")
        assert executor.active_jobs("unknown") == 0
        assert executor.informer.stats.lists == 1
    finally:
        await executor.close()


async def watch_open(control) -> None:
    """Wait (bounded) until the emulator has a watch open (the informer's: each test has its own)."""

    async def opened() -> bool | None:
        return await asyncio.to_thread(control.open_watches) >= 1 or None

    await wait_for(opened, within=WITHIN, what="an open watch")


async def test_the_informer_recovers_from_410_and_dropped_watches(kube, informer, kube_api):
    control = kube.require_control()
    control.set_kubelet("off")
    batch = client.BatchV1Api(kube_api)
    counts = informer.index
    informer.start()
    async with asyncio.timeout(WITHIN):
        await informer.wait_synced()
    await watch_open(control)

    # Dropped streams: the informer watches again from where it was, without listing again.
    for index in range(3):
        assert control.drop_watches() == 1
        await batch.create_namespaced_job(kube.namespace, job(f"after-drop-{index}", "a"))
        await until(counts, lambda i=index: counts.active("a") == i + 1, f"{index + 1} Jobs of a")
        await watch_open(control)
    assert informer.stats.lists == 1
    assert informer.stats.watches >= 4

    # A 410 on the next watch forces a new list, which still counts right.
    control.expire_next_watch()
    control.drop_watches()
    await batch.create_namespaced_job(kube.namespace, job("after-expiry", "b"))
    await until(counts, lambda: informer.stats.lists >= 2, "a second list")
    await until(counts, lambda: counts.active("b") == 1, "the Job created meanwhile")
    assert informer.stats.expired >= 1
    assert counts.active("a") == 3

    # Deleted Jobs stop counting; Jobs of other owners never count.
    await batch.delete_namespaced_job("after-drop-0", kube.namespace, propagation_policy="Background")
    foreign = job("foreign", "a")
    del foreign["metadata"]["labels"][LABEL_MANAGED_BY]
    await batch.create_namespaced_job(kube.namespace, foreign)
    await until(counts, lambda: counts.active("a") == 2, "the deletion")
    await batch.create_namespaced_job(kube.namespace, job("marker", "c"))
    await until(counts, lambda: counts.active("c") == 1, "a later Job")
    assert counts.active("a") == 2  # the foreign Job, created before the marker, was not counted


async def test_the_token_bucket_limits_the_write_rate(kube, api):
    control = kube.require_control()
    control.set_kubelet("off")
    control.reset_stats()
    rate, burst, count = 20.0, 5, 30
    executor = KubernetesExecutor(api, TokenBucket(rate, burst))
    started = time.monotonic()
    creating = asyncio.gather(*(executor.create_job(job(f"limited-{i}")) for i in range(count)))
    await asyncio.sleep(0.5)  # sample the server's count mid-run (the measurement, not a wait for a result)
    midway = await asyncio.to_thread(
        control.request_count, verb=WRITE_VERBS, resource="jobs", namespace=kube.namespace
    )
    outcomes = await creating
    elapsed = time.monotonic() - started

    assert outcomes == [CreateOutcome.CREATED] * count
    assert midway <= burst + rate * 0.7 + 2  # generous: at most ~19 by 0.5-0.7 s, 30 without the limit
    assert elapsed >= (count - burst) / rate * 0.9  # 1.25 s at 20/s after a burst of 5
    assert control.request_count(verb=WRITE_VERBS, resource="jobs", namespace=kube.namespace) == count


async def test_the_executor_is_built_from_the_cluster_settings(kube):
    kube.require_control().set_kubelet("off")
    settings = ClusterSettings(
        executor="kubernetes", namespace=kube.namespace, kubeconfig=kube.kubeconfig, api_write_burst=3
    )
    executor = await connect_kubernetes_executor(settings)
    try:
        await executor.start()
        assert executor.informer.synced.is_set()
        assert await executor.ready() is True
        assert executor.bucket.burst == 3
        assert await executor.create_job(job("from-settings")) is CreateOutcome.CREATED
        assert executor.active_jobs("svc") == 1
    finally:
        await executor.close()
    assert runs_in_cluster(None, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) is True
    assert runs_in_cluster(kube.kubeconfig, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) is False
    assert runs_in_cluster(None, {}) is False


async def test_pending_pods_and_a_delete_that_takes_only_the_job_of_that_uid_with_its_pods(kube, api):
    # What the watcher's stuck-Job sweep calls: the Pending pods (one held by the image-pull fault), then
    # a delete with the Job's UID as precondition (Background: the pods go too).
    kube.require_control().set_kubelet("instant", failing_images=["registry.invalid/*"])
    stuck = job("stuck")
    stuck["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.invalid/tools/upper:1.0"
    await create_job(api, stuck)
    await create_job(api, job("fine"))

    async def pending_names() -> list[str]:
        return sorted(pod["metadata"]["name"] for pod in await pending_pods(api))

    def jobs_of(names: list[str]) -> list[str]:
        return [name.rsplit("-", 1)[0] for name in names]

    # Both pods are Pending at first on a real cluster (created, bound, then run): the fine one ends at
    # once, the stuck one stays.
    names: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(WITHIN):
            while jobs_of(names := await pending_names()) != ["stuck"]:  # noqa: ASYNC110 - the kubelet works in the server
                await asyncio.sleep(0.05)
    assert jobs_of(names) == ["stuck"]
    found = await read_job(api, "stuck")
    assert found is not None
    uid = found["metadata"]["uid"]

    assert not await delete_job(api, "stuck", "the-uid-of-another-job")  # 409 on the precondition
    assert await read_job(api, "stuck") is not None
    assert await delete_job(api, "stuck", uid)
    assert await read_job(api, "stuck") is None
    async with asyncio.timeout(WITHIN):
        while await pending_names():  # noqa: ASYNC110 - the garbage collector works in the server
            await asyncio.sleep(0.05)
    assert not await delete_job(api, "stuck", uid)  # gone: 404
    assert await read_job(api, "fine") is not None


async def test_the_failed_create_events_of_a_job_whose_pod_admission_refuses(kube, api):
    # What the watcher's refused-Job sweep calls, against the real Job controller and PodSecurity: the
    # namespace's FailedCreate Events of Jobs (a field selector the API server must accept), then all
    # of one Job's Events by its UID. The emulator has no admission: it only answers both lists.
    if not kube.backend.real:
        assert await refused_job_events(api) == []
        assert await job_events(api, "no-such-uid") == []
        return
    async with await api_client_for(kube.kubeconfig) as admin:
        await client.CoreV1Api(admin).patch_namespace(
            kube.namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
        )
    await create_job(api, job("refused"))  # busybox as root, no securityContext: restricted refuses it
    found = await read_job(api, "refused")
    assert found is not None
    uid = found["metadata"]["uid"]

    async with asyncio.timeout(WITHIN):
        while not (refusals := await refused_job_events(api)):  # noqa: ASYNC110 - the controller works in the server
            await asyncio.sleep(0.1)
    assert {(e["involvedObject"]["kind"], e["involvedObject"]["uid"], e["reason"]) for e in refusals} == {
        ("Job", uid, "FailedCreate")
    }
    assert refusals[0]["message"].startswith('Error creating: pods "refused-')
    assert 'violates PodSecurity "restricted:latest"' in refusals[0]["message"]
    own = await job_events(api, uid)
    assert {e["reason"] for e in own} == {"FailedCreate"}, own
    assert await job_events(api, "the-uid-of-another-job") == []
    job_now = await read_job(api, "refused")
    assert job_now is not None
    assert not job_now.get("status", {}).get("conditions"), "the controller sets no condition for it"
