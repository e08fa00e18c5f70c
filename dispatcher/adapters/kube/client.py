"""Transitional: ``Cluster``, the old one-class client, as a thin shim over the verb modules.

Only kept while the call sites move to ``api.KubeApi`` with ``creating``, ``fetching``, ``patching``,
``deleting``, ``watching``, ``lease`` and ``informer``; removed with the last of them.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

from dispatcher.adapters.kube import creating, deleting, fetching, patching
from dispatcher.adapters.kube.api import MANAGED_SELECTOR, ClusterConfigError, KubeApi, runs_in_cluster
from dispatcher.adapters.kube.fetching import DocumentPage
from dispatcher.adapters.kube.informer import JobInformer, JobPage
from dispatcher.adapters.kube.job_feed import JobFeed
from dispatcher.adapters.kube.lease import Leases
from dispatcher.domain.constants import DEFAULT_WATCH_READ_TIMEOUT
from dispatcher.domain.jobs import CreateOutcome, JobIndex
from dispatcher.runtime.settings import ClusterSettings

__all__ = ["MANAGED_SELECTOR", "Cluster", "ClusterConfigError", "DocumentPage", "runs_in_cluster"]


class Cluster:
    """Transitional shim: every call delegates to the verb modules over ``self.api``."""

    def __init__(self, api: KubeApi, *, watch_timeout: int = 300) -> None:
        self.api = api
        self.namespace = api.namespace
        self._feed = JobFeed(api)
        self._leases = Leases(api)
        self._config_maps = creating.ConfigMapCreator(api)
        self._informer = JobInformer(self._feed, JobIndex(), watch_timeout=watch_timeout)

    @classmethod
    async def connect(
        cls,
        namespace: str,
        *,
        kubeconfig: Path | None = None,
        in_cluster: bool = False,
        request_timeout: float = 10.0,
        context: str | None = None,
        watch_timeout: int = 300,
        watch_read_timeout: float = DEFAULT_WATCH_READ_TIMEOUT,
    ) -> Cluster:
        """See ``KubeApi.connect``."""
        api = await KubeApi.connect(
            namespace,
            kubeconfig=kubeconfig,
            in_cluster=in_cluster,
            request_timeout=request_timeout,
            context=context,
            watch_read_timeout=watch_read_timeout,
        )
        return cls(api, watch_timeout=watch_timeout)

    @classmethod
    async def from_settings(
        cls, settings: ClusterSettings, *, environ: Mapping[str, str] = os.environ
    ) -> Cluster:
        """See ``KubeApi.from_settings``."""
        return cls(await KubeApi.from_settings(settings, environ=environ))

    async def __aenter__(self) -> Cluster:
        """Start the informer."""
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the informer and close the connections."""
        await self.close()

    def start(self) -> None:
        """Start the Job informer."""
        self._informer.start()

    async def close(self) -> None:
        """Stop the informer and close the HTTP connections."""
        await self._informer.stop()
        await self.api.close()

    @property
    def informer(self) -> JobInformer:
        """The informer."""
        return self._informer

    @property
    def synced(self) -> asyncio.Event:
        """Set once the informer's first list is in."""
        return self._informer.synced

    async def wait_synced(self) -> None:
        """Return once ``synced`` is set."""
        await self._informer.wait_synced()

    def active_jobs(self, service: str) -> int:
        """The service's unfinished Jobs, as last seen."""
        return self._informer.index.active(service)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true."""
        await self._informer.index.wait_until(predicate)

    async def create_job(self, doc: Mapping[str, Any]) -> CreateOutcome:
        """``creating.create_job``; a created Job counts at once."""
        outcome = await creating.create_job(self.api, doc)
        if outcome is CreateOutcome.CREATED:
            self._informer.note_created(doc)
        return outcome

    async def ensure_config_map(
        self, doc: Mapping[str, Any], *, before_write: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """``creating.ConfigMapCreator.ensure``."""
        return await self._config_maps.ensure(doc, before_write=before_write)

    async def read_config_map(self, name: str) -> dict[str, Any] | None:
        """``fetching.read_config_map``."""
        return await fetching.read_config_map(self.api, name)

    async def list_config_maps(self, label_selector: str = MANAGED_SELECTOR) -> list[dict[str, Any]]:
        """``fetching.list_config_maps``."""
        return await fetching.list_config_maps(self.api, label_selector)

    async def delete_config_map(self, name: str) -> bool:
        """``deleting.delete_config_map``, forgetting the name first."""
        self._config_maps.forget(name)
        return await deleting.delete_config_map(self.api, name)

    async def read_secret(self, name: str) -> dict[str, Any] | None:
        """``fetching.read_secret``."""
        return await fetching.read_secret(self.api, name)

    async def delete_secret(self, name: str) -> bool:
        """``deleting.delete_secret``."""
        return await deleting.delete_secret(self.api, name)

    async def ensure_secret(
        self, name: str, data: Mapping[str, str | bytes], *, labels: Mapping[str, str] | None = None
    ) -> bool:
        """``patching.ensure_secret``."""
        return await patching.ensure_secret(self.api, name, data, labels=labels)

    async def ready(self) -> bool:
        """The informer has not died and the API answers."""
        return self._informer.healthy and await fetching.api_answers(self.api)

    async def list_jobs(self, *, limit: int, continue_token: str | None) -> JobPage:
        """``JobFeed.list_jobs``."""
        return await self._feed.list_jobs(limit=limit, continue_token=continue_token)

    async def list_job_documents(self, *, limit: int, continue_token: str | None) -> DocumentPage:
        """``JobFeed.list_job_documents``."""
        return await self._feed.list_job_documents(limit=limit, continue_token=continue_token)

    def watch_jobs(
        self, *, resource_version: str, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Mapping[str, Any]]]:
        """``JobFeed.watch_jobs``."""
        return self._feed.watch_jobs(resource_version=resource_version, timeout_seconds=timeout_seconds)

    async def read_job(self, name: str) -> dict[str, Any] | None:
        """``fetching.read_job``."""
        return await fetching.read_job(self.api, name)

    async def job_pods(self, job_uid: str) -> list[dict[str, Any]]:
        """``fetching.job_pods``."""
        return await fetching.job_pods(self.api, job_uid)

    async def pod_log(self, pod: str, container: str, *, tail_lines: int | None = None) -> str | None:
        """``fetching.pod_log``."""
        return await fetching.pod_log(self.api, pod, container, tail_lines=tail_lines)

    async def annotate_job(self, name: str, annotations: Mapping[str, str]) -> bool:
        """``patching.annotate_job``."""
        return await patching.annotate_job(self.api, name, annotations)

    async def pending_pods(self) -> list[dict[str, Any]]:
        """``fetching.pending_pods``."""
        return await fetching.pending_pods(self.api)

    async def delete_job(self, name: str, uid: str) -> bool:
        """``deleting.delete_job``."""
        return await deleting.delete_job(self.api, name, uid)

    async def read_lease(self, name: str) -> dict[str, Any] | None:
        """``Leases.read_lease``."""
        return await self._leases.read_lease(name)

    async def create_lease(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """``Leases.create_lease``."""
        return await self._leases.create_lease(doc)

    async def replace_lease(self, doc: Mapping[str, Any]) -> dict[str, Any] | None:
        """``Leases.replace_lease``."""
        return await self._leases.replace_lease(doc)
