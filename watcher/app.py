"""The watcher's composition root: settings in, finished Jobs recorded, until asked to stop.

Start-up refuses a records location that any service input overlaps (records would trigger Jobs),
then connects to the broker and declares the results exchange. The ``Recorder`` reads the Jobs' pods
and logs and marks them through the executor protocol; the executor's ``finished_jobs`` feeds it. The
one difference by executor is who records (``_record_finished``):

- ``kubernetes``: every replica sees the cluster's Jobs, so they campaign for the Lease; while leader,
  one records each finished Job (the executor's list+watch, which also gives
  ``bucketrun_running_jobs``) and records and deletes each Job whose pod can never start
  (``StuckJobSweep``); on losing the Lease it stops both and campaigns again; a standby only reads
  the Lease.
- ``local``: only the process holding the executor's state directory sees its Jobs (``bucketrun
  serve``, sharing the dispatcher's executor): it records them all, no election.

Stop (or cancellation): stop taking Jobs, let those in hand finish within ``drain_timeout``, release
the Lease, close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from dispatcher.adapters.amqp import AmqpClient
from dispatcher.adapters.amqp.connect import connect_amqp
from dispatcher.adapters.kube.lease import Leases
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.errors import PermanentError, StartupError
from dispatcher.domain.outcome import OutcomeKind
from dispatcher.executors.base import Executor, FinishedJobs
from dispatcher.executors.build import build_executor, in_cluster
from dispatcher.executors.finished_watch import FinishedJobWatch
from dispatcher.executors.kubernetes import KubernetesExecutor
from dispatcher.fdl.catalog import load_catalog
from dispatcher.runtime.lifecycle import until_stopped
from dispatcher.runtime.metrics import WatcherMetrics, export_flags, new_registry
from dispatcher.runtime.probes import serve_endpoints
from dispatcher.runtime.settings import Settings
from watcher.completion import Recorder
from watcher.completion_events import CompletionEvents
from watcher.leader import LeaderElector
from watcher.records import RecordStore
from watcher.retention import RecordsRetention
from watcher.stuck_jobs import KubeStuckJobSource, StuckJobSweep

_log = structlog.get_logger(__name__)


@dataclass
class WatcherState:
    """The running watcher's parts, filled in as they come up (for probes, metrics and tests)."""

    recorder: Recorder | None = None
    elector: LeaderElector | None = None
    watch: FinishedJobWatch | None = None
    """The current term's watch (None while not leading, and in local mode)."""
    sweep: StuckJobSweep | None = None
    """The current term's sweep for Jobs whose pod cannot start (None while not leading, and locally)."""
    retention: RecordsRetention | None = None
    """The records retention of the current term (of the process, locally; None while not leading)."""


def check_settings(settings: Settings) -> tuple[str, ...]:
    """The services' names; ``StartupError`` when the definitions do not load or the records location
    overlaps an input."""
    records = (settings.storage.records_bucket, settings.storage.records_prefix)
    catalog = load_catalog(
        settings.services.paths, records, cluster=settings.services.cluster, empty_dirs=True
    )
    return tuple(catalog.services)


