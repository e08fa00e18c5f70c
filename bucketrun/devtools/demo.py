"""``bucketrun demo``: the whole flow on one machine, from an upload to its results and job record.

Starts (or reuses) RabbitMQ on 127.0.0.1:5672 and an S3 server, writes a sample service (upper-case a
text file and count its words: no image, no network), runs the dispatcher and watcher with the local
executor in this process, uploads a few sample files and prints one line per job state change (queued,
running, done or failed). Its files live in ``./.bucketrun-demo/``. It runs until Ctrl-C, or with
``--once`` until every sample's outputs exist.

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
from dispatcher.domain import kube
from dispatcher.domain.constants import ANNOTATION_KEY
from dispatcher.domain.errors import BucketrunError
from dispatcher.domain.jobs import finished_condition
from dispatcher.executors.local.statefiles import read_json
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
    once: bool = False
    """Exit once every sample's outputs exist (0), or when a job failed or ``timeout`` passed (1)."""
    timeout: float = 180.0
    """Seconds ``once`` waits for the outputs."""
    name: str = "bucketrun-demo"
    """Prefix of the demo's buckets and service name."""
    directory: Path = DEMO_DIR
    """Where the FDL, the executor's state, the poller's state, MinIO's data and the logs are kept."""


def expected_outputs(name: str, samples: Mapping[str, bytes] = SAMPLES) -> tuple[tuple[str, str], ...]:
    """(bucket, key) of every output the sample service writes for ``samples``."""
    names = [key.rsplit("/", 1)[-1] for key in samples]
    return tuple((f"{name}-out", f"results/{file}{ext}") for file in names for ext in ("", ".words"))


def job_phase(record: Mapping[str, Any]) -> str:
    """``queued``, ``running``, ``done`` or ``failed`` for a local executor's Job record."""
    finished = finished_condition(record.get("job", {}))
    if finished is not None:
        return "done" if finished == "Complete" else "failed"
    pods = record.get("pods") or ()
    running = pods and kube.pod_status(pods[-1]).get("phase") == "Running"
    return "running" if running else "queued"


def _job_key(record: Mapping[str, Any]) -> str:
    annotations = kube.annotations(record.get("job", {}))
    return str(annotations.get(ANNOTATION_KEY, "?"))


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


def demo_settings(options: DemoOptions, fdl: Path, store: DemoStore) -> Settings:
    """The settings of the demo: the environment's, with the demo's own where the environment is silent
    (and the store's address, keys and notification target where the demo started the store)."""
    directory = options.directory.resolve()
    storage: dict[str, Any] = {"records_bucket": f"{options.name}-records"}
    if store.endpoint is not None and store.root is not None:
        storage |= {"endpoint": store.endpoint, "region": "us-east-1", "secure": False}
        storage |= {"access_key": store.root.user, "secret_key": store.root.password}
    overrides: dict[str, Any] = {
        "storage": storage,
        "cluster": {"executor": "local", "local_state_dir": directory / "state"},
        "services": {"paths": (fdl,)},
        "poller": {"interval": 1.0, "state_file": directory / "poller.sqlite3"},
    }
    if store.notify_arn is not None:
        storage["notify_arn"] = store.notify_arn
        # What MinIO's AMQP target declares (bucketrun.devtools.minio_server): the same exchange, or the
        # broker refuses the second declaration.
        overrides["amqp"] = {"exchange_type": "fanout", "exchange_durable": True}
    if "BUCKETRUN_METRICS__PORT" not in os.environ:
        overrides["metrics"] = {"host": "127.0.0.1", "port": 8000}
    return Settings.load(**overrides)


class _Progress:
    """Prints a line whenever a Job of the local executor changes phase."""

    def __init__(self, state_dir: Path, out: TextIO) -> None:
        self._jobs = state_dir / "jobs"
        self._out = out
        self._seen: dict[str, str] = {}
        self._since = time.time()

    def update(self) -> set[str]:
        """Print what changed; the names of failed Jobs seen so far."""
        if not self._jobs.is_dir():
            return set()
        for directory in sorted(self._jobs.iterdir()):
            if directory.stat().st_mtime < self._since and directory.name not in self._seen:
                continue  # a Job of an earlier run
            record = read_json(directory / "status.json")
            if not isinstance(record, dict):
                continue
            phase = job_phase(record)
            if self._seen.get(directory.name) != phase:
                self._seen[directory.name] = phase
                print(
                    f"  job {directory.name:<48} {_job_key(record):<16} {phase}", file=self._out, flush=True
                )
        return {name for name, phase in self._seen.items() if phase == "failed"}


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


