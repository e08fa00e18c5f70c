"""``bucketrun demo``: the whole flow on one machine, from an upload to its results and job record.

Starts (or reuses) RabbitMQ on 127.0.0.1:5672 and an S3 server, writes a sample service (upper-case a
text file and count its words: no image, no network), runs the dispatcher and watcher in this process,
uploads a few sample files and prints one line per job state change (queued, running, done or failed).
Its files live in ``./.bucketrun-demo/``. It runs until Ctrl-C, or with ``--once`` until every sample's
outputs exist and every Job is recorded.

The Jobs run on, in this order (``--kube auto``): the real Kubernetes control plane that ``make servers``
builds, with a node agent running pods as local processes (``demo_cluster``), when it is built and the
demo runs the built MinIO: the Jobs and pods are then in ``kubectl get jobs`` / ``get pods``; else the
local executor (state files under ``state/``).

The S3 server is, in this order: the configured ``BUCKETRUN_STORAGE__ENDPOINT`` (fed by the bucket
poller); the MinIO that ``make servers`` builds, started here with an empty store each run and its AMQP
target on the demo's broker and exchange, the service applied to it as ``services apply`` does, so
uploads (the console's too) reach the dispatcher as real bucket notifications, with no poller; else a
moto server, which sends no notifications, fed by the poller. What it started is stopped on exit,
except a RabbitMQ it started detached (it says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TextIO

from bucketrun.admin.commands import EXIT_OK, apply_services
from bucketrun.devtools.control_plane import ServersNotBuiltError, find_binaries
from bucketrun.devtools.demo_api import DemoApiError, api_installed, demo_api
from bucketrun.devtools.demo_cluster import ClusterBoot, ClusterBootError, DemoCluster
from bucketrun.devtools.demo_progress import KubeProgress, LocalProgress, Progress
from bucketrun.devtools.minio_server import (
    NOTIFY_ARN,
    AmqpTarget,
    Credentials,
    built,
    servers_dir,
    start_minio,
)
from bucketrun.devtools.moto_server import MotoUnavailableError, port_open, start_moto
from bucketrun.serve import run_serve
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.errors import BucketrunError, TransientError
from dispatcher.poller.app import run_poller
from dispatcher.runtime.settings import Settings

DEMO_DIR: Final = Path(".bucketrun-demo")
SAMPLES: Final[Mapping[str, bytes]] = {
    "in/hello.txt": b"hello from bucketrun\n",
    "in/fox.txt": b"the quick brown fox jumps over the lazy dog\n",
    "in/poem.txt": b"files in buckets\nbecome jobs\nand results come back\n",
}
DEMO_ROOT: Final = Credentials("bucketrun-demo", "bucketrun-demo-password")
"""The root user of the demo's MinIO (its console login): fixed, for this local demo only."""
_MOTO_KEYS: Final = Credentials("demo", "demo-secret-key")  # moto checks no signature
_RABBIT_START_TIMEOUT: Final = 90.0
_START_TIMEOUT: Final = 60.0
_TICK: Final = 0.5
_FDL: Final = """\
functions:
  oscar:
  - demo:
      name: NAME-upper
      image: busybox:1.36
      script: |
        name=$(basename "$INPUT_FILE_PATH")
        tr a-z A-Z < "$INPUT_FILE_PATH" > "$TMP_OUTPUT_DIR/$name"
        wc -w < "$INPUT_FILE_PATH" | tr -d ' ' > "$TMP_OUTPUT_DIR/$name.words"
        echo "upper-cased $STORAGE_OBJECT_KEY"
      input: [{storage_provider: minio, path: NAME-in/in}]
      output: [{storage_provider: minio, path: NAME-out/results}]
      # non-root without capabilities: PodSecurity "restricted" (the namespace warns about anything less)
      bucketrun: {run_as_user: 1000}
"""


class DemoError(RuntimeError):
    """The demo cannot run here; the message says what is missing and how to get it."""


class S3Choice(StrEnum):
    """Which S3 server the demo uses (``bucketrun demo --s3``)."""

    AUTO = "auto"
    """``BUCKETRUN_STORAGE__ENDPOINT`` when set, else the built MinIO, else moto."""
    MINIO = "minio"
    """The MinIO that ``make servers`` builds (an error without it)."""
    MOTO = "moto"
    """A moto server and the bucket poller, even where MinIO is built."""


