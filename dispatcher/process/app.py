"""The dispatcher's composition root: settings in, running consumers out, drained on SIGTERM.

Start-up order matters for "nothing lost" and caps: the executor is given the services' Secrets, then
started (its Job counts synced, when a service has a cap) before any message is consumed, and every
service queue is declared before the ingress consumer may publish to it. A reload gives the executor
the new Secrets before any Job of the new definitions can be created. Shutdown: stop consuming, let
in-flight creates finish within `drain_timeout`, then close (unsettled messages are redelivered by
the broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

import structlog
from prometheus_client import CollectorRegistry

from dispatcher.adapters.amqp import AmqpClient, Consumer, Delivery
from dispatcher.adapters.amqp.connect import connect_amqp
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.errors import PermanentError, StartupError, TransientError
from dispatcher.executors.base import Executor
from dispatcher.executors.build import build_executor
from dispatcher.fdl.catalog import Catalog, load_catalog
from dispatcher.process.handlers import Handlers
from dispatcher.process.job_creation import JobCreator
from dispatcher.rendering.mount import MountLimits
from dispatcher.rendering.render import renderer_from_settings
from dispatcher.rendering.secrets import service_secrets
from dispatcher.runtime.lifecycle import cancelled, until_stopped
from dispatcher.runtime.metrics import DispatcherMetrics, export_flags, new_registry
from dispatcher.runtime.probes import serve_endpoints
from dispatcher.runtime.settings import ServicesSettings, Settings

_log = structlog.get_logger(__name__)


@dataclass
class _ServiceLane:
    """One service's queue consumer and, while it is at its cap, the task waiting to resume it."""

    consumer: Consumer
    resume: asyncio.Task[None] | None = None


class Dispatcher:
    """Consumes the ingress queue and one queue per service until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        executor: Executor,
        amqp: AmqpClient,
        catalog: Catalog,
        metrics: DispatcherMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.executor = executor
        self.amqp = amqp
        self.catalog = catalog
        self._lanes: dict[str, _ServiceLane] = {}
        self._ingress: Consumer | None = None
        creator = JobCreator(
            lambda: self.catalog.services,
            renderer_from_settings(settings.cluster),
            Storage(settings.storage),
            executor,
            settings.storage.grant_lifetime,
            mount_limits=MountLimits(settings.storage.mount_max_objects, settings.storage.mount_max_bytes),
        )
        self.look_again: Callable[[], Awaitable[bool]] = _nothing_new
        """Look for new definitions now (set by `run_dispatcher`): what an event that routes nowhere
        asks before it is dead-lettered; True when new definitions were loaded."""
        self.handlers = Handlers(
            lambda: self.catalog,
            amqp.publish_to_service,
            creator,
            executor,
            retry_base_delay=settings.dispatch.retry_base_delay,
            max_retry_delay=settings.dispatch.max_retry_delay,
            max_message_bytes=settings.dispatch.max_message_bytes,
            pause_service=self._pause,
            metrics=metrics or DispatcherMetrics(CollectorRegistry()),
            direct_creates=settings.dispatch.direct_creates,
            handoff_batch=settings.dispatch.handoff_batch,
            batch_creates=settings.amqp.prefetch,
            look_again=self._look_again,
        )
        self.queue_depths: dict[str, int] = {}
        """Ready messages per queue at the last sample (``sample_queues``)."""

    async def start(self) -> None:
        """Declare the topology and every service queue, then consume the services, then the ingress."""
        await self.amqp.declare_topology()
        self.handlers.metrics.prepare_services(self.catalog.services)
        await self._sync_lanes(self.catalog.services)
        self._ingress = await self.amqp.consume(self.amqp.topology.ingress_queue, self.handlers.on_ingress)
        _log.info("dispatcher consuming", services=sorted(self.catalog.services))

    async def _look_again(self) -> bool:
        return await self.look_again()  # read at each call: run_dispatcher sets it after construction

    async def reload(self, catalog: Catalog) -> None:
        """Swap in new definitions: new services get queues and consumers, removed ones are drained.

        A first cap starts counting the Jobs, and the new definitions wait for the counts (the old ones
        stay in force meanwhile); once no service has a cap, counting stops.
        """
        await self.executor.provide_secrets(service_secrets(catalog.services.values()))
        if catalog.counts_jobs and not self.executor.counting:
            _log.info("a service has max_concurrent_jobs: counting Jobs before the new definitions apply")
            await self.executor.count_jobs(True)
        self.handlers.metrics.prepare_services(catalog.services)
        await self._sync_lanes(catalog.services)  # queues first: the ingress may publish to them at once
        self.catalog = catalog
        if not catalog.counts_jobs and self.executor.counting:
            await self.executor.count_jobs(False)
        _log.info("service definitions reloaded", services=sorted(catalog.services))

    async def _sync_lanes(self, services: Mapping[str, object]) -> None:
        for name in services:
            if name not in self._lanes:
                queue = await self.amqp.declare_service_queue(name)
                handler = partial(self._on_task, name)
                self._lanes[name] = _ServiceLane(await self.amqp.consume(queue, handler))
        for name in [name for name in self._lanes if name not in services]:
            lane = self._lanes.pop(name)
            await lane.consumer.cancel()
            await lane.consumer.drain(self.settings.dispatch.drain_timeout)
            await lane.consumer.close()

    def queues(self) -> list[str]:
        """The queues whose depth is worth watching: ingress, each service's, the dead letters."""
        topology = self.amqp.topology
        services = [topology.service_queue(name) for name in sorted(self.catalog.services)]
        return [topology.ingress_queue, *services, topology.dead_letter_queue]

    async def sample_queues(self, interval: float) -> None:
        """Refresh ``queue_depths`` every *interval* seconds (skipping rounds while the broker is away)."""
        while True:
            try:
                self.queue_depths = await self.amqp.queue_depths(self.queues())
            except (TransientError, PermanentError) as error:
                _log.debug("queue depths not sampled", error=str(error))
            await asyncio.sleep(interval)

    async def _on_task(self, service: str, delivery: Delivery) -> None:
        await self.handlers.on_task(service, delivery)

    def _pause(self, service: str) -> None:
        """Stop taking the service's messages until one of its Jobs finishes (they wait in RabbitMQ)."""
        lane = self._lanes.get(service)
        if lane is None or (lane.resume is not None and not lane.resume.done()):
            return
        lane.resume = asyncio.create_task(self._resume_below_cap(service, lane), name=f"resume:{service}")

    async def _resume_below_cap(self, service: str, lane: _ServiceLane) -> None:
        await lane.consumer.cancel()
        cap = self.catalog.cap_of(service)
        if cap is not None:
            await self.executor.wait_until(lambda: self.executor.active_jobs(service) < cap)
        await lane.consumer.start()

    async def stop(self) -> None:
        """Stop consuming everything, wait for in-flight work within the drain bound, close."""
        consumers = [lane.consumer for lane in self._lanes.values()]
        if self._ingress is not None:
            consumers.append(self._ingress)
        for lane in self._lanes.values():
            if lane.resume is not None:
                lane.resume.cancel()
        for consumer in consumers:
            await consumer.cancel()
        grace = self.settings.dispatch.drain_timeout
        drained = await asyncio.gather(*(consumer.drain(grace) for consumer in consumers))
        await self.handlers.handoff.close()
        for consumer in consumers:
            await consumer.close()
        _log.info("dispatcher drained", clean=all(drained))


