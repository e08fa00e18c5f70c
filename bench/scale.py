"""Dispatcher and watcher as their own processes: memory and CPU with N tracked Jobs, and the 10k burst.

Each process is started as a pod would start it (``python -m bucketrun.cli.main dispatcher|watcher``,
configured by ``BUCKETRUN_*`` variables only), so its RSS and CPU are its own: read from
``/proc/<pid>/status`` (VmRSS, VmHWM = peak) and ``/proc/<pid>/stat`` (user + system time).

- **scale**: the emulator (kubelet off, so Jobs stay active) is pre-loaded with N bucketrun Jobs through
  the API. One service has a ``max_concurrent_jobs`` (never reached), so the dispatcher's informer
  tracks every one of them (its per-service count of active Jobs), the worst case; the watcher lists and
  watches them all. At each N: a fresh dispatcher starts, syncs, and then
  dispatches a batch of events (CPU per event at that N); a fresh watcher starts and settles.
- **burst**: N events pre-published; a dispatcher process drains them; Jobs created are counted on the
  emulator (201s, 409s, every write) and listed afterwards to check that each object version has
  exactly one Job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_dispatch import (
    SERVICES,
    Progress,
    Stack,
    all_jobs,
    api_client_for,
    api_counts,
    bench_job,
    corpus,
    create_namespace,
    fdl_text,
    queue_depth,
    queue_events,
)
from kubernetes_asyncio import client  # noqa: TID251 - the bench pre-loads and lists Jobs with the bare client

from dispatcher.domain.constants import ANNOTATION_KEY, LABEL_MANAGED_BY, LABEL_SERVICE, MANAGED_BY
from dispatcher.runtime.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
TRACKING_CAP = 1_000_000
"""The scale phase's ``max_concurrent_jobs`` on one service: far above any N, so it never holds an event."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_usage(pid: int) -> dict[str, float]:
    """RSS now and at its peak (MiB), and CPU seconds so far, of process *pid*."""
    status = {
        line.split(":", 1)[0]: line.split(":", 1)[1].split()
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith(("VmRSS", "VmHWM"))
    }
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "rss_mib": int(status["VmRSS"][0]) / 1024,
        "peak_rss_mib": int(status["VmHWM"][0]) / 1024,
        "cpu_s": (int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
    }


def child_environment(settings: Settings, port: int) -> dict[str, str]:
    """The environment of a child configured like a pod: only ``BUCKETRUN_*`` variables from *settings*."""
    # The tests' converter, imported late: it pulls in pytest, which this process need not carry before.
    from tests.integration.dispatcher_process import settings_environment  # noqa: PLC0415

    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("BUCKETRUN_")
    } | settings_environment(settings)
    environment["BUCKETRUN_METRICS__PORT"] = str(port)
    environment["PYTHONPATH"] = str(REPO_ROOT)
    return environment


@dataclass
class Child:
    """One ``bucketrun dispatcher|watcher`` process in its own process group."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid

    def usage(self) -> dict[str, float]:
        """Its RSS, peak RSS and CPU seconds so far."""
        return process_usage(self.pid)

    async def wait_ready(self, within: float = 60.0) -> None:
        """Until ``/readyz`` answers 200; RuntimeError with the log's tail if it exits or takes too long."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"child exited with {self.process.returncode}: {self.tail()}")
            if await asyncio.to_thread(self._ready):
                return
            await asyncio.sleep(0.2)  # polling an HTTP probe: there is nothing to await instead
        raise TimeoutError(f"child not ready within {within:.0f} s: {self.tail()}")

    def jobs_created(self) -> int:
        """Job creations it has counted (201 and 409, ``bucketrun_jobs_created_total``), from its metrics."""
        url = f"http://127.0.0.1:{self.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read().decode()
        return sum(
            int(float(line.rsplit(" ", 1)[1]))
            for line in text.splitlines()
            if line.startswith("bucketrun_jobs_created_total{")
        )

    def _ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    async def settle(self, within: float = 120.0) -> float:
        """Until its CPU stops growing (its list is done); returns the seconds it took."""
        started = time.monotonic()
        last = self.usage()["cpu_s"]
        quiet = 0
        while time.monotonic() - started < within and quiet < 3:
            await asyncio.sleep(0.5)
            now = self.usage()["cpu_s"]
            quiet = quiet + 1 if now - last < 0.03 else 0
            last = now
        return time.monotonic() - started

    def tail(self) -> str:
        """The end of its log."""
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-3000:]
        return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL of its group if it does not exit within 20 s."""
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(10)


@contextlib.contextmanager
def started_child(command: str, settings: Settings, log: Path) -> Iterator[Child]:
    """``bucketrun <command>`` as a child process; stopped (and its group killed if need be) on exit."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "bucketrun.cli.main", command],
            env=child_environment(settings, port),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
    child = Child(process, port, log)
    try:
        yield child
    finally:
        child.stop()


