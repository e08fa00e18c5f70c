"""Half-open watch connections: a Job watch that goes silent is noticed within the read timeout and
reopened from its last resourceVersion, by the dispatcher's informer and by the watcher alike.

The emulator's `stall_watches()` keeps the open streams connected but sends nothing more (no event, no
bookmark, no end at timeoutSeconds), as a client sees a peer or a middlebox that vanished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from kubernetes_asyncio import client  # noqa: TID251 - the tests create Jobs behind the adapter's back

from dispatcher.adapters.kube import JobFeed, JobInformer, KubeApi
from dispatcher.adapters.kube.list_watch import ListWatch
from dispatcher.domain.jobs import JobIndex
from dispatcher.executors.finished_watch import FinishedJobWatch
from dispatcher.runtime.settings import ClusterSettings
from tests.emulator.helpers import wait_for
from tests.integration.watcher_support import job_doc

pytestmark = pytest.mark.integration

BOOKMARK_INTERVAL = 0.2  # the emulator's, for these tests (a real API server: about 60 s)
READ_TIMEOUT = 1.0  # the client's silence bound, about five bookmark intervals here
WITHIN = 20.0  # bound of every wait; the old read timeout (the watch's 300-600 s + 5 s) far exceeds it


async def connected(kube: Any) -> KubeApi:
    """The API of the test's namespace with a short watch read timeout."""
    return await KubeApi.connect(
        kube.namespace, kubeconfig=kube.kubeconfig, request_timeout=5.0, watch_read_timeout=READ_TIMEOUT
    )


async def until(predicate: Callable[[], bool], what: str) -> float:
    """Wait (bounded) for *predicate*; the seconds it took."""
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def holds() -> bool | None:
        return True if predicate() else None

    await wait_for(holds, within=WITHIN, what=what)
    return loop.time() - began


async def one_watch_open(control: Any) -> None:
    async def opened() -> bool | None:
        return True if await asyncio.to_thread(control.open_watches) == 1 else None

    await wait_for(opened, within=WITHIN, what="the loop's watch to be open")


async def healthy_then_stalled(loop: ListWatch, control: Any) -> None:
    """Check that bookmarks keep an idle stream alive past the read timeout, then stall it."""
    await one_watch_open(control)
    enough = int(3 * READ_TIMEOUT / BOOKMARK_INTERVAL)  # bookmarks spanning three read timeouts
    await until(lambda: loop.stats.events >= enough, f"{enough} bookmarks")
    assert loop.stats.stalled == 0, "an idle stream with bookmarks was taken for a dead one"
    assert control.stall_watches() == 1


async def test_the_informer_reopens_a_silent_watch_from_where_it_was(kube, kube_api) -> None:
    control = kube.require_control()
    control.set_kubelet("off")  # the Job stays active: the informer counts it
    control.set_watch_knobs(bookmark_interval=BOOKMARK_INTERVAL)
    api = await connected(kube)
    informer = JobInformer(JobFeed(api), JobIndex())
    try:
        informer.start()
        await healthy_then_stalled(informer, control)
        await client.BatchV1Api(kube_api).create_namespaced_job(kube.namespace, job_doc("after-stall"))
        took = await until(lambda: informer.index.active("upper") == 1, "the Job created after the stall")
        assert took < READ_TIMEOUT + 2.0
        assert informer.stats.stalled == 1
        assert (informer.stats.lists, informer.stats.errors) == (1, 0)  # resumed, not relisted
    finally:
        await informer.stop()
        await api.close()
    # The client closed the silent connection: the emulator holds no stalled stream any more.
    await wait_for(
        lambda: asyncio.to_thread(lambda: True if control.stalled_watches() == 0 else None),
        within=WITHIN,
        what="the stalled stream to be closed",
    )


async def test_the_watcher_reopens_a_silent_watch_and_still_records_later_jobs(kube, kube_api) -> None:
    control = kube.require_control()
    control.set_kubelet("instant")
    control.set_watch_knobs(bookmark_interval=BOOKMARK_INTERVAL)
    recorded: list[str] = []

    async def record(job: Mapping[str, Any]) -> None:
        recorded.append(str(job["metadata"]["name"]))

    # As the watcher builds it: from the settings (no informer: one watch only).
    api = await KubeApi.from_settings(
        ClusterSettings(
            namespace=kube.namespace,
            kubeconfig=kube.kubeconfig,
            request_timeout=5.0,
            watch_read_timeout=READ_TIMEOUT,
        )
    )
    watch = FinishedJobWatch(JobFeed(api), record)
    task = asyncio.create_task(watch.run(), name="job watch under test")
    try:
        await healthy_then_stalled(watch, control)
        await client.BatchV1Api(kube_api).create_namespaced_job(kube.namespace, job_doc("after-stall"))
        took = await until(lambda: recorded == ["after-stall"], "the Job finished after the stall")
        assert took < READ_TIMEOUT + 5.0
        assert watch.stats.stalled == 1
        assert (watch.stats.lists, watch.stats.errors) == (1, 0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await api.close()