def _export_state(metrics: DispatcherMetrics, dispatcher: Dispatcher, probes: _Probes) -> None:
    """Gauges read at scrape time: running Jobs per service, queue depths, broker and readiness."""
    executor = dispatcher.executor
    metrics.running_jobs(
        lambda: (
            {name: executor.active_jobs(name) for name in dispatcher.catalog.services}
            if executor.counting
            else {}  # the watcher exports them (it watches every Job anyway)
        )
    )
    metrics.queue_depths(lambda: dispatcher.queue_depths)
    export_flags(
        metrics.registry, lambda: {"broker": dispatcher.amqp.connected, "ready": probes.ready.is_set()}
    )


async def _nothing_new() -> bool:
    return False


LOOK_AGAIN_PACE: Final = 1.0
"""Seconds between two looks at the definitions asked for by events that route nowhere."""


class _Definitions:
    """The FDL files in force: re-read when they change, every ``reload_interval`` s, and when an event
    routes nowhere (a service ``bucketrun api`` has just written may be newer than the last look, and its
    first upload must not be dead-lettered for it). An invalid new version is refused, the old one kept.

    Invariant: looks asked for by events are paced (``LOOK_AGAIN_PACE``) and shared: every event that
    asks while a look is pending gets that look's answer, so a flood of unroutable events costs one
    directory scan a second, and an event never waits for a look that started before it asked.
    """

    def __init__(self, dispatcher: Dispatcher, services: ServicesSettings, records: tuple[str, str]) -> None:
        self._dispatcher = dispatcher
        self._services = services
        self._records = records
        self._seen = _fingerprint(services.paths)
        self._lock = asyncio.Lock()
        self._last = time.monotonic()
        self._pending: asyncio.Future[bool] | None = None

    async def watch(self) -> None:
        """Look every ``reload_interval`` seconds, for ever."""
        while True:
            await asyncio.sleep(self._services.reload_interval)
            await self._reload_if_changed()

    async def look_again(self) -> bool:
        """Look now (paced, shared); True when new definitions were loaded."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._paced_look())
        return await asyncio.shield(self._pending)

    async def _paced_look(self) -> bool:
        wait = self._last + LOOK_AGAIN_PACE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._pending = None  # who asks from now on gets a look that starts after they asked
        return await self._reload_if_changed()

    async def _reload_if_changed(self) -> bool:
        async with self._lock:
            self._last = time.monotonic()
            current = _fingerprint(self._services.paths)
            if current == self._seen:
                return False
            self._seen = current
            try:
                catalog = load_catalog(
                    self._services.paths, self._records, cluster=self._services.cluster, empty_dirs=True
                )
            except StartupError as error:
                _log.error("new service definitions refused; keeping the previous ones", error=str(error))
                return False
            await self._dispatcher.reload(catalog)
            return True


def _fingerprint(paths: tuple[Path, ...]) -> tuple[tuple[str, int, int], ...]:
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    stats = []
    for file in files:
        with contextlib.suppress(OSError):
            stat = file.stat()
            stats.append((str(file), stat.st_mtime_ns, stat.st_size))
    return tuple(stats)


@dataclass
class _Probes:
    """What /readyz looks at: set as the parts come up."""

    ready: asyncio.Event
    executor: Executor | None = None
    amqp: AmqpClient | None = None

    async def is_ready(self) -> bool:
        return (
            self.ready.is_set()
            and self.amqp is not None
            and self.amqp.connected
            and self.executor is not None
            and await self.executor.ready()
        )


async def run_dispatcher(
    settings: Settings,
    stop: asyncio.Event,
    ready: asyncio.Event | None = None,
    *,
    executor: Executor | None = None,
    registry: CollectorRegistry | None = None,
) -> None:
    """Run until *stop* is set; *ready* is set while consuming. `StartupError` for unusable
    definitions or topology.

    *executor*, when given, is shared with the caller (``bucketrun serve``), which closes it. With
    *registry*, metrics go there and the caller serves the HTTP endpoints; without, this serves its own.
    """
    records = (settings.storage.records_bucket, settings.storage.records_prefix)
    catalog = load_catalog(
        settings.services.paths, records, cluster=settings.services.cluster, empty_dirs=True
    )
    ready = ready or asyncio.Event()
    probes = _Probes(ready)
    async with contextlib.AsyncExitStack() as cleanup:
        if registry is None:
            registry = new_registry("dispatcher")
            endpoints = await serve_endpoints(
                settings.metrics.host, settings.metrics.port, probes.is_ready, registry
            )
            cleanup.push_async_callback(endpoints.cleanup)
        metrics = DispatcherMetrics(registry)
        if executor is None:
            executor = await build_executor(settings)
            cleanup.push_async_callback(executor.close)
        probes.executor = executor
        # Before start: the local executor runs a previous process's unfinished Jobs at once.
        await executor.provide_secrets(service_secrets(catalog.services.values()))
        # With a capped service the executor waits for its first Job list (the counts) and the broker
        # may be away: both retry on their own, and a stop request must still end the wait.
        starting = executor.start(count_jobs=catalog.counts_jobs)
        if not await until_stopped(starting, stop, name="bucketrun-executor-start"):
            return
        amqp = await connect_amqp(settings, stop)
        if amqp is None:
            return
        probes.amqp = amqp
        async with amqp:
            dispatcher = Dispatcher(settings, executor, amqp, catalog, metrics)
            _export_state(metrics, dispatcher, probes)
            try:
                await dispatcher.start()
            except PermanentError as error:
                raise StartupError(str(error)) from error
            # Everything allocated so far (clients, modules, definitions) lives as long as the process:
            # keep it out of the garbage collector's full passes, which otherwise stall the loop.
            gc.freeze()
            ready.set()
            watched = _Definitions(dispatcher, settings.services, records)
            dispatcher.look_again = watched.look_again
            definitions = watched.watch()
            interval = settings.metrics.queue_sample_interval
            sampler = asyncio.create_task(dispatcher.sample_queues(interval), name="bucketrun-queue-depths")
            cleanup.push_async_callback(cancelled, sampler)
            try:
                # Until a stop request, or the definitions watcher dying (re-raised).
                await until_stopped(definitions, stop, name="bucketrun-definitions")
            finally:
                ready.clear()
                await asyncio.shield(dispatcher.stop())