class KubeChoice(StrEnum):
    """Where the demo's Jobs run (``bucketrun demo --kube``)."""

    AUTO = "auto"
    """The control plane ``make servers`` builds when it is built and the demo runs the built MinIO;
    else the local executor."""
    CLUSTER = "cluster"
    """The built control plane (an error without it), whatever the S3 server."""
    LOCAL = "local"
    """The local executor (state files), even where the control plane is built."""


class StoreKind(StrEnum):
    """The S3 server ``S3Choice`` comes to on this machine."""

    CONFIGURED = "configured"
    MINIO = "minio"
    MOTO = "moto"


def choose_store(s3: S3Choice, *, configured: bool, minio_built: bool) -> StoreKind:
    """The S3 server for ``--s3 s3``; *configured*: ``BUCKETRUN_STORAGE__ENDPOINT`` is set.
    ``DemoError`` for ``--s3 minio`` without the build."""
    if configured and s3 is S3Choice.AUTO:
        return StoreKind.CONFIGURED
    if s3 is S3Choice.MINIO and not minio_built:
        raise DemoError(
            f"no MinIO built in {servers_dir() / 'bin'}: run `make servers` (builds it from source)"
        )
    return StoreKind.MINIO if minio_built and s3 is not S3Choice.MOTO else StoreKind.MOTO


def choose_cluster(kube: KubeChoice, store: StoreKind, not_built: str | None) -> bool:
    """Whether the Jobs run on the built control plane; *not_built* says which of its binaries is
    missing (None: all are built). ``DemoError`` for ``--kube cluster`` without them."""
    if kube is KubeChoice.CLUSTER and not_built is not None:
        raise DemoError(f"--kube cluster: {not_built}")
    if kube is KubeChoice.AUTO:
        return not_built is None and store is StoreKind.MINIO
    return kube is KubeChoice.CLUSTER


def _plane_not_built() -> str | None:
    try:
        find_binaries()
    except ServersNotBuiltError as error:
        return str(error)
    return None


def local_executor_line(kube: KubeChoice, not_built: str | None) -> str:
    """The one line that says the Jobs run on the local executor, why, and how to get the real cluster."""
    if kube is KubeChoice.LOCAL:
        why = "as --kube local asks"
    elif not_built is not None:
        why = (
            "no Kubernetes control plane is built here; `make servers` builds one, and then the demo's "
            "Jobs show in `kubectl get jobs`"
        )
    else:
        why = "--kube auto uses the built control plane with the built MinIO only; --kube cluster forces it"
    return f"Jobs: the local executor (state files, no Kubernetes): {why}"


@dataclass(frozen=True)
class DemoStore:
    """The S3 server the demo talks to, and whether its uploads arrive as bucket notifications."""

    endpoint: str | None = None
    """``host:port`` of a server started here; None for the configured one."""
    root: Credentials | None = None
    """The keys of a server started here."""
    notify_arn: str | None = None
    """The ARN of its AMQP target on the demo's broker; None: the bucket poller announces uploads."""
    console_url: str | None = None
    """Where a person logs in with ``root`` and uploads through a browser."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``bucketrun demo`` was asked to do."""

    s3: S3Choice = S3Choice.AUTO
    """Which S3 server to use."""
    kube: KubeChoice = KubeChoice.AUTO
    """Where the Jobs run."""
    once: bool = False
    """Exit once every sample's outputs exist and its Job is recorded (0), or when a job failed or ``timeout``
    passed (1)."""
    timeout: float = 180.0
    """Seconds ``once`` waits for the outputs."""
    name: str = "bucketrun-demo"
    """Prefix of the demo's buckets and service name."""
    directory: Path = DEMO_DIR
    """Where the FDL, the executor's state, the poller's state, MinIO's data, the cluster (``kube/``) and
    the logs are kept."""


def expected_outputs(name: str, samples: Mapping[str, bytes] = SAMPLES) -> tuple[tuple[str, str], ...]:
    """(bucket, key) of every output the sample service writes for ``samples``."""
    names = [key.rsplit("/", 1)[-1] for key in samples]
    return tuple((f"{name}-out", f"results/{file}{ext}") for file in names for ext in ("", ".words"))


