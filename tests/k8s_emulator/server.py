"""The emulator assembled: store, API, watches, Job controller, kubelet, faults, stats, HTTP server."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
from contextlib import suppress
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.k8s_emulator import control_api
from tests.k8s_emulator.api import INFO_KEY, KubernetesApi, error_response, json_response
from tests.k8s_emulator.config import EmulatorConfig
from tests.k8s_emulator.errors import ApiError
from tests.k8s_emulator.faults import FaultInjector
from tests.k8s_emulator.job_controller import JobController
from tests.k8s_emulator.kubelet import Kubelet, KubeletKnobs
from tests.k8s_emulator.objects import Objects
from tests.k8s_emulator.requestinfo import RequestInfo, resolve
from tests.k8s_emulator.resources import NAMESPACES
from tests.k8s_emulator.stats import RequestStats
from tests.k8s_emulator.store import Store
from tests.k8s_emulator.watches import WatchHub, WatchKnobs

logger = logging.getLogger(__name__)

_PRESET_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class Emulator:
    """One emulated cluster: everything behind the HTTP server, wired together."""

    def __init__(self, config: EmulatorConfig, workroot: Path) -> None:
        self.config = config
        self.store = Store(config.history_window)
        self.objects = Objects(self.store)
        self.faults = FaultInjector(config.fault_plan())
        self.stats = RequestStats()
        self.watches = WatchHub(self.store, WatchKnobs())
        self.kubelet = Kubelet(self.objects, KubeletKnobs(config.kubelet, config.max_running_pods), workroot)
        self.jobs = JobController(self.objects, self.kubelet)
        self.api = KubernetesApi(self.objects, self.watches, self.kubelet)
        self._tasks: list[asyncio.Task[None]] = []
        for name in _PRESET_NAMESPACES:
            self.objects.create(NAMESPACES, None, {"metadata": {"name": name}})

    def reset_knobs(self) -> None:
        """Every runtime knob back to its start-up value (faults, watches, kubelet)."""
        self.faults.set_plan(self.config.fault_plan())
        self.watches.knobs = WatchKnobs()
        self.kubelet.set_knobs(self.config.kubelet, self.config.max_running_pods, failing_images=())

    def state(self) -> dict[str, Any]:
        """What the control API reports about the emulator."""
        knobs = self.watches.knobs
        return {
            "revision": self.store.revision,
            "compacted_revision": self.store.compacted_revision,
            "history_window": self.store.history_window,
            "watches": {
                "open": self.watches.open_count,
                "stalled": self.watches.stalled_count,
                "served": self.watches.served,
                "bookmark_interval": knobs.bookmark_interval,
                "expire_next": knobs.expire_next,
            },
            "kubelet": {
                "mode": self.kubelet.knobs.mode,
                "max_running_pods": self.kubelet.knobs.max_running_pods,
                "failing_images": list(self.kubelet.knobs.failing_images),
                "running": self.kubelet.running,
                "pending": self.kubelet.pending,
            },
            "job_controller": {"reconciles": self.jobs.reconciles},
            "faults": {**self.faults.plan.to_json(), "injected": self.faults.injected},
            "objects": {
                plural: self.store.count(plural)
                for plural in ("jobs", "pods", "configmaps", "secrets", "leases")
            },
        }

    # -- lifecycle --------------------------------------------------------------------------------------

    def start_controllers(self) -> None:
        """Hook the controllers to the store and start their loops (inside the running event loop)."""
        self.store.add_listener(self.kubelet.on_event)
        self.store.add_listener(self.jobs.on_event)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.kubelet.run(), name="kubelet"),
            loop.create_task(self.jobs.run(), name="job-controller"),
            loop.create_task(_freeze_survivors(), name="gc-freeze"),
        ]

    async def stop(self) -> None:
        """Close watches, stop controllers, kill every pod process."""
        self.watches.drop_all("the emulator is stopping")
        self.jobs.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        await self.kubelet.shutdown()

    # -- HTTP -------------------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp app: the control API, and the Kubernetes API behind the fault and stats middleware."""
        app = web.Application(middlewares=[self._middleware], client_max_size=16 * 1024 * 1024)
        control_api.add_routes(app, self)
        app.router.add_route("*", "/api", self.api.handle)
        app.router.add_route("*", "/apis", self.api.handle)
        app.router.add_route("*", "/api/{tail:.*}", self.api.handle)
        app.router.add_route("*", "/apis/{tail:.*}", self.api.handle)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Faults and request stats around every /api and /apis request; errors as Status bodies."""
        path = request.path
        if path not in ("/api", "/apis") and not path.startswith(("/api/", "/apis/")):
            return await self._plain(request, handler)
        info = RequestInfo("unknown")
        response: web.StreamResponse | None = None
        in_flight: tuple[str, str, str] | None = None
        try:
            info = resolve(request.method, path, request.query)
            request[INFO_KEY] = info
            in_flight = (info.verb, info.resource_name, info.subresource or "")
            self.stats.started(*in_flight)
            response = await self._serve_with_faults(request, handler, info)
        except ApiError as error:
            response = error_response(error)
        except web.HTTPException as error:
            response = error_response(ApiError(error.status, error.text or error.reason))
        except Exception as error:
            logger.exception("%s %s failed", request.method, request.path_qs)
            response = error_response(ApiError(500, f"Internal error occurred: {error!r}"))
        finally:
            if in_flight is not None:
                self.stats.finished(*in_flight)
            # No response: the request was cancelled because the client went away (nginx logs that as 499).
            code = response.status if response is not None else 499
            self.stats.record(
                info.verb, info.resource_name, info.subresource or "", info.namespace or "", code
            )
        return response

    async def _serve_with_faults(
        self, request: web.Request, handler: Any, info: RequestInfo
    ) -> web.StreamResponse:
        decision = self.faults.decide(info.verb, info.resource_name)
        if decision.delay > 0:
            await asyncio.sleep(decision.delay)
        if decision.error is not None:
            return error_response(decision.error)
        response: web.StreamResponse = await handler(request)
        return response

    @staticmethod
    async def _plain(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as error:
            if request.path.startswith(control_api.PREFIX):
                return json_response({"error": error.text or error.reason}, error.status)
            return error_response(ApiError(error.status, error.text or error.reason))
        return response


async def _freeze_survivors(period: float = 1.0) -> None:
    """Move what survived the last second out of the cyclic collector's reach, every second.

    The store holds thousands of acyclic JSON documents; a full collection walking them all stalls the
    event loop for hundreds of milliseconds, a pause a real (Go) API server does not have and that
    would show up as the latency of the client under test. Reference counting still frees frozen
    objects that are dropped; only cyclic garbage among them would stay, and the store makes none.
    """
    while True:
        await asyncio.sleep(period)
        gc.freeze()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port (port 0: a free one), so the real port is known at once."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock
