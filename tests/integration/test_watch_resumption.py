"""Watch resumption on the real control plane (issue #16): after a real etcd compaction and a
kube-apiserver restart in the middle of a run, the watcher and the dispatcher's Job informer list again
and lose no completion.

The scenario, on a cluster of this module's own (stopping its API server disturbs no other module):

1. the dispatcher (in-process, its executor's informer holding the per-service counts of active Jobs)
   and the watcher (in-process, leader on a Lease long enough to outlive the outage) run; uploads
   become bucketrun-rendered Jobs whose pods the node agent holds Pending;
2. the fault proxy stalls both Job watches (the clients see nothing more) and answers any new Job watch
   503 until the API server is back: without that, a client that noticed the silence early would
   watch again from its old resourceVersion while the watch cache still holds it, and the test would
   prove nothing about 410;
3. the pods are released and every Job completes in the cluster, unseen by both clients;
4. etcd is compacted past every Job's resourceVersion (so past the clients' too) and kube-apiserver is
   restarted: its new watch cache starts after the compaction;
5. the watches reopen from the old resourceVersion, the API server itself answers 410 Expired (counted
   by the proxy as ERROR events it relayed: it forces none here), both clients list again.

Asserted: each Job has exactly one record (one stored version of its status.json) and one completion
event, the informer counts 0 active Jobs (the service's capacity slots are back), the watcher's term
never ended (it resumed by relisting, not by a new term's first list), and both loops counted a 410
and a second list. Skipped where ``make servers`` has not built the control plane (a failure under CI).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - the test creates its namespace directly
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: TID251

from dispatcher.domain.jobs import finished_condition, is_recorded
from dispatcher.executors.kubernetes import KubernetesExecutor, connect_kubernetes_executor
from dispatcher.process.app import run_dispatcher
from tests.backends.kubernetes import (
    KubeBackend,
    KubeTestEnv,
    api_client_for,
    namespace_for,
    require_built_servers,
)
from tests.backends.local_kube import LocalCluster, LocalClusterControl, run_local_cluster
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Scope
from tests.integration.stack import notify_upload, started, until
from tests.integration.watcher_support import WatcherEnv, make_settings, new_env, watcher
from watcher.app import WatcherState

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOBS = 4
SERVICE = "upper"
READ_TIMEOUT = 3.0
"""The clients' watch read timeout: a stalled stream is given up after this much silence."""
BOOKMARK_INTERVAL = 0.5
"""The proxy's bookmarks keep the healthy streams alive past READ_TIMEOUT until they are stalled."""
LEASE_DURATION = 60.0
"""Long enough that the leader keeps its Lease through the outage: the relist must be the watch's own."""
WITHIN = 120.0
"""Bound of each wait (pods run as local processes on 2 shared cores; the API server restarts)."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A local cluster of this module's own (etcd without fsync, the node agent, the fault proxy)."""
    require_built_servers()
    with run_local_cluster(tmp_path_factory.mktemp("watch-resumption")) as local:
        print(f"\nwatch resumption cluster:\n{local.summary()}")
        yield local


@pytest.fixture
async def kube(cluster: LocalCluster, request: pytest.FixtureRequest) -> AsyncIterator[KubeTestEnv]:
    """A namespace of this test on the module's cluster, with its `default` ServiceAccount."""
    cluster.control.reset()
    namespace = namespace_for(request.node.name)
    backend = KubeBackend("local", cluster.kubeconfig, cluster.control, cluster.proxy.url)
    async with await api_client_for(cluster.kubeconfig) as api:
        core = client.CoreV1Api(api)
        await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        await until(partial(_service_account, core, namespace), f"the ServiceAccount default of {namespace}")
        yield KubeTestEnv(namespace, cluster.kubeconfig, cluster.control, backend)
        cluster.control.reset()
        await core.delete_namespace(namespace, propagation_policy="Background")