def ensure_rabbitmq(out: TextIO) -> bool:
    """Make sure a broker answers on 127.0.0.1:5672; True when this call started it (detached)."""
    if port_open("127.0.0.1", 5672):
        print("RabbitMQ: reusing the broker on 127.0.0.1:5672", file=out)
        return False
    server = shutil.which("rabbitmq-server")
    if server is None:
        raise DemoError(
            "RabbitMQ is not running on 127.0.0.1:5672 and rabbitmq-server is not installed: run "
            "`make system-deps` (as root) or `apt-get install rabbitmq-server`, or set BUCKETRUN_AMQP__URL"
        )
    print("RabbitMQ: starting rabbitmq-server -detached ...", file=out, flush=True)
    subprocess.run([server, "-detached"], check=False, timeout=60)
    deadline = time.monotonic() + _RABBIT_START_TIMEOUT
    while not port_open("127.0.0.1", 5672):
        if time.monotonic() > deadline:
            raise DemoError(f"RabbitMQ did not open 127.0.0.1:5672 within {_RABBIT_START_TIMEOUT:.0f} s")
        time.sleep(0.2)
    return True


def demo_settings(
    options: DemoOptions,
    fdl: Path,
    store: DemoStore,
    cluster: DemoCluster | None = None,
    api_services: Path | None = None,
) -> Settings:
    """The settings of the demo: the environment's, with the demo's own where the environment is silent
    (and the store's address, keys and notification target where the demo started the store). The Jobs
    go to *cluster* when given (the admin's kubeconfig, its namespace), else to the local executor. With
    *api_services*, the dispatcher also runs the services the demo's API writes there."""
    directory = options.directory.resolve()
    storage: dict[str, Any] = {"records_bucket": f"{options.name}-records"}
    if store.endpoint is not None and store.root is not None:
        storage |= {"endpoint": store.endpoint, "region": "us-east-1", "secure": False}
        storage |= {"access_key": store.root.user, "secret_key": store.root.password}
    overrides: dict[str, Any] = {
        "storage": storage,
        "cluster": {"executor": "local", "local_state_dir": directory / "state"},
        "services": {"paths": (fdl,) if api_services is None else (fdl, api_services)},
        "poller": {"interval": 1.0, "state_file": directory / "poller.sqlite3"},
    }
    if cluster is not None:
        overrides["cluster"] = {
            "executor": "kubernetes",
            "kubeconfig": cluster.kubeconfig,
            "namespace": cluster.namespace,
        }
    if store.notify_arn is not None:
        storage["notify_arn"] = store.notify_arn
        # What MinIO's AMQP target declares (bucketrun.devtools.minio_server): the same exchange, or the
        # broker refuses the second declaration.
        overrides["amqp"] = {"exchange_type": "fanout", "exchange_durable": True}
    if "BUCKETRUN_METRICS__PORT" not in os.environ:
        overrides["metrics"] = {"host": "127.0.0.1", "port": 8000}
    return Settings.load(**overrides)


async def _missing(storage: Storage, outputs: tuple[tuple[str, str], ...]) -> list[str]:
    missing = []
    for bucket, key in outputs:
        try:
            await storage.stat(bucket, key)
        except BucketrunError:
            missing.append(f"{bucket}/{key}")
    return missing


async def _recorded(settings: Settings) -> int:
    """How many job records the watcher has written so far."""
    found = await Storage(settings.storage).list(
        settings.storage.records_bucket, settings.storage.records_prefix
    )
    return sum(1 for info in found if info.key.endswith("/status.json"))


@dataclass(frozen=True)
class _Demo:
    """What the running demo is made of."""

    options: DemoOptions
    settings: Settings
    store: DemoStore
    cluster: DemoCluster | None


@contextlib.asynccontextmanager
async def _progress(demo: _Demo, out: TextIO) -> AsyncIterator[Progress]:
    """The Jobs' progress, from the cluster's API or the local executor's state directory."""
    if demo.cluster is None:
        yield LocalProgress(demo.settings.cluster.local_state_dir, out)
        return
    async with await KubeProgress.connect(demo.settings.cluster, out, demo.cluster.kubectl_command) as kube:
        yield kube


