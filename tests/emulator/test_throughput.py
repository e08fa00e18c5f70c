"""Throughput smoke: many Job creates through kubernetes_asyncio, several watchers seeing every Job finish."""

from __future__ import annotations

import asyncio
import time

import pytest
from kubernetes_asyncio import client, watch  # noqa: TID251 - these tests drive the API directly

from tests.backends.kubernetes import api_client_for
from tests.emulator.helpers import finished, job_body
from tests.k8s_emulator import run_emulator

pytestmark = pytest.mark.integration

JOBS = 500
WATCHERS = 3
CONCURRENCY = 32


async def _count_finished(api: client.ApiClient, start: str, done: asyncio.Event) -> set[str]:
    batch = client.BatchV1Api(api)
    seen: set[str] = set()
    async with watch.Watch() as stream:
        async for event in stream.stream(
            batch.list_namespaced_job, "default", resource_version=start, timeout_seconds=60
        ):
            if finished(event["raw_object"]):
                seen.add(event["raw_object"]["metadata"]["name"])
                if len(seen) == JOBS:
                    done.set()
                    return seen
    return seen


async def test_hundreds_of_job_creates_complete_without_error(tmp_path):
    with run_emulator(tmp_path, kubelet="instant") as emulator:
        async with await api_client_for(emulator.kubeconfig) as api:
            batch = client.BatchV1Api(api)
            start = (await batch.list_namespaced_job("default")).metadata.resource_version
            done = asyncio.Event()
            watchers = [asyncio.create_task(_count_finished(api, start, done)) for _ in range(WATCHERS)]
            gate = asyncio.Semaphore(CONCURRENCY)

            async def create(index: int) -> None:
                async with gate:
                    await batch.create_namespaced_job("default", job_body(f"bulk-{index}", "true"))

            began = time.monotonic()
            await asyncio.gather(*(create(i) for i in range(JOBS)))
            created = time.monotonic() - began
            async with asyncio.timeout(60):
                results = await asyncio.gather(*watchers)
            settled = time.monotonic() - began
        state = emulator.control.state()
    print(
        f"\n[throughput] {JOBS} Jobs created in {created:.2f} s ({JOBS / created:.0f}/s); "
        f"all finished and seen by {WATCHERS} watchers after {settled:.2f} s; revision {state['revision']}"
    )
    assert all(len(seen) == JOBS for seen in results)
    assert state["objects"]["jobs"] == JOBS
