"""The ``kubernetes`` executor's finished Jobs: list + watch of bucketrun's Jobs, each finished and
unrecorded one handed to the recorder once.

The loop is the informer's (``dispatcher.adapters.kube.list_watch``), over full Job documents instead of
counts: list every Job with bucketrun's ``managed-by`` label in pages, watch from the list's
resourceVersion with bookmarks, watch again from the last resourceVersion when a stream ends, list
again on 410 Expired, back off (capped, full jitter, Retry-After honoured) on errors and on streams
that end at once.

The watch also counts each service's unfinished Jobs (``index``), from the documents it reads anyway.

Each Job that is finished and not marked recorded is queued once (by UID) for ``concurrency``
workers. The list and the watch never wait for the workers: beyond a small queue of whole documents,
a Job waits in a backlog as its name and UID only (about 150 bytes), and the worker that takes it reads
it again first (it may have been recorded, replaced or deleted meanwhile). A real API server does not
wait either: it ends a watch whose client stops reading, and a paged list's continue token expires
with the next compaction (every 5 minutes), so a list paced by recording (10,000 Jobs at 10 per
second) would start over for ever. A worker retries transient failures with backoff until the Job is
recorded.

The handling of one Job runs shielded from cancellation: when the watch is cancelled (a stop, lost
leadership), ``drain()`` lets the Jobs in hand finish their few requests, so a record, its event and
its mark are not split by a restart.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from dispatcher.adapters.kube import DocumentPage
from dispatcher.adapters.kube.list_watch import PAGE_SIZE, ListWatch, ListWatchStats
from dispatcher.domain import kube
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.jobs import JobFacts, JobIndex, finished_condition, is_recorded
from dispatcher.executors.base import JobHandler
from dispatcher.runtime.concurrency import InHand
from dispatcher.runtime.retrying import retry_transient

_log = structlog.get_logger(__name__)


class JobDocumentSource(Protocol):
    """The two API calls the watch needs. Errors are bucketrun's; 410 is ``ResourceExpired``."""

    async def list_job_documents(self, *, limit: int, continue_token: str | None) -> DocumentPage:
        """One page of bucketrun's Jobs, as full documents."""
        ...

    def watch_jobs(
        self, *, resource_version: str, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Mapping[str, Any]]]:
        """A watch stream of bucketrun's Jobs from *resource_version*, with bookmarks: raw events."""
        ...

    async def read_job(self, name: str) -> Mapping[str, Any] | None:
        """Job *name* as the API has it now, or None when there is none."""
        ...


@dataclass(frozen=True)
class Backlogged:
    """A finished Job offered while the queue was full: read again when a worker takes it."""

    name: str
    uid: str


@dataclass
class WatchStats(ListWatchStats):
    """What the watch has done so far (for tests, logs and metrics)."""

    queued: int = 0
    """Finished Jobs handed to the workers."""
    handled: int = 0
    """Jobs the handler finished with."""
    failures: int = 0
    """Handler failures (each retried, or dropped when permanent)."""
    backlogged: int = 0
    """Jobs offered while the queue was full (kept by name and UID, read again when taken)."""
    gone: int = 0
    """Backlogged Jobs found recorded, replaced or deleted when read again (nothing to do)."""


