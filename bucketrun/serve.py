"""``bucketrun serve``: the dispatcher and the watcher in one process (the demo, and small set-ups).

The one composition root that starts both. They share one executor (``build_executor``): the
dispatcher starts it and runs Jobs on it, the watcher records what it reports finished, and this closes
it. Both run as named root tasks; when one ends or fails, the other is stopped and the failure
re-raised.
"""

from __future__ import annotations

import asyncio
import contextlib

from dispatcher.executors.build import build_executor
from dispatcher.process.app import run_dispatcher
from dispatcher.runtime.metrics import new_registry
from dispatcher.runtime.probes import serve_endpoints
from dispatcher.runtime.settings import Settings
from watcher.app import WatcherState, check_settings, run_watcher


async def run_serve(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    *,
    state: WatcherState | None = None,
) -> None:
    """Run dispatcher and watcher until *stop* is set; *ready* is set once both are. ``StartupError`` as
    either would raise it (checked before anything starts)."""
    check_settings(settings)
    ready = ready or asyncio.Event()
    async with contextlib.AsyncExitStack() as cleanup:
        # One registry and one set of endpoints for both halves: one port, one scrape target.
        registry = new_registry("serve")
        probe = ready

        async def is_ready() -> bool:
            return probe.is_set()

        endpoints = await serve_endpoints(settings.metrics.host, settings.metrics.port, is_ready, registry)
        cleanup.push_async_callback(endpoints.cleanup)
        # Started by the dispatcher's half, once it has given the executor the services' Secrets (the
        # local one runs a previous process's unfinished Jobs at once).
        executor = await build_executor(settings)
        cleanup.push_async_callback(executor.close)
        inner = asyncio.Event()  # set by the first part to end, so the other stops too
        parts_ready = (asyncio.Event(), asyncio.Event())
        tasks = {
            asyncio.create_task(
                run_dispatcher(settings, inner, parts_ready[0], executor=executor, registry=registry),
                name="bucketrun-dispatcher",
            ),
            asyncio.create_task(
                run_watcher(
                    settings, inner, parts_ready[1], executor=executor, state=state, registry=registry
                ),
                name="bucketrun-watcher",
            ),
        }
        both_ready = asyncio.create_task(_all_set(parts_ready, ready), name="bucketrun-ready")
        stopper = asyncio.create_task(stop.wait(), name="bucketrun-stop")
        try:
            await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            inner.set()
            both_ready.cancel()
            stopper.cancel()
            ready.clear()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result


async def _all_set(events: tuple[asyncio.Event, ...], ready: asyncio.Event) -> None:
    for event in events:
        await event.wait()
    ready.set()