async def _watch(demo: _Demo, stop: asyncio.Event, out: TextIO) -> int:
    options, settings = demo.options, demo.settings
    storage = Storage(settings.storage)
    for key, body in SAMPLES.items():
        await storage.put_object(f"{options.name}-in", key, body, content_type="text/plain")
        print(f"uploaded {options.name}-in/{key}", file=out, flush=True)
    outputs = expected_outputs(options.name)
    deadline = time.monotonic() + options.timeout
    reported = False
    async with _progress(demo, out) as progress:
        while not stop.is_set():
            failed = await _update(progress)
            if failed and options.once:
                print(f"error: job(s) failed: {', '.join(sorted(failed))} ({progress.logs_hint()})", file=out)
                return 1
            if (
                not reported
                and not await _missing(storage, outputs)
                and await _recorded(settings) >= len(SAMPLES)
            ):
                reported = True
                _report(demo, outputs, out)
                if options.once:
                    return 0
            if options.once and time.monotonic() > deadline:
                missing = await _missing(storage, outputs)
                print(
                    f"error: outputs still missing after {options.timeout:.0f} s: {', '.join(missing)}",
                    file=out,
                )
                return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _TICK)
    return 0


async def _update(progress: Progress) -> set[str]:
    """``progress.update()``; a transient failure (the API busy for a moment) only skips this tick."""
    try:
        return await progress.update()
    except TransientError:
        return set()


def _report(demo: _Demo, outputs: tuple[tuple[str, str], ...], out: TextIO) -> None:
    options, storage = demo.options, demo.settings.storage
    print(f"\nall samples done and recorded. Outputs on the S3 server at {storage.endpoint}:", file=out)
    for bucket, key in outputs:
        print(f"  {bucket}/{key}", file=out)
    print(f"job records (status.json and logs): {storage.records_bucket}/{storage.records_prefix}", file=out)
    if demo.cluster is None:
        print(f"local executor state: {demo.settings.cluster.local_state_dir}", file=out)
    elif not options.once:  # with --once the cluster stops right after this
        print(*demo.cluster.lines()[1:], sep="\n", file=out)
    metrics = demo.settings.metrics
    if metrics.port:
        base = f"http://{metrics.host}:{metrics.port}"
        print(f"metrics: {base}/metrics (Prometheus); health: {base}/healthz and {base}/readyz", file=out)
    else:
        print(
            f"metrics, health: /metrics, /healthz, /readyz on {metrics.host}, a system-chosen port", file=out
        )
    if not options.once:
        console = demo.store.console_url
        where = f" (in the MinIO console, {console})" if console else ""
        print(
            f"upload more files to {options.name}-in/in/{where} to run more jobs; Ctrl-C stops the demo",
            file=out,
        )
    out.flush()


async def run_demo(options: DemoOptions, stop: asyncio.Event, out: TextIO = sys.stdout) -> int:
    """Run the demo until ``stop`` is set (or, with ``once``, until the samples finish); the exit code.

    ``DemoError`` when RabbitMQ, an S3 server or the control plane ``--kube cluster`` asks for is
    missing or does not start, or the store refuses the service.
    """
    store_kind = choose_store(
        options.s3,
        configured=bool(os.environ.get("BUCKETRUN_STORAGE__ENDPOINT")),
        minio_built=built("minio") is not None,
    )
    not_built = _plane_not_built()
    use_cluster = choose_cluster(options.kube, store_kind, not_built)
    options.directory.mkdir(parents=True, exist_ok=True)
    started_rabbit = "BUCKETRUN_AMQP__URL" not in os.environ and ensure_rabbitmq(out)
    fdl = options.directory.resolve() / "services.yaml"
    fdl.write_text(_FDL.replace("NAME", options.name))
    try:
        async with (
            _cluster(options, use_cluster, out) as booting,
            _store(options, store_kind, fdl, out) as store,
        ):
            cluster = await _cluster_ready(booting, out)
            if cluster is None:
                print(local_executor_line(options.kube, not_built), file=out, flush=True)
            # The API needs notifications (its services' uploads) and a cluster (their ConfigMaps).
            api_dir = options.directory.resolve() / "api-services"
            with_api = store.notify_arn is not None and cluster is not None
            settings = demo_settings(options, fdl, store, cluster, api_dir if with_api else None)
            demo = _Demo(options, settings, store, cluster)
            if store.notify_arn is not None:
                await _apply(demo.settings, fdl, out)
            async with _api(demo, api_dir, with_api, out):
                return await _run_stack(demo, stop, out)
    finally:
        if started_rabbit:
            print("RabbitMQ was started detached and is left running (stop it: rabbitmqctl stop)", file=out)


