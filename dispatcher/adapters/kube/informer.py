"""Counts bucketrun's unfinished Jobs per service from the cluster, kept in a ``JobIndex``.

The list + watch loop is ``dispatcher.adapters.kube.list_watch``: list every Job carrying bucketrun's
``managed-by`` label (in pages), watch from there with bookmarks, watch again after a dropped stream,
list again on 410, back off on errors honouring Retry-After. Only ``JobFacts`` are kept (name, service,
finished), never the objects. The API calls are those of a ``JobSource``: ``job_feed.JobFeed`` over
a ``KubeApi``, or a scripted one in tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from dispatcher.adapters.kube.list_watch import PAGE_SIZE, ListWatch, ListWatchStats, ResourceExpired
from dispatcher.domain import kube
from dispatcher.domain.jobs import JobFacts, JobIndex, job_service

_log = structlog.get_logger(__name__)

InformerStats = ListWatchStats
"""What the informer has done so far (lists, watches, events, expired, errors)."""

__all__ = ["PAGE_SIZE", "InformerStats", "JobInformer", "JobPage", "JobSource", "ResourceExpired"]


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a Job list."""

    jobs: list[JobFacts]
    resource_version: str
    continue_token: str | None


class JobSource(Protocol):
    """The two API calls the informer needs. Errors are bucketrun's; 410 is ``ResourceExpired``."""

    async def list_jobs(self, *, limit: int, continue_token: str | None) -> JobPage:
        """One page of bucketrun's Jobs."""
        ...

    def watch_jobs(
        self, *, resource_version: str, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Mapping[str, Any]]]:
        """A watch stream of bucketrun's Jobs from *resource_version*, with bookmarks: raw events."""
        ...


class JobInformer(ListWatch):
    """Keeps ``index`` in step with the cluster's bucketrun Jobs until ``stop()``."""

    label = "job informer"

    def __init__(
        self,
        source: JobSource,
        index: JobIndex,
        *,
        watch_timeout: int = 300,
        backoff_base: float = 0.2,
        backoff_cap: float = 30.0,
    ) -> None:
        super().__init__(
            watch_timeout=watch_timeout,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            stats=ListWatchStats(),
        )
        self._source = source
        self.index = index
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()`` unless the loop died."""
        return self._task is not None and not self._task.done()

    @property
    def healthy(self) -> bool:
        """False once the loop was started, listed and died: the counts would go stale."""
        return self.running or not self.stats.lists

    def note_created(self, job: Mapping[str, Any]) -> None:
        """Count the Job *job* this process just created, before the watch reports it (a Job that is
        not a bucketrun service's is not counted)."""
        service = job_service(job)
        if service is not None:
            self.index.note_created(service, kube.name(job))

    def start(self) -> None:
        """Start the list/watch loop as a background task (once)."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="job informer")

    async def stop(self) -> None:
        """Stop the loop and wait for it to end."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # asyncio.wait does not raise the task's CancelledError, but a cancellation of stop() itself does.
        await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            _log.error("job informer had died", error=repr(task.exception()))

    async def wait_synced(self) -> None:
        """Return once the first list is in (bound it with ``asyncio.timeout``)."""
        await self.synced.wait()

    async def run(self, *, max_cycles: int | None = None) -> None:
        """List and watch until cancelled (or for *max_cycles* list/watch calls, for tests)."""
        await self._list_and_watch(max_cycles)

    async def _relist(self) -> str:
        listing = self.index.listing()
        continue_token: str | None = None
        while True:
            page = await self._source.list_jobs(limit=PAGE_SIZE, continue_token=continue_token)
            for facts in page.jobs:
                listing.add(facts)
            continue_token = page.continue_token
            if not continue_token:
                break
        self.index.install(listing)
        # The resourceVersion of a paged list is the first page's; every page carries the same one.
        return page.resource_version

    def _open_watch(
        self, resource_version: str, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Mapping[str, Any]]]:
        return self._source.watch_jobs(resource_version=resource_version, timeout_seconds=timeout_seconds)

    async def _on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind == "DELETED":
            self.index.forget(str(kube.meta(obj).get("name", "")))
        else:
            self.index.observe(JobFacts.of(obj))
