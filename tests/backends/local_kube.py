"""The local real control plane as the suite's Kubernetes: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler built by ``make servers``, the node agent running the pods, and the fault proxy in
front of the API server for the tests.

``run_local_cluster`` starts them once per session. Tests reach the API server through the fault proxy
(a kubeconfig with no credentials: the proxy presents the admin's certificate, or forwards a bearer
token), so the faults and request counts they ask for apply to their own calls only, as on the
emulator: the controllers and the node agent talk to the API server directly.

``LocalClusterControl`` is the emulator's control interface (``EmulatorControl``) over this cluster:
faults, counts and watch faults are the proxy's (it is a `FaultProxyControl`), kubelet modes and
image-pull faults the node agent's, compaction and outages the control plane's.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bucketrun.devtools.control_plane import ControlPlane, start_control_plane
from bucketrun.devtools.processes import stop_group
from bucketrun.devtools.stack import start_node_agent_process
from tests.backends.fault_proxy import FaultProxyControl, FaultProxyHandle, proxy_for

NODE_NAME = "bucketrun-test-node"
MAX_GRACE_SECONDS = 2.0
"""The node agent's cap on grace periods, as the emulator's kubelet has (tests should not wait 30 s)."""
KUBELET_MODES = ("run", "instant", "off")
_NO_AGENT_FAULTS = {"hold": False, "instant": False, "max_running": 0, "failing_images": []}


class LocalControlError(RuntimeError):
    """The node agent refused a control request; the message carries its answer."""


@dataclass(frozen=True)
class LocalCluster:
    """A running local cluster: the control plane, the fault proxy in front of it, the node agent."""

    plane: ControlPlane
    proxy: FaultProxyHandle
    kubeconfig: Path
    """The tests' kubeconfig: the fault proxy, no credentials (it acts as the admin)."""
    agent_url: str
    """The node agent's plain-HTTP control endpoint."""
    control: LocalClusterControl
    boot_seconds: float
    """From the first server's start to the node agent's Node Ready."""

    def summary(self) -> str:
        """Versions, startup time and RSS of each server, for the test summary."""
        return f"{self.plane.summary()}\nnode agent: the whole cluster ready in {self.boot_seconds:.1f} s"


class LocalClusterControl(FaultProxyControl):
    """`EmulatorControl`'s interface on the local cluster (see the module docstring): the fault proxy's
    control, plus the node agent's kubelet knobs and the control plane's outages."""

    def __init__(self, proxy: FaultProxyControl, agent_url: str, plane: ControlPlane) -> None:
        super().__init__(proxy.proxy, proxy.loop, compactor=proxy.compactor, timeout=proxy.timeout)
        self.agent_url = agent_url.rstrip("/")
        self.plane = plane

    # -- the node agent -------------------------------------------------------------------------------

    def _agent(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the agent's own http://127.0.0.1 control port
            f"{self.agent_url}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - see above
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            with error:  # an error answer holds its connection open until closed
                answer = error.read().decode()
            raise LocalControlError(f"{method} {path} answered {error.code}: {answer}") from error

    def set_kubelet(
        self,
        mode: str | None = None,
        *,
        max_running_pods: int | None = None,
        failing_images: list[str] | None = None,
    ) -> None:
        """Kubelet mode (run | instant | off), how many pods may run at once, and/or the image patterns
        whose pulls fail, as the emulator's; the node agent's faults ``hold``, ``instant``,
        ``max_running`` and ``failing_images`` do it."""
        changes: dict[str, Any] = {}
        if mode is not None:
            if mode not in KUBELET_MODES:
                raise ValueError(f"kubelet mode must be one of {', '.join(KUBELET_MODES)}, got {mode!r}")
            changes |= {"hold": mode == "off", "instant": mode == "instant"}
        if max_running_pods is not None:
            changes["max_running"] = max_running_pods
        if failing_images is not None:
            changes["failing_images"] = list(failing_images)
        if changes:
            self._agent("PUT", "/faults", changes)

    def agent_state(self) -> dict[str, Any]:
        """The node agent's faults and pods (``running``: pods whose containers run now)."""
        result: dict[str, Any] = self._agent("GET", "/state")
        return result

    # -- the proxy's and the agent's together ---------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The proxy's state with the node agent's under ``kubelet`` (as the emulator's has it)."""
        return {**super().state(), "kubelet": self.agent_state()}

    def reset_api(self) -> None:
        """The proxy's knobs back to their start-up values; the node agent's stay as they are."""
        super().reset()

    def reset(self) -> None:
        """Every knob back to its start-up value: no proxy faults, the node agent running pods."""
        super().reset()
        self._agent("PUT", "/faults", _NO_AGENT_FAULTS)

    # -- the control plane ------------------------------------------------------------------------------

    def stop_apiserver(self) -> None:
        """An outage: kube-apiserver stops (etcd, the controllers and the node agent keep running)."""
        self.plane.stop_apiserver()

    def start_apiserver(self) -> None:
        """The API server back on the same port with the same data."""
        self.plane.start_apiserver()


@contextlib.contextmanager
def run_local_cluster(base: Path) -> Iterator[LocalCluster]:
    """Start the control plane (etcd without fsync: tests only), the node agent and the fault proxy under
    *base*; stop them all when the block ends. ServersNotBuiltError when ``make servers`` has not built
    the binaries."""
    started = time.monotonic()
    plane = start_control_plane(base / "kube", fsync=False)
    try:
        agent, control_port = start_node_agent_process(
            plane,
            base / "node",
            base / "node.log",
            node_name=NODE_NAME,
            extra_args=[f"--max-grace-seconds={MAX_GRACE_SECONDS}"],
        )
        try:
            with proxy_for(plane) as proxy:
                kubeconfig = proxy.write_kubeconfig(base / "proxy.kubeconfig")
                agent_url = f"http://127.0.0.1:{control_port}"
                control = LocalClusterControl(proxy.control, agent_url, plane)
                boot = time.monotonic() - started
                yield LocalCluster(plane, proxy, kubeconfig, agent_url, control, boot)
        finally:
            stop_group(agent, timeout=30.0)
    finally:
        plane.stop()
