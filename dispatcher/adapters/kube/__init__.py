"""The cluster adapter, split by verb as kopf splits its client: no class holds every kind of call.

| module | what it does |
|---|---|
| ``api`` | ``KubeApi``: the connection (configuration, HTTP, answers as bucketrun's errors) |
| ``creating`` | ``create_job``; ``ConfigMapCreator`` (each immutable ConfigMap once per process) |
| ``fetching`` | read a Job, ConfigMap or Secret; list (all pages, or a page of Jobs); pod logs; probe |
| ``patching`` | annotate a Job; create or replace a Secret |
| ``deleting`` | delete a Job (by UID, with its pods), a ConfigMap, a Secret |
| ``watching`` | the watch stream of bucketrun's Jobs |
| ``lease`` | ``Leases``: the Lease calls of leader election |
| ``job_feed`` | ``JobFeed``: pages + watch of bucketrun's Jobs, for the list/watch loops |
| ``list_watch``, ``informer`` | the list/watch loop; ``JobInformer``, the per-service Job counts |
| ``errors`` | API answers and client failures as bucketrun's errors (pure) |

Only this package imports ``kubernetes_asyncio``. Typical use::

    api = await KubeApi.from_settings(settings.cluster)
    async with api:
        informer = JobInformer(JobFeed(api), JobIndex())
        informer.start()
        await ConfigMapCreator(api).ensure(rendered.config_map)
        outcome = await creating.create_job(api, rendered.job)  # CreateOutcome.CREATED or EXISTS
"""

from __future__ import annotations

from dispatcher.adapters.kube.api import MANAGED_SELECTOR, ClusterConfigError, KubeApi, runs_in_cluster
from dispatcher.adapters.kube.fetching import DocumentPage
from dispatcher.adapters.kube.informer import InformerStats, JobInformer
from dispatcher.adapters.kube.job_feed import JobFeed
from dispatcher.domain.jobs import CreateOutcome

__all__ = [
    "MANAGED_SELECTOR",
    "ClusterConfigError",
    "CreateOutcome",
    "DocumentPage",
    "InformerStats",
    "JobFeed",
    "JobInformer",
    "KubeApi",
    "runs_in_cluster",
]
