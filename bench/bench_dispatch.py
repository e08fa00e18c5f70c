"""Dispatch throughput and latency of the real dispatcher, beside the raw limits of its two clients.

A measurement, not a test. Run from the repository root:
``.venv/bin/python bench/bench_dispatch.py [--events N] [--rate R] [--duration S] [--json PATH]``
(``--help`` explains every figure). It starts what it needs and stops it again: a Kubernetes API
emulator subprocess (kubelet ``off``: Jobs get Pending pods and nothing runs), a moto S3 server (the
dispatcher presigns against its endpoint) and the dispatcher itself, in this process. RabbitMQ is the
machine's (``amqp://guest:guest@127.0.0.1:5672/``) or ``$BUCKETRUN_BENCH_AMQP_URL``; every queue and
exchange the bench uses has a unique name and is deleted at the end.

Progress goes to stderr, the figures to stdout, and with ``--json`` to a file as well.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import logging
import math
import os
import platform
import pstats
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any, TextIO, cast
from urllib.parse import urlsplit

# `tests` (the emulator) is not an installed package: put the repository on the path to run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aio_pika  # noqa: TID251 - the bench plays MinIO and measures the bare client
import structlog
from kubernetes_asyncio import client, config  # noqa: TID251 - the bench measures the bare client, watches Jobs

from bucketrun.devtools.moto_server import start_moto
from dispatcher.adapters.amqp import AmqpClient, Topology
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.constants import ANNOTATION_KEY, LABEL_MANAGED_BY
from dispatcher.domain.events import build_message
from dispatcher.domain.ingress import plan_ingress
from dispatcher.fdl import load_services
from dispatcher.fdl.catalog import Catalog
from dispatcher.process.app import run_dispatcher
from dispatcher.process.job_creation import JobCreator
from dispatcher.rendering.render import renderer_from_settings
from dispatcher.runtime.logs import REDACTOR, shared_processors
from dispatcher.runtime.settings import Settings
from tests.k8s_emulator import WRITE_VERBS, run_emulator

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
AMQP_URL_ENV = "BUCKETRUN_BENCH_AMQP_URL"
SERVICES = ("upper", "lower", "count")
BUCKET = "bench"
TARGET_RATIO = 0.80
TARGET_P99_MS = 50.0
PUBLISH_WINDOW = 256
"""Publishes awaiting their broker confirm at once when pre-loading a queue (MinIO pipelines too)."""
PHASE_TIMEOUT_FLOOR = 60.0
"""Seconds any phase may take at least before the bench gives up on it (plus 20 ms per event)."""

HELP = """\
Measures, in one run on one machine, how fast bucketrun's dispatcher turns MinIO events into
Kubernetes Jobs, beside the raw limits of the two clients it is built on.

raw (a)  bare aio-pika: N MinIO-sized messages published with confirms to a fresh quorum queue
         (window of 256 unconfirmed), then consumed with the dispatcher's prefetch and acked one by
         one. The consume+ack rate is raw limit (a); the publish rate is shown too.
raw (b)  bare kubernetes-asyncio: N small valid Jobs created on the emulator with
         create_namespaced_job(_preload_content=False), as many in flight as the dispatcher's
         prefetch. That rate is raw limit (b).
raw (b') the same, with the Jobs bucketrun renders for the same events (bigger documents; shown
         to separate the emulator's cost per Job from the dispatcher's own; not a target).
bucketrun  N events for 3 services (one service each) pre-published to the MinIO exchange, then the
         real dispatcher (run_dispatcher in this process, executor kubernetes, API write rate not
         limiting) consumes them: events/s from the ingress consumer's start to the last Job's
         201 Created, and its ratio to the lower raw limit. Target: >= 80%. Per event the dispatcher
         does two consume+acks and one confirmed publish (ingress -> per-service queue) plus the
         create, presigning and rendering; 'amqp work per event' shows that composite limit, and
         the ratio to (b') shows how much of the gap the emulator's cost of bigger Jobs explains.
latency  events published open-loop at a steady --rate for --duration seconds into the running
         dispatcher (each at its due instant, not waiting for earlier confirms); per Job, event due ->
         Job created. Target: p99 <= 50 ms. Measured from the due instant: a publish that this
         process's busy event loop delayed would have waited in the broker had MinIO sent it. The
         creation instant is when the Job's ADDED event reaches a watch on Jobs opened by this
         process: creationTimestamp has 1 s resolution and the emulator's stats count requests
         without times. The watch is an observer outside the code under test that can only be late,
         never early, so its figure is an upper bound; the dispatcher's own 201-received instant
         (its 'job created' log line) is shown as a cross-check. 'event-loop lag' is how late the
         publisher's timer fired: time the loop (the dispatcher's) was busy, e.g. in a GC pause.
profile  the saturation run once more under cProfile (its rate is not a result): busy time by
         library, the dispatcher's hot-path functions in ms per Job, and the top functions by
         cumulative time.

Read the CPU columns to see what limited a run: on 2 cores the bench process (dispatcher + clients,
one core at most), the emulator and RabbitMQ compete; 'bench' near 100% means the Python process
is the bottleneck. 'GC: full / paused' counts this process's full (generation 2) garbage
collections in the window and the total time all collections paused it (the dispatcher's event loop
included). 'ms CPU per event' is this process's CPU time over the run divided by the events, so
1000 / that is the most one core could do. The load average before and after is printed: other
work on the machine lowers every figure, so compare figures of one run with each other, not across
runs.
"""


# -- progress and output ---------------------------------------------------------------------------------


class Progress:
    """Progress lines on stderr, stamped with the seconds since the bench started."""

    def __init__(self) -> None:
        self._started = time.perf_counter()

    def __call__(self, message: str) -> None:
        """Write one progress line."""
        sys.stderr.write(f"[{time.perf_counter() - self._started:6.1f}s] {message}\n")
        sys.stderr.flush()


def out(line: str = "") -> None:
    """One line of the results on stdout."""
    sys.stdout.write(line + "\n")


# -- pure helpers -----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of *values* (``fraction`` in (0, 1]); NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of latencies in seconds, as milliseconds."""
    return {
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": (max(latencies) if latencies else math.nan) * 1000,
    }


def verdict(passed: bool) -> str:
    """PASS or FAIL."""
    return "PASS" if passed else "FAIL"


def fdl_text(*, first_capped: int | None = None) -> str:
    """Three services on one bucket, one input folder each, so every event routes to exactly one. With
    *first_capped*, the first has that ``max_concurrent_jobs`` (the dispatcher then counts every Job)."""
    lines = ["functions:", "  oscar:"]
    for index, name in enumerate(SERVICES):
        lines += [
            "  - bench:",
            f"      name: {name}",
            "      image: busybox:1.36",
            f"      cpu: '{0.25 * (index + 1)}'",
            f"      memory: {64 * (index + 1)}Mi",
            "      script: |",
            '        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/out.txt"',
            f"      input: [{{storage_provider: minio, path: {BUCKET}/in/{name}}}]",
            f"      output: [{{storage_provider: minio, path: {BUCKET}/out/{name}}}]",
        ]
        if index == 0 and first_capped is not None:
            lines += ["      bucketrun:", f"        max_concurrent_jobs: {first_capped}"]
    return "\n".join(lines) + "\n"


def corpus(tag: str, count: int) -> list[tuple[str, bytes]]:
    """(object key, MinIO message) pairs, round-robin over the services; *tag* makes keys unique per phase."""
    events = []
    for index in range(count):
        key = f"in/{SERVICES[index % len(SERVICES)]}/{tag}/photo-{index:06d}.txt"
        body = build_message(
            event_name="s3:ObjectCreated:Put",
            bucket=BUCKET,
            key=key,
            size=1024 + index,
            etag=f"{index:032x}",
            sequencer=f"{1_800_000_000_000_000_000 + index:X}",
            content_type="text/plain",
        )
        events.append((key, body))
    return events