class FinishedJobWatch(ListWatch):
    """Feeds every finished, unrecorded Job to *handle*, once per UID, until cancelled."""

    label = "job watch"

    def __init__(
        self,
        source: JobDocumentSource,
        handle: JobHandler,
        *,
        concurrency: int = 8,
        watch_timeout: int = 300,
        backoff_base: float = 0.2,
        backoff_cap: float = 30.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.stats: WatchStats
        super().__init__(
            watch_timeout=watch_timeout,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            stats=WatchStats(),
        )
        self._source = source
        self._handle = handle
        self._concurrency = concurrency
        self._queue: asyncio.Queue[Mapping[str, Any] | Backlogged] = asyncio.Queue()
        self._queue_limit = 2 * concurrency
        """Whole documents queued at most; beyond, Jobs wait in the backlog by name and UID."""
        self._backlog: deque[Backlogged] = deque()
        self._pending: set[str] = set()
        """UIDs queued or being handled."""
        self._done: set[str] = set()
        """UIDs handled here whose recorded mark the watch has not shown yet (stale events may come)."""
        self._in_hand = InHand()
        self.index = JobIndex()
        """Every listed and watched Job's (service, finished): the running Jobs per service, at no
        request of their own (``bucketrun_running_jobs`` from the watcher)."""

    async def run(self, *, max_cycles: int | None = None) -> None:
        """List, watch and record until cancelled (or for *max_cycles* list/watch calls, for tests)."""
        self._resource_version = None  # a new run (e.g. a new term as leader) starts from a list
        workers = [
            asyncio.create_task(self._work(), name=f"bucketrun-watcher-worker-{index}")
            for index in range(self._concurrency)
        ]
        try:
            await self._list_and_watch(max_cycles)
            await self._queue.join()
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def drain(self, grace: float) -> bool:
        """Wait (at most *grace* s) for the Jobs in hand to be handled; True if they all were."""
        return await self._in_hand.drain(grace)

    async def _relist(self) -> str:
        listing = self.index.listing()
        continue_token: str | None = None
        version: str | None = None
        while True:
            page = await self._source.list_job_documents(limit=PAGE_SIZE, continue_token=continue_token)
            version = version or page.resource_version  # a paged list's version is its first page's
            for job in page.items:
                listing.add(JobFacts.of(job))
                await self._offer(job)
            continue_token = page.continue_token
            if not continue_token:
                self.index.install(listing)
                return version

    def _open_watch(
        self, resource_version: str, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Mapping[str, Any]]]:
        return self._source.watch_jobs(resource_version=resource_version, timeout_seconds=timeout_seconds)

    async def _on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind == "DELETED":
            self._done.discard(kube.uid(obj))
            self.index.forget(kube.name(obj))
        else:
            self.index.observe(JobFacts.of(obj))
            await self._offer(obj)

    async def _offer(self, job: Mapping[str, Any]) -> None:
        """Queue *job* if it is finished, unrecorded and not queued, handled or being handled already."""
        if finished_condition(job) is None:
            return
        uid = kube.uid(job)
        if is_recorded(job):
            self._done.discard(uid)  # from here on, every event of this Job shows the mark
            return
        if not uid or uid in self._pending or uid in self._done:
            return
        self._pending.add(uid)
        self.stats.queued += 1
        if self._queue.qsize() < self._queue_limit:
            self._queue.put_nowait(job)
        else:
            self._backlog.append(Backlogged(kube.name(job), uid))
            self.stats.backlogged += 1

    async def _work(self) -> None:
        while True:
            item = await self._queue.get()
            name = item.name if isinstance(item, Backlogged) else kube.name(item)
            try:
                await self._in_hand.run(self._handle_until_done(item), name=f"record {name}")
            finally:
                # Refilled before this item is marked done, so that join() waits for the backlog too.
                while self._backlog and self._queue.qsize() < self._queue_limit:
                    self._queue.put_nowait(self._backlog.popleft())
                self._queue.task_done()

    async def _handle_until_done(self, item: Mapping[str, Any] | Backlogged) -> None:
        uid, name = (
            (item.uid, item.name) if isinstance(item, Backlogged) else (kube.uid(item), kube.name(item))
        )
        try:
            job = item if not isinstance(item, Backlogged) else await self._read_again(item)
            if job is None:
                return
            await retry_transient(
                lambda: self._handle_once(job),
                what="recording a job failed",
                base=self._backoff_base,
                cap=self._backoff_cap,
                job=name,
            )
        except PermanentError as error:
            # Left unmarked: the next list (a restart, a new leader) tries it again.
            self.stats.failures += 1
            _log.error("recording a job failed for good", job=name, error=str(error))
        else:
            self._done.add(uid)
            self.stats.handled += 1
        finally:
            self._pending.discard(uid)

    async def _read_again(self, item: Backlogged) -> Mapping[str, Any] | None:
        """The backlogged Job as it is now; None when there is nothing left to do (recorded meanwhile,
        replaced by a new Job of that name, or deleted)."""
        job = await retry_transient(
            lambda: self._source.read_job(item.name),
            what="reading a job to record failed",
            base=self._backoff_base,
            cap=self._backoff_cap,
            job=item.name,
        )
        if job is None or kube.uid(job) != item.uid or is_recorded(job) or finished_condition(job) is None:
            self.stats.gone += 1
            return None
        return job

    async def _handle_once(self, job: Mapping[str, Any]) -> None:
        """One try at handling *job*; a transient failure counts in ``stats.failures``."""
        try:
            await self._handle(job)
        except TransientError:
            self.stats.failures += 1
            raise
