"""The cluster adapter: create Jobs, ConfigMaps and Secrets through the Kubernetes API, count active Jobs.

``client`` is the only module of ``dispatcher`` that imports ``kubernetes_asyncio``; ``errors`` maps API
answers to bucketrun's errors and ``informer`` keeps the per-service Job counts (both pure of the
library). Typical use::

    cluster = await Cluster.from_settings(settings.cluster)  # or Cluster.connect(namespace, kubeconfig=…)
    async with cluster:  # starts the informer, closes everything at the end
        async with asyncio.timeout(30):
            await cluster.wait_synced()
        await cluster.ensure_config_map(rendered.config_map)
        outcome = await cluster.create_job(rendered.job)  # CreateOutcome.CREATED or EXISTS
        cluster.active_jobs(service.name)
"""

from __future__ import annotations

from dispatcher.adapters.kube.client import (
    MANAGED_SELECTOR,
    Cluster,
    ClusterConfigError,
    DocumentPage,
    runs_in_cluster,
)
from dispatcher.adapters.kube.informer import InformerStats, JobInformer
from dispatcher.domain.jobs import CreateOutcome

__all__ = [
    "MANAGED_SELECTOR",
    "Cluster",
    "ClusterConfigError",
    "CreateOutcome",
    "DocumentPage",
    "InformerStats",
    "JobInformer",
    "runs_in_cluster",
]
