"""The node agent as an object: `NodeAgent(options)`, started and stopped, or used as `async with`.

Start order: leftovers of a previous agent on the same workdir killed (`leftovers`), the log server
(so its port is known), the Node's registration, then its heartbeats and the pod watch
(fieldSelector spec.nodeName=<node>). Stop order is the reverse; pods still running are killed and
their statuses stay as last written (a kubelet that stops does not touch its pods either).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from bucketrun.devtools.node_agent.api import ApiClient, load_kubeconfig
from bucketrun.devtools.node_agent.faults import Faults
from bucketrun.devtools.node_agent.leftovers import kill_leftovers
from bucketrun.devtools.node_agent.logs import LogSource, log_app, server_ssl_context
from bucketrun.devtools.node_agent.node import NodeHeartbeat, NodeShape
from bucketrun.devtools.node_agent.pods import Admission, NodeContext, PodManager
from bucketrun.devtools.node_agent.reflect import Reflector

logger = logging.getLogger(__name__)

DEFAULT_NODE_NAME = "bucketrun-node"
SYNC_TIMEOUT = 60.0
"""Seconds the first list of the node's pods may take before start() gives up."""


@dataclass(frozen=True)
class NodeAgentOptions:
    """Everything the agent is started with; one docstring per field, with its unit and default."""

    kubeconfig: Path
    """The kubeconfig the agent talks to the API server with: `system:node:NAME` in group `system:nodes`
    (what the Node authorizer and NodeRestriction allow a kubelet is enough), or an admin."""
    workdir: Path
    """Where pods' logs, volumes and scratch directories go (one directory per pod, removed with the pod)."""
    tls_cert: Path
    """The log server's serving certificate (PEM), with 127.0.0.1 among its IP SANs."""
    tls_key: Path
    """Its private key (PEM)."""
    client_ca: Path | None = None
    """CA whose client certificates the log server requires (the API server's kubelet client
    certificate); None accepts any client."""
    node_name: str = DEFAULT_NODE_NAME
    """The Node's name."""
    port: int = 10250
    """The log server's HTTPS port on 127.0.0.1 (0: a free port)."""
    context: str | None = None
    """The kubeconfig context (default: its current-context)."""
    cpu: str | None = None
    """Allocatable cpu (quantity); default: this machine's cores."""
    memory: str | None = None
    """Allocatable memory (quantity); default: this machine's physical memory."""
    pods: int = 110
    """Allocatable pods (the kubelet's default maxPods)."""
    ephemeral_storage: str | None = None
    """Allocatable ephemeral-storage; default: the size of the workdir's file system."""
    kubelet_version: str | None = None
    """nodeInfo.kubeletVersion; default: the API server's version."""
    control_port: int | None = None
    """Plain-HTTP fault control endpoint on 127.0.0.1 (0: a free port; None: none)."""
    faults: Faults = field(default_factory=Faults)
    """Faults in force from the start."""
    lease_seconds: int = 40
    """The Lease's leaseDurationSeconds."""
    renew_seconds: float = 10.0
    """Seconds between Lease renewals."""
    status_seconds: float = 10.0
    """Seconds between node status posts."""
    retry_seconds: float = 1.0
    """Seconds between tries to start a container that cannot start yet (missing Secret, failing image)."""
    memory_poll_seconds: float = 0.25
    """Seconds between RSS samples of the memory watchdog."""
    max_grace_seconds: float | None = None
    """Cap on every grace period between SIGTERM and SIGKILL (None: the pod's or the deletion's own)."""


