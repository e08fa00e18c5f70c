"""The outbound side: bare watch-event rate; the watcher's completions/s and finished -> recorded latency.

The watcher's real path runs here (``FinishedJobWatch`` -> ``Recorder``: list+watch, per Job list its
pods, read each container's log, classify, build the record, annotate the Job) against the emulator
with the instant kubelet, as in ``bench_watcher.py``, whose in-memory record store and event sink it
reuses: the figures are the watcher's and the API's, not moto's or the broker's (measured elsewhere).

"Finished" is when the Job's Complete/Failed status reaches a watch opened by the bench (an outside
observer that can only be late, so the latency is a lower bound here and the bench says so);
"recorded" is when the watcher hands the record to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_dispatch import (
    all_jobs,
    api_client_for,
    bench_job,
    create_namespace,
    latency_summary,
    watch_events,
)
from bench_watcher import MemoryEvents, MemoryStore, recording_executor
from kubernetes_asyncio import client  # noqa: TID251 - the bench measures the bare client's watch

from dispatcher.adapters.kube import JobFeed, KubeApi
from dispatcher.domain.constants import LABEL_MANAGED_BY, LABEL_SERVICE, MANAGED_BY
from dispatcher.domain.jobs import finished_condition
from dispatcher.executors.finished_watch import FinishedJobWatch
from job_templates.stager.contract import CONTAINER_RUN, CONTAINER_STAGE_IN, CONTAINER_STAGE_OUT
from watcher.completion import Recorder

WATCHER_CONCURRENCY = 8
"""Jobs the watcher records at once (its default)."""


class TimedStore(MemoryStore):
    """The in-memory record store, noting when each Job's record was written (by uid)."""

    def __init__(self) -> None:
        super().__init__()
        self.written_at: dict[str, float] = {}

    async def write(self, record: dict[str, Any], logs: dict[str, str]) -> None:
        """Keep the size and the instant."""
        self.written_at.setdefault(str(record["uid"]), time.perf_counter())
        await super().write(record, logs)


def finishing_job(name: str) -> dict[str, Any]:
    """A Job the watcher records: bucketrun's labels and its three containers (so three logs to read, as
    for a rendered Job); the instant kubelet finishes it at once."""
    job = bench_job(
        name,
        labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_SERVICE: "upper"},
        annotations={"bucketrun.io/bucket": "bench", "bucketrun.io/key": f"in/upper/{name}.txt"},
    )
    pod = job["spec"]["template"]["spec"]
    step = pod["containers"][0]
    pod["initContainers"] = [{**step, "name": CONTAINER_STAGE_IN}]
    pod["containers"] = [{**step, "name": CONTAINER_RUN}, {**step, "name": CONTAINER_STAGE_OUT}]
    return job


async def resource_version(kubeconfig: Path, namespace: str) -> str:
    """The current resourceVersion of the Jobs in *namespace* (from a list of one)."""
    async with await api_client_for(kubeconfig) as api:
        batch: Any = client.BatchV1Api(api)
        response = await batch.list_namespaced_job(namespace, limit=1, _preload_content=False)
        try:
            return str((await response.json())["metadata"]["resourceVersion"])
        finally:
            response.release()


async def raw_watch_rate(kubeconfig: Path, namespace: str, since: str, added: int) -> dict[str, Any]:
    """Bare kubernetes-asyncio watch replaying the Job events of *namespace* since *since*: events/s until
    *added* ADDED events were read (raw lines, parsed with json.loads)."""
    events = 0
    seen_added = 0
    async with await api_client_for(kubeconfig) as api:
        batch: Any = client.BatchV1Api(api)
        started = time.perf_counter()
        response = await batch.list_namespaced_job(
            namespace, watch=True, resource_version=since, timeout_seconds=120, _preload_content=False
        )
        try:
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    raise RuntimeError(f"the watch answered {event}")
                events += 1
                seen_added += event.get("type") == "ADDED"
                if seen_added >= added:
                    break
        finally:
            response.release()
        seconds = time.perf_counter() - started
    return {"events": events, "added": seen_added, "seconds": seconds, "rate": events / seconds}