def tracked_job(name: str, service: str, *, suspend: bool = False) -> dict[str, Any]:
    """A small Job the dispatcher and the watcher both count as bucketrun's; *suspend*: the real Job
    controller makes no pod for it (it stays unfinished, so tracked, without pods)."""
    job = bench_job(
        name,
        labels={LABEL_MANAGED_BY: MANAGED_BY, LABEL_SERVICE: service},
        annotations={ANNOTATION_KEY: f"preloaded/{name}"},
    )
    if suspend:
        job["spec"]["suspend"] = True
    return job


async def preload(
    kubeconfig: Path, namespace: str, first: int, last: int, in_flight: int = 64, *, suspend: bool = False
) -> None:
    """Create Jobs number *first* .. *last* - 1 in *namespace* through the API."""
    async with await api_client_for(kubeconfig) as api:
        batch: Any = client.BatchV1Api(api)
        numbers = iter(range(first, last))

        async def worker() -> None:
            for number in numbers:
                doc = tracked_job(f"tracked-{number:06d}", SERVICES[number % len(SERVICES)], suspend=suspend)
                response = await batch.create_namespaced_job(namespace, doc, _preload_content=False)
                try:
                    if response.status not in (201, 409):
                        raise RuntimeError(f"preloading {doc['metadata']['name']}: HTTP {response.status}")
                finally:
                    response.release()

        await asyncio.gather(*(worker() for _ in range(in_flight)))


async def job_keys(kubeconfig: Path, namespace: str) -> list[str]:
    """The object key annotation of every Job in *namespace* (paged list, raw JSON)."""
    return [
        str((job["metadata"].get("annotations") or {}).get(ANNOTATION_KEY))
        for job in await all_jobs(kubeconfig, namespace)
    ]