def small_job(name: str) -> dict[str, Any]:
    """A small valid Job: what a bare client creates when it has nothing to render."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: "bench"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox:1.36", "command": ["true"]}],
                }
            },
        },
    }


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of process *pid* so far (0 when unknown or gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    # After the ")" that ends the command name, utime and stime are the 12th and 13th fields.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listening_pid(port: int) -> int | None:
    """The local process listening on TCP *port* (the broker, for its CPU figure); None if not found.

    Other RabbitMQ nodes may run on this machine (tests start private ones), so the node is found by
    its listening socket, not by its name.
    """
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                columns = row.split()
                # local address "ADDR:PORT" in hex, state 0A = LISTEN, inode in column 10
                if int(columns[1].rsplit(":", 1)[1], 16) == port and columns[3] == "0A":
                    inodes.add(f"socket:[{columns[9]}]")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not inodes:
            continue
        with contextlib.suppress(OSError):
            if any(str(fd.readlink()) in inodes for fd in (entry / "fd").iterdir()):
                return int(entry.name)
    return None


@dataclass
class Meter:
    """Over one window: CPU of the bench process and of every server (*cpu*: name -> CPU seconds so far);
    garbage-collector pauses here. A collection stops this process's event loop, dispatcher included, for
    as long as it lasts."""

    cpu: Callable[[], dict[str, float]]
    _start: tuple[float, float, dict[str, float]] = (0.0, 0.0, {})
    _pauses: list[tuple[int, float]] = field(default_factory=list)
    _collecting_since: float = 0.0

    def _now(self) -> tuple[float, float, dict[str, float]]:
        return (time.perf_counter(), time.process_time(), self.cpu())

    def _on_gc(self, phase: str, info: Mapping[str, int]) -> None:
        if phase == "start":
            self._collecting_since = time.perf_counter()
        else:
            self._pauses.append((info["generation"], time.perf_counter() - self._collecting_since))

    def start(self) -> None:
        """Open the window."""
        self._pauses = []
        gc.callbacks.append(self._on_gc)
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        """Close the window: % of one core per process (a server may use more than one), each process's CPU
        seconds (``<name>_cpu_s``, the bench's own as ``bench``), and GC pauses (all generations, and the
        full collections of generation 2)."""
        end = self._now()
        gc.callbacks.remove(self._on_gc)
        wall = max(end[0] - self._start[0], 1e-9)
        seconds = {"bench": end[1] - self._start[1]}
        seconds |= {name: value - self._start[2].get(name, 0.0) for name, value in end[2].items()}
        full = [pause for generation, pause in self._pauses if generation == 2]
        return {
            **{f"{name}_pct": 100 * value / wall for name, value in seconds.items()},
            "wall_s": wall,
            **{f"{name}_cpu_s": value for name, value in seconds.items()},
            "gc_pause_total_ms": 1000 * sum(pause for _, pause in self._pauses),
            "gc_pause_max_ms": 1000 * max((pause for _, pause in self._pauses), default=0.0),
            "gc_full_collections": len(full),
            "gc_full_total_ms": 1000 * sum(full),
        }


# -- the dispatcher's log, read in-process -----------------------------------------------------------------


@dataclass
class DispatcherLog:
    """Instants the bench reads from the dispatcher's own log lines (structlog, in this process).

    Lines are still rendered as JSON (to /dev/null) so that logging costs what it costs in production;
    warnings and errors are also shown on stderr and kept.
    """

    consuming_at: float | None = None
    consuming_cpu: float | None = None
    """This process's CPU seconds (``time.process_time``) when the dispatcher logged that it consumes."""
    created_at: dict[str, float] = field(default_factory=dict)
    """Object key -> ``perf_counter()`` when its Job's 201 Created reached the dispatcher."""
    exists: int = 0
    direct: int = 0
    """Jobs created by the ingress consumer itself (no service queue)."""
    queue_messages: float = 0.0
    """Service-queue messages the other Jobs came from: each line of a message that held N events counts
    1/N, so a batch all of whose Jobs were created counts one."""
    problems: list[str] = field(default_factory=list)
    expected: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, count: int) -> None:
        """Start a phase: forget previous instants; ``done`` is set once *count* Jobs were created."""
        self.consuming_at = None
        self.consuming_cpu = None
        self.created_at = {}
        self.exists = 0
        self.direct = 0
        self.queue_messages = 0.0
        self.expected = count
        self.done = asyncio.Event()

    def processor(self, _: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        """A structlog processor: note the instants, pass the event on unchanged."""
        now = time.perf_counter()
        name = event.get("event")
        if name == "job created":
            self.created_at.setdefault(str(event.get("key")), now)
            if event.get("path") == "direct":
                self.direct += 1
            else:
                self.queue_messages += 1 / max(int(event.get("events", 1)), 1)
            if len(self.created_at) >= self.expected > 0:
                self.done.set()
        elif name == "job exists":
            self.exists += 1
        elif name == "dispatcher consuming":
            self.consuming_at = now
            self.consuming_cpu = time.process_time()
        if method not in {"debug", "info"}:
            detail = {k: v for k, v in event.items() if k != "event"}
            line = f"dispatcher {method}: {name} {detail}"
            self.problems.append(line)
            sys.stderr.write(f"  ! {line[:500]}\n")
        return event


def configure_dispatcher_logs(log: DispatcherLog | None, sink: TextIO) -> None:
    """Production's processor chain (``configure_logging``'s: JSON lines, redaction included) writing to
    *sink*, with *log* (if any) reading along once the context is merged."""
    chain = shared_processors()
    if log is not None:
        chain.insert(chain.index(structlog.contextvars.merge_contextvars) + 1, log.processor)
    structlog.configure(
        processors=[*chain, REDACTOR, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sink),
        cache_logger_on_first_use=True,
    )


# -- what the bench runs against ---------------------------------------------------------------------------
# The test fixtures' helpers (tests/backends) are not imported: they pull in pytest, whose ~10,000 objects
# every full garbage collection of the dispatcher would walk too. The emulator package does not.


@contextlib.contextmanager
def started_moto(log: Path) -> Iterator[str]:
    """A moto S3 server on a free loopback port (its own process group, stopped on exit); yields host:port."""
    server = start_moto(log)
    try:
        yield server.endpoint
    finally:
        server.stop()


async def api_client_for(kubeconfig: Path) -> client.ApiClient:
    """A kubernetes_asyncio client for *kubeconfig*, with the library's defaults (as the dispatcher's)."""
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration=configuration)


async def all_jobs(kubeconfig: Path, namespace: str) -> list[dict[str, Any]]:
    """Every Job of *namespace* as the API sent it (raw JSON), a page of 1,000 at a time."""
    found: list[dict[str, Any]] = []
    async with await api_client_for(kubeconfig) as api:
        batch: Any = client.BatchV1Api(api)
        token: str | None = None
        while True:
            extra = {"_continue": token} if token else {}
            page = await batch.list_namespaced_job(namespace, limit=1000, _preload_content=False, **extra)
            try:
                body = await page.json()
            finally:
                page.release()
            found += body["items"]
            token = body["metadata"].get("continue")
            if not token:
                return found


