"""The one place that reads ``cluster.executor``: the dispatcher, the watcher and ``bucketrun serve``
build their executor here, the commands that need the cluster itself (``services``) open it here, and
``bucketrun jobs`` gets its ``JobAdmin`` (the cluster's, or the local executor's state directory) here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dispatcher.adapters.kube import ClusterConfigError, KubeApi
from dispatcher.domain.errors import StartupError
from dispatcher.executors.admin import JobAdmin, KubeJobAdmin
from dispatcher.executors.base import Executor
from dispatcher.executors.kubernetes import connect_kubernetes_executor
from dispatcher.executors.local.admin import LocalJobAdmin
from dispatcher.executors.local.executor import LocalExecutor
from dispatcher.runtime.settings import ClusterSettings, Settings


def in_cluster(settings: ClusterSettings) -> bool:
    """True when Jobs run in a Kubernetes cluster (the ``kubernetes`` executor), which then holds the
    services' ConfigMaps and Secrets; the ``local`` executor has no cluster."""
    return settings.executor == "kubernetes"


async def build_executor(settings: Settings) -> Executor:
    """The executor ``settings.cluster`` asks for, not yet started. ``StartupError`` when the
    ``kubernetes`` one finds no usable cluster configuration (kubeconfig or service account)."""
    cluster = settings.cluster
    if not in_cluster(cluster):
        return LocalExecutor(cluster.local_state_dir, max_running=cluster.local_max_running)
    try:
        return await connect_kubernetes_executor(cluster)
    except ClusterConfigError as error:
        raise StartupError(str(error)) from error


@asynccontextmanager
async def job_admin_of(settings: ClusterSettings) -> AsyncIterator[JobAdmin]:
    """Job management where the Jobs run (``bucketrun jobs``): the cluster's API (closed on exit), or
    the local executor's state directory. ``ClusterConfigError`` when no cluster configuration is
    usable."""
    if not in_cluster(settings):
        yield LocalJobAdmin(settings.local_state_dir)
        return
    async with await KubeApi.from_settings(settings) as api:
        yield KubeJobAdmin(api)


@asynccontextmanager
async def cluster_of(settings: ClusterSettings) -> AsyncIterator[KubeApi | None]:
    """The API of the cluster the Jobs run in (for the verb modules of ``dispatcher.adapters.kube``),
    closed on exit; None with the local executor. ``ClusterConfigError`` when no cluster configuration
    is usable."""
    if not in_cluster(settings):
        yield None
        return
    async with await KubeApi.from_settings(settings) as api:
        yield api
