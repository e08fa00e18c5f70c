"""List, then watch from the list's resourceVersion, for ever: the agent's view of pods, Secrets, ConfigMaps.

A handler sees `replace(objects)` after every (re)list, the whole current set, and `event(type, obj)`
for each watch event after it. A watch that ends is resumed from the last resourceVersion seen
(bookmarks included); a 410 Gone, or any error, relists after a back-off, so a handler must treat a
replace as the truth and forget what is not in it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp

from bucketrun.devtools.node_agent.api import ApiClient, ApiError

logger = logging.getLogger(__name__)

WATCH_SECONDS = 240
"""How long one watch request lasts before it is renewed (the API server randomises its own cap)."""
_BACK_OFF_FIRST = 0.2
_BACK_OFF_MAX = 5.0


class Handler(Protocol):
    """What a reflector feeds."""

    def replace(self, objects: list[dict[str, Any]]) -> None:
        """The whole current set, after a (re)list."""

    def event(self, kind: str, obj: dict[str, Any]) -> None:
        """ADDED, MODIFIED or DELETED *obj*."""


class GoneError(Exception):
    """The watch's resourceVersion is too old (410): relist."""


class Reflector:
    """Keeps *handler* in step with the collection at *path* (filtered by *params*)."""

    def __init__(
        self, api: ApiClient, path: str, handler: Handler, params: Mapping[str, str] | None = None
    ) -> None:
        self._api = api
        self._path = path
        self._handler = handler
        self._params = dict(params or {})
        self.synced = asyncio.Event()
        """Set once the first list has been handed to the handler."""

    async def run(self) -> None:
        """Relist and watch until cancelled."""
        delay = _BACK_OFF_FIRST
        while True:
            try:
                version = await self._list()
                delay = _BACK_OFF_FIRST
                while True:
                    version = await self._watch(version)
            except GoneError:
                logger.info("watch of %s expired (410); relisting", self._path)
            except (ApiError, aiohttp.ClientError, TimeoutError, ValueError) as error:
                logger.warning("list/watch of %s failed: %s; retrying in %.1fs", self._path, error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _BACK_OFF_MAX)

    async def _list(self) -> str:
        listed = await self._api.get(self._path, self._params)
        self._handler.replace(list(listed.get("items") or []))
        self.synced.set()
        return str(listed["metadata"]["resourceVersion"])

    async def _watch(self, version: str) -> str:
        params = {**self._params, "resourceVersion": version}
        async for event in self._api.watch(self._path, params, WATCH_SECONDS):
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise GoneError()
                raise ApiError(int(obj.get("code") or 500), str(obj.get("reason")), str(obj.get("message")))
            version = str(obj.get("metadata", {}).get("resourceVersion") or version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self._handler.event(kind, obj)
        return version
