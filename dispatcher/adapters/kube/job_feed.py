"""bucketrun's Jobs of one namespace as the list/watch loops consume them: pages and a watch stream.

``JobFeed`` is the ``JobSource`` of the dispatcher's ``JobInformer`` (pages reduced to ``JobFacts``) and
the source of the watcher's finished-Job watch (pages of whole documents); the calls are
``fetching.list_job_documents`` and ``watching.watch_jobs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from dispatcher.adapters.kube import fetching, watching
from dispatcher.adapters.kube.api import KubeApi
from dispatcher.adapters.kube.fetching import DocumentPage
from dispatcher.adapters.kube.informer import JobPage
from dispatcher.domain.jobs import JobFacts


class JobFeed:
    """Lists and watches the Jobs carrying bucketrun's ``managed-by`` label. Errors are bucketrun's;
    an expired resourceVersion or continue token (410) is ``ResourceExpired``."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def list_job_documents(self, *, limit: int, continue_token: str | None) -> DocumentPage:
        """One page of the Jobs as the API sent them."""
        return await fetching.list_job_documents(self.api, limit=limit, continue_token=continue_token)

    async def list_jobs(self, *, limit: int, continue_token: str | None) -> JobPage:
        """One page of the Jobs, reduced to ``JobFacts``."""
        page = await self.list_job_documents(limit=limit, continue_token=continue_token)
        return JobPage([JobFacts.of(item) for item in page.items], page.resource_version, page.continue_token)

    async def read_job(self, name: str) -> dict[str, Any] | None:
        """Job *name* as the API has it now, or None when there is none."""
        return await fetching.read_job(self.api, name)

    def watch_jobs(
        self, *, resource_version: str, timeout_seconds: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Mapping[str, Any]]]:
        """A watch stream of the Jobs from *resource_version*, with bookmarks: raw events."""
        return watching.watch_jobs(
            self.api, resource_version=resource_version, timeout_seconds=timeout_seconds
        )
