"""Prometheus metrics of the dispatcher, the watcher and the API: every name, label and bucket in one place.

Each process owns a `CollectorRegistry` (not the library's global one), so two dispatchers in one test
process never share counters, and ``bucketrun serve`` puts both halves in one registry behind one
``/metrics``. Label values are bounded: ``service`` comes from the loaded definitions, ``reason``,
``kind`` and ``outcome`` from fixed vocabularies, ``queue`` from the topology, the API's ``route`` from
its route templates (``/system/services/{name}``, never the path asked for) and ``method`` and ``code``
from HTTP's. Never an object key, a Job name, a path or an error text.

Names are the contract with ``deploy/grafana`` and ``deploy/prometheus``; the integration test in
``tests/integration/test_observability.py`` evaluates every panel and alert against a real Prometheus
scraping these.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Final
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dispatcher.domain.events import EventErrorReason
from dispatcher.domain.ingress import IGNORED_REASONS
from dispatcher.domain.routing import NoRouteReason

LATENCY_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
)  # fmt: skip
"""Seconds: from a fast create (ms) to a long GPU Job (an hour); beyond lands in +Inf."""


DEAD_LETTER_REASONS: Final = (
    *(str(reason) for reason in EventErrorReason),
    *(str(reason) for reason in NoRouteReason if reason not in IGNORED_REASONS),
    "unknown-service",
    "invalid-manifest",
    "api-4xx",
    "forbidden",
)
"""Reasons a message is commonly dead-lettered for, created at 0 so the first one shows in ``rate()``
(a series born at its first event hides that event from ``increase``)."""
RETRY_KINDS: Final = (
    "amqp",
    "amqp-nack",
    "amqp-unroutable",
    "api-5xx",
    "api-429",
    "api-connection",
    "api-timeout",
    "storage-5xx",
    "storage-connection",
    "at-capacity",
)
"""Kinds of retried failures created at 0 (see `DEAD_LETTER_REASONS`)."""
API_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds: from a cached answer (ms) to a service created with its buckets and notifications (s)."""


def bucketrun_version() -> str:
    """The installed package's version, or ``unknown`` when run from a bare source tree."""
    try:
        return version("bucketrun")
    except PackageNotFoundError:  # pragma: no cover - always installed in this project's set-ups
        return "unknown"


def new_registry(component: str) -> CollectorRegistry:
    """A registry holding ``bucketrun_build_info{component, version, python}`` = 1."""
    registry = CollectorRegistry()
    info = Gauge(
        "bucketrun_build_info",
        "Always 1; the labels tell which bucketrun and Python this process runs.",
        ["component", "version", "python"],
        registry=registry,
    )
    info.labels(component, bucketrun_version(), platform.python_version()).set(1)
    return registry