@dataclass
class FinishWatch:
    """When each Job's finished status reached this process, by uid."""

    seen: dict[str, float] = field(default_factory=dict)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    on_finished: Callable[[dict[str, Any]], None] | None = None
    """Called with the Job the first time it is seen finished."""

    async def run(self, kubeconfig: Path, namespace: str) -> None:
        """Watch Jobs in *namespace* until cancelled."""
        await watch_events(kubeconfig, namespace, self.opened, self._note)

    def _note(self, event: Mapping[str, Any], now: float) -> None:
        job = event["object"]
        uid = str(job["metadata"].get("uid"))
        if finished_condition(job) is not None and uid not in self.seen:
            self.seen[uid] = now
            if self.on_finished is not None:
                self.on_finished(job)


async def until_count(count: Any, target: int, within: float, what: str) -> None:
    """Poll *count()* until it reaches *target* (counters of the in-memory sink have no event to await)."""
    deadline = time.monotonic() + within
    while count() < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {within:.0f} s waiting for {what} ({count()} of {target})")
        await asyncio.sleep(0.05)


async def create_jobs(kubeconfig: Path, namespace: str, names: list[str], rate: float | None) -> None:
    """Create Jobs: all at once (64 in flight) when *rate* is None, else each at its scheduled instant."""
    async with await api_client_for(kubeconfig) as api:
        batch: Any = client.BatchV1Api(api)

        async def create(name: str) -> None:
            response = await batch.create_namespaced_job(
                namespace, finishing_job(name), _preload_content=False
            )
            response.release()

        if rate is None:
            remaining = iter(names)

            async def worker() -> None:
                for name in remaining:
                    await create(name)

            await asyncio.gather(*(worker() for _ in range(64)))
            return
        tasks = []
        start = time.perf_counter()
        for index, name in enumerate(names):
            # A schedule, not a wait for a condition: Jobs must finish at a steady rate.
            await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(create(name)))
        await asyncio.gather(*tasks)


async def finished_jobs(kubeconfig: Path, namespace: str) -> list[dict[str, Any]]:
    """The finished Jobs of *namespace* (paged list, raw JSON)."""
    return [job for job in await all_jobs(kubeconfig, namespace) if finished_condition(job) is not None]


async def until_count_or_time(count: Any, target: int, within: float) -> None:
    """Poll *count()* until it reaches *target* or *within* seconds pass (no error: the caller measures
    what was done)."""
    deadline = time.monotonic() + within
    while count() < target:
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.05)  # counters of the in-memory sink have no event to await


class BareRecorder:
    """What the watcher does per finished Job, done with the bare client: list its pods, read its three
    containers' logs together, and mark it recorded (one PATCH)."""

    def __init__(self, api: Any, namespace: str) -> None:
        self._batch: Any = client.BatchV1Api(api)
        self._core: Any = client.CoreV1Api(api)
        self._namespace = namespace
        self.statuses: dict[str, int] = {}
        self.durations: list[float] = []
        self.done_at: dict[str, float] = {}
        """When each Job's PATCH was answered (``time.perf_counter``), by uid."""

    def note(self, what: str, outcome: object) -> None:
        """Count one answer (or failure) of a kind: ``statuses["log 200"]``."""
        self.statuses[f"{what} {outcome}"] = self.statuses.get(f"{what} {outcome}", 0) + 1

    async def _log(self, pod: str, container: str) -> int:
        response = await self._core.read_namespaced_pod_log(
            pod, self._namespace, container=container, tail_lines=100, _preload_content=False
        )
        try:
            self.note("log", response.status)
            return len(await response.read())
        finally:
            response.release()

    async def record(self, job: Mapping[str, Any]) -> None:
        """Record one finished Job."""
        began = time.perf_counter()
        name = job["metadata"]["name"]
        response = await self._core.list_namespaced_pod(
            self._namespace, label_selector=f"job-name={name}", _preload_content=False
        )
        try:
            pods = (await response.json())["items"]
        finally:
            response.release()
        pod = pods[0]["metadata"]["name"]
        await asyncio.gather(
            *(self._log(pod, c) for c in (CONTAINER_STAGE_IN, CONTAINER_RUN, CONTAINER_STAGE_OUT))
        )
        patch = {"metadata": {"annotations": {"bench.bucketrun.io/recorded": "true"}}}
        response = await self._batch.patch_namespaced_job(
            name, self._namespace, patch, _preload_content=False
        )
        self.note("patch", response.status)
        response.release()
        done = time.perf_counter()
        self.durations.append(done - began)
        self.done_at[str(job["metadata"].get("uid"))] = done


