"""Serving the API: a socket bound before anything is printed, then uvicorn on it until SIGINT/SIGTERM.

Its metrics, ``/healthz`` and ``/readyz`` are served on the metrics port of the dispatcher's settings
(``BUCKETRUN_METRICS__HOST``/``PORT``), as every bucketrun process serves them (`bucketrun.api.metrics`).
"""

from __future__ import annotations

import asyncio
import socket
import sys

import uvicorn
from prometheus_client import CollectorRegistry

from bucketrun.api.app import create_app
from bucketrun.api.metrics import metrics_of
from bucketrun.api.settings import ApiSettings
from dispatcher.runtime.probes import serve_endpoints
from dispatcher.runtime.settings import MetricsSettings, Settings


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host``:``port`` (0: a free port), so connections queue from now on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


class MetricsPortError(Exception):
    """The metrics endpoint cannot listen where the settings say."""


def serve(settings: Settings, api: ApiSettings) -> None:
    """Serve until stopped; prints ``bucketrun api listening on http://HOST:PORT`` once it accepts, and
    where its metrics are."""
    app = create_app(settings, api)  # raises DefinitionsBucketError before anything listens
    if api.services_dir is None and api.services_secret is None:
        sys.stderr.write(
            "warning: neither BUCKETRUN_API__SERVICES_DIR nor BUCKETRUN_API__SERVICES_SECRET is set: "
            "services created here get their buckets, notifications and ConfigMaps, but no dispatcher "
            "learns of them\n"
        )
    sock = listening_socket(api.host, api.port)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    asyncio.run(serve_on(uvicorn.Server(config), sock, settings.metrics, metrics_of(app).registry))


async def serve_on(
    server: uvicorn.Server, sock: socket.socket, metrics: MetricsSettings, registry: CollectorRegistry
) -> None:
    """Serve the API with *server* on *sock* and *registry* on the metrics endpoint until *server* ends;
    `MetricsPortError` when the metrics endpoint cannot listen."""
    try:
        runner = await serve_endpoints(metrics.host, metrics.port, _serving, registry)
    except OSError as error:
        raise MetricsPortError(
            f"the metrics endpoint cannot listen on {metrics.host}:{metrics.port} ({error.strerror}): "
            "set BUCKETRUN_METRICS__PORT (0: any free port)"
        ) from None
    try:
        sys.stderr.write(f"bucketrun api listening on {_url(sock.getsockname())}\n")
        sys.stderr.write(f"bucketrun api metrics on {_url(runner.addresses[0])}/metrics\n")
        sys.stderr.flush()
        await server.serve(sockets=[sock])
    finally:
        await runner.cleanup()


async def _serving() -> bool:
    return True  # /readyz: the API is ready while it serves (each request reaches the store itself)


def _url(address: tuple[str, int] | tuple[str, int, int, int]) -> str:
    host, port = address[0], address[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