@dataclass(frozen=True)
class Stack:
    """The servers of this run and the names it uses on them."""

    amqp_url: str
    kubeconfig: Path
    control: Any
    """The emulator's ``EmulatorControl``, or ``real_stack.RealControl`` (the same methods)."""
    emulator_pid: int | None
    s3_endpoint: str
    fdl: Path
    prefix: str
    backend: str = "emulator"
    """``emulator`` or ``real`` (the local stack: etcd, kube-apiserver, controllers, node agent, MinIO)."""
    cpu: Callable[[], dict[str, float]] | None = None
    """Every server's CPU seconds so far, by name; None: the emulator's and the broker's (found by port)."""
    s3_access_key: str = "bench"
    s3_secret_key: str = "bench-secret"  # noqa: S105 - moto accepts any key; the real stack passes MinIO's
    versions: dict[str, str] = field(default_factory=dict)

    def settings(
        self,
        namespace: str,
        *,
        exchange: str | None = None,
        storage: Mapping[str, str] | None = None,
        dispatch: Mapping[str, Any] | None = None,
        amqp: Mapping[str, Any] | None = None,
        fdl: Path | None = None,
        cluster: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Dispatcher settings for one phase: unique broker names, its own namespace, writes unlimited.
        With *exchange* (MinIO's), the phase has an ingress queue of its own on it; *storage* overrides
        the store's settings (a real MinIO's endpoint and keys), *dispatch*, *amqp* and *cluster* the
        dispatch, broker and cluster settings, *fdl* the service definitions."""
        return Settings.load(
            amqp={
                "url": self.amqp_url,
                "exchange": exchange or f"{self.prefix}.events",
                "ingress_queue": f"{self.prefix}.{namespace}.ingress"
                if exchange
                else f"{self.prefix}.ingress",
                "dead_letter_exchange": f"{self.prefix}.dlx",
                "dead_letter_queue": f"{self.prefix}.dlq",
                "retry_exchange": f"{self.prefix}.retry",
                "retry_queue_prefix": f"{self.prefix}.retry",
                "service_queue_prefix": f"{self.prefix}.svc",
                "retry_tiers": (1, 5),
                **(amqp or {}),
            },
            storage={
                "endpoint": self.s3_endpoint,
                "access_key": self.s3_access_key,
                "secret_key": self.s3_secret_key,
                "region": "us-east-1",
                **(storage or {}),
            },
            cluster={
                "executor": "kubernetes",
                "namespace": namespace,
                "kubeconfig": self.kubeconfig,
                "api_write_rate": 1_000_000.0,
                "api_write_burst": 1_000_000,
                **(cluster or {}),
            },
            services={"paths": (fdl or self.fdl,), "reload_interval": 3600.0},
            dispatch={"drain_timeout": 10.0, **(dispatch or {})},
            metrics={"host": "127.0.0.1", "port": 0},
        )

    @property
    def raw_queue(self) -> str:
        """The quorum queue of the bare aio-pika measurement."""
        return f"{self.prefix}.raw"


@contextlib.contextmanager
def started_stack(progress: Progress, kubelet: str = "off") -> Iterator[Stack]:
    """Start the emulator (with *kubelet*: off, or instant for pods that finish at once) and moto, write
    the service definitions; stop both on exit."""
    amqp_url = os.environ.get(AMQP_URL_ENV, DEFAULT_AMQP_URL)
    with tempfile.TemporaryDirectory(prefix="bucketrun-bench-") as tmp:
        fdl = Path(tmp) / "services.yaml"
        fdl.write_text(fdl_text())
        progress(f"starting the Kubernetes emulator (kubelet {kubelet}) and a moto S3 server")
        with (
            run_emulator(Path(tmp), kubelet=kubelet) as emulator,
            started_moto(Path(tmp) / "moto.log") as s3_endpoint,
        ):
            try:
                yield Stack(
                    amqp_url=amqp_url,
                    kubeconfig=emulator.kubeconfig,
                    control=emulator.control,
                    emulator_pid=emulator.pid,
                    s3_endpoint=s3_endpoint,
                    fdl=fdl,
                    prefix=f"bench-{uuid.uuid4().hex[:10]}",
                )
            finally:
                progress("stopping moto and the emulator")


# -- broker helpers --------------------------------------------------------------------------------------


async def publish_all(exchange: aio_pika.abc.AbstractExchange, routing_key: str, bodies: list[bytes]) -> None:
    """Publish persistently with confirms, at most PUBLISH_WINDOW unconfirmed at once."""
    pending: set[asyncio.Future[Any]] = set()
    for body in bodies:
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        pending.add(asyncio.ensure_future(exchange.publish(message, routing_key)))
        if len(pending) >= PUBLISH_WINDOW:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                future.result()
    for future in asyncio.as_completed(pending):
        await future


async def queue_depth(url: str, queue: str) -> int:
    """Messages ready in *queue*, from a fresh passive declare (a robust connection would cache it)."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def delete_broker_objects(url: str, queues: Iterable[str], exchanges: Iterable[str]) -> None:
    """Delete queues and exchanges unconditionally (missing ones are fine)."""
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue, if_unused=False, if_empty=False)
        for exchange in exchanges:
            await channel.exchange_delete(exchange, if_unused=False)


def broker_objects(settings: Settings, raw_queue: str) -> tuple[list[str], list[str]]:
    """(queues, exchanges) that the dispatcher's topology and the raw measurement create."""
    topology = Topology.from_settings(settings.amqp)
    queues = [
        raw_queue,
        topology.ingress_queue,
        topology.dead_letter_queue,
        *(topology.tier_queue(seconds) for seconds in topology.retry_tiers),
        *(topology.service_queue(name) for name in SERVICES),
    ]
    return queues, [topology.exchange, topology.dead_letter_exchange, topology.retry_exchange]


async def queue_events(settings: Settings, bodies: list[bytes], *, check_queued: bool = True) -> None:
    """Declare what the dispatcher declares at start, then publish *bodies* to the MinIO exchange (and
    check they all wait in the ingress queue, unless a running dispatcher may be consuming them)."""
    async with await AmqpClient.connect(settings.amqp) as amqp:
        await amqp.declare_topology()
        for name in SERVICES:
            await amqp.declare_service_queue(name)
    connection = await aio_pika.connect(settings.amqp.url.get_secret_value())
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(settings.amqp.exchange)
        await publish_all(exchange, settings.amqp.routing_key, bodies)
    if not check_queued:
        return
    queued = await queue_depth(settings.amqp.url.get_secret_value(), settings.amqp.ingress_queue)
    if queued != len(bodies):
        raise RuntimeError(f"expected {len(bodies)} events in the ingress queue, found {queued}")


# -- Kubernetes helpers ----------------------------------------------------------------------------------


NAMESPACE_HOOKS: list[Callable[[str], None]] = []
"""Called (in a thread) with each namespace the bench creates: the real stack waits for its controllers
and starts counting its requests there."""


async def create_namespace(kubeconfig: Path, name: str) -> None:
    """Create a namespace (and run NAMESPACE_HOOKS on it)."""
    async with await api_client_for(kubeconfig) as api:
        core: Any = client.CoreV1Api(api)  # a plain dict body: the generated signature wants a model
        response = await core.create_namespace({"metadata": {"name": name}}, _preload_content=False)
        response.release()
    for hook in NAMESPACE_HOOKS:
        await asyncio.to_thread(hook, name)


def api_counts(control: Any, namespace: str) -> dict[str, int]:
    """What the emulator answered in *namespace*: Job creates by outcome, and all writes."""
    jobs = {"verb": "create", "resource": "jobs", "namespace": namespace}
    return {
        "jobs_created_201": control.request_count(**jobs, code=201),
        "jobs_conflict_409": control.request_count(**jobs, code=409),
        "writes": control.request_count(verb=WRITE_VERBS, namespace=namespace),
        "config_map_writes": control.request_count(
            verb=WRITE_VERBS, resource="configmaps", namespace=namespace
        ),
    }


def rendered_jobs(settings: Settings, bodies: list[bytes]) -> list[dict[str, Any]]:
    """The Jobs the dispatcher creates for *bodies*, made by its own code (outside any timed window)."""
    catalog = Catalog.of(load_services(settings.services.paths).services)
    creator = JobCreator(
        lambda: catalog.services,
        renderer_from_settings(settings.cluster),
        Storage(settings.storage),
        cast("Any", _NoExecutor()),  # `prepare` never reaches the executor: it need not be a whole one
        settings.storage.grant_lifetime,
    )
    return [
        creator.prepare(task.service, task.body)[3]
        for body in bodies
        for task in plan_ingress(body, catalog.router).tasks
    ]


class _NoExecutor:
    """The executor of a JobCreator used for `prepare` only (rendering without creating)."""

    async def ensure_config_map(self, doc: Mapping[str, Any]) -> None:
        """Never called: `prepare` does not create."""
        raise NotImplementedError(doc)

    async def create_job(self, doc: Mapping[str, Any]) -> Any:
        """Never called: `prepare` does not create."""
        raise NotImplementedError(doc)


