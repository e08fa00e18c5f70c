"""The API's Prometheus metrics: every request counted and timed by the template of its route.

Labels stay bounded whatever callers send: ``route`` is the template of the route that answered
(``/system/services/{name}``, never the path asked for, which holds service names and other user
input), or ``unmatched`` when none did; ``method`` is one of HTTP's or ``other``; ``code`` is the status
sent (500 when the app raised before answering). Names are in `dispatcher.runtime.metrics.ApiMetrics`.

They are served as the dispatcher's and the watcher's are, on the metrics port
(``BUCKETRUN_METRICS__HOST``/``PORT``, beside ``/healthz`` and ``/readyz``; `bucketrun.api.server`),
not on the API's own port: Prometheus scrapes it without holding an API credential, and the API port
can face users while the metrics port stays inside the cluster.
"""

from __future__ import annotations

import time
from typing import Final

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dispatcher.runtime.metrics import ApiMetrics, new_registry

HTTP_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED: Final = "unmatched"


def route_label(scope: Scope) -> str:
    """The template of the route that took the request (set in *scope* by the router), or ``unmatched``."""
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED


def method_label(method: str) -> str:
    """*method* when it is one of HTTP's, else ``other`` (a method is any token a client sends)."""
    return method if method in HTTP_METHODS else "other"


class RequestMetrics:
    """ASGI middleware that counts and times every HTTP request it passes on."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless an answer starts: the app raised, and the server answers 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe(method_label(scope["method"]), route_label(scope), status, seconds)


def instrument(app: FastAPI) -> ApiMetrics:
    """Count *app*'s requests in a registry of their own (``bucketrun_build_info{component="api"}``)."""
    metrics = ApiMetrics(new_registry("api"))
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.state.metrics = metrics
    return metrics


def metrics_of(app: FastAPI) -> ApiMetrics:
    """The metrics `instrument` gave *app*."""
    metrics = getattr(app.state, "metrics", None)
    if not isinstance(metrics, ApiMetrics):
        raise TypeError("the app was not instrumented (bucketrun.api.metrics.instrument)")
    return metrics
