"""The ``kubernetes`` executor: Jobs through the API server, writes rate-limited by a token bucket;
finished Jobs from a list+watch (``FinishedJobWatch``), marked recorded by an annotation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dispatcher.adapters.kube import Cluster
from dispatcher.domain.constants import ANNOTATION_RECORDED
from dispatcher.domain.errors import TransientError
from dispatcher.domain.jobs import CreateOutcome, job_name, job_uid
from dispatcher.executors.base import JobHandler
from dispatcher.executors.finished_watch import FinishedJobWatch
from dispatcher.rendering.secrets import ServiceSecret
from dispatcher.runtime.ratelimit import TokenBucket
from dispatcher.runtime.settings import ClusterSettings, Settings


async def connect_kubernetes_executor(settings: ClusterSettings) -> KubernetesExecutor:
    """A Kubernetes executor as the ``cluster`` settings say (API client, write rate and burst)."""
    cluster = await Cluster.from_settings(settings)
    return KubernetesExecutor(cluster, TokenBucket(settings.api_write_rate, settings.api_write_burst))


class KubernetesExecutor:
    """Thin: a token from *bucket* before every Job or ConfigMap write, ConfigMaps created once, the
    informer run (by ``start``, for the counts; the watcher's calls need no ``start``).

    Owns *cluster*: ``close()`` closes it. The watcher's Lease election and sweep of Jobs that cannot
    start use ``cluster`` directly: they are the cluster's, not any executor's.
    """

    def __init__(self, cluster: Cluster, bucket: TokenBucket, *, sync_timeout: float | None = None) -> None:
        self.cluster = cluster
        self.bucket = bucket
        self._sync_timeout = sync_timeout

    async def start(self) -> None:
        """Start the Job informer and wait for its first list (at most ``sync_timeout`` seconds, if set).

        Until the list is in, the per-service counts would be too low; so this waits, retrying the API
        meanwhile. ``TransientError(kind="api-timeout")`` if ``sync_timeout`` passes first.
        """
        self.cluster.start()
        try:
            async with asyncio.timeout(self._sync_timeout):
                await self.cluster.wait_synced()
        except TimeoutError as error:
            raise TransientError(
                f"the Job list of namespace {self.cluster.namespace} did not load within "
                f"{self._sync_timeout} s",
                kind="api-timeout",
            ) from error

    async def close(self) -> None:
        """Stop the informer and close the cluster's connections."""
        await self.cluster.close()

    async def ready(self) -> bool:
        """The API answers and the Job counts are loaded."""
        return self.cluster.synced.is_set() and await self.cluster.ready()

    async def provide_secrets(self, secrets: Sequence[ServiceSecret]) -> None:
        """Nothing: in a cluster the Secrets are ``services apply``'s, and the dispatcher's Role grants
        no access to Secrets (the kubelet resolves the Jobs' references)."""
        del secrets

    async def ensure_config_map(self, doc: Mapping[str, Any]) -> None:
        """Create the immutable ConfigMap once; known names cost no request and no token."""
        await self.cluster.ensure_config_map(doc, before_write=self.bucket.acquire)

    async def create_job(self, doc: Mapping[str, Any]) -> CreateOutcome:
        """Take a token, then create the Job (it counts as active at once when created)."""
        await self.bucket.acquire()
        return await self.cluster.create_job(doc)

    def active_jobs(self, service: str) -> int:
        """The service's unfinished Jobs, from the informer (no API call)."""
        return self.cluster.active_jobs(service)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, re-checked after every change the informer sees."""
        await self.cluster.wait_until(predicate)

    def finished_jobs(self, handle: JobHandler, settings: Settings) -> FinishedJobWatch:
        """A list+watch of bucketrun's Jobs feeding *handle* each finished, unrecorded one, once per UID,
        from ``settings.watcher.concurrency`` workers."""
        return FinishedJobWatch(
            self.cluster,
            handle,
            concurrency=settings.watcher.concurrency,
            watch_timeout=settings.watcher.watch_timeout,
        )

    async def job_pods(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pods with the Job's controller-uid label."""
        return await self.cluster.job_pods(job_uid(job))

    async def container_log(
        self, job: Mapping[str, Any], pod: str, container: str, tail_lines: int
    ) -> str | None:
        """The kubelet's log of the container (None once the pod is gone)."""
        del job
        return await self.cluster.pod_log(pod, container, tail_lines=tail_lines)

    async def mark_recorded(self, job: Mapping[str, Any]) -> None:
        """Annotate the Job with its UID (a Job deleted meanwhile needs no mark). No token: the bucket
        paces the dispatcher's creates, and a mark is the watcher's."""
        await self.cluster.annotate_job(job_name(job), {ANNOTATION_RECORDED: job_uid(job)})
