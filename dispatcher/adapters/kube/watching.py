"""Watching: a stream of bucketrun's Jobs from a resourceVersion, with bookmarks, as raw events.

What to do with the stream (resume, relist on 410, back off) is the list/watch loop's
(``dispatcher.adapters.kube.list_watch``); here is only the request and its lines. A stream that sends
nothing, not even a bookmark, for the API's ``watch_read_timeout`` raises ``WatchStalled``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from dispatcher.adapters.kube.api import MANAGED_SELECTOR, KubeApi, mapped, raise_for_status
from dispatcher.adapters.kube.list_watch import ResourceExpired, WatchStalled
from dispatcher.domain.errors import TransientError


@asynccontextmanager
async def watch_jobs(
    api: KubeApi, *, resource_version: str, timeout_seconds: int
) -> AsyncIterator[AsyncIterator[Mapping[str, Any]]]:
    """A watch stream of bucketrun's Jobs from *resource_version*, with bookmarks: raw events.

    ``ResourceExpired`` when the API no longer has *resource_version* (410).
    """
    action = f"watch Jobs in {api.namespace}"
    # No total timeout: the stream lasts timeout_seconds. The read timeout is independent of it: the
    # API server sends a bookmark about every minute, so a stream silent for about two of them sits
    # on a dead (half-open) connection, and waiting for the end of timeout_seconds would blind the
    # loop for up to 10 minutes.
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=api.timeout, sock_read=api.watch_read_timeout)
    try:
        response = await api.batch.list_namespaced_job(
            api.namespace,
            label_selector=MANAGED_SELECTOR,
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            _preload_content=False,
            _request_timeout=timeout,
        )
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as error:
        raise mapped(error, action) from error
    try:
        if response.status == 410:
            raise ResourceExpired(f"{action}: resourceVersion {resource_version} expired")
        if response.status != 200:
            raise_for_status(response.status, response.headers, await response.read(), action)
        events = _watch_events(response, action, api.watch_read_timeout)
        try:
            yield events
        finally:
            await events.aclose()  # finalised here, not by the garbage collector
    finally:
        response.close()


async def _watch_events(
    response: aiohttp.ClientResponse, action: str, read_timeout: float
) -> AsyncGenerator[Mapping[str, Any]]:
    """The events of a watch response, one JSON object per line; ``WatchStalled`` after *read_timeout*
    seconds without a byte."""
    try:
        async for line in response.content:
            if not line.strip():
                continue
            event = orjson.loads(line)  # a watch event is a whole Job: about twice as fast as json
            if not isinstance(event, dict):
                raise TransientError(
                    f"{action}: a watch line is not an event: {line[:200]!r}", kind="api-watch"
                )
            yield event
    except TimeoutError as error:  # the socket read timeout (aiohttp.SocketTimeoutError is one)
        raise WatchStalled(
            f"{action}: nothing received for {read_timeout:g} s, not even a bookmark"
        ) from error
    except (aiohttp.ClientError, ConnectionError) as error:
        raise mapped(error, action) from error
    except ValueError as error:  # bad JSON, or a line longer than the read buffer
        raise TransientError(f"{action}: unreadable watch stream: {error}", kind="api-watch") from error