async def until_created(
    stack: Stack, namespace: str, count: int, within: float, child: Child | None = None
) -> float:
    """Poll the emulator until *count* Job creates (201 or 409) were answered in *namespace*; the instant.
    On the real stack (whose request counters come from a large ``/metrics`` answer) *child*, the
    dispatcher process, is polled instead: its own count of creations (201 and 409)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if stack.backend == "real" and child is not None:
            created = await asyncio.to_thread(child.jobs_created)
        else:
            counts = await asyncio.to_thread(api_counts, stack.control, namespace)
            created = counts["jobs_created_201"] + counts["jobs_conflict_409"]
        if created >= count:
            return time.perf_counter()
        await asyncio.sleep(0.2)  # the counters are polled: neither has a notification to await
    raise TimeoutError(f"fewer than {count} Jobs created in {namespace} within {within:.0f} s")


async def burst(stack: Stack, count: int, work: Path, progress: Progress) -> dict[str, Any]:
    """*count* events pre-published, drained by a dispatcher process: time, writes per Job, peak RSS,
    duplicates and losses."""
    namespace = "bench-burst"
    settings = stack.settings(namespace)
    await create_namespace(stack.kubeconfig, namespace)
    events = corpus("burst", count)
    progress(f"burst: publishing {count} events")
    await queue_events(settings, [body for _, body in events])
    progress("burst: a dispatcher process drains them")
    with started_child("dispatcher", settings, work / "burst-dispatcher.log") as child:
        await child.wait_ready()
        started = time.perf_counter()
        before = child.usage()
        finished = await until_created(stack, namespace, count, 60 + count * 0.05, child)
        after = child.usage()
    api = await asyncio.to_thread(api_counts, stack.control, namespace)
    keys = await job_keys(stack.kubeconfig, namespace)
    expected = {key for key, _ in events}
    seconds = finished - started
    return {
        "events": count,
        "seconds": seconds,
        "rate": count / seconds,
        "cpu_ms_per_event": (after["cpu_s"] - before["cpu_s"]) * 1000 / count,
        "peak_rss_mib": after["peak_rss_mib"],
        "rss_mib": after["rss_mib"],
        "api": api,
        "writes_per_job": api["writes"] / max(api["jobs_created_201"], 1),
        "jobs_listed": len(keys),
        "duplicates": len(keys) - len(set(keys)),
        "losses": len(expected - set(keys)),
        "unexpected": len(set(keys) - expected),
        "left_in_ingress": await queue_depth(stack.amqp_url, settings.amqp.ingress_queue),
        "dead_lettered": await queue_depth(stack.amqp_url, settings.amqp.dead_letter_queue),
    }


async def scale(
    stack: Stack,
    *,
    sizes: tuple[int, ...],
    events: int,
    work: Path,
    progress: Progress,
    set_kubelet: Callable[[str], None],
    suspend: bool = False,
) -> list[dict[str, Any]]:
    """RSS and CPU of a dispatcher and a watcher process at each number of tracked Jobs (*suspend*: the
    pre-loaded ones suspended, see ``tracked_job``); the seconds each pre-load took."""
    namespace = "bench-scale"
    await create_namespace(stack.kubeconfig, namespace)
    set_kubelet("off")  # the tracked Jobs stay active: none finishes, none is recorded
    # One service capped, never reached: the dispatcher then lists and watches every Job, as a deployment
    # with any capped service does (without one it watches none, and its memory no longer grows with N).
    capped = work / "services-capped.yaml"
    capped.write_text(fdl_text(first_capped=TRACKING_CAP))
    settings = stack.settings(namespace, fdl=capped)
    rows: list[dict[str, Any]] = []
    loaded = 0
    for size in sizes:
        progress(f"scale: pre-loading the {stack.backend} to {size:,} tracked Jobs")
        preload_started = time.perf_counter()
        await preload(stack.kubeconfig, namespace, loaded, size, suspend=suspend)
        row: dict[str, Any] = {
            "tracked_jobs": size,
            "preload_s": time.perf_counter() - preload_started,
            "preloaded": size - loaded,
            "backend": stack.backend,
        }
        loaded = size
        progress(f"scale: dispatcher process with {size:,} tracked Jobs, then {events} events through it")
        with started_child("dispatcher", settings, work / f"scale-dispatcher-{size}.log") as child:
            await child.wait_ready()
            row["dispatcher_settle_s"] = await child.settle()
            idle = child.usage()
            batch = corpus(f"scale{size}", events)
            created_before = (
                0
                if stack.backend == "real"  # the child's own count: this process has created none yet
                else (await asyncio.to_thread(api_counts, stack.control, namespace))["jobs_created_201"]
            )
            await queue_events(settings, [body for _, body in batch], check_queued=False)
            await until_created(stack, namespace, created_before + events, 60 + events * 0.05, child)
            busy = child.usage()
        loaded += events
        row["dispatcher"] = {
            "rss_mib": busy["rss_mib"],
            "peak_rss_mib": busy["peak_rss_mib"],
            "idle_rss_mib": idle["rss_mib"],
            "startup_cpu_s": idle["cpu_s"],
            "cpu_ms_per_event": (busy["cpu_s"] - idle["cpu_s"]) * 1000 / events,
        }
        progress(f"scale: watcher process with {loaded:,} tracked Jobs")
        with started_child("watcher", settings, work / f"scale-watcher-{size}.log") as child:
            await child.wait_ready()
            row["watcher_settle_s"] = await child.settle()
            usage = child.usage()
        row["watcher"] = {
            "rss_mib": usage["rss_mib"],
            "peak_rss_mib": usage["peak_rss_mib"],
            "startup_cpu_s": usage["cpu_s"],
        }
        rows.append(row)
    return rows