async def _service_account(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        await core.read_namespaced_service_account("default", namespace)
    except ApiException as error:
        if error.status != 404:
            raise
        return False
    return True


@dataclass
class Run:
    """The test's servers, the running dispatcher's executor and the watcher's state."""

    env: WatcherEnv
    control: LocalClusterControl
    executor: KubernetesExecutor
    watcher: WatcherState
    inputs: str

    async def upload(self, count: int) -> None:
        """Put *count* objects and publish their notifications, as MinIO would."""
        minio = self.env.s3.endpoint.client()
        for index in range(count):
            key = f"in/file-{index}.txt"
            minio.put_object(self.inputs, key, io.BytesIO(b"resume me\n"), 10)
            sequencer = f"{0x17A76FE05CF30000 + index:X}"
            await notify_upload(
                self.env.names.url,
                self.env.settings.amqp.exchange,
                self.env.s3.endpoint,
                self.inputs,
                key,
                sequencer=sequencer,
            )

    async def jobs_where(self, wanted: Any, count: int) -> list[dict[str, Any]] | None:
        """The Jobs (listed through the proxy: lists are not faulted) once *count* satisfy *wanted*."""
        jobs = await self.env.jobs()
        return jobs if sum(1 for job in jobs if wanted(job)) == count else None


@pytest.fixture
async def run(amqp_names: AmqpNames, s3: S3Scope, kube: KubeTestEnv, tmp_path: Path) -> AsyncIterator[Run]:
    """The dispatcher and the watcher running on the test's namespace, every pod held Pending."""
    control = kube.require_control()
    assert isinstance(control, LocalClusterControl)
    await asyncio.to_thread(control.set_kubelet, "off")
    await asyncio.to_thread(control.set_watch_knobs, bookmark_interval=BOOKMARK_INTERVAL)
    env = await new_env(amqp_names, s3, kube, tmp_path)
    fdl = tmp_path / "services.yaml"
    # A cap never reached: the dispatcher counts the Jobs (its informer) only while a service has one.
    fdl.write_text(fdl.read_text() + "      bucketrun:\n        max_concurrent_jobs: 1000\n")
    settings = make_settings(
        amqp_names,
        s3,
        kube,
        tmp_path / "services.yaml",
        records_bucket=env.records_bucket,
        exchange=env.settings.watcher.results_exchange,
        services=(SERVICE,),
        lease_duration=LEASE_DURATION,
        lease_renew_period=2.0,
        watch_timeout=300,  # no stream ends on its own while the test stalls them
    )
    cluster = settings.cluster.model_copy(update={"watch_read_timeout": READ_TIMEOUT})
    env.settings = settings.model_copy(update={"cluster": cluster})
    executor = await connect_kubernetes_executor(env.settings.cluster)
    state = WatcherState()
    try:
        dispatching = partial(run_dispatcher, env.settings, executor=executor)
        async with started(dispatching, "dispatcher", within=60), watcher(env.settings, state):
            yield Run(env, control, executor, state, s3.bucket("inputs"))
    finally:
        await executor.close()


async def test_compaction_and_an_apiserver_restart_mid_run_lose_no_completion(run: Run) -> None:
    control, executor, state = run.control, run.executor, run.watcher
    informer = executor.informer
    await until(_leading_and_synced(state), "the watcher leading, its Job watch listed")
    await run.upload(JOBS)
    await until(lambda: run.jobs_where(lambda job: True, JOBS), f"{JOBS} Jobs created by the dispatcher")
    assert executor.active_jobs(SERVICE) == JOBS
    watch = state.watch
    assert watch is not None

    async def both_watching() -> bool:
        return await asyncio.to_thread(control.open_watches) == 2  # the informer's and the watcher's

    await until(both_watching, "the informer's and the watcher's Job watches open")
    await asyncio.to_thread(control.reset_stats)
    lists_before = (informer.stats.lists, watch.stats.lists)

    # Blind both clients: their streams go silent, and every new Job watch fails until the restart.
    await asyncio.to_thread(control.set_faults, error_rates={503: 1.0}, verbs=["watch"], resources=["jobs"])
    assert await asyncio.to_thread(control.stall_watches) == 2

    await asyncio.to_thread(control.set_kubelet, "run")
    finished = await until(
        lambda: run.jobs_where(lambda job: finished_condition(job) is not None, JOBS),
        f"{JOBS} Jobs finished in the cluster",
        within=WITHIN,
    )
    assert all(finished_condition(job) == "Complete" for job in finished), finished
    # Neither client saw any of it.
    assert state.recorder is not None
    assert state.recorder.stats.recorded == 0
    assert executor.active_jobs(SERVICE) == JOBS

    newest = max(int(job["metadata"]["resourceVersion"]) for job in finished)
    compacted = await asyncio.to_thread(control.compact)
    assert compacted >= newest
    restart_began = time.monotonic()
    await asyncio.to_thread(control.stop_apiserver)
    await asyncio.to_thread(control.start_apiserver)
    restarted = time.monotonic()
    await asyncio.to_thread(control.clear_faults)

    await until(lambda: _all_recorded(run.env, finished), f"all {JOBS} Jobs marked recorded", within=WITHIN)

    async def slots_back() -> bool:
        return executor.active_jobs(SERVICE) == 0

    await until(slots_back, "the informer's count of active Jobs back to 0", within=WITHIN)
    recovered = time.monotonic()

    # Resumed by relisting after a 410 the API server itself answered, in the same watcher term.
    assert state.watch is watch
    assert state.elector is not None
    assert state.elector.is_leader
    errors = await asyncio.to_thread(control.watch_error_events)
    assert errors.get(410, 0) >= 2, errors  # one per client, at least
    assert (await asyncio.to_thread(control.state))["watches"]["served"] >= 2
    assert informer.stats.expired >= 1, informer.stats
    assert watch.stats.expired >= 1, watch.stats
    assert informer.stats.lists > lists_before[0], informer.stats
    assert watch.stats.lists > lists_before[1], watch.stats

    uids = sorted(job["metadata"]["uid"] for job in finished)
    versions = run.env.record_versions()
    assert sorted(versions) == uids
    assert all(len(keys) == 1 for keys in versions.values()), versions
    events = await until(partial(_events, run.env, JOBS), f"{JOBS} completion events")
    per_uid = Counter(event["uid"] for event in events)
    assert sorted(per_uid) == uids
    assert set(per_uid.values()) == {1}, per_uid
    assert {event["outcome"] for event in events} == {"succeeded"}, events
    print(
        f"\nkube-apiserver stopped and ready again in {restarted - restart_began:.1f} s; "
        f"every completion recorded and the slots back {recovered - restarted:.1f} s later; "
        f"ERROR events relayed: {errors}; informer {informer.stats}; watcher {watch.stats}"
    )


def _leading_and_synced(state: WatcherState) -> Any:
    async def check() -> bool:
        return state.watch is not None and state.watch.synced.is_set()

    return check


async def _all_recorded(env: WatcherEnv, finished: list[dict[str, Any]]) -> bool:
    wanted = {job["metadata"]["uid"] for job in finished}
    return {job["metadata"]["uid"] for job in await env.jobs() if is_recorded(job)} == wanted


async def _events(env: WatcherEnv, count: int) -> list[dict[str, Any]] | None:
    events = await env.drain_events()
    return events if len(events) >= count else None