async def _watch(
    options: DemoOptions, settings: Settings, store: DemoStore, stop: asyncio.Event, out: TextIO
) -> int:
    storage = Storage(settings.storage)
    progress = _Progress(settings.cluster.local_state_dir, out)
    for key, body in SAMPLES.items():
        await storage.put_object(f"{options.name}-in", key, body, content_type="text/plain")
        print(f"uploaded {options.name}-in/{key}", file=out, flush=True)
    outputs = expected_outputs(options.name)
    deadline = time.monotonic() + options.timeout
    reported = False
    while not stop.is_set():
        failed = progress.update()
        if failed and options.once:
            logs = settings.cluster.local_state_dir / "jobs"
            print(f"error: job(s) failed: {', '.join(sorted(failed))} (logs under {logs})", file=out)
            return 1
        if (
            not reported
            and not await _missing(storage, outputs)
            and await _recorded(settings) >= len(SAMPLES)
        ):
            reported = True
            _report(options, settings, outputs, store, out)
            if options.once:
                return 0
        if options.once and time.monotonic() > deadline:
            missing = await _missing(storage, outputs)
            print(
                f"error: outputs still missing after {options.timeout:.0f} s: {', '.join(missing)}", file=out
            )
            return 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), _TICK)
    return 0


def _report(
    options: DemoOptions,
    settings: Settings,
    outputs: tuple[tuple[str, str], ...],
    store: DemoStore,
    out: TextIO,
) -> None:
    storage = settings.storage
    print(f"\nall samples done and recorded. Outputs on the S3 server at {storage.endpoint}:", file=out)
    for bucket, key in outputs:
        print(f"  {bucket}/{key}", file=out)
    print(f"job records (status.json and logs): {storage.records_bucket}/{storage.records_prefix}", file=out)
    print(f"local executor state: {settings.cluster.local_state_dir}", file=out)
    metrics = settings.metrics
    if metrics.port:
        base = f"http://{metrics.host}:{metrics.port}"
        print(f"metrics: {base}/metrics (Prometheus); health: {base}/healthz and {base}/readyz", file=out)
    else:
        print(
            f"metrics, health: /metrics, /healthz, /readyz on {metrics.host}, a system-chosen port", file=out
        )
    if not options.once:
        where = f" (in the MinIO console, {store.console_url})" if store.console_url else ""
        print(
            f"upload more files to {options.name}-in/in/{where} to run more jobs; Ctrl-C stops the demo",
            file=out,
        )
    out.flush()


async def run_demo(options: DemoOptions, stop: asyncio.Event, out: TextIO = sys.stdout) -> int:
    """Run the demo until ``stop`` is set (or, with ``once``, until the samples finish); the exit code.

    ``DemoError`` when RabbitMQ or an S3 server is missing, or the store refuses the service.
    """
    options.directory.mkdir(parents=True, exist_ok=True)
    started_rabbit = "BUCKETRUN_AMQP__URL" not in os.environ and ensure_rabbitmq(out)
    fdl = options.directory.resolve() / "services.yaml"
    fdl.write_text(_FDL.replace("NAME", options.name))
    try:
        async with _store(options, fdl, out) as store:
            settings = demo_settings(options, fdl, store)
            if store.notify_arn is not None:
                await _apply(settings, fdl, out)
            return await _run_stack(options, settings, store, stop, out)
    finally:
        if started_rabbit:
            print("RabbitMQ was started detached and is left running (stop it: rabbitmqctl stop)", file=out)


@contextlib.asynccontextmanager
async def _store(options: DemoOptions, fdl: Path, out: TextIO) -> AsyncIterator[DemoStore]:
    """The S3 server ``options.s3`` asks for, started here unless it is the configured one."""
    configured = os.environ.get("BUCKETRUN_STORAGE__ENDPOINT")
    if configured and options.s3 is S3Choice.AUTO:
        print(f"S3: reusing {configured}; the bucket poller announces its uploads", file=out)
        yield DemoStore()
        return
    minio = built("minio") if options.s3 is not S3Choice.MOTO else None
    if minio is None and options.s3 is S3Choice.MINIO:
        raise DemoError(
            f"no MinIO built in {servers_dir() / 'bin'}: run `make servers` (builds it from source)"
        )
    if minio is None:
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


async def _apply(settings: Settings, fdl: Path, out: TextIO) -> None:
    """Apply the demo service as ``bucketrun services apply`` does: buckets, folders, notifications."""
    print(f"services apply {fdl.name}:", file=out)
    message, code = await apply_services(settings, [fdl], emit=lambda line: print(f"  {line}", file=out))
    if code != EXIT_OK:
        raise DemoError(f"services apply failed (exit {code}):\n{message}")


async def _run_stack(
    options: DemoOptions, settings: Settings, store: DemoStore, stop: asyncio.Event, out: TextIO
) -> int:
    inner, serve_ready = asyncio.Event(), asyncio.Event()
    storage = Storage(settings.storage)
    for bucket in (f"{options.name}-in", f"{options.name}-out", settings.storage.records_bucket):
        await storage.ensure_bucket(bucket)
    parts = {asyncio.create_task(run_serve(settings, inner, serve_ready), name="bucketrun-demo-serve")}
    ready, what = [serve_ready], "the dispatcher and watcher (local executor)"
    if store.notify_arn is None:  # nothing else announces uploads
        ready.append(poll_ready := asyncio.Event())
        parts.add(asyncio.create_task(run_poller(settings, inner, poll_ready), name="bucketrun-demo-poller"))
        what = "the dispatcher, watcher (local executor) and poller"
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
            _watch(options, settings, store, stop, out), name="bucketrun-demo-progress"
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
