"""Watcher throughput and memory: completions recorded per second, and RSS with N tracked Jobs.

A measurement, not a test. Run from the repository root (the emulator lives under ``tests/``):
``PYTHONPATH=. .venv/bin/python bench/bench_watcher.py [jobs] [concurrency]`` (default 10000 Jobs,
concurrency 8).

Starts the Kubernetes API emulator with the ``instant`` kubelet (pods finish at once, no processes),
creates the Jobs, then runs the watcher's real path against it — list+watch (``FinishedJobWatch``),
per Job: list its pods, read each container's log, classify, build the record, annotate the Job — with
an in-memory record store and event sink, so the figures are the watcher's and the API's, not the S3
or broker server's (those are measured by their own benches). Prints Jobs/s and the process RSS
before and after.
"""

# ruff: noqa: T201 - a benchmark prints its figures

from __future__ import annotations

import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dispatcher.adapters.kube import JobFeed, KubeApi
from dispatcher.adapters.kube.creating import create_job
from dispatcher.domain.constants import LABEL_MANAGED_BY, LABEL_SERVICE, MANAGED_BY
from dispatcher.executors.finished_watch import FinishedJobWatch
from dispatcher.executors.kubernetes import KubernetesExecutor
from dispatcher.runtime.ratelimit import TokenBucket
from tests.k8s_emulator import run_emulator
from watcher.completion import Recorder


class MemoryStore:
    """Stands in for ``RecordStore``: keeps record sizes only."""

    prefix = "records/"

    def __init__(self) -> None:
        self.written: dict[str, int] = {}

    async def read(self, service: str, name: str) -> dict[str, Any] | None:
        del service, name

    async def read_outputs(self, service: str, name: str) -> None:
        """No manifest: the outputs come from the stage-out log, as for a Job without one."""
        del service, name

    async def write(self, record: dict[str, Any], logs: dict[str, str]) -> None:
        self.written[str(record["uid"])] = sum(len(text) for text in logs.values())


class MemoryEvents:
    """Stands in for ``CompletionEvents``: counts."""

    def __init__(self) -> None:
        self.published = 0

    async def publish(self, record: dict[str, Any]) -> None:
        del record
        self.published += 1


def recording_executor(api: KubeApi) -> KubernetesExecutor:
    """The executor the Recorder reads pods and logs and marks Jobs through (its token bucket paces
    creates, which the watcher makes none of: unbounded here)."""
    return KubernetesExecutor(api, TokenBucket(1e9, 1_000_000_000))


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def job(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"bench-{index:05d}",
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SERVICE: "bench"},
            "annotations": {"bucketrun.io/bucket": "b", "bucketrun.io/key": f"in/{index}.txt"},
        },
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": {"emulator.bucketrun.io/exit-code": str(index % 2)}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "run", "image": "busybox", "command": ["true"]}],
                },
            },
        },
    }


async def main(count: int, concurrency: int, kubeconfig: Path) -> None:
    api = await KubeApi.connect("default", kubeconfig=kubeconfig, request_timeout=30)
    try:
        started = time.perf_counter()
        pending = [create_job(api, job(index)) for index in range(count)]
        for start in range(0, count, 200):
            await asyncio.gather(*pending[start : start + 200])
        print(f"created {count} Jobs in {time.perf_counter() - started:.1f} s")
        store, events = MemoryStore(), MemoryEvents()
        recorder = Recorder(recording_executor(api), store, events, tail_lines=100)  # type: ignore[arg-type]
        watch = FinishedJobWatch(JobFeed(api), recorder.record, concurrency=concurrency, watch_timeout=60)
        before = rss_mib()
        started = time.perf_counter()
        task = asyncio.create_task(watch.run())
        while events.published < count:  # noqa: ASYNC110 - a counter, polled: no event to await
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        after = rss_mib()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        print(f"recorded {events.published} completions in {elapsed:.1f} s: {count / elapsed:.0f} Jobs/s")
        print(f"watcher process RSS: {before:.0f} MiB before, {after:.0f} MiB with {count} Jobs tracked")
        print(f"watch: {watch.stats}")
    finally:
        await api.close()


if __name__ == "__main__":
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    with tempfile.TemporaryDirectory() as scratch, run_emulator(Path(scratch), kubelet="instant") as emulator:
        asyncio.run(main(jobs, workers, emulator.kubeconfig))