async def bare_record_rate(kubeconfig: Path, namespace: str, count: int) -> dict[str, Any]:
    """The bare client doing what the watcher does per finished Job (``BareRecorder``), for *count*
    finished Jobs of *namespace*, WATCHER_CONCURRENCY at once: Jobs/s from the list to the last PATCH."""
    async with await api_client_for(kubeconfig) as api:
        recorder = BareRecorder(api, namespace)
        cpu, started = time.process_time(), time.perf_counter()
        jobs = await finished_jobs(kubeconfig, namespace)
        remaining = iter(jobs[:count])

        async def worker() -> None:
            for job in remaining:
                await recorder.record(job)

        await asyncio.gather(*(worker() for _ in range(WATCHER_CONCURRENCY)))
        seconds = time.perf_counter() - started
    return {
        "jobs": count,
        "seconds": seconds,
        "rate": count / seconds,
        "cpu_ms_per_job": (time.process_time() - cpu) * 1000 / count,
        "statuses": recorder.statuses,
        "per_job": latency_summary(recorder.durations),
    }


async def watcher_completions(
    kubeconfig: Path, namespace: str, count: int, *, bare: bool = False, meter: Any = None
) -> dict[str, Any]:
    """*count* finished Jobs already in *namespace*: the watcher's completions/s recording them all.
    With *bare*, the same Jobs are first recorded by ``bare_record_rate`` (under ``bare``); *meter*
    (``bench_dispatch.Meter``) measures the CPU from there to the watcher's last record (under ``usage``)."""
    await create_namespace(kubeconfig, namespace)
    finish = FinishWatch()
    observer = asyncio.create_task(finish.run(kubeconfig, namespace), name="the finish watch")
    try:
        await asyncio.wait_for(finish.opened.wait(), 30)
        creating = time.perf_counter()
        await create_jobs(kubeconfig, namespace, [f"done-{index:06d}" for index in range(count)], None)
        created_at, within = time.perf_counter(), 120 + count * 0.5
        # The real Job controller finishes them slowly, in batches, when the machine is loaded: the Jobs
        # it finished in time are the ones measured.
        await until_count_or_time(lambda: len(finish.seen), count, within)
        finishing_s, finished = time.perf_counter() - created_at, len(finish.seen)
        if finished == 0:
            raise TimeoutError(f"no Job of {namespace} finished within {within:.0f} s")
    finally:
        observer.cancel()
        await asyncio.gather(observer, return_exceptions=True)
    # How fast the control plane finishes Jobs created all at once (their pods made, bound, run): the
    # most Jobs a second this machine can hand the watcher, whatever the watcher's own rate.
    finish_rate = len(finish.seen) / (max(finish.seen.values()) - creating) if finish.seen else math.nan
    created, count = count, finished  # the Jobs the control plane finished in time are the ones measured
    if meter is not None:
        meter.start()
    bare_figures = await bare_record_rate(kubeconfig, namespace, count) if bare else None
    async with _watcher_recording(namespace, kubeconfig) as recorded:
        cpu, started = time.process_time(), time.perf_counter()
        await until_count(recorded.count, count, 60 + count * 0.1, "every completion recorded")
    seconds = time.perf_counter() - started
    usage = meter.stop() if meter is not None else None
    figures = {
        "usage": usage,
        "jobs": count,
        "jobs_created": created,
        "seconds": seconds,
        "rate": count / seconds,
        "cpu_ms_per_completion": (time.process_time() - cpu) * 1000 / count,
        "finishing_s": finishing_s,
        "finish_rate": finish_rate,
    }
    return figures | ({"bare": bare_figures} if bare_figures is not None else {})


async def created_to_recorded(kubeconfig: Path, namespace: str, count: int) -> dict[str, Any]:
    """*count* Jobs created all at once while the watcher records them: from the first create to the last
    record, so the Jobs' pods, their finish and the watcher's reads and writes all fall in the time. The
    rate the machine sustains for the watcher's path with all its work, whatever either part does alone."""
    await create_namespace(kubeconfig, namespace)
    async with _watcher_recording(namespace, kubeconfig) as recorded:
        started = time.perf_counter()
        await create_jobs(kubeconfig, namespace, [f"e2e-{index:06d}" for index in range(count)], None)
        await until_count(
            recorded.count, count, 120 + count * 0.5, "every Job created, finished and recorded"
        )
        seconds = max(recorded.done_at.values()) - started
    return {"jobs": count, "seconds": seconds, "rate": count / seconds}


