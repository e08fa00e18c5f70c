"""The Node object and its heartbeats: registration, node status, and the Lease in kube-node-lease.

As a kubelet: the Node carries capacity and allocatable (cpu, memory, pods, ephemeral-storage), the
address InternalIP 127.0.0.1 (the API server reaches the log server there) and
`status.daemonEndpoints.kubeletEndpoint.Port`; its conditions are Ready=True (KubeletReady) and the
three pressure conditions False. Every `renew_seconds` (10 s, a quarter of the 40 s lease) the Lease's
renewTime is renewed; every `status_seconds` the node status is posted again with fresh
lastHeartbeatTime. The node lifecycle controller in kube-controller-manager reads both: a node whose
Lease is not renewed within its grace period becomes Ready=Unknown (NotReady).
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bucketrun.devtools.node_agent.api import ApiClient, ApiError
from dispatcher.domain.timestamps import rfc3339

logger = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
_ARCHITECTURES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}
_PRESSURE = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


@dataclass(frozen=True)
class NodeShape:
    """What the node offers the scheduler, and how it is reached."""

    name: str
    cpu: str
    """Quantity, e.g. "2"."""
    memory: str
    """Quantity, e.g. "24Gi"."""
    pods: int
    ephemeral_storage: str
    port: int
    """The log server's HTTPS port (daemonEndpoints.kubeletEndpoint.Port)."""
    kubelet_version: str


def architecture() -> str:
    """This machine's GOARCH-style name."""
    machine = platform.machine()
    return _ARCHITECTURES.get(machine, machine)


def micro_time(moment: datetime) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def node_manifest(shape: NodeShape) -> dict[str, Any]:
    """The Node to register (status included; it is posted again right after)."""
    arch = architecture()
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": shape.name,
            "labels": {
                "kubernetes.io/hostname": shape.name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": arch,
                "beta.kubernetes.io/os": "linux",
                "beta.kubernetes.io/arch": arch,
            },
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {},
        "status": node_status(shape, datetime.now(UTC), None),
    }


def node_conditions(now: datetime, previous: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Ready=True and the pressure conditions False, heartbeat *now*; a condition keeps its
    lastTransitionTime from *previous* while its status does not change."""
    stamp = rfc3339(now)
    wanted = [(kind, "False", reason, message) for kind, reason, message in _PRESSURE]
    wanted.append(("Ready", "True", "KubeletReady", "kubelet is posting ready status"))
    before = {str(c.get("type")): c for c in previous or []}
    conditions = []
    for kind, status, reason, message in wanted:
        old = before.get(kind)
        transition = old["lastTransitionTime"] if old and old.get("status") == status else stamp
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": transition,
            }
        )
    return conditions


def node_status(shape: NodeShape, now: datetime, previous: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The node's whole status."""
    resources = {
        "cpu": shape.cpu,
        "memory": shape.memory,
        "pods": str(shape.pods),
        "ephemeral-storage": shape.ephemeral_storage,
    }
    uname = os.uname()
    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": node_conditions(now, previous),
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": shape.port}},
        "nodeInfo": {
            "machineID": _machine_id(),
            "systemUUID": _machine_id(),
            "bootID": _boot_id(),
            "kernelVersion": uname.release,
            "osImage": _os_image(),
            "containerRuntimeVersion": "local://bucketrun-node-agent",
            "kubeletVersion": shape.kubelet_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": architecture(),
        },
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _machine_id() -> str:
    return _read("/etc/machine-id") or "bucketrun-node-agent"


def _boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return "Linux"


def lease_manifest(shape: NodeShape, node_uid: str, duration_seconds: int, now: datetime) -> dict[str, Any]:
    """The node's Lease, owned by the Node (so it goes when the Node is deleted)."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": shape.name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": shape.name, "uid": node_uid}],
        },
        "spec": {
            "holderIdentity": shape.name,
            "leaseDurationSeconds": duration_seconds,
            "renewTime": micro_time(now),
        },
    }


class NodeHeartbeat:
    """Registers the node, then renews its Lease and posts its status while *reachable* is set."""

    def __init__(
        self,
        api: ApiClient,
        shape: NodeShape,
        *,
        reachable: asyncio.Event,
        lease_seconds: int = 40,
        renew_seconds: float = 10.0,
        status_seconds: float = 10.0,
    ) -> None:
        if lease_seconds < 1 or renew_seconds <= 0 or status_seconds <= 0:
            raise ValueError(
                f"lease_seconds ({lease_seconds}), renew_seconds ({renew_seconds}) and "
                f"status_seconds ({status_seconds}) must be positive"
            )
        self._api = api
        self.shape = shape
        self._reachable = reachable
        self._lease_seconds = lease_seconds
        self._renew = renew_seconds
        self._status_every = status_seconds
        self._node_uid = ""
        self._conditions: list[dict[str, Any]] | None = None
        self.renewals = 0
        """Lease renewals so far (for tests and the log)."""

    async def register(self) -> None:
        """Create the Node (or adopt the existing one) and post a Ready status and the Lease."""
        try:
            node = await self._api.create("/api/v1/nodes", node_manifest(self.shape))
        except ApiError as error:
            if error.status != 409:
                raise
            node = await self._api.get(f"/api/v1/nodes/{self.shape.name}")
        self._node_uid = str(node["metadata"]["uid"])
        await self.post_status()
        await self.renew_lease()

    async def post_status(self) -> None:
        """Post the node status now (fresh heartbeat times)."""
        status = node_status(self.shape, datetime.now(UTC), self._conditions)
        await self._api.merge_patch(f"/api/v1/nodes/{self.shape.name}/status", {"status": status})
        self._conditions = status["conditions"]

    async def renew_lease(self) -> None:
        """Set the Lease's renewTime to now, creating the Lease if it is missing."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.shape.name}"
        now = datetime.now(UTC)
        spec = {
            "holderIdentity": self.shape.name,
            "leaseDurationSeconds": self._lease_seconds,
            "renewTime": micro_time(now),
        }
        try:
            await self._api.merge_patch(path, {"spec": spec})
        except ApiError as error:
            if error.status != 404:
                raise
            manifest = lease_manifest(self.shape, self._node_uid, self._lease_seconds, now)
            await self._api.create(
                f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases", manifest
            )
        self.renewals += 1

    async def run(self) -> None:
        """Renew and post on schedule until cancelled; nothing is sent while the node is unreachable."""
        await asyncio.gather(
            self._every(self._renew, self.renew_lease, "lease"),
            self._every(self._status_every, self.post_status, "node status"),
        )

    async def _every(self, seconds: float, beat: Any, what: str) -> None:
        while True:
            await asyncio.sleep(seconds)
            await self._reachable.wait()
            try:
                await beat()
            except (ApiError, aiohttp.ClientError, TimeoutError) as error:
                logger.warning("%s of node %s not renewed: %s", what, self.shape.name, error)
