"""The watcher's composition root: settings in, finished Jobs recorded, until asked to stop.

Start-up refuses a records location that any service input overlaps (records would trigger Jobs),
then connects to the broker and declares the results exchange. Then, by executor:

- ``kubernetes``: campaigns for the Lease; while leader, list+watches the Jobs and records each
  finished one (``FinishedJobWatch`` → ``Recorder``), and records and deletes each Job whose pod can
  never start (``StuckJobSweep``); on losing the Lease it stops both and campaigns again; a standby
  only reads the Lease.
- ``local``: records each Job the shared ``LocalExecutor`` reports finished (``bucketrun serve``; no
  election, the executor's state directory lock already makes it one process).

Stop (or cancellation): stop taking Jobs, let those in hand finish within ``drain_timeout``, release
the Lease, close.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from dispatcher.adapters.amqp import AmqpClient
from dispatcher.adapters.amqp.connect import connect_amqp
from dispatcher.adapters.kube import Cluster, ClusterConfigError
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.backoff import backoff_delay
from dispatcher.domain.errors import PermanentError, StartupError, TransientError
from dispatcher.domain.outcome import OutcomeKind
from dispatcher.executors.local.executor import LocalExecutor
from dispatcher.fdl.catalog import load_catalog
from dispatcher.runtime.lifecycle import until_stopped
from dispatcher.runtime.metrics import WatcherMetrics, export_flags, new_registry
from dispatcher.runtime.probes import serve_endpoints
from dispatcher.runtime.settings import Settings
from watcher.completion import ClusterSide, JobSide, LocalSide, Recorder
from watcher.completion_events import CompletionEvents
from watcher.job_watch import FinishedJobWatch
from watcher.leader import LeaderElector
from watcher.records import RecordStore
from watcher.stuck_jobs import StuckJobSweep

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


def check_settings(settings: Settings) -> tuple[str, ...]:
    """The services' names; ``StartupError`` when the definitions do not load or the records location
    overlaps an input."""
    records = (settings.storage.records_bucket, settings.storage.records_prefix)
    return tuple(load_catalog(settings.services.paths, records).services)


async def run_watcher(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    *,
    executor: LocalExecutor | None = None,
    state: WatcherState | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """Record finished Jobs until *stop* is set; *ready* is set once running. ``StartupError`` for
    unusable settings. With the local executor, *executor* is the one the dispatcher runs Jobs on.
    With *registry*, metrics go there and the caller serves the HTTP endpoints; without, this serves
    its own ``/healthz``, ``/readyz`` (ready while running with the broker connected; a standby is
    ready too) and ``/metrics``."""
    services = check_settings(settings)
    if settings.cluster.executor == "local" and executor is None:
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

        def recorder_on(side: JobSide) -> Recorder:
            return Recorder(
                side,
                store,
                events,
                tail_lines=settings.watcher.log_tail_lines,
                log_read_timeout=settings.watcher.log_read_timeout,
                metrics=metrics,
            )

        work: Coroutine[Any, Any, None]
        if executor is not None:
            state.recorder = recorder_on(LocalSide(executor))
            metrics.leader.set(1)  # one process by construction (the state directory's lock)
            work = _record_local(executor, state.recorder, settings)
        else:
            try:
                cluster = await Cluster.from_settings(settings.cluster)
            except ClusterConfigError as error:
                raise StartupError(str(error)) from error
            cleanup.push_async_callback(cluster.close)
            recorder = recorder_on(ClusterSide(cluster))
            elector = LeaderElector(
                cluster,
                settings.watcher.lease_name,
                settings.watcher.identity,
                duration=settings.watcher.lease_duration,
                renew_period=settings.watcher.lease_renew_period,
            )
            state.recorder, state.elector = recorder, elector
            metrics.leader.set_function(lambda: 1.0 if elector.is_leader else 0.0)
            work = _lead_and_record(cluster, elector, recorder, state, settings)
        ready.set()
        try:
            await until_stopped(work, stop, name="bucketrun-watcher")
        finally:
            ready.clear()


async def _lead_and_record(
    cluster: Cluster, elector: LeaderElector, recorder: Recorder, state: WatcherState, settings: Settings
) -> None:
    """Campaign for the Lease; during each term as leader, record finished Jobs and end stuck ones."""
    campaign = asyncio.create_task(elector.run(), name="bucketrun-watcher-election")
    try:
        while True:
            await elector.leading.wait()
            watch = FinishedJobWatch(
                cluster,
                recorder.record,
                concurrency=settings.watcher.concurrency,
                watch_timeout=settings.watcher.watch_timeout,
            )
            sweep = StuckJobSweep(
                cluster,
                recorder.record,
                grace=settings.watcher.stuck_grace,
                interval=settings.watcher.stuck_interval,
            )
            state.watch, state.sweep = watch, sweep
            term = asyncio.create_task(watch.run(), name="bucketrun-watcher-term")
            sweeping = asyncio.create_task(sweep.run(), name="bucketrun-watcher-stuck-jobs")
            lost = asyncio.create_task(elector.following.wait(), name="bucketrun-watcher-lost")
            try:
                done, _ = await asyncio.wait(
                    {term, sweeping, lost, campaign}, return_when=asyncio.FIRST_COMPLETED
                )
                for task in done & {term, sweeping, campaign}:
                    task.result()  # any of these ending is a bug: re-raised
            finally:
                for task in (lost, term, sweeping):
                    task.cancel()
                await asyncio.gather(term, sweeping, lost, return_exceptions=True)
                grace = settings.dispatch.drain_timeout
                drained = all(await asyncio.shield(asyncio.gather(watch.drain(grace), sweep.drain(grace))))
                state.watch = state.sweep = None
                _log.info("watcher term over", drained=drained, leading=elector.is_leader)
    finally:
        campaign.cancel()  # releases the Lease if held
        await asyncio.gather(campaign, return_exceptions=True)


async def _record_local(executor: LocalExecutor, recorder: Recorder, settings: Settings) -> None:
    """Record each Job the local executor finishes, one at a time, retrying transient failures."""
    async for _, record in executor.finished():
        job = record["job"]
        # Shielded: a stop lets the Job in hand be recorded rather than half-recorded.
        await asyncio.shield(_record_with_retries(recorder, job, settings))


async def _record_with_retries(recorder: Recorder, job: Mapping[str, Any], settings: Settings) -> None:
    attempt = 0
    while True:
        try:
            await recorder.record(job)
        except TransientError as error:
            delay = backoff_delay(
                attempt,
                base=settings.dispatch.retry_base_delay,
                cap=settings.dispatch.max_retry_delay,
                retry_after=error.retry_after,
            )
            attempt += 1
            _log.warning("recording a local job failed; retrying", error=str(error), delay=round(delay, 2))
            await asyncio.sleep(delay)
        except PermanentError as error:
            _log.error("recording a local job failed for good", error=str(error))
            return
        else:
            return
