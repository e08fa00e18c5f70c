"""Server side of `?watch=true`: replay from a resourceVersion or synthesize ADDED events, then stream live.

Follows the apiserver: a resourceVersion older than the compacted revision gets HTTP 200 and a single
ERROR event (410 Expired); selectors apply to events, and an object that stops matching is sent as
DELETED (one that starts matching as ADDED); BOOKMARK events carry the revision the watcher has seen
up to; `timeoutSeconds` ends the stream cleanly (after a last bookmark when bookmarks were asked for).

Faults: the next N watch calls can be made to answer 410, and open streams can be dropped (ended cleanly)
or stalled: a stalled stream sends nothing more, not even bookmarks or its end at `timeoutSeconds`, and
stays open until the client leaves -- what a client sees of a half-open connection (a peer or a middlebox
gone silently).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from tests.k8s_emulator.errors import status_body
from tests.k8s_emulator.resources import Resource
from tests.k8s_emulator.selectors import Selection
from tests.k8s_emulator.store import (
    ADDED,
    DELETED,
    MODIFIED,
    Store,
    Subscription,
    TooOldError,
    WatchEvent,
    dump_json,
)

logger = logging.getLogger(__name__)

_INITIAL_CHUNK = 500  # events per write while replaying


@dataclass(frozen=True)
class WatchRequest:
    """What one watch call asked for."""

    resource: Resource
    selection: Selection
    resource_version: str | None
    timeout_seconds: float | None
    bookmarks: bool


@dataclass
class WatchKnobs:
    """Watch behaviour the control API can change at runtime."""

    bookmark_interval: float = 5.0
    """Seconds between BOOKMARK events for watchers that allow them."""
    expire_next: int = 0
    """Fault: this many upcoming watch calls answer 410 Expired whatever their resourceVersion."""


def transition(event: WatchEvent, selection: Selection) -> str | None:
    """The event type a watcher with *selection* sees for *event* (None: not at all)."""
    if event.type == ADDED:
        return ADDED if selection.matches(event.obj) else None
    if event.type == DELETED:
        return DELETED if selection.matches(event.obj) else None
    now_matches = selection.matches(event.obj)
    was_matching = event.prev is not None and selection.matches(event.prev)
    if now_matches:
        return MODIFIED if was_matching else ADDED
    return DELETED if was_matching else None


INITIAL_EVENTS_END = "k8s.io/initial-events-end"
"""The annotation of the bookmark that ends a streaming list (the fault proxy reads it; the emulator
refuses `sendInitialEvents`)."""


def bookmark_line(resource: Resource, revision: int) -> bytes:
    """A BOOKMARK event carrying only the kind and the resourceVersion, as the apiserver sends it."""
    metadata = {"resourceVersion": str(revision)}
    obj = {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": metadata}
    return dump_json({"type": "BOOKMARK", "object": obj}) + b"\n"


def expired_line(requested: str, oldest: int) -> bytes:
    """The ERROR event for a resourceVersion that compaction removed."""
    status = status_body(410, "Expired", f"too old resource version: {requested} ({oldest})")
    return dump_json({"type": "ERROR", "object": status}) + b"\n"


class WatchHub:
    """Serves watch requests over the store and can drop them all (fault injection)."""

    def __init__(self, store: Store, knobs: WatchKnobs) -> None:
        self.store = store
        self.knobs = knobs
        self._open: dict[Subscription, str] = {}
        self._stalled: dict[Subscription, asyncio.Event] = {}
        """Stalled streams (no longer in ``_open``), each held open until its event is set."""
        self.served = 0

    @property
    def open_count(self) -> int:
        """Watch streams currently open and served (stalled ones are not)."""
        return len(self._open)

    @property
    def stalled_count(self) -> int:
        """Stalled watch streams still held open (their clients have not left yet)."""
        return len(self._stalled)

    def drop_all(self, reason: str = "dropped by the emulator's control API") -> int:
        """End every open watch stream now, stalled ones included; returns how many were open."""
        subscriptions = list(self._open)
        for subscription in subscriptions:
            subscription.close(reason)
        held = list(self._stalled.values())
        for release in held:
            release.set()
        return len(subscriptions) + len(held)

    def stall_all(self) -> int:
        """Make every open watch stream go silent for good (see the module docstring); returns how many.

        Streams opened afterwards are served normally.
        """
        subscriptions = list(self._open)
        for subscription in subscriptions:
            self._stalled[subscription] = asyncio.Event()
            subscription.close("stalled by the emulator's control API")  # no more events pile up for it
        return len(subscriptions)

    def _take_forced_expiry(self) -> bool:
        if self.knobs.expire_next > 0:
            self.knobs.expire_next -= 1
            return True
        return False

    async def serve(self, request: web.Request, watch: WatchRequest) -> web.StreamResponse:
        """Answer one watch call with a newline-delimited JSON stream."""
        self.served += 1
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        rv = watch.resource_version
        if self._take_forced_expiry():
            await response.prepare(request)
            await response.write(expired_line(rv or "0", self.store.revision))
            await response.write_eof()
            return response
        # Snapshot (or replay) and subscription happen with no await in between, so no event is missed.
        subscription = self.store.subscribe(watch.resource.plural)
        try:
            initial, last_revision = self._initial_events(watch)
        except TooOldError as error:
            self.store.unsubscribe(subscription)
            await response.prepare(request)
            await response.write(expired_line(str(error.requested), error.oldest))
            await response.write_eof()
            return response
        self._open[subscription] = request.path
        try:
            await response.prepare(request)
            for start in range(0, len(initial), _INITIAL_CHUNK):
                await response.write(b"".join(initial[start : start + _INITIAL_CHUNK]))
            await self._stream(response, watch, subscription, last_revision)
        finally:
            self.store.unsubscribe(subscription)
            self._open.pop(subscription, None)
        release = self._stalled.get(subscription)
        if release is not None:
            try:
                # Silent until drop_all; the handler is cancelled when the client leaves
                # (the server runs with handler_cancellation).
                await release.wait()
            finally:
                self._stalled.pop(subscription, None)
        await response.write_eof()
        return response

    def _initial_events(self, watch: WatchRequest) -> tuple[list[bytes], int]:
        rv = watch.resource_version
        if not rv or rv == "0":
            namespace = watch.selection.namespace if watch.resource.namespaced else None
            lines = [
                b'{"type":"ADDED","object":' + dump_json(obj) + b"}\n"
                for obj in self.store.list_objects(watch.resource.plural, namespace)
                if watch.selection.matches(obj)
            ]
            return lines, self.store.revision
        revision = int(rv)
        lines = []
        for event in self.store.events_since(watch.resource.plural, revision):
            seen_as = transition(event, watch.selection)
            if seen_as is not None:
                lines.append(event.line(seen_as))
        return lines, self.store.revision

    async def _stream(
        self,
        response: web.StreamResponse,
        watch: WatchRequest,
        subscription: Subscription,
        last_revision: int,
    ) -> None:
        started = time.monotonic()
        timeout_at = started + watch.timeout_seconds if watch.timeout_seconds else None
        next_bookmark = started + self.knobs.bookmark_interval if watch.bookmarks else None
        while True:
            deadlines = [t for t in (timeout_at, next_bookmark) if t is not None]
            await subscription.wait(min(deadlines) - time.monotonic() if deadlines else 3600.0)
            if subscription.closed_reason is not None:
                return
            lines = []
            for event in subscription.drain():
                last_revision = event.revision
                seen_as = transition(event, watch.selection)
                if seen_as is not None:
                    lines.append(event.line(seen_as))
            if lines:
                await response.write(b"".join(lines))
            now = time.monotonic()
            # With nothing queued the watcher has seen every event up to the store's current revision.
            seen_up_to = self.store.revision if subscription.idle else last_revision
            if next_bookmark is not None and now >= next_bookmark:
                await response.write(bookmark_line(watch.resource, seen_up_to))
                next_bookmark = now + self.knobs.bookmark_interval
            if timeout_at is not None and now >= timeout_at:
                if watch.bookmarks:
                    await response.write(bookmark_line(watch.resource, seen_up_to))
                return