def bench_job(name: str, labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any]:
    """A one-container Job that runs `true` (the emulator's instant kubelet finishes it at once)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": dict(labels), "annotations": dict(annotations)},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "run", "image": "busybox:1.36", "command": ["true"]}],
                }
            },
        },
    }


async def watch_events(
    kubeconfig: Path,
    namespace: str,
    opened: asyncio.Event,
    note: Callable[[Mapping[str, Any], float], None],
    resource: str = "jobs",
) -> None:
    """Watch Jobs (or, with *resource* ``"pods"``, pods) in *namespace* until cancelled, setting *opened*
    once the watch is open and calling *note(event, arrival instant)* per event (raw lines: no model
    building in the way of the timing).

    A stream that ends (a real API server closes the watch of a client that reads too slowly for it) is
    opened again from the last resourceVersion seen, so no event is lost; an ERROR event (410: that
    version is gone) raises.
    """
    async with await api_client_for(kubeconfig) as api:
        lister: Any = (
            client.CoreV1Api(api).list_namespaced_pod
            if resource == "pods"
            else client.BatchV1Api(api).list_namespaced_job
        )
        version: str | None = None
        while True:
            since = {"resource_version": version, "allow_watch_bookmarks": True} if version else {}
            response = await lister(
                namespace, watch=True, timeout_seconds=3600, _preload_content=False, **since
            )
            opened.set()
            try:
                async for line in response.content:
                    now = time.perf_counter()
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        raise RuntimeError(
                            f"the {resource} watch of {namespace} answered {event.get('object')}"
                        )
                    version = event["object"]["metadata"].get("resourceVersion", version)
                    if event.get("type") != "BOOKMARK":
                        note(event, now)
            finally:
                response.release()


@dataclass
class FirstSeen:
    """When each of *expected* keys was first seen (``perf_counter``); *complete* once all were."""

    expected: int
    seen: dict[str, float] = field(default_factory=dict)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    complete: asyncio.Event = field(default_factory=asyncio.Event)

    def mark(self, key: str, now: float) -> None:
        """*key* seen at *now*, unless seen before."""
        self.seen.setdefault(key, now)
        if len(self.seen) >= self.expected:
            self.complete.set()


@dataclass
class JobWatch(FirstSeen):
    """When each Job's ADDED event reached this process, by object key."""

    async def run(self, kubeconfig: Path, namespace: str) -> None:
        """Watch Jobs in *namespace* until cancelled."""
        await watch_events(kubeconfig, namespace, self.opened, self._note)

    def _note(self, event: Mapping[str, Any], now: float) -> None:
        if event.get("type") != "ADDED":
            return
        annotations = event["object"]["metadata"].get("annotations") or {}
        self.mark(str(annotations.get(ANNOTATION_KEY)), now)