async def run_watcher(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    *,
    executor: Executor | None = None,
    state: WatcherState | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """Record finished Jobs until *stop* is set; *ready* is set once running. ``StartupError`` for
    unusable settings. *executor*, when given, is shared with the caller (``bucketrun serve``: the one
    the dispatcher runs Jobs on), which closes it; without, this builds a ``kubernetes`` one.
    With *registry*, metrics go there and the caller serves the HTTP endpoints; without, this serves
    its own ``/healthz``, ``/readyz`` (ready while running with the broker connected; a standby is
    ready too) and ``/metrics``."""
    services = check_settings(settings)
    if executor is None and not in_cluster(settings.cluster):
        raise StartupError(
            "the local executor's Jobs run inside `bucketrun serve`, which records them itself; "
            "`bucketrun watcher` alone needs BUCKETRUN_CLUSTER__EXECUTOR=kubernetes"
        )
    state = state or WatcherState()
    ready = ready or asyncio.Event()
    store = RecordStore(
        Storage(settings.storage), settings.storage.records_bucket, settings.storage.records_prefix
    )
    connection: list[AmqpClient] = []

    def broker_up() -> bool:
        return bool(connection) and connection[0].connected

    async def is_ready() -> bool:
        return ready.is_set() and broker_up()

    async with contextlib.AsyncExitStack() as cleanup:
        if registry is None:
            registry = new_registry("watcher")
            endpoints = await serve_endpoints(
                settings.metrics.host, settings.metrics.port, is_ready, registry
            )
            cleanup.push_async_callback(endpoints.cleanup)
            # Under `serve` the dispatcher's half exports these for the process.
            export_flags(
                registry,
                lambda: {"broker": broker_up(), "ready": ready.is_set()},
            )
        metrics = WatcherMetrics(registry)
        metrics.prepare(services, [str(kind) for kind in OutcomeKind])
        amqp = await connect_amqp(settings, stop)
        if amqp is None:
            return
        connection.append(amqp)
        cleanup.push_async_callback(amqp.close)
        events = CompletionEvents(amqp, settings.watcher.results_exchange)
        try:
            await events.declare()
        except PermanentError as error:
            raise StartupError(str(error)) from error

        if executor is None:
            executor = await build_executor(settings)  # kubernetes: a local one was refused above
            cleanup.push_async_callback(executor.close)
        state.recorder = Recorder(
            executor,
            store,
            events,
            tail_lines=settings.watcher.log_tail_lines,
            log_read_timeout=settings.watcher.log_read_timeout,
            metrics=metrics,
        )
        work = _record_finished(executor, state.recorder, state, metrics, settings, services=services)
        ready.set()
        try:
            await until_stopped(work, stop, name="bucketrun-watcher")
        finally:
            ready.clear()


def _record_finished(
    executor: Executor,
    recorder: Recorder,
    state: WatcherState,
    metrics: WatcherMetrics,
    settings: Settings,
    *,
    services: tuple[str, ...],
) -> Coroutine[Any, Any, None]:
    """Who records the finished Jobs: the one place where the watcher tells the executors apart.

    Every watcher replica sees a cluster's Jobs, so they elect one through the Lease, which records them,
    ends those whose pod can never start and applies the records retention. Only one process sees the
    local executor's Jobs (its state directory is locked): it records them all, and applies the
    retention.
    """
    if isinstance(executor, KubernetesExecutor):
        elector = LeaderElector(
            Leases(executor.api),
            settings.watcher.lease_name,
            settings.watcher.identity,
            duration=settings.watcher.lease_duration,
            renew_period=settings.watcher.lease_renew_period,
        )
        state.elector = elector
        metrics.leader.set_function(lambda: 1.0 if elector.is_leader else 0.0)
        known = dict.fromkeys(services, 0)
        metrics.running_jobs(lambda: _running_jobs(state.watch, known))
        return _lead_and_record(executor, elector, recorder, state, settings, metrics=metrics)
    metrics.leader.set(1)
    state.retention = RecordsRetention(
        recorder.store, settings.watcher, on_deleted=metrics.records_expired.inc
    )
    return _record_all(executor.finished_jobs(recorder.record, settings), state.retention, settings)


async def _lead_and_record(
    executor: KubernetesExecutor,
    elector: LeaderElector,
    recorder: Recorder,
    state: WatcherState,
    settings: Settings,
    *,
    metrics: WatcherMetrics,
) -> None:
    """Campaign for the Lease; during each term as leader, record finished Jobs, end stuck ones and
    apply the records retention."""
    campaign = asyncio.create_task(elector.run(), name="bucketrun-watcher-election")
    try:
        while True:
            await elector.leading.wait()
            watch = executor.finished_jobs(recorder.record, settings)
            sweep = StuckJobSweep(
                KubeStuckJobSource(executor.api),
                recorder.record,
                grace=settings.watcher.stuck_grace,
                interval=settings.watcher.stuck_interval,
            )
            retention = RecordsRetention(
                recorder.store, settings.watcher, on_deleted=metrics.records_expired.inc
            )
            state.watch, state.sweep, state.retention = watch, sweep, retention
            term = asyncio.create_task(watch.run(), name="bucketrun-watcher-term")
            sweeping = asyncio.create_task(sweep.run(), name="bucketrun-watcher-stuck-jobs")
            retaining = _retention_task(retention)
            lost = asyncio.create_task(elector.following.wait(), name="bucketrun-watcher-lost")
            try:
                done, _ = await asyncio.wait(
                    {term, sweeping, lost, campaign}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done & {term, sweeping, campaign}:
                    task.result()  # any of these ending is a bug: re-raised
            finally:
                for task in (lost, term, sweeping, retaining):
                    task.cancel()
                await asyncio.gather(term, sweeping, lost, retaining, return_exceptions=True)
                grace = settings.dispatch.drain_timeout
                drained = all(await asyncio.shield(asyncio.gather(watch.drain(grace), sweep.drain(grace))))
                state.watch = state.sweep = state.retention = None
                _log.info("watcher term over", drained=drained, leading=elector.is_leader)
    finally:
        campaign.cancel()  # releases the Lease if held
        await asyncio.gather(campaign, return_exceptions=True)


def _running_jobs(watch: FinishedJobWatch | None, known: dict[str, int]) -> dict[str, int]:
    """The leader's counts of unfinished Jobs (every loaded service, at 0 when it has none), once its
    watch has listed them; nothing from a standby, or before the list is in."""
    if watch is None or not watch.synced.is_set():
        return {}
    return known | watch.index.counts()


async def _record_all(finished: FinishedJobs, retention: RecordsRetention, settings: Settings) -> None:
    """Record every finished Job until cancelled (or the executor closes), applying the records retention
    meanwhile; then let the one in hand finish, within ``drain_timeout``."""
    retaining = _retention_task(retention)
    try:
        await finished.run()
    finally:
        retaining.cancel()
        await asyncio.gather(retaining, return_exceptions=True)
        drained = await asyncio.shield(finished.drain(settings.dispatch.drain_timeout))
        _log.info("watcher stopped recording", drained=drained)


def _retention_task(retention: RecordsRetention) -> asyncio.Task[None]:
    """``retention.run()`` as a task beside the recording; it logs the store's errors itself, so a task
    that ends with another one is a bug, logged (recording goes on: records are never lost by it)."""
    task = asyncio.create_task(retention.run(), name="bucketrun-watcher-records-retention")
    task.add_done_callback(_report_retention_crash)
    return task


def _report_retention_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("records retention stopped by a bug", error=repr(task.exception()))