def seconds_since(moment: datetime | None, now: float | None = None) -> float | None:
    """Seconds from *moment* (naive = UTC) to *now* (Unix time), or None when unknown or in the future
    by more than clock skew allows (a negative observation would corrupt a histogram)."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    elapsed = (time.time() if now is None else now) - moment.timestamp()
    return max(elapsed, 0.0) if elapsed > -5.0 else None


_Read = Callable[[], Mapping[tuple[str, ...], float]]


class _Gauges(Collector):
    """A gauge family read at scrape time from a callback (no state to keep in sync)."""

    def __init__(self, name: str, documentation: str, labels: tuple[str, ...], read: _Read) -> None:
        self._name, self._doc, self._labels, self._read = name, documentation, labels, read

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self._name, self._doc, labels=list(self._labels))
        for values, value in sorted(self._read().items()):
            family.add_metric(list(values), value)
        yield family

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self._name, self._doc, labels=list(self._labels))]


class DispatcherMetrics:
    """What the dispatcher counts and times (see the module docstring for the label rules)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages_received = Counter(
            "bucketrun_messages_received", "MinIO messages taken from the ingress queue.", registry=registry
        )
        self.events_dispatched = Counter(
            "bucketrun_events_dispatched",
            "Events handed to their service: to its queue, or made into a Job by the ingress consumer "
            "(one per record and routed service).",
            ["service"],
            registry=registry,
        )
        self.handoff_messages = Counter(
            "bucketrun_handoff_messages",
            "Messages the ingress consumer published to a service queue: one event, or the batch of events "
            "handed over while the previous publish awaited its confirm (events handed over / messages is "
            "the mean batch).",
            ["service"],
            registry=registry,
        )
        self.direct_creates = Counter(
            "bucketrun_direct_creates",
            "Jobs the ingress consumer created itself (201 or 409), skipping the service queue.",
            registry=registry,
        )
        self.events_ignored = Counter(
            "bucketrun_events_ignored",
            "Event records acked on purpose (folder markers, unhandled event types, filtered keys).",
            ["reason"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "bucketrun_dead_lettered",
            "Messages sent to the dead-letter queue, by reason (x-bucketrun-reason).",
            ["reason"],
            registry=registry,
        )
        self.retries = Counter(
            "bucketrun_retries",
            "Messages parked for a later attempt, by kind (api-5xx, api-429, amqp, storage-*, at-capacity).",
            ["kind"],
            registry=registry,
        )
        self.jobs_created = Counter(
            "bucketrun_jobs_created",
            "Job creations by result: created, or exists (409: made before by a redelivery or a replica).",
            ["service", "result"],
            registry=registry,
        )
        self.event_to_received = Histogram(
            "bucketrun_event_to_received_seconds",
            "From the event's time (the upload) to the dispatcher taking its message off the ingress queue.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.received_to_created = Histogram(
            "bucketrun_received_to_created_seconds",
            "From the message's receipt on the ingress queue to its Job created (retries and caps included).",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

        for reason in DEAD_LETTER_REASONS:
            self.dead_lettered.labels(reason)
        for kind in RETRY_KINDS:
            self.retries.labels(kind)
        for why in IGNORED_REASONS:
            self.events_ignored.labels(str(why))

    def prepare_services(self, services: Iterable[str]) -> None:
        """Create every per-service series at 0 (idempotent; called when definitions load or reload)."""
        for service in services:
            self.events_dispatched.labels(service)
            self.handoff_messages.labels(service)
            self.jobs_created.labels(service, "created")
            self.jobs_created.labels(service, "exists")
            self.received_to_created.labels(service)

    def running_jobs(self, read: Callable[[], Mapping[str, int]]) -> None:
        """Export ``bucketrun_running_jobs{service}`` from *read* (the executor's counts, or nothing while
        it does not count) at scrape time."""
        export_running_jobs(self.registry, read)

    def queue_depths(self, read: Callable[[], Mapping[str, int]]) -> None:
        """Export ``bucketrun_queue_messages{queue}`` (ready messages, last sampled) from *read*."""
        self.registry.register(
            _Gauges(
                "bucketrun_queue_messages",
                "Messages waiting in bucketrun's queues (ingress, each service, dead letters), last "
                "sampled; a service queue's message may hold a batch of events.",
                ("queue",),
                lambda: {(queue,): float(count) for queue, count in read().items()},
            )
        )


_RUNNING_JOBS_READS: WeakKeyDictionary[CollectorRegistry, list[Callable[[], Mapping[str, int]]]] = (
    WeakKeyDictionary()
)


def export_running_jobs(registry: CollectorRegistry, read: Callable[[], Mapping[str, int]]) -> None:
    """Add *read* to the sources of ``bucketrun_running_jobs{service}`` in *registry*: per service, the
    highest count any source reports at scrape time (the dispatcher counts while a cap needs it, the
    leading watcher always; under ``bucketrun serve`` both are one process, one registry)."""
    reads = _RUNNING_JOBS_READS.get(registry)
    if reads is None:
        reads = _RUNNING_JOBS_READS[registry] = []
        registry.register(
            _Gauges(
                "bucketrun_running_jobs",
                "Jobs not yet finished, per service, as the dispatcher (the cap's measure) or the watcher "
                "counts them.",
                ("service",),
                lambda: _highest(reads),
            )
        )
    reads.append(read)


def _highest(reads: Iterable[Callable[[], Mapping[str, int]]]) -> dict[tuple[str, ...], float]:
    highest: dict[tuple[str, ...], float] = {}
    for read in reads:
        for service, count in read().items():
            highest[(service,)] = max(float(count), highest.get((service,), 0.0))
    return highest


def export_flags(registry: CollectorRegistry, read: Callable[[], Mapping[str, bool]]) -> None:
    """Register ``bucketrun_up{part}``: 1 while each named part (broker, ready) is up, read at scrape time."""
    registry.register(
        _Gauges(
            "bucketrun_up",
            "1 while the named part is up: broker (connected), ready (consuming, or recording).",
            ("part",),
            lambda: {(part,): 1.0 if up else 0.0 for part, up in read().items()},
        )
    )


class WatcherMetrics:
    """What the watcher counts and times."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.jobs_finished = Counter(
            "bucketrun_jobs_finished",
            "Finished Jobs recorded, by outcome (succeeded, failed, ...).",
            ["service", "outcome"],
            registry=registry,
        )
        self.records_written = Counter(
            "bucketrun_records_written", "status.json records written.", registry=registry
        )
        self.record_errors = Counter(
            "bucketrun_record_errors",
            "Failed attempts to record a finished Job, by kind (retried when transient).",
            ["kind"],
            registry=registry,
        )
        self.records_expired = Counter(
            "bucketrun_records_expired",
            "Record files the watcher's retention sweep deleted (stays 0 where the store's lifecycle rule "
            "expires them).",
            registry=registry,
        )
        self.created_to_started = Histogram(
            "bucketrun_job_created_to_started_seconds",
            "From the Job's creation to its pod starting (scheduling, image pull, stage-in wait).",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.started_to_finished = Histogram(
            "bucketrun_job_started_to_finished_seconds",
            "From the Job's start to its completion or failure.",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.finished_to_recorded = Histogram(
            "bucketrun_job_finished_to_recorded_seconds",
            "From the Job finishing to its record written and its completion event published.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "bucketrun_end_to_end_seconds",
            "From the upload (event time) to the Job's results and record written.",
            ["service"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.leader = Gauge(
            "bucketrun_watcher_leader",
            "1 while this watcher holds the Lease and records Jobs (always 1 with the local executor).",
            registry=registry,
        )
        for kind in RETRY_KINDS:
            self.record_errors.labels(kind)

    def prepare(self, services: Iterable[str], outcomes: Iterable[str]) -> None:
        """Create every per-service series at 0, for each of *outcomes* (see `DEAD_LETTER_REASONS`)."""
        kinds = tuple(outcomes)
        for service in services:
            for outcome in kinds:
                self.jobs_finished.labels(service, outcome)
            for histogram in (self.created_to_started, self.started_to_finished, self.end_to_end):
                histogram.labels(service)

    def running_jobs(self, read: Callable[[], Mapping[str, int]]) -> None:
        """Export ``bucketrun_running_jobs{service}`` from *read* (the watch's counts while leading, else
        nothing) at scrape time."""
        export_running_jobs(self.registry, read)


class ApiMetrics:
    """What ``bucketrun api`` counts and times, per route template (see the module docstring)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "bucketrun_api_requests",
            "Requests answered by the OSCAR-compatible API, by method, route template and status code.",
            ["method", "route", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "bucketrun_api_request_duration_seconds",
            "From a request's arrival to the end of its answer, by method and route template.",
            ["method", "route"],
            buckets=API_LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        self.requests.labels(method, route, str(code)).inc()
        self.latency.labels(method, route).observe(seconds)
