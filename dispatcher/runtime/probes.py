"""The HTTP endpoints every bucketrun process serves: ``/healthz``, ``/readyz`` and ``/metrics``.

``/healthz`` answers while the event loop runs (liveness); ``/readyz`` is 200 only while the process
can do its work (the caller decides what that means); ``/metrics`` is the Prometheus text format of the
process's own registry. Nothing here reads settings, so nothing secret can leak through it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


async def serve_endpoints(
    host: str, port: int, is_ready: Callable[[], Awaitable[bool]], registry: CollectorRegistry
) -> web.AppRunner:
    """Start the endpoints on *host*:*port* (0 = any free port); the caller cleans the runner up."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        ready = await is_ready()
        return web.Response(status=200 if ready else 503, text="ready\n" if ready else "not ready\n")

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner
