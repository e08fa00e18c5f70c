"""The one place that turns ``cluster.executor`` into an executor: the dispatcher, the watcher and
``bucketrun serve`` all build theirs here."""

from __future__ import annotations

from dispatcher.adapters.kube import ClusterConfigError
from dispatcher.domain.errors import StartupError
from dispatcher.executors.base import Executor
from dispatcher.executors.kubernetes import connect_kubernetes_executor
from dispatcher.executors.local.executor import LocalExecutor
from dispatcher.runtime.settings import Settings


async def build_executor(settings: Settings) -> Executor:
    """The executor ``settings.cluster`` asks for, not yet started. ``StartupError`` when the
    ``kubernetes`` one finds no usable cluster configuration (kubeconfig or service account)."""
    cluster = settings.cluster
    if cluster.executor == "local":
        return LocalExecutor(cluster.local_state_dir, max_running=cluster.local_max_running)
    try:
        return await connect_kubernetes_executor(cluster)
    except ClusterConfigError as error:
        raise StartupError(str(error)) from error
