"""The ``kubernetes`` executor: Jobs through the API server, writes rate-limited by a token bucket;
finished Jobs from a list+watch (``FinishedJobWatch``), marked recorded by an annotation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dispatcher.adapters.kube import creating, fetching, patching
from dispatcher.adapters.kube.api import KubeApi
from dispatcher.adapters.kube.creating import ConfigMapCreator
from dispatcher.adapters.kube.informer import JobInformer
from dispatcher.adapters.kube.job_feed import JobFeed
from dispatcher.domain import kube
from dispatcher.domain.constants import ANNOTATION_RECORDED
from dispatcher.domain.errors import TransientError
from dispatcher.domain.jobs import CreateOutcome, JobIndex
from dispatcher.executors.base import JobHandler
from dispatcher.executors.finished_watch import FinishedJobWatch
from dispatcher.rendering.secrets import ServiceSecret
from dispatcher.runtime.ratelimit import TokenBucket
from dispatcher.runtime.settings import ClusterSettings, Settings


async def connect_kubernetes_executor(settings: ClusterSettings) -> KubernetesExecutor:
    """A Kubernetes executor as the ``cluster`` settings say (API client, write rate and burst)."""
    api = await KubeApi.from_settings(settings)
    return KubernetesExecutor(api, TokenBucket(settings.api_write_rate, settings.api_write_burst))


class KubernetesExecutor:
    """Thin: a token from *bucket* before every Job or ConfigMap write, ConfigMaps created once
    (``ConfigMapCreator``), and, while ``count_jobs`` asks for it, a Job informer keeping ``index``
    current (the watcher's calls need neither). The calls are the verb modules' of
    ``dispatcher.adapters.kube`` over *api*.

    Owns *api*: ``close()`` closes it. The watcher's Lease election and sweep of Jobs that cannot
    start use ``api`` directly: they are the cluster's, not any executor's.
    """

    def __init__(self, api: KubeApi, bucket: TokenBucket, *, sync_timeout: float | None = None) -> None:
        self.api = api
        self.bucket = bucket
        self.jobs = JobFeed(api)
        """bucketrun's Jobs as pages and a watch stream: the informer's and the finished-Job watch's."""
        self.index = JobIndex()
        """The per-service counts of unfinished Jobs: current while counting, empty otherwise."""
        self.informer: JobInformer | None = None
        """The list+watch keeping ``index`` current, while counting (``count_jobs``)."""
        self._config_maps = ConfigMapCreator(api)
        self._sync_timeout = sync_timeout

    async def start(self, *, count_jobs: bool = True) -> None:
        """``count_jobs(count_jobs)``: with it, this returns once the counts are loaded."""
        await self.count_jobs(count_jobs)

    @property
    def counting(self) -> bool:
        """True while an informer keeps the counts current."""
        return self.informer is not None

    async def count_jobs(self, enabled: bool) -> None:
        """Start or stop counting each service's unfinished Jobs (a list+watch of every bucketrun Job).

        Starting waits for the first list (at most ``sync_timeout`` seconds, if set; the informer
        retries the API meanwhile): until it is in, the counts would be too low.
        ``TransientError(kind="api-timeout")`` if ``sync_timeout`` passes first. Stopping ends the watch
        and empties the counts, waking whoever waits on them (``wait_until``): without counts no cap
        holds anyone.
        """
        if not enabled:
            informer, self.informer = self.informer, None
            if informer is not None:
                await informer.stop()
                self.index.clear()
            return
        if self.informer is None:
            self.informer = JobInformer(self.jobs, self.index)
            self.informer.start()
        try:
            async with asyncio.timeout(self._sync_timeout):
                await self.informer.wait_synced()
        except TimeoutError as error:
            raise TransientError(
                f"the Job list of namespace {self.api.namespace} did not load within {self._sync_timeout} s",
                kind="api-timeout",
            ) from error

    async def close(self) -> None:
        """Stop counting and close the API's connections."""
        await self.count_jobs(False)
        await self.api.close()

    async def ready(self) -> bool:
        """The API answers and, while counting, the counts are loaded and the informer has not died."""
        informer = self.informer
        counts_ok = informer is None or (informer.synced.is_set() and informer.healthy)
        return counts_ok and await fetching.api_answers(self.api)

    async def provide_secrets(self, secrets: Sequence[ServiceSecret]) -> None:
        """Nothing: in a cluster the Secrets are ``services apply``'s, and the dispatcher's Role grants
        no access to Secrets (the kubelet resolves the Jobs' references)."""
        del secrets

    async def ensure_config_map(self, doc: Mapping[str, Any]) -> None:
        """Create the immutable ConfigMap once; known names cost no request and no token."""
        await self._config_maps.ensure(doc, before_write=self.bucket.acquire)

    async def create_job(self, doc: Mapping[str, Any]) -> CreateOutcome:
        """Take a token, then create the Job (it counts as active at once when created)."""
        await self.bucket.acquire()
        outcome = await creating.create_job(self.api, doc)
        if outcome is CreateOutcome.CREATED and self.informer is not None:
            self.informer.note_created(doc)
        return outcome

    def active_jobs(self, service: str) -> int:
        """The service's unfinished Jobs, from the informer (no API call); 0 while not counting."""
        return self.index.active(service)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, re-checked after every change the informer sees (and
        when counting stops)."""
        await self.index.wait_until(predicate)

    def finished_jobs(self, handle: JobHandler, settings: Settings) -> FinishedJobWatch:
        """A list+watch of bucketrun's Jobs feeding *handle* each finished, unrecorded one, once per UID,
        from ``settings.watcher.concurrency`` workers."""
        return FinishedJobWatch(
            self.jobs,
            handle,
            concurrency=settings.watcher.concurrency,
            watch_timeout=settings.watcher.watch_timeout,
        )

    async def job_pods(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pods with the Job's controller-uid label."""
        return await fetching.job_pods(self.api, kube.uid(job))

    async def container_log(
        self, job: Mapping[str, Any], pod: str, container: str, tail_lines: int
    ) -> str | None:
        """The kubelet's log of the container (None once the pod is gone)."""
        del job
        return await fetching.pod_log(self.api, pod, container, tail_lines=tail_lines)

    async def mark_recorded(self, job: Mapping[str, Any]) -> None:
        """Annotate the Job with its UID (a Job deleted meanwhile needs no mark). No token: the bucket
        paces the dispatcher's creates, and a mark is the watcher's."""
        await patching.annotate_job(self.api, kube.name(job), {ANNOTATION_RECORDED: kube.uid(job)})