@contextlib.asynccontextmanager
async def _cluster(options: DemoOptions, wanted: bool, out: TextIO) -> AsyncIterator[ClusterBoot | None]:
    """The demo's Kubernetes, starting (in the background) when *wanted*; stopped on exit."""
    if not wanted:
        yield None
        return
    base = options.directory.resolve() / "kube"
    print(
        f"Kubernetes: starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a node "
        f"agent (state and logs: {base}) ...",
        file=out,
        flush=True,
    )
    booting = ClusterBoot(base)
    try:
        yield booting
    finally:
        await booting.stop()
        print("stopped Kubernetes (node agent, scheduler, controller manager, API server, etcd)", file=out)


async def _cluster_ready(booting: ClusterBoot | None, out: TextIO) -> DemoCluster | None:
    if booting is None:
        return None
    try:
        cluster = await booting.ready()
    except ClusterBootError as error:
        raise DemoError(str(error)) from error
    print(*cluster.lines(), sep="\n", file=out, flush=True)
    return cluster


@contextlib.asynccontextmanager
async def _store(options: DemoOptions, kind: StoreKind, fdl: Path, out: TextIO) -> AsyncIterator[DemoStore]:
    """The S3 server *kind*, started here unless it is the configured one."""
    if kind is StoreKind.CONFIGURED:
        configured = os.environ.get("BUCKETRUN_STORAGE__ENDPOINT")
        print(f"S3: reusing {configured}; the bucket poller announces its uploads", file=out)
        yield DemoStore()
        return
    minio = built("minio")
    if kind is StoreKind.MOTO or minio is None:
        if options.s3 is S3Choice.AUTO:
            print(
                "S3: no MinIO built here, so moto (no bucket notifications, no console); for the real "
                "MinIO run `make servers`, then `make demo` again",
                file=out,
            )
        async with _moto(options, out) as store:
            yield store
        return
    async with _minio(options, fdl, minio.path, minio.version, out) as store:
        yield store


@contextlib.asynccontextmanager
async def _moto(options: DemoOptions, out: TextIO) -> AsyncIterator[DemoStore]:
    try:
        moto = await asyncio.to_thread(start_moto, options.directory.resolve() / "moto.log")
    except MotoUnavailableError as error:
        raise DemoError(str(error)) from error
    print(f"S3: started a moto server on {moto.endpoint} (log: {moto.log})", file=out)
    try:
        yield DemoStore(moto.endpoint, _MOTO_KEYS)
    finally:
        await asyncio.to_thread(moto.stop)
        print("stopped the moto server", file=out)


@contextlib.asynccontextmanager
async def _minio(
    options: DemoOptions, fdl: Path, binary: Path, version: str, out: TextIO
) -> AsyncIterator[DemoStore]:
    base = options.directory.resolve() / "minio"
    shutil.rmtree(base, ignore_errors=True)  # an empty store each run, so --once waits for this run's jobs
    # MinIO publishes where the dispatcher consumes: the broker and exchange of the demo's settings,
    # read before the server (and so its port) exists.
    amqp = demo_settings(options, fdl, DemoStore("127.0.0.1:9000", DEMO_ROOT, NOTIFY_ARN)).amqp
    target = AmqpTarget(amqp.url.get_secret_value(), amqp.exchange)
    try:
        server = await asyncio.to_thread(start_minio, binary, base, DEMO_ROOT, amqp=target)
    except (RuntimeError, TimeoutError) as error:
        raise DemoError(f"MinIO ({binary}) did not start: {error}") from error
    try:
        print(f"S3: started MinIO {version} on {server.endpoint} (data and log: {base})", file=out)
        print(
            f"MinIO console: {server.console_url}  user {DEMO_ROOT.user}  password {DEMO_ROOT.password}  "
            f"(demo-only credentials)\n  log in while the demo runs and drop files into "
            f"{options.name}-in/in/: each becomes a job, its results appear in {options.name}-out/results/",
            file=out,
            flush=True,
        )
        yield DemoStore(server.endpoint, DEMO_ROOT, server.notify_arn, server.console_url)
    finally:
        await asyncio.to_thread(server.stop)
        print("stopped MinIO", file=out)


