"""The fault proxy's watch relay: the API server's event stream passed on line by line as it arrives,
with the faults a client must survive -- dropped streams, stalled (half-open) streams, streams ended
after N events or T seconds -- and, on request, extra BOOKMARK events.

Invariant: the client never receives a partial event line, and every line it receives came from the
API server in the same order, except synthesized bookmarks, which carry the resourceVersion of the last
event (or bookmark) already relayed to that client -- never a position the client has not reached. A
stalled stream sends nothing more, not even its end at `timeoutSeconds`, and stays open until the
client leaves or `drop_watches` releases it; its upstream connection is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from tests.backends.fault_proxy_requests import (
    ProxyRequest,
    error_code,
    event_mark,
    is_bookmark,
    known_kind,
    split_lines,
)
from tests.backends.fault_proxy_requests import bookmark_line as make_bookmark


@dataclass
class WatchKnobs:
    """Watch faults the control interface sets (see `FaultProxyControl.set_watch_knobs`)."""

    drop_after_events: int | None = None
    """End every watch stream cleanly after relaying this many events (bookmarks not counted)."""
    drop_after_seconds: float | None = None
    """End every watch stream cleanly this many seconds after it opened."""
    bookmark_interval: float | None = None
    """Seconds between BOOKMARK events the proxy adds to watches that allow bookmarks (None: only the
    API server's own, about one a minute)."""
    expire_next: int = 0
    """This many upcoming watch calls are answered 410 Expired whatever their resourceVersion."""


@dataclass(eq=False)  # identity: the proxy keeps its open streams in a set
class WatchStream:
    """One relayed watch, as `drop_watches` and `stall_watches` reach it."""

    request: ProxyRequest
    wants_bookmarks: bool
    resource_version: str
    """The last resourceVersion relayed to the client ("" until one is known)."""
    awaiting_initial_end: bool = False
    """A streaming list whose initial events have not ended yet: no synthesized bookmark before that."""
    kind: tuple[str, str] | None = None
    """(apiVersion, kind) of the watched objects, once known."""
    stalled: bool = False
    dropped: bool = False
    signal: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the stream is dropped or stalled."""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a stalled stream may end (drop_watches)."""

    def drop(self) -> None:
        """End the stream now (a stalled one too)."""
        self.dropped = True
        self.signal.set()
        self.release.set()

    def stall(self) -> None:
        """Stop relaying; hold the client's connection open and silent."""
        self.stalled = True
        self.signal.set()

    def note(self, lines: list[bytes]) -> None:
        """Remember kind and resourceVersion from the newest relayed lines (events come in order)."""
        if self.awaiting_initial_end:
            self.awaiting_initial_end = not any(
                (mark := event_mark(line)) is not None and mark.initial_events_end for line in lines
            )
        mark = event_mark(lines[-1])
        if mark is None or mark.type == "ERROR":
            return
        if mark.resource_version:
            self.resource_version = mark.resource_version
        if mark.kind and mark.api_version:
            self.kind = (mark.api_version, mark.kind)

    def bookmark(self) -> bytes | None:
        """A BOOKMARK at the client's current position, or None when there is none to give yet."""
        kind = self.kind or known_kind(self.request)
        if (
            self.awaiting_initial_end
            or not self.resource_version
            or self.resource_version == "0"
            or kind is None
        ):
            return None
        return make_bookmark(kind[0], kind[1], self.resource_version)


class UpstreamBrokenError(Exception):
    """The API server's side of a relayed stream broke (not a clean end)."""


@dataclass
class Relay:
    """Moves one watch stream from the API server's response to the client's, under *knobs*."""

    stream: WatchStream
    upstream: aiohttp.ClientResponse
    response: web.StreamResponse
    knobs: WatchKnobs
    error_events: Counter[int] = field(default_factory=Counter)
    """ERROR events relayed, by their Status code (the proxy passes its own, to count over all streams)."""
    sent: int = 0
    _buffer: bytes = b""

    async def run(self) -> None:
        """Relay until the upstream ends, a knob ends the stream, or it is dropped or stalled.

        UpstreamBrokenError when the API server's side fails mid-stream."""
        started = time.monotonic()
        drop_at = started + self.knobs.drop_after_seconds if self.knobs.drop_after_seconds else None
        next_bookmark = self._next_bookmark(started)
        signalled: asyncio.Future[Any] = asyncio.ensure_future(self.stream.signal.wait())
        reading: asyncio.Future[Any] | None = None
        try:
            while True:
                if reading is None:
                    reading = asyncio.ensure_future(self.upstream.content.readany())
                deadline = min((t for t in (drop_at, next_bookmark) if t is not None), default=None)
                timeout = max(0.0, deadline - time.monotonic()) if deadline is not None else None
                done, _ = await asyncio.wait(
                    {reading, signalled}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if signalled in done:
                    return
                if reading in done:
                    chunk, reading = self._chunk(reading), None
                    if not chunk or await self._relay(chunk):
                        return
                now = time.monotonic()
                if next_bookmark is not None and now >= next_bookmark:
                    await self._bookmark()
                    next_bookmark = self._next_bookmark(now)
                if drop_at is not None and now >= drop_at:
                    return
        finally:
            signalled.cancel()
            if reading is not None:
                reading.cancel()
                with contextlib.suppress(BaseException):
                    await reading

    def _next_bookmark(self, now: float) -> float | None:
        interval = self.knobs.bookmark_interval
        return now + interval if interval and self.stream.wants_bookmarks else None

    @staticmethod
    def _chunk(reading: asyncio.Future[Any]) -> bytes:
        try:
            return bytes(reading.result())
        except (aiohttp.ClientError, OSError) as error:
            raise UpstreamBrokenError(str(error) or type(error).__name__) from error

    async def _relay(self, chunk: bytes) -> bool:
        """Pass the complete lines of *chunk* on; True when drop_after_events says the stream ends."""
        lines, self._buffer = split_lines(self._buffer + chunk)
        if not lines:
            return False
        lines, ended = self._within(lines, self.knobs.drop_after_events)
        if lines:
            self.stream.note(lines)
            self.error_events.update(code for line in lines if (code := error_code(line)) is not None)
            await self.response.write(b"".join(lines))
        return ended

    def _within(self, lines: list[bytes], limit: int | None) -> tuple[list[bytes], bool]:
        """The prefix of *lines* that keeps the events relayed at most *limit* (None: no limit), and
        whether the limit is reached."""
        kept: list[bytes] = []
        for line in lines:
            if limit and self.sent >= limit:
                return kept, True
            kept.append(line)
            if not is_bookmark(line):
                self.sent += 1
        return kept, limit is not None and limit > 0 and self.sent >= limit

    async def _bookmark(self) -> None:
        line = self.stream.bookmark()
        if line is not None:
            await self.response.write(line)
