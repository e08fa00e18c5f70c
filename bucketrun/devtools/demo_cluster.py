"""The demo's Kubernetes: the control plane ``make servers`` builds and one node agent, started under the
demo's directory, empty each run, and stopped when the demo ends.

``ClusterBoot`` starts it in a worker thread (about ten seconds) while the demo starts its S3 server;
``ready()`` waits for it, ``stop()`` ends whatever it started, even when nobody waited for it. The
invariant a caller keeps: every ``ClusterBoot`` created is stopped, so no server outlives the demo.

etcd runs with ``fsync=False`` (``--unsafe-no-fsync``): the demo's cluster is thrown away at the end of
each run (the next run starts it empty), so what a machine crash could lose is lost anyway, and skipping
the disk syncs makes each Job's many writes cheaper on a busy two-core machine.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bucketrun.devtools.control_plane import ControlPlane, ServersNotBuiltError, start_control_plane
from bucketrun.devtools.processes import stop_group
from bucketrun.devtools.stack import NAMESPACE, NODE_NAME, prepare_namespace, start_node_agent_process

_AGENT_STOP_TIMEOUT: Final = 30.0


class ClusterBootError(RuntimeError):
    """The demo's cluster did not start; the message says which server and where its log is."""


@dataclass(frozen=True)
class DemoCluster:
    """What the demo (and a person next to it) needs of its running cluster."""

    kubeconfig: Path
    """The admin's kubeconfig: the dispatcher and watcher use it, and so does the printed kubectl line."""
    namespace: str
    """Where the Jobs go (labelled as deploy/kubernetes' namespace.yaml: PodSecurity enforce ``baseline``,
    warn ``restricted``; deploy/kubernetes' RBAC in it)."""
    kubectl: Path
    """The kubectl ``make servers`` built."""
    api_url: str
    version: str
    """kube-apiserver's version."""
    base_dir: Path
    """The servers' state and logs (``logs/``), the node agent's work directory and log."""

    @property
    def kubectl_command(self) -> str:
        """``KUBECONFIG=... /path/to/kubectl``: what a person pastes into a shell, a subcommand after it."""
        return f"KUBECONFIG={self.kubeconfig} {self.kubectl}"

    def lines(self) -> list[str]:
        """What the demo prints about its cluster: where it runs, and the kubectl lines to watch it."""
        return [
            f"Kubernetes {self.version}: API {self.api_url}, namespace {self.namespace}, node {NODE_NAME} "
            f"running pods as local processes (state and logs: {self.base_dir})",
            f"  its Jobs: {self.kubectl_command} get jobs -n {self.namespace}",
            f"  its pods: {self.kubectl_command} get pods -n {self.namespace}",
        ]


@dataclass
class _Running:
    plane: ControlPlane
    agent: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_group(self.agent, timeout=_AGENT_STOP_TIMEOUT)
        self.plane.stop()

    def describe(self) -> DemoCluster:
        plane = self.plane
        return DemoCluster(
            plane.kubeconfig,
            NAMESPACE,
            plane.binaries["kubectl"].path,
            plane.api_url,
            plane.versions["kube-apiserver"],
            plane.base_dir,
        )


def _boot(base_dir: Path) -> _Running:
    """Start etcd, the API server, controller manager and scheduler under *base_dir* (emptied first),
    the namespace, and a node agent; stop what started if anything fails."""
    shutil.rmtree(base_dir, ignore_errors=True)
    plane = start_control_plane(base_dir, fsync=False)
    try:
        prepare_namespace(plane)
        agent, _ = start_node_agent_process(plane, base_dir / "node", base_dir / "node-agent.log")
    except BaseException:
        plane.stop()
        raise
    return _Running(plane, agent)


class ClusterBoot:
    """The demo's cluster, starting in a worker thread from the moment this is created (in a running
    event loop)."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self._task = asyncio.create_task(asyncio.to_thread(_boot, base_dir), name="bucketrun-demo-cluster")

    async def ready(self) -> DemoCluster:
        """The cluster, once its node is Ready; ``ClusterBootError`` when it did not start."""
        try:
            # shielded: a cancelled wait must not drop the thread's result (servers nobody would stop)
            running = await asyncio.shield(self._task)
        except (ServersNotBuiltError, RuntimeError, TimeoutError) as error:
            raise ClusterBootError(f"the demo's Kubernetes did not start: {error}") from error
        return running.describe()

    async def stop(self) -> None:
        """Wait for the start to end (it cannot be interrupted), then stop whatever it started."""
        await asyncio.wait({self._task})
        if self._task.cancelled() or self._task.exception() is not None:
            return  # nothing is left running: _boot stops what it started when it fails
        await asyncio.to_thread(self._task.result().stop)