@dataclass
class PodsTakenUp(FirstSeen):
    """When each Job's pod was first seen taken up by the node (bound, and its first status written by the
    node agent, as a kubelet writes ``startTime``), by Job name: the end of the work an event causes before
    its Job runs. The Jobs created per second say what the API server admits; the pods taken up per second,
    over a run and the control plane's work after it, what this machine sustains."""

    async def run(self, kubeconfig: Path, namespace: str) -> None:
        """Watch the pods of *namespace* until cancelled."""
        await watch_events(kubeconfig, namespace, self.opened, self._note, resource="pods")

    def _note(self, event: Mapping[str, Any], now: float) -> None:
        pod = event["object"]
        if not (pod.get("spec") or {}).get("nodeName") or not (pod.get("status") or {}).get("startTime"):
            return
        job = (pod["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name")
        if job is not None:
            self.mark(job, now)

    def rate_since(self, start: float) -> float:
        """Jobs taken up per second from *start* to the last one taken up."""
        return len(self.seen) / (max(self.seen.values()) - start) if self.seen else math.nan


@dataclass
class SteadyLoad:
    """Events published open-loop on a fixed schedule: each at its due instant, whatever the earlier ones
    are waiting for (their confirms arrive in tasks), as independent uploads would reach MinIO."""

    rate: float
    due: dict[str, float] = field(default_factory=dict)
    """Object key -> the instant its event was due (the schedule)."""
    sent: dict[str, float] = field(default_factory=dict)
    """Object key -> the instant its publish actually started."""

    async def publish(self, settings: Settings, events: list[tuple[str, bytes]]) -> None:
        """Publish every event on schedule; return once all are confirmed."""
        connection = await aio_pika.connect(settings.amqp.url.get_secret_value())
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(settings.amqp.exchange)
            confirms: list[asyncio.Task[Any]] = []
            start = time.perf_counter()
            for index, (key, body) in enumerate(events):
                due = start + index / self.rate
                # A schedule, not a wait for a condition: the load must arrive at a steady rate.
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                self.due[key], self.sent[key] = due, time.perf_counter()
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                confirms.append(asyncio.create_task(exchange.publish(message, settings.amqp.routing_key)))
            await asyncio.gather(*confirms)

    def lateness(self) -> list[float]:
        """How late each publish started: the time this process's event loop was busy elsewhere."""
        return [self.sent[key] - due for key, due in self.due.items()]

    def achieved_rate(self) -> float:
        """Events per second actually sent."""
        span = max(self.sent.values()) - min(self.sent.values())
        return (len(self.sent) - 1) / span if span > 0 else math.nan

    def worst_by_second(self, created: Mapping[str, float]) -> list[float]:
        """The worst latency (ms) of the events due in each second of the run: a backlog that builds up
        shows as a rising series, a stall (a GC pause, another process) as a lone peak."""
        start = min(self.due.values())
        worst: dict[int, float] = {}
        for key, due in self.due.items():
            second = int(due - start)
            worst[second] = max(worst.get(second, 0.0), (created[key] - due) * 1000)
        return [round(worst.get(second, math.nan), 1) for second in range(max(worst) + 1)]

    def latencies(self, created: Mapping[str, float]) -> list[float]:
        """Due instant -> *created* instant, per key (from the due instant: a publish delayed by a busy
        loop would have been waiting in the broker had MinIO sent it, so the delay counts)."""
        return [created[key] - due for key, due in self.due.items()]


@contextlib.asynccontextmanager
async def pods_taken_up(kubeconfig: Path, namespace: str, count: int) -> AsyncIterator[PodsTakenUp | None]:
    """With *count* > 0, a ``PodsTakenUp`` watch of *namespace* open for the block (else None)."""
    if count <= 0:
        yield None
        return
    pods = PodsTakenUp(count)
    observer = asyncio.create_task(pods.run(kubeconfig, namespace), name="the pod watch")
    try:
        await until(pods.opened, observer, 30, "the pod watch to open")
        yield pods
    finally:
        observer.cancel()
        await asyncio.gather(observer, return_exceptions=True)


async def to_running(pods: PodsTakenUp | None, start: float) -> dict[str, Any]:
    """Once every pod *pods* expects is taken up: from *start* to the last one, and its rate ({} without
    *pods*). Waits while the control plane makes and binds the pods, which it does mostly after a create
    run ends; ``TimeoutError`` naming how many were taken up if it takes longer than a slow machine would."""
    if pods is None:
        return {}
    within = 120 + pods.expected * 0.5
    try:
        await asyncio.wait_for(pods.complete.wait(), within)
    except TimeoutError:
        raise TimeoutError(
            f"{len(pods.seen)} of {pods.expected} pods taken up by the node within {within:.0f} s"
        ) from None
    return {
        "to_running": {
            "jobs": len(pods.seen),
            "seconds": max(pods.seen.values()) - start,
            "rate": pods.rate_since(start),
        }
    }


# -- the dispatcher in this process ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_dispatcher(settings: Settings) -> AsyncIterator[asyncio.Task[None]]:
    """Run `run_dispatcher` here; yields its task once ready (or raises why it did not start); stops it."""
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_dispatcher(settings, stop, ready), name="the dispatcher")
    try:
        await until(ready, task, 60, "the dispatcher to be ready")
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def until(done: asyncio.Event, task: asyncio.Task[None], within: float, what: str) -> None:
    """Wait for *done*; fail naming *what* if *task* (which sets it) ends first or *within* s pass."""
    waiter = asyncio.create_task(done.wait())
    await asyncio.wait({waiter, task}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if done.is_set():
        return
    if task.done():
        task.result()
        raise RuntimeError(f"{task.get_name()} stopped before {what}")
    raise TimeoutError(f"timed out after {within:.0f} s waiting for {what}")


def phase_timeout(events: int) -> float:
    """How long a phase of *events* may take before the bench gives up (generous: a hang, not slowness)."""
    return PHASE_TIMEOUT_FLOOR + events * 0.05


# -- the phases ------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """One run: the servers, the dispatcher's log as read in-process, the meter and the results so far."""

    stack: Stack
    progress: Progress
    prefetch: int
    log: DispatcherLog = field(default_factory=DispatcherLog)
    meter: Meter = field(init=False)
    results: dict[str, Any] = field(default_factory=dict)
    pause_controllers: bool = False
    """Real stack: stop the controller manager and the scheduler during every create run's window
    (``RealControl.controllers_paused``), bare and bucketrun's alike (``pinned.py``)."""

    def __post_init__(self) -> None:
        if self.stack.cpu is not None:
            self.meter = Meter(self.stack.cpu)
            return
        broker = urlsplit(self.stack.amqp_url)
        local = broker.hostname in {"127.0.0.1", "localhost", "::1"}
        rabbit, emulator = listening_pid(broker.port or 5672) if local else None, self.stack.emulator_pid
        self.meter = Meter(lambda: {"emulator": cpu_seconds(emulator), "rabbitmq": cpu_seconds(rabbit)})

    def window(self) -> contextlib.AbstractContextManager[None]:
        """Around a create run's measured part: the controllers paused if ``pause_controllers``."""
        return self.stack.control.controllers_paused() if self.pause_controllers else contextlib.nullcontext()

    async def settle(self, *namespaces: str) -> dict[str, float]:
        """Between phases: empty finished namespaces (every phase meets an emulator of the same size) and
        collect the bench's own garbage (so the dispatcher's collections walk only its own objects).

        Returns each server's CPU seconds meanwhile (``<name>_cpu_s``): the *tail* of the phase just
        measured. On the real stack the Job controller and the scheduler make and bind the pods of a
        phase's Jobs after its window closes, and a faster phase leaves more of that work outside it; the
        report adds the tail so that phases are compared with all the work they caused."""
        before = self.meter.cpu()
        for namespace in namespaces:
            await asyncio.to_thread(self.stack.control.reset_namespace, namespace)
        after = self.meter.cpu()
        gc.collect()
        return {f"{name}_cpu_s": after[name] - before.get(name, 0.0) for name in after}

    async def raw_limits(self, count: int) -> None:
        """Raw limits (a), (b) and (b'); their documents are garbage once this returns."""
        bodies = [body for _, body in corpus("raw", count)]
        self.progress(f"raw (a): aio-pika, {count} messages through a fresh quorum queue")
        self.results["raw_amqp"] = await self.raw_amqp(bodies)
        self.progress(f"raw (b): kubernetes-asyncio, {count} small Jobs, {self.prefetch} in flight")
        small = [small_job(f"raw-{index:06d}") for index in range(count)]
        self.results["raw_k8s_small"] = await self.raw_creates("bench-raw-small", small)
        self.progress(
            f"raw (b'): rendering {count} bucketrun Jobs (untimed), then creating them the bare way"
        )
        rendered = rendered_jobs(self.stack.settings("bench-raw-rendered"), bodies)
        self.results["raw_k8s_rendered"] = await self.raw_creates("bench-raw-rendered", rendered)

    async def raw_amqp(self, bodies: list[bytes]) -> dict[str, Any]:
        """Bare aio-pika: publish with confirms to a fresh quorum queue, then consume and ack everything."""
        count, queue_name = len(bodies), self.stack.raw_queue
        all_acked = asyncio.Event()
        acked = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal acked
            await message.ack()
            acked += 1
            if acked == count:
                all_acked.set()

        connection = await aio_pika.connect(self.stack.amqp_url)
        async with connection:
            publisher = await connection.channel(publisher_confirms=True)
            await publisher.declare_queue(queue_name, durable=True, arguments={"x-queue-type": "quorum"})
            started = time.perf_counter()
            await publish_all(publisher.default_exchange, queue_name, bodies)
            publish_seconds = time.perf_counter() - started
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self.prefetch)
            queue = await channel.get_queue(queue_name)
            self.meter.start()
            started = time.perf_counter()
            tag = await queue.consume(on_message)
            await asyncio.wait_for(all_acked.wait(), phase_timeout(count))
            consume_seconds = time.perf_counter() - started
            usage = self.meter.stop()
            await queue.cancel(tag)
        return {
            "messages": count,
            "publish_rate": count / publish_seconds,
            "consume_ack_rate": count / consume_seconds,
            "left_in_queue": await queue_depth(self.stack.amqp_url, queue_name),
            "usage": usage,
        }

    async def raw_creates(
        self,
        namespace: str,
        docs: list[dict[str, Any]],
        in_flight: int | None = None,
        *,
        running: bool = False,
    ) -> dict[str, Any]:
        """Bare kubernetes-asyncio: create every Job, *in_flight* (default ``prefetch``) requests at once.
        With *running*, also until every Job's pod is taken up by the node (``to_running``)."""
        await create_namespace(self.stack.kubeconfig, namespace)
        statuses: dict[int, int] = {}
        pods_watch = pods_taken_up(self.stack.kubeconfig, namespace, len(docs) if running else 0)
        async with pods_watch as pods, await api_client_for(self.stack.kubeconfig) as api:
            batch: Any = client.BatchV1Api(api)
            remaining = iter(docs)

            async def worker() -> None:
                for doc in remaining:
                    response = await batch.create_namespaced_job(namespace, doc, _preload_content=False)
                    try:
                        await response.read()
                    finally:
                        response.release()
                    statuses[response.status] = statuses.get(response.status, 0) + 1

            with self.window():
                self.meter.start()
                started = time.perf_counter()
                await asyncio.wait_for(
                    asyncio.gather(*(worker() for _ in range(in_flight or self.prefetch))),
                    phase_timeout(len(docs)),
                )
                seconds = time.perf_counter() - started
                usage = self.meter.stop()
            running_figures = await to_running(pods, started)
        return {
            "jobs": len(docs),
            "rate": len(docs) / seconds,
            "statuses": {str(code): n for code, n in sorted(statuses.items())},
            "avg_body_bytes": sum(len(json.dumps(doc)) for doc in docs) / len(docs),
            "usage": usage,
        } | running_figures

    async def saturation(
        self,
        tag: str,
        count: int,
        profiler: cProfile.Profile | None = None,
        dispatch: Mapping[str, Any] | None = None,
        amqp: Mapping[str, Any] | None = None,
        *,
        running: bool = False,
        cluster: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Pre-publish *count* events, let the dispatcher drain them: events/s up to the last 201 Created.
        *dispatch*, *amqp* and *cluster* override dispatcher settings (``BUCKETRUN_DISPATCH__*``,
        ``BUCKETRUN_AMQP__*``, ``BUCKETRUN_CLUSTER__*``). With *running*, also until every Job's pod is
        taken up (``to_running``)."""
        namespace = f"bench-{tag}"
        settings = self.stack.settings(namespace, dispatch=dispatch, amqp=amqp, cluster=cluster)
        await create_namespace(self.stack.kubeconfig, namespace)
        await queue_events(settings, [body for _, body in corpus(tag, count)])
        self.log.expect(count)
        async with pods_taken_up(self.stack.kubeconfig, namespace, count if running else 0) as pods:
            with self.window():
                self.meter.start()
                cpu_before = time.process_time()
                if profiler is not None:
                    profiler.enable()
                try:
                    async with running_dispatcher(settings) as dispatcher:
                        await until(self.log.done, dispatcher, phase_timeout(count), f"{count} Jobs")
                finally:
                    if profiler is not None:
                        profiler.disable()
                usage = self.meter.stop()
            if self.log.consuming_at is None:
                raise RuntimeError("the dispatcher never logged 'dispatcher consuming'")
            running_figures = await to_running(pods, self.log.consuming_at)
        seconds = max(self.log.created_at.values()) - self.log.consuming_at
        startup_cpu = (self.log.consuming_cpu or cpu_before) - cpu_before
        return {
            "events": count,
            "seconds": seconds,
            "rate": count / seconds,
            "cpu_ms_per_event": usage["bench_cpu_s"] * 1000 / count,
            "startup_cpu_s": startup_cpu,
            "cpu_ms_per_event_consuming": (usage["bench_cpu_s"] - startup_cpu) * 1000 / count,
            "jobs_logged_created": len(self.log.created_at),
            "jobs_logged_existing": self.log.exists,
            "created_directly": self.log.direct,
            "service_queue_messages": round(self.log.queue_messages),
            "api": await asyncio.to_thread(api_counts, self.stack.control, namespace),
            "left_in_ingress": await queue_depth(self.stack.amqp_url, settings.amqp.ingress_queue),
            "usage": usage,
        } | running_figures

    async def latency(self, rate: float, duration: float, tag: str = "lat") -> dict[str, Any]:
        """Publish at *rate* into the running dispatcher: publish -> created per Job, by watch and by 201."""
        count = max(2, round(rate * duration))
        events = corpus(tag, count)
        namespace = f"bench-{tag}"
        settings = self.stack.settings(namespace)
        await create_namespace(self.stack.kubeconfig, namespace)
        watch, load = JobWatch(count), SteadyLoad(rate)
        self.log.expect(count)
        async with running_dispatcher(settings) as dispatcher:
            watcher = asyncio.create_task(watch.run(self.stack.kubeconfig, namespace), name="the Job watch")
            try:
                await until(watch.opened, watcher, 30, "the Job watch to open")
                self.meter.start()
                await load.publish(settings, events)
                await until(self.log.done, dispatcher, phase_timeout(count), "every Job of the latency run")
                await until(watch.complete, watcher, 30, "every Job on the watch")
                usage = self.meter.stop()
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
        return {
            "events": count,
            "target_rate": rate,
            "achieved_rate": load.achieved_rate(),
            "due_to_watch": latency_summary(load.latencies(watch.seen)),
            "due_to_201": latency_summary(load.latencies(self.log.created_at)),
            "publish_lateness": latency_summary(load.lateness()),
            "worst_by_second_ms": load.worst_by_second(watch.seen),
            "api": await asyncio.to_thread(api_counts, self.stack.control, namespace),
            "usage": usage,
        }


# -- the profile -----------------------------------------------------------------------------------------

HOT_PATH: tuple[tuple[str, str, str], ...] = (
    (
        "dispatcher/process/handlers.py",
        "on_ingress",
        "ingress handler: parse, route, create directly or hand over",
    ),
    ("dispatcher/domain/ingress.py", "plan_ingress", "  parse + route the MinIO message"),
    ("dispatcher/process/handlers.py", "_create_direct", "  direct create: the per-Job work below"),
    ("dispatcher/adapters/amqp/publisher.py", "publish", "  confirmed publish to a service queue (CPU part)"),
    ("dispatcher/process/handlers.py", "on_task", "service-queue handler: one event's work below"),
    ("dispatcher/process/handlers.py", "_create_record", "  a batch's record: the per-Job work below"),
    ("dispatcher/process/job_creation.py", "prepare_event", "per Job, either path: presign + render"),
    ("dispatcher/adapters/s3/storage.py", "grants_for", "  presign (GET + POST policies)"),
    ("dispatcher/rendering/render.py", "_render", "  render (Jinja, skeleton, checks), both objects"),
    ("dispatcher/rendering/render.py", "render_job", "    Job"),
    ("dispatcher/rendering/render.py", "render_config_map", "    ConfigMap (the same for every Job)"),
    ("yaml/__init__.py", "load", "    YAML parsing of the rendered text (both)"),
    ("dispatcher/rendering/manifest_checks.py", "check_manifest", "    manifest checks (both)"),
    ("dispatcher/adapters/kube/creating.py", "create_job", "per Job: create Job (CPU part of the request)"),
)
IDLE = "idle (waiting in epoll)"
_NOT_WORK = ("/asyncio/", "/cProfile.py", "/contextlib.py", "bench_dispatch.py")
"""Files whose functions only drive others (their cumulative time is everyone's): left out of the top."""


def library(filename: str, function: str) -> str:
    """The library a profiled function belongs to: its package under site-packages, or the stdlib module."""
    if filename == "~":
        return IDLE if "select.epoll" in function else "builtins"
    path = filename.replace("\\", "/")
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    for package in ("dispatcher", "watcher", "tests", "bench"):
        if f"{REPO_ROOT.as_posix()}/{package}/" in path:
            return f"bucketrun {package}/"
    parts = path.split("/")
    if "/python3" in path and len(parts) > 1:
        return "stdlib " + (
            parts[-2] if not parts[-2].startswith("python3") else parts[-1].removesuffix(".py")
        )
    return "other"


def busy_by_library(stats: Mapping[Any, Any]) -> dict[str, float]:
    """Self time by library, most first; a builtin's time is charged to its callers' libraries."""
    totals: dict[str, float] = {}
    for (filename, _, function), (_, _, self_time, _, callers) in stats.items():
        owner = library(filename, function)
        if owner == "builtins" and callers:
            for (caller_file, _, caller_function), caller_stats in callers.items():
                caller = library(caller_file, caller_function)
                totals[caller] = totals.get(caller, 0.0) + caller_stats[2]
        else:
            totals[owner] = totals.get(owner, 0.0) + self_time
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def hot_path(stats: Mapping[Any, Any], jobs: int) -> list[dict[str, Any]]:
    """Cumulative time of the dispatcher's per-event functions, in total and per Job."""
    rows = []
    for suffix, function, label in HOT_PATH:
        seconds = sum(
            entry[3]
            for (filename, _, name), entry in stats.items()
            if name == function and filename.replace("\\", "/").endswith(suffix)
        )
        rows.append(
            {
                "function": f"{suffix}:{function}",
                "label": label,
                "s": seconds,
                "ms_per_job": seconds * 1000 / jobs,
            }
        )
    return rows


def top_cumulative(stats: Mapping[Any, Any], count: int) -> list[dict[str, Any]]:
    """The functions with the most cumulative time, the event loop's machinery and this script left out."""
    rows = []
    for (filename, line, function), (_, calls, self_time, cumulative, _) in stats.items():
        if any(part in filename for part in _NOT_WORK) or "_contextvars.Context" in function:
            continue
        where = filename.split("/site-packages/", 1)[-1].replace(f"{REPO_ROOT.as_posix()}/", "")
        rows.append(
            {"where": f"{where}:{line}({function})", "calls": calls, "self_s": self_time, "cum_s": cumulative}
        )
    rows.sort(key=lambda row: -row["cum_s"])
    return rows[:count]


def json_costs(docs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Microseconds per Job of the dispatcher's per-event JSON, before and after it moved to orjson (same
    documents, same process, same run): the create body written (``json.dumps`` as before, then
    ``json_body``) and one watch event of the Job read back (``json.loads`` as before, then
    ``orjson.loads``)."""
    import orjson  # noqa: PLC0415 - only this measurement needs it directly

    from dispatcher.adapters.kube.api import json_body  # noqa: PLC0415

    events = [json.dumps({"type": "ADDED", "object": doc}).encode() for doc in docs]

    def per_job(work: Callable[[], object]) -> float:
        best = math.inf
        for _ in range(3):  # the best of three passes: the least disturbed by the rest of the machine
            started = time.process_time()
            work()
            best = min(best, time.process_time() - started)
        return best * 1e6 / len(docs)

    return {
        "encode_json_us": per_job(lambda: [json.dumps(doc, separators=(",", ":")).encode() for doc in docs]),
        "encode_orjson_us": per_job(lambda: [json_body(doc) for doc in docs]),
        "decode_json_us": per_job(lambda: [json.loads(event) for event in events]),
        "decode_orjson_us": per_job(lambda: [orjson.loads(event) for event in events]),
    }


def log_costs(lines: int = 5000) -> dict[str, float]:
    """Microseconds of CPU per "job created" line (the dispatcher's one line per Job at INFO, with the
    context it binds) through production's chain, before and after redaction searched only text its
    patterns can match (``logs.redact_text``'s guards): every pattern on every value (before, patched in
    for the measurement), then as shipped. The best of three passes, rendered to a string buffer."""
    from unittest import mock  # noqa: PLC0415 - only this measurement patches

    from dispatcher.runtime import logs  # noqa: PLC0415

    def every_pattern(text: str, secrets: Iterable[str] = ()) -> str:
        text = logs._SIGNED_QUERY.sub(lambda m: f"{m['url']}?{logs.REDACTED}", text)
        text = logs._URL_PASSWORD.sub(lambda m: f"{m['head']}:{logs.REDACTED}@", text)
        text = logs._AUTH_TOKEN.sub(lambda m: f"{m['scheme'] or m['sigv4']}{logs.REDACTED}", text)
        for secret in secrets:
            text = text.replace(secret, logs.REDACTED)
        return text

    def secret_field(name: str) -> bool:
        return logs._SECRET_FIELD.search(name) is not None

    context = {
        "service": SERVICES[0],
        "event_id": "bench/in/upper/sat0/photo-000123.txt@18FF00000000007B",
        "bucket": BUCKET,
        "key": "in/upper/sat0/photo-000123.txt",
        "job": "upper-3f2a9c1b7d0e-000123",
    }
    previous = structlog.get_config()
    configure_dispatcher_logs(None, io.StringIO())
    log = structlog.get_logger("bench").bind(queue="bench.upper", message_id="m-000123", events=5)

    def per_line() -> float:
        best = math.inf
        with structlog.contextvars.bound_contextvars(**context):
            for _ in range(3):
                started = time.process_time()
                for _ in range(lines):
                    log.info("job created")
                best = min(best, time.process_time() - started)
        return best * 1e6 / lines

    try:
        with (
            mock.patch.object(logs, "redact_text", every_pattern),
            mock.patch.object(logs, "_secret_field", secret_field),
        ):
            before = per_line()
        after = per_line()
    finally:
        structlog.configure(**previous)
    return {"every_pattern_us": before, "guarded_us": after}


def profile_report(profiler: cProfile.Profile, jobs: int, scale: float) -> dict[str, Any]:
    """Busy time by library, the hot path per Job, the top functions, and which of them dominates.

    The profiler slows pure-Python code most; *scale* (unprofiled / profiled CPU of the same run) turns
    its ms per Job into rough unprofiled figures.
    """
    stats: Mapping[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    libraries = busy_by_library(stats)
    idle = libraries.pop(IDLE, 0.0)
    busy = sum(libraries.values())
    path = {row["function"].rsplit(":", 1)[1]: row for row in hot_path(stats, jobs)}
    for row in path.values():
        row["ms_per_job_unprofiled"] = row["ms_per_job"] * scale
    handlers = path["on_ingress"]["s"] + path["on_task"]["s"] + path["_create_record"]["s"]
    report = {
        "scale": scale,
        "busy_s": busy,
        "idle_s": idle,
        "busy_by_library": libraries,
        "hot_path": list(path.values()),
        "top_cumulative": top_cumulative(stats, 25),
        "render_ms_per_job": path["_render"]["ms_per_job"],
        "yaml_share_of_render": path["load"]["s"] / path["_render"]["s"]
        if path["_render"]["s"]
        else math.nan,
        "render_share_of_handlers": path["_render"]["s"] / handlers if handlers else math.nan,
        "render_share_of_busy": path["_render"]["s"] / busy if busy else math.nan,
    }
    report["conclusion"] = conclusion(report)
    return report


def conclusion(profile: Mapping[str, Any]) -> str:
    """What dominates the dispatcher's busy time, with the numbers."""
    busy = profile["busy_s"]
    top = ", ".join(
        f"{name} {seconds / busy:.0%}" for name, seconds in list(profile["busy_by_library"].items())[:4]
    )
    of_handlers, of_busy = profile["render_share_of_handlers"], profile["render_share_of_busy"]
    verb = "dominates" if of_handlers >= 0.5 else "does not dominate"
    render = profile["render_ms_per_job"]
    return (
        f"Rendering {verb}: {render:.2f} ms per Job under the profiler (~{render * profile['scale']:.1f} ms "
        f"unprofiled), {of_handlers:.0%} of the two handlers' CPU and {of_busy:.0%} of all busy time; "
        f"{profile['yaml_share_of_render']:.0%} of rendering is parsing the rendered YAML text back "
        f"(yaml.load). Busy time by library: {top}."
    )


# -- verdicts and the report -----------------------------------------------------------------------------


def judge(results: dict[str, Any]) -> None:
    """Add the derived figures and PASS/FAIL to *results*."""
    raw_a, raw_b = results["raw_amqp"], results["raw_k8s_small"]
    limits = {
        "(a) aio-pika consume+ack": raw_a["consume_ack_rate"],
        "(b) kubernetes-asyncio create": raw_b["rate"],
    }
    lower = min(limits, key=lambda name: limits[name])
    results["lower_raw_limit"] = {"name": lower, "rate": limits[lower]}
    results["amqp_work_per_event_rate"] = 1 / (2 / raw_a["consume_ack_rate"] + 1 / raw_a["publish_rate"])
    results["ratio"] = results["saturation"]["rate"] / limits[lower]
    results["ratio_to_rendered_creates"] = results["saturation"]["rate"] / results["raw_k8s_rendered"]["rate"]
    results["verdicts"] = {
        "throughput": verdict(results["ratio"] >= TARGET_RATIO),
        "latency": verdict(results["latency"]["due_to_watch"]["p99_ms"] <= TARGET_P99_MS),
    }


def usage_columns(usage: Mapping[str, float] | None) -> str:
    """CPU % of the three processes and the GC pauses, as table columns."""
    if not usage:
        return ""
    return (
        f"{usage['bench_pct']:>6.0f} {usage.get('emulator_pct', 0):>6.0f} "
        f"{usage.get('rabbitmq_pct', 0):>6.0f}"
        f"   {usage['gc_full_collections']:>2.0f} / {usage['gc_pause_total_ms']:>5.0f} ms"
    )


def print_report(results: Mapping[str, Any]) -> None:
    """The table of figures on stdout."""
    machine, params = results["machine"], results["parameters"]
    raw_a, raw_b, raw_r = results["raw_amqp"], results["raw_k8s_small"], results["raw_k8s_rendered"]
    sat, lat = results["saturation"], results["latency"]
    prefetch = params["prefetch"]
    out(
        f"bucketrun dispatch benchmark: {params['events']} events, {len(SERVICES)} services, prefetch "
        f"{prefetch}; {machine['cpus']} CPUs, Python {machine['python']}; load average before "
        f"{machine['load_before']}, after {machine['load_after']}"
    )
    out()
    out(f"{'':62} {'rate':>8}           {'CPU %: bench  emul  rabbit':>26}   GC: full / paused")
    rows: list[tuple[str, float, str, Mapping[str, float] | None]] = [
        ("raw (a)  aio-pika publish with confirms (256 unconfirmed)", raw_a["publish_rate"], "msg/s", None),
        (
            f"raw (a)  aio-pika consume + ack (prefetch {prefetch})",
            raw_a["consume_ack_rate"],
            "msg/s",
            raw_a["usage"],
        ),
        (
            f"raw (b)  kubernetes-asyncio create, small Job ({prefetch} in flight)",
            raw_b["rate"],
            "Jobs/s",
            raw_b["usage"],
        ),
        ("raw (b') same, bucketrun's rendered Jobs (not a target)", raw_r["rate"], "Jobs/s", raw_r["usage"]),
        (
            "         amqp per event via a service queue: 2 consume+ack + 1 publish",
            results["amqp_work_per_event_rate"],
            "events/s",
            None,
        ),
        ("bucketrun: pre-published events -> Jobs created", sat["rate"], "events/s", sat["usage"]),
    ]
    for label, rate, unit, usage in rows:
        out(f"{label:<62} {rate:>8,.0f} {unit:<9} {usage_columns(usage)}")
    out()
    lower = results["lower_raw_limit"]
    out(
        f"bucketrun / lower raw limit {lower['name']} ({lower['rate']:,.0f}/s) = {results['ratio']:.0%}"
        f"   target >= {TARGET_RATIO:.0%}   {results['verdicts']['throughput']}"
    )
    to_rendered = results["ratio_to_rendered_creates"]
    out(f"(informational: to raw (b'), bare creates of the same rendered Jobs: {to_rendered:.0%})")
    api = sat["api"]
    out(
        f"dispatcher: {sat['cpu_ms_per_event']:.2f} ms CPU per event in this process "
        f"(one core: at most {1000 / sat['cpu_ms_per_event']:,.0f} events/s); "
        f"{api['jobs_created_201']} Jobs created, {api['jobs_conflict_409']} conflicts, "
        f"{api['writes'] / max(api['jobs_created_201'], 1):.3f} API writes per Job; "
        f"Job body {raw_r['avg_body_bytes']:,.0f} B (small: {raw_b['avg_body_bytes']:,.0f} B)"
    )
    out()
    out(
        f"latency at {lat['target_rate']:g} events/s for {params['duration']:g} s: {lat['events']} events, "
        f"achieved {lat['achieved_rate']:.1f}/s; CPU % / GC: {usage_columns(lat['usage']).strip()}"
    )
    out(f"{'':44} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for label, key in (
        ("event due -> Job ADDED on a watch (verdict)", "due_to_watch"),
        ("event due -> 201 received by the dispatcher", "due_to_201"),
        ("event-loop lag: publishes late on schedule", "publish_lateness"),
    ):
        figures = lat[key]
        out(
            f"{label:<44} {figures['p50_ms']:>6.1f}ms {figures['p95_ms']:>6.1f}ms "
            f"{figures['p99_ms']:>6.1f}ms {figures['max_ms']:>6.1f}ms"
        )
    out(
        "worst latency of the events due in each second (ms): "
        + " ".join(f"{ms:.0f}" for ms in lat["worst_by_second_ms"])
    )
    out(f"p99 event due -> Job created <= {TARGET_P99_MS:.0f} ms   {results['verdicts']['latency']}")
    if results["problems"]:
        out(f"\ndispatcher warnings and errors during the run: {len(results['problems'])} (stderr, JSON)")
    if "profile" in results:
        print_profile(results["profile"], results["profile_run"])


def print_profile(profile: Mapping[str, Any], run: Mapping[str, Any]) -> None:
    """Where the dispatcher's time went in the profiled saturation run."""
    busy, scale = profile["busy_s"], profile["scale"]
    out()
    out(
        f"profile: cProfile over the saturation run repeated ({run['events']} events at {run['rate']:,.0f}/s "
        f"under the profiler, not a result): busy {busy:.2f} s, idle {profile['idle_s']:.2f} s; "
        f"'~unprof.' scales by the CPU ratio to the unprofiled run (x{scale:.2f})"
    )
    out("busy time by library (a builtin's time charged to its caller's library):")
    for name, seconds in list(profile["busy_by_library"].items())[:12]:
        out(f"  {name:<40} {seconds:>7.2f} s  {seconds / busy:>5.1%}")
    out("dispatcher hot path (cumulative CPU of coroutine steps; awaiting is not counted):")
    out(f"  {'':58} {'ms/Job':>8} {'~unprof.':>8} {'busy':>6}")
    for row in profile["hot_path"]:
        out(
            f"  {row['label']:<58} {row['ms_per_job']:>8.3f} {row['ms_per_job_unprofiled']:>8.3f} "
            f"{row['s'] / busy:>6.1%}"
        )
    out("top functions by cumulative time (event loop machinery left out):")
    out(f"  {'cum s':>7} {'self s':>7} {'calls':>8}  function")
    for row in profile["top_cumulative"]:
        out(f"  {row['cum_s']:>7.2f} {row['self_s']:>7.2f} {row['calls']:>8}  {row['where']}")
    out(profile["conclusion"])


# -- main -------------------------------------------------------------------------------------------------


def parse_options(argv: Sequence[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="bench/bench_dispatch.py", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000, help="events per throughput run (default 2000)")
    parser.add_argument("--rate", type=float, default=100.0, help="events/s of the latency run (default 100)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of the latency run (default 10)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled saturation run")
    parser.add_argument(
        "--pstats", type=Path, metavar="PATH", help="also dump the raw cProfile stats here (pstats)"
    )
    options = parser.parse_args(argv)
    if options.events < 10 or options.rate <= 0 or options.duration <= 0:
        parser.error("--events must be at least 10; --rate and --duration must be positive")
    return options


async def measure(stack: Stack, options: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Every phase in order; the results as one JSON-able dict. Deletes the broker objects at the end."""
    settings = stack.settings("bench")
    bench = Bench(stack, progress, settings.amqp.prefetch)
    results = bench.results
    results["problems"] = bench.log.problems
    results["parameters"] = {
        "events": options.events,
        "rate": options.rate,
        "duration": options.duration,
        "prefetch": bench.prefetch,
        "services": list(SERVICES),
    }
    queues, exchanges = broker_objects(settings, stack.raw_queue)
    with Path(os.devnull).open("w") as sink:  # noqa: ASYNC230 - opening /dev/null does not block
        configure_dispatcher_logs(bench.log, sink)
        try:
            await bench.raw_limits(options.events)
            await bench.settle("bench-raw-small", "bench-raw-rendered")
            progress(f"bucketrun: {options.events} pre-published events -> dispatcher -> Jobs")
            results["saturation"] = await bench.saturation("sat", options.events)
            await bench.settle("bench-sat")
            progress(
                f"latency: {options.rate:g} events/s for {options.duration:g} s into the running dispatcher"
            )
            results["latency"] = await bench.latency(options.rate, options.duration)
            await bench.settle("bench-lat")
            if not options.no_profile:
                progress(f"profile: the saturation run again under cProfile ({options.events} events)")
                profiler = cProfile.Profile()
                results["profile_run"] = await bench.saturation("prof", options.events, profiler)
                scale = (
                    results["saturation"]["usage"]["bench_cpu_s"]
                    / results["profile_run"]["usage"]["bench_cpu_s"]
                )
                results["profile"] = profile_report(profiler, options.events, scale)
                if options.pstats is not None:
                    profiler.dump_stats(options.pstats)
        finally:
            progress("deleting the bench's queues and exchanges")
            await delete_broker_objects(stack.amqp_url, queues, exchanges)
    judge(results)
    return results


def machine_facts() -> dict[str, Any]:
    """What the figures depend on besides the code."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_before": [round(value, 2) for value in os.getloadavg()],
        "versions": {name: version(name) for name in ("aio-pika", "aiormq", "kubernetes-asyncio", "aiohttp")},
    }


def main(argv: Sequence[str]) -> int:
    """Start the servers, measure, print the table (and write the JSON file)."""
    options = parse_options(argv)
    progress = Progress()
    machine = machine_facts()
    with started_stack(progress) as stack:
        results = asyncio.run(measure(stack, options, progress))
    machine["load_after"] = [round(value, 2) for value in os.getloadavg()]
    results["machine"] = machine
    results["command"] = shlex.join([".venv/bin/python", "bench/bench_dispatch.py", *argv])
    print_report(results)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        progress(f"wrote {options.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
