"""The list + watch loop shared by the Job informer (counts) and the watcher (completions).

As kopf and client-go do it: list (in pages), take the list's resourceVersion, watch from there with
bookmarks (each event and bookmark moves the resourceVersion on), and

- when the stream ends (server timeout, dropped connection), watch again from the last
  resourceVersion: nothing is missed and nothing is listed again;
- when the stream goes silent for longer than its read timeout (`WatchStalled`: no event and no
  bookmark, which a live API server sends about every minute), take the connection for dead (half-open)
  and do the same, at once: the silence was the wait;
- when the API says that resourceVersion is gone (410 Expired, as an HTTP status or as an ERROR
  event), list again;
- on errors, back off (capped exponential with full jitter) and honour the server's Retry-After; a
  stream that ends at once without any event is treated the same way, so the loop is never busy.

Subclasses say how to list (`_relist`, which returns the list's resourceVersion), how to open a watch
stream, and what an ADDED/MODIFIED/DELETED event means to them (`_on_event`).
"""

from __future__ import annotations

import asyncio
import random
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Final

import structlog

from dispatcher.adapters.kube.errors import retry_after_seconds
from dispatcher.domain import kube
from dispatcher.domain.backoff import backoff_delay
from dispatcher.domain.errors import BucketrunError, TransientError

_log = structlog.get_logger(__name__)

PAGE_SIZE: Final = 100
"""Objects per list request: bounds the memory and the apiserver's work per call. 100, not 500: a page of
real Jobs (the API server fills in every default) is parsed whole, and the process keeps the high-water
mark as RSS (10,000 real tracked Jobs: the dispatcher 131 MiB idle with pages of 100, 141 MiB with 500;
bench/README.md, "Memory on the real stack")."""
_QUIET_STREAM_SECONDS: Final = 1.0
"""A watch that ends sooner than this with no event at all is treated like a failure (back-off)."""


class ResourceExpired(Exception):  # noqa: N818 - named after the API's own "Expired" status
    """The API no longer has the resourceVersion (or continue token) asked for: list again."""


class WatchStalled(TransientError):  # noqa: N818 - a loop signal, named like ResourceExpired
    """A watch stream sent nothing, not even a bookmark, for longer than its read timeout: the connection
    is taken for dead and the watch reopened from the last resourceVersion (no relist, no back-off)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, kind="api-watch-stalled")


@dataclass
class ListWatchStats:
    """What a list/watch loop has done so far (for tests, logs and metrics)."""

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
    stalled: int = 0
    """Watch streams that went silent past their read timeout (each reopened at once from the last
    resourceVersion; not counted in ``errors``)."""


class ListWatch(ABC):
    """One list/watch loop; `synced` is set once the first complete list is in."""

    label = "list/watch"
    """How the loop names itself in logs."""

    def __init__(
        self, *, watch_timeout: int, backoff_base: float, backoff_cap: float, stats: ListWatchStats
    ) -> None:
        if watch_timeout < 1:
            raise ValueError(f"watch_timeout must be at least 1 second, got {watch_timeout}")
        self._watch_timeout = watch_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._resource_version: str | None = None
        self.synced = asyncio.Event()
        """Set once the first complete list is in (and stays set)."""
        self.stats = stats

    @abstractmethod
    async def _relist(self) -> str:
        """List everything (all pages) and take it in; return the list's resourceVersion."""

    @abstractmethod
    def _open_watch(
        self, resource_version: str, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Mapping[str, Any]]]:
        """A watch stream from *resource_version*, with bookmarks: raw events."""

    @abstractmethod
    async def _on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        """Take in one ADDED, MODIFIED or DELETED event (bookmarks and unknown types never reach here)."""

    async def _list_and_watch(self, max_cycles: int | None) -> None:
        """List and watch until cancelled (or for *max_cycles* list/watch calls, for tests)."""
        failures = 0
        cycles = 0
        while max_cycles is None or cycles < max_cycles:
            cycles += 1
            try:
                if self._resource_version is None:
                    version = await self._relist()
                    self.stats.lists += 1
                    self._resource_version = version
                    self.synced.set()
                elif not await self._watch(self._resource_version):
                    await self._back_off(failures, None, "the watch ended at once without any event")
                    failures += 1
                    continue
                failures = 0
            except ResourceExpired:
                self.stats.expired += 1
                self._resource_version = None
                _log.info(f"{self.label}: resourceVersion expired, listing again")
            except WatchStalled as stall:
                self.stats.stalled += 1
                failures = 0  # the stream had been opened: like one that ended, not like a failed call
                _log.warning(f"{self.label}: the watch went silent; watching again", why=str(stall))
            except BucketrunError as error:
                self.stats.errors += 1
                retry_after = error.retry_after if isinstance(error, TransientError) else None
                await self._back_off(failures, retry_after, str(error))
                failures += 1

    async def _back_off(self, failures: int, retry_after: float | None, why: str) -> None:
        delay = backoff_delay(
            failures, base=self._backoff_base, cap=self._backoff_cap, retry_after=retry_after
        )
        _log.warning(f"{self.label}: backing off", why=why, delay=round(delay, 3), failures=failures + 1)
        await asyncio.sleep(delay)

    async def _watch(self, resource_version: str) -> bool:
        """Apply one watch stream's events; False if it ended at once without any."""
        # Spread the reconnects of many replicas, as client-go does (timeout in [T, 2T)).
        timeout = self._watch_timeout + random.randrange(self._watch_timeout)  # noqa: S311 - not crypto
        self.stats.watches += 1
        loop = asyncio.get_running_loop()
        opened, events = loop.time(), 0
        async with self._open_watch(resource_version, timeout) as stream:
            async for event in stream:
                events += 1
                await self._apply(event)
        return events > 0 or loop.time() - opened >= _QUIET_STREAM_SECONDS

    async def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, Mapping):
            raise TransientError(
                f"{self.label} sent an event without an object: type {kind!r}", kind="api-watch"
            )
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise ResourceExpired(str(obj.get("message") or "resourceVersion expired"))
            raise TransientError(
                f"{self.label} sent an ERROR event: {obj.get('code')} {obj.get('message')}",
                kind="api-watch",
                retry_after=retry_after_seconds({}, obj),
            )
        self.stats.events += 1
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            await self._on_event(kind, obj)
        # BOOKMARK carries only the resourceVersion; unknown types are skipped but still move it on.
        version = kube.meta(obj).get("resourceVersion")
        if isinstance(version, str) and version:
            self._resource_version = version
