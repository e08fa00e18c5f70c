"""The peak number of unfinished Jobs per service, from the API's own list + watch (no sampling).

Every change of a Job reaches the watch in resourceVersion order, so the set of unfinished Jobs is known
after each one and its largest size is exact: a cap broken for a few milliseconds between two polls is
still seen. Works on any API server (the emulator, a real control plane, a cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client, watch  # noqa: TID251 - the test observes the API directly

from dispatcher.domain.constants import LABEL_MANAGED_BY, LABEL_SERVICE, MANAGED_BY
from tests.backends.kubernetes import KubeTestEnv, api_client_for

_FINISHED = {"Complete", "Failed"}


@dataclass
class ActivePeaks:
    """Unfinished Jobs by service as the watch reports them, and the most seen at once."""

    active: dict[str, set[str]] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    synced: asyncio.Event = field(default_factory=asyncio.Event)

    def apply(self, kind: str, job: Mapping[str, Any]) -> None:
        """One list item (``kind`` ADDED) or watch event."""
        metadata = job.get("metadata") or {}
        service = (metadata.get("labels") or {}).get(LABEL_SERVICE)
        if service is None:
            return
        names = self.active.setdefault(service, set())
        if kind == "DELETED" or _finished(job):
            names.discard(metadata["name"])
        else:
            names.add(metadata["name"])
        self.peak[service] = max(self.peak.get(service, 0), len(names))


def _finished(job: Mapping[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in _FINISHED and c.get("status") == "True" for c in conditions)


@contextlib.asynccontextmanager
async def active_peaks(kube: KubeTestEnv) -> AsyncIterator[ActivePeaks]:
    """Track bucketrun's Jobs in the test's namespace for the length of the block (synced on entry)."""
    peaks = ActivePeaks()
    task = asyncio.create_task(_follow(kube, peaks))
    try:
        waiter = asyncio.create_task(peaks.synced.wait())
        await asyncio.wait({task, waiter}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()
        assert peaks.synced.is_set(), "the Job list did not load within 30 s"
        yield peaks
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _follow(kube: KubeTestEnv, peaks: ActivePeaks) -> None:
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    async with await api_client_for(kube.kubeconfig) as api:
        batch = client.BatchV1Api(api)
        listed = await (
            await batch.list_namespaced_job(kube.namespace, label_selector=selector, _preload_content=False)
        ).json()
        for item in listed["items"]:
            peaks.apply("ADDED", item)
        version = listed["metadata"]["resourceVersion"]
        peaks.synced.set()
        while True:  # a watch the server ends is resumed from the last version seen
            async with watch.Watch() as stream:
                async for event in stream.stream(
                    batch.list_namespaced_job,
                    kube.namespace,
                    label_selector=selector,
                    resource_version=version,
                    timeout_seconds=300,
                ):
                    raw = event["raw_object"]
                    if event["type"] == "ERROR":
                        raise AssertionError(f"the Job watch failed: {raw}")
                    if event["type"] != "BOOKMARK":
                        peaks.apply(event["type"], raw)
                    version = raw["metadata"]["resourceVersion"]