@contextlib.asynccontextmanager
async def _api(demo: _Demo, services_dir: Path, wanted: bool, out: TextIO) -> AsyncIterator[None]:
    """The demo's OSCAR API (``demo_api``) while the block runs, when *wanted* and installed."""
    if not wanted:
        yield
        return
    if not api_installed():
        print("OSCAR API: not started (the api extra is missing: pip install 'bucketrun[api]')", file=out)
        yield
        return
    # An empty store each run: the services applied through the API last time are gone with it.
    await asyncio.to_thread(shutil.rmtree, services_dir, ignore_errors=True)
    await asyncio.to_thread(services_dir.mkdir, parents=True)
    try:
        async with demo_api(demo.settings, services_dir, demo.options.directory.resolve() / "api.log") as api:
            print(*api.lines(), sep="\n", file=out, flush=True)
            yield
    except DemoApiError as error:
        raise DemoError(str(error)) from error
    print("stopped the OSCAR API", file=out)


async def _apply(settings: Settings, fdl: Path, out: TextIO) -> None:
    """Apply the demo service as ``bucketrun services apply`` does: buckets, folders, notifications."""
    print(f"services apply {fdl.name}:", file=out)
    message, code = await apply_services(settings, [fdl], emit=lambda line: print(f"  {line}", file=out))
    if code != EXIT_OK:
        raise DemoError(f"services apply failed (exit {code}):\n{message}")


async def _run_stack(demo: _Demo, stop: asyncio.Event, out: TextIO) -> int:
    options, settings, store = demo.options, demo.settings, demo.store
    inner, serve_ready = asyncio.Event(), asyncio.Event()
    storage = Storage(settings.storage)
    for bucket in (f"{options.name}-in", f"{options.name}-out", settings.storage.records_bucket):
        await storage.ensure_bucket(bucket)
    parts = {asyncio.create_task(run_serve(settings, inner, serve_ready), name="bucketrun-demo-serve")}
    runs_on = (
        "local executor" if demo.cluster is None else f"Jobs in Kubernetes namespace {demo.cluster.namespace}"
    )
    ready, what = [serve_ready], f"the dispatcher and watcher ({runs_on})"
    if store.notify_arn is None:  # nothing else announces uploads
        ready.append(poll_ready := asyncio.Event())
        parts.add(asyncio.create_task(run_poller(settings, inner, poll_ready), name="bucketrun-demo-poller"))
        what = f"the dispatcher, watcher ({runs_on}) and poller"
    try:
        both: asyncio.Task[Any] = asyncio.create_task(_all_set(*ready))
        done, _ = await asyncio.wait(
            {*parts, both}, timeout=_START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if both not in done:
            both.cancel()
            for part in done & parts:
                part.result()  # raises why it could not start
            raise DemoError(f"{what} were not ready within {_START_TIMEOUT:.0f} s")
        feed = "bucket notifications from MinIO" if store.notify_arn else "the bucket poller"
        print(f"{what} running, fed by {feed}; service {options.name}-upper", file=out, flush=True)
        watcher: asyncio.Task[Any] = asyncio.create_task(
            _watch(demo, stop, out), name="bucketrun-demo-progress"
        )
        done, _ = await asyncio.wait({*parts, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if watcher not in done:
            watcher.cancel()
            for part in done:
                part.result()
            raise DemoError("the stack stopped unexpectedly")
        return int(watcher.result())
    finally:
        inner.set()
        results = await asyncio.gather(*parts, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                print(f"error while stopping: {result}", file=out)


async def _all_set(*events: asyncio.Event) -> None:
    for event in events:
        await event.wait()