def _machine_memory() -> str:
    return str(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _disk_size(path: Path) -> str:
    stats = os.statvfs(path)
    return str(stats.f_blocks * stats.f_frsize)


class NodeAgent:
    """A kubelet stand-in for one Node (see the package docstring)."""

    def __init__(self, options: NodeAgentOptions) -> None:
        self.options = options
        self._faults = options.faults
        self._faults_changed = asyncio.Event()
        self._reachable = asyncio.Event()
        self._api: ApiClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._log_runner: web.AppRunner | None = None
        self._log_site: web.TCPSite | None = None
        self._control_runner: web.AppRunner | None = None
        self.port = options.port
        """The log server's port (the bound one when options.port is 0)."""
        self.control_port: int | None = None
        """The fault control endpoint's port, if it is served."""
        self._admission = Admission()
        self.heartbeat: NodeHeartbeat | None = None
        self.pods: PodManager | None = None

    @property
    def node_name(self) -> str:
        """The Node's name."""
        return self.options.node_name

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    async def set_faults(self, **changes: Any) -> Faults:
        """Replace the named fault fields (see `Faults`); returns the faults now in force."""
        self._faults = self._faults.updated(changes)
        await self._apply_reachability()
        # Wake whoever waits on the faults, and give later waiters a fresh event.
        changed, self._faults_changed = self._faults_changed, asyncio.Event()
        changed.set()
        return self._faults

    def state(self) -> dict[str, Any]:
        """The faults in force, with the counts of pods `running` and `pending` (held, or waiting)."""
        return {
            **self._faults.as_json(),
            "running": self._admission.running,
            "pending": self._admission.pending,
        }

    async def __aenter__(self) -> NodeAgent:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Serve logs, sync the caches, register the Node, then heartbeat and run pods; returns once the
        Node is registered Ready and the pod watch is listed."""
        options = self.options
        options.workdir.mkdir(parents=True, exist_ok=True)
        killed = kill_leftovers(options.workdir)
        if killed:
            logger.warning(
                "killed %d container processes a previous agent left running: %s", len(killed), killed
            )
        try:
            await self._start(options)
        except BaseException:
            await self.stop()
            raise

    async def _start(self, options: NodeAgentOptions) -> None:
        api = ApiClient(load_kubeconfig(options.kubeconfig, options.context))
        self._api = api
        context = NodeContext(
            api=api,
            node_name=options.node_name,
            workroot=options.workdir.resolve(),
            faults=lambda: self._faults,
            reachable=self._reachable,
            faults_changed=lambda: self._faults_changed,
            retry_seconds=options.retry_seconds,
            memory_poll_seconds=options.memory_poll_seconds,
            max_grace_seconds=options.max_grace_seconds,
        )
        self.pods = PodManager(context)
        self._admission = context.admission
        await self._serve_logs()
        await self._serve_control()
        version = options.kubelet_version or str((await api.get("/version")).get("gitVersion", "v0.0.0"))
        self.heartbeat = NodeHeartbeat(
            api,
            self._shape(version),
            reachable=self._reachable,
            lease_seconds=options.lease_seconds,
            renew_seconds=options.renew_seconds,
            status_seconds=options.status_seconds,
        )
        await self.heartbeat.register()
        await self._apply_reachability()
        self._spawn(self.heartbeat.run(), "heartbeat")
        pods = Reflector(
            api, "/api/v1/pods", self.pods, {"fieldSelector": f"spec.nodeName={options.node_name}"}
        )
        self._spawn(pods.run(), "watch pods")
        async with asyncio.timeout(SYNC_TIMEOUT):
            await pods.synced.wait()
        logger.info("node %s is registered; logs on https://127.0.0.1:%d", options.node_name, self.port)

    def _shape(self, version: str) -> NodeShape:
        options = self.options
        return NodeShape(
            name=options.node_name,
            cpu=options.cpu or str(os.cpu_count() or 1),
            memory=options.memory or _machine_memory(),
            pods=options.pods,
            ephemeral_storage=options.ephemeral_storage or _disk_size(options.workdir),
            port=self.port,
            kubelet_version=version,
        )

    def _spawn(self, coroutine: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        task.add_done_callback(_report_death)
        self._tasks.append(task)

    async def stop(self) -> None:
        """Stop heartbeats, watches and every pod's processes, and the servers. Safe to call twice."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.pods is not None:
            await self.pods.stop()
        for runner in (self._log_runner, self._control_runner):
            if runner is not None:
                await runner.cleanup()
        self._log_runner = self._control_runner = self._log_site = None
        if self._api is not None:
            await self._api.close()
            self._api = None

    # -- servers ----------------------------------------------------------------------------------------

    async def _serve_logs(self) -> None:
        app = log_app(self._log_source, self._reachable.is_set)
        self._log_runner = web.AppRunner(app, access_log=None)
        await self._log_runner.setup()
        await self._open_log_port()

    async def _open_log_port(self) -> None:
        if self._log_runner is None:
            raise RuntimeError("the log server is not set up")
        options = self.options
        context = server_ssl_context(options.tls_cert, options.tls_key, options.client_ca)
        self._log_site = web.TCPSite(self._log_runner, "127.0.0.1", self.port, ssl_context=context)
        await self._log_site.start()
        self.port = _bound_port(self._log_site)

    async def _apply_reachability(self) -> None:
        """Open or close the log port and gate every write to the API as the unreachable fault says."""
        if self._faults.unreachable:
            self._reachable.clear()
            if self._log_site is not None:
                await self._log_site.stop()
                self._log_site = None
            return
        if self._log_site is None and self._log_runner is not None:
            await self._open_log_port()
        self._reachable.set()

    def _log_source(self, namespace: str, pod: str, container: str) -> LogSource | str:
        worker = self.pods.worker_for(namespace, pod) if self.pods is not None else None
        if worker is None:
            return f'pod "{namespace}/{pod}" not found on node {self.node_name}'
        record = worker.records.get(container)
        if record is None:
            return f'container "{container}" not found in pod "{namespace}/{pod}"'
        current = record.current
        never_ran = current.state == "waiting" and record.last is None
        return LogSource(
            worker.workdir / "logs" / f"{container}.log",
            (current.reason or "ContainerCreating") if never_ran else None,
            lambda: worker.records[container].current.state == "terminated",
        )

    async def _serve_control(self) -> None:
        if self.options.control_port is None:
            return

        async def get_faults(request: web.Request) -> web.Response:
            return web.json_response(self._faults.as_json())

        async def put_faults(request: web.Request) -> web.Response:
            try:
                changes = await request.json()
            except ValueError as error:
                return web.json_response({"error": f"the body is not JSON: {error}"}, status=400)
            if not isinstance(changes, Mapping):
                return web.json_response(
                    {"error": f"the body must be a JSON object, got {changes!r}"}, status=400
                )
            try:
                faults = await self.set_faults(**changes)
            except ValueError as error:
                return web.json_response({"error": str(error)}, status=400)
            return web.json_response(faults.as_json())

        async def get_state(request: web.Request) -> web.Response:
            return web.json_response(self.state())

        app = web.Application()
        app.router.add_get("/state", get_state)
        app.router.add_get("/faults", get_faults)
        app.router.add_put("/faults", put_faults)
        self._control_runner = web.AppRunner(app, access_log=None)
        await self._control_runner.setup()
        site = web.TCPSite(self._control_runner, "127.0.0.1", self.options.control_port)
        await site.start()
        self.control_port = _bound_port(site)


def _bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp keeps the listening sockets there; no public accessor for port 0
    sockets = getattr(server, "sockets", None) or []
    return int(sockets[0].getsockname()[1])


def _report_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("node agent task %s died", task.get_name(), exc_info=task.exception())


async def start_node_agent(**options: Any) -> NodeAgent:
    """Start a node agent with `NodeAgentOptions(**options)`; `stop()` (or `async with`) ends it."""
    agent = NodeAgent(NodeAgentOptions(**options))
    await agent.start()
    return agent