async def completion_latency(
    kubeconfig: Path, namespace: str, rate: float, duration: float, *, bare: bool = False, meter: Any = None
) -> dict[str, Any]:
    """Jobs created (so finished) at *rate* for *duration* while they are recorded, by the watcher or, with
    *bare*, by ``BareRecorder`` as each is seen finished (WATCHER_CONCURRENCY at once, as the watcher):
    finished -> recorded. *meter* (``bench_dispatch.Meter``) measures every process's CPU over the window
    (under ``usage``)."""
    count = max(2, round(rate * duration))
    await create_namespace(kubeconfig, namespace)
    finish = FinishWatch()
    observer = asyncio.create_task(finish.run(kubeconfig, namespace))
    try:
        await asyncio.wait_for(finish.opened.wait(), 30)
        recording = (
            _bare_recording(kubeconfig, namespace, finish)
            if bare
            else _watcher_recording(namespace, kubeconfig)
        )
        async with recording as recorded:
            if meter is not None:
                meter.start()
            await create_jobs(kubeconfig, namespace, [f"lat-{index:06d}" for index in range(count)], rate)
            # The real Job controller may leave some unfinished for long: measure those it finished.
            await until_count_or_time(recorded.count, count, 60 + count * 0.5)
            await until_count_or_time(lambda: len(finish.seen), len(recorded.done_at), 30)
            usage = meter.stop() if meter is not None else None
        latencies = [
            max(0.0, recorded.done_at[uid] - seen)
            for uid, seen in finish.seen.items()
            if uid in recorded.done_at
        ]
        if not latencies:
            raise RuntimeError(f"no Job of {namespace} was both seen finished and recorded")
        return {
            "target_rate": rate,
            "jobs": count,
            "jobs_measured": len(latencies),
            "finished_to_recorded": latency_summary(latencies),
            "usage": usage,
            "statuses": recorded.statuses,
        }
    finally:
        observer.cancel()
        await asyncio.gather(observer, return_exceptions=True)


@dataclass
class Recorded:
    """When each Job's record was written (``time.perf_counter``), by uid; *count*, the Jobs recorded so
    far (the watcher's: completion events published, its last step); the bare loop's answers."""

    done_at: Mapping[str, float]
    count: Callable[[], int]
    statuses: dict[str, int] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def _watcher_recording(namespace: str, kubeconfig: Path) -> AsyncIterator[Recorded]:
    """The watcher's finished-Job watch and recorder on *namespace* for the block (records in memory)."""
    api = await KubeApi.connect(namespace, kubeconfig=kubeconfig, request_timeout=30)
    try:
        store, events = TimedStore(), MemoryEvents()
        recorder = Recorder(recording_executor(api), store, events, tail_lines=100)  # type: ignore[arg-type]
        watch = FinishedJobWatch(
            JobFeed(api), recorder.record, concurrency=WATCHER_CONCURRENCY, watch_timeout=60
        )
        task = asyncio.create_task(watch.run())
        try:
            yield Recorded(store.written_at, lambda: events.published)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await watch.drain(10)  # records still in hand (a retry) finish before the client closes
    finally:
        await api.close()


@contextlib.asynccontextmanager
async def _bare_recording(kubeconfig: Path, namespace: str, finish: FinishWatch) -> AsyncIterator[Recorded]:
    """``BareRecorder`` on every Job *finish* sees finished, WATCHER_CONCURRENCY at once, for the block."""
    async with await api_client_for(kubeconfig) as api:
        recorder = BareRecorder(api, namespace)
        finished: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        finish.on_finished = finished.put_nowait

        async def worker() -> None:
            while True:
                job = await finished.get()
                try:
                    await recorder.record(job)
                except Exception as error:  # noqa: BLE001 - counted with the answers; the Job goes unmeasured
                    recorder.note("error", type(error).__name__)

        workers = [asyncio.create_task(worker()) for _ in range(WATCHER_CONCURRENCY)]
        try:
            yield Recorded(recorder.done_at, lambda: len(recorder.done_at), recorder.statuses)
        finally:
            finish.on_finished = None
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
