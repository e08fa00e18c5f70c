"""Counts bucketrun's unfinished Jobs per service from the cluster: list, then watch, kept in a ``JobIndex``.

The loop, as kopf and client-go do it: list every Job carrying bucketrun's ``managed-by`` label (in
pages), take the list's resourceVersion, watch from there with bookmarks (each event and bookmark
moves the resourceVersion on), and

- when the stream ends (server timeout, dropped connection), watch again from the last
  resourceVersion: nothing is missed and nothing is listed again;
- when the API says that resourceVersion is gone (410 Expired, as an HTTP status or as an ERROR
  event), list again;
- on errors, back off (capped exponential with full jitter) and honour the server's Retry-After; a
  stream that ends at once without any event is treated the same way, so the loop is never busy.

Only ``JobFacts`` are kept (name, service, finished), never the objects. The API calls are those of a
``JobSource``, implemented over kubernetes_asyncio by ``dispatcher.cluster.client``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

import structlog

from dispatcher.backoff import backoff_delay
from dispatcher.cluster.errors import retry_after_seconds
from dispatcher.errors import BucketrunError, TransientError
from dispatcher.jobs import JobFacts, JobIndex

_log = structlog.get_logger(__name__)

PAGE_SIZE: Final = 500
"""Jobs per list request: bounds the memory and the apiserver's work per call."""
_QUIET_STREAM_SECONDS: Final = 1.0
"""A watch that ends sooner than this with no event at all is treated like a failure (back-off)."""


class ResourceExpired(Exception):  # noqa: N818 - named after the API's own "Expired" status
    """The API no longer has the resourceVersion (or continue token) asked for: list again."""


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


@dataclass
class InformerStats:
    """What the informer has done so far (for tests, logs and metrics)."""

    lists: int = 0
    """Complete lists installed (the first one included)."""
    watches: int = 0
    """Watch streams opened."""
    events: int = 0
    """Watch events applied (bookmarks included)."""
    expired: int = 0
    """410 Expired answers that forced a new list."""
    errors: int = 0
    """Failed list or watch calls (each followed by a back-off)."""


class JobInformer:
    """Keeps ``index`` in step with the cluster's bucketrun Jobs until ``stop()``."""

    def __init__(
        self,
        source: JobSource,
        index: JobIndex,
        *,
        watch_timeout: int = 300,
        backoff_base: float = 0.2,
        backoff_cap: float = 30.0,
    ) -> None:
        if watch_timeout < 1:
            raise ValueError(f"watch_timeout must be at least 1 second, got {watch_timeout}")
        self._source = source
        self.index = index
        self._watch_timeout = watch_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._resource_version: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.synced = asyncio.Event()
        """Set once the first complete list is in the index (and stays set)."""
        self.stats = InformerStats()

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()`` unless the loop died."""
        return self._task is not None and not self._task.done()

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
        failures = 0
        cycles = 0
        while max_cycles is None or cycles < max_cycles:
            cycles += 1
            try:
                if self._resource_version is None:
                    await self._relist()
                elif not await self._watch(self._resource_version):
                    # A stream that ends at once with nothing in it (a proxy cutting it, a server
                    # refusing quietly) must not turn this loop into a busy one.
                    await self._back_off(failures, None, "the watch ended at once without any event")
                    failures += 1
                    continue
                failures = 0
            except ResourceExpired:
                self.stats.expired += 1
                self._resource_version = None
                _log.info("job informer: resourceVersion expired, listing again")
            except BucketrunError as error:
                self.stats.errors += 1
                retry_after = error.retry_after if isinstance(error, TransientError) else None
                await self._back_off(failures, retry_after, str(error))
                failures += 1

    async def _back_off(self, failures: int, retry_after: float | None, why: str) -> None:
        delay = backoff_delay(
            failures, base=self._backoff_base, cap=self._backoff_cap, retry_after=retry_after
        )
        _log.warning("job informer: backing off", why=why, delay=round(delay, 3), failures=failures + 1)
        await asyncio.sleep(delay)

    async def _relist(self) -> None:
        listed_at = self.index.now()
        facts: list[JobFacts] = []
        continue_token: str | None = None
        while True:
            page = await self._source.list_jobs(limit=PAGE_SIZE, continue_token=continue_token)
            facts.extend(page.jobs)
            continue_token = page.continue_token
            if not continue_token:
                break
        # Counted first: whoever the new counts wake up sees the list done.
        self.stats.lists += 1
        # The resourceVersion of a paged list is the first page's; every page carries the same one.
        self._resource_version = page.resource_version
        self.synced.set()
        self.index.replace_all(facts, listed_at=listed_at)

    async def _watch(self, resource_version: str) -> bool:
        """Apply one watch stream's events; False if it ended at once without any."""
        # Spread the reconnects of many replicas, as client-go does (timeout in [T, 2T)).
        timeout = self._watch_timeout + random.randrange(self._watch_timeout)  # noqa: S311 - not crypto
        self.stats.watches += 1
        loop = asyncio.get_running_loop()
        opened, events = loop.time(), 0
        async with self._source.watch_jobs(
            resource_version=resource_version, timeout_seconds=timeout
        ) as stream:
            async for event in stream:
                events += 1
                self._apply(event)
        return events > 0 or loop.time() - opened >= _QUIET_STREAM_SECONDS

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, Mapping):
            raise TransientError(
                f"job watch sent an event without an object: type {kind!r}", kind="api-watch"
            )
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise ResourceExpired(str(obj.get("message") or "resourceVersion expired"))
            raise TransientError(
                f"job watch sent an ERROR event: {obj.get('code')} {obj.get('message')}",
                kind="api-watch",
                retry_after=retry_after_seconds({}, obj),
            )
        self.stats.events += 1
        metadata = obj.get("metadata") or {}
        if kind in ("ADDED", "MODIFIED"):
            self.index.observe(JobFacts.of(obj))
        elif kind == "DELETED":
            self.index.forget(str(metadata.get("name", "")))
        # BOOKMARK carries only the resourceVersion; unknown types are skipped but still move it on.
        version = metadata.get("resourceVersion")
        if isinstance(version, str) and version:
            self._resource_version = version
