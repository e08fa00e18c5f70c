"""The MinIO server that ``make servers`` builds from source, started on this machine for the demo and
the tests, with its bucket notifications wired to RabbitMQ.

``make servers`` (``.ci/build-servers``, versions pinned in ``.ci/servers.env``) puts ``minio`` and
``mc`` into ``$BUCKETRUN_SERVERS_DIR/bin`` (default ``~/.cache/bucketrun/servers/bin``), each with a
``NAME.version`` stamp. ``start_minio`` runs ``minio server`` on free 127.0.0.1 ports with a data
directory of its own, its console (object browser) on a second port, and, given an ``AmqpTarget``, its
unsuffixed AMQP notification target (ARN ``arn:minio:sqs::_:amqp``, bucketrun's default ``notify_arn``)
configured as ``deploy/`` configures production: durable fanout exchange, persistent messages,
publisher confirms and a ``queue_dir`` where events wait while the broker is away. The server's output
goes to a log file, never to a pipe nobody reads.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bucketrun.devtools.moto_server import free_port
from bucketrun.devtools.processes import stop_group

BOOT_TIMEOUT: Final = 60.0
"""Seconds MinIO may take to serve S3 calls."""
STOP_TIMEOUT: Final = 15.0
_ATTEMPTS: Final = 3  # free ports are picked before the server binds them: a lost race is retried
NOTIFY_ARN: Final = "arn:minio:sqs::_:amqp"
"""The ARN of MinIO's unsuffixed AMQP target (``MINIO_NOTIFY_AMQP_*``)."""
ROUTING_KEY: Final = "bucketrun"


@dataclass(frozen=True)
class BuiltServer:
    """A binary built by ``make servers`` and the pinned version it was built at (its stamp file)."""

    path: Path
    version: str


def servers_dir() -> Path:
    """Where ``make servers`` puts its binaries: ``$BUCKETRUN_SERVERS_DIR`` or ~/.cache/bucketrun/servers."""
    configured = os.environ.get("BUCKETRUN_SERVERS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "bucketrun" / "servers"


def built(name: str) -> BuiltServer | None:
    """The binary *name* (``minio``, ``mc``) with its version, or None when it was not built."""
    path = servers_dir() / "bin" / name
    stamp = path.with_name(f"{name}.version")
    if not (path.is_file() and os.access(path, os.X_OK) and stamp.is_file()):
        return None
    return BuiltServer(path, stamp.read_text().strip())


@dataclass(frozen=True)
class AmqpTarget:
    """Where MinIO publishes its bucket notifications: the fanout exchange *exchange* on *url*."""

    url: str
    exchange: str
    also_as: tuple[str, ...] = ()
    """Further target IDs (upper case, as MinIO keeps an environment suffix) publishing to the same
    exchange, ARNs ``arn:minio:sqs::<ID>:amqp``: targets of rules that are not bucketrun's."""


@dataclass(frozen=True)
class Credentials:
    """MinIO's root user (it signs S3 calls and logs into the console)."""

    user: str
    password: str


@dataclass
class MinioServer:
    """One running ``minio server``; ``stop()`` ends its process group."""

    process: subprocess.Popen[bytes]
    port: int
    console_port: int
    log: Path
    root: Credentials
    amqp: AmqpTarget | None = None

    @property
    def endpoint(self) -> str:
        """``host:port`` of the S3 API (``BUCKETRUN_STORAGE__ENDPOINT``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def console_url(self) -> str:
        """The embedded console (object browser), where a person logs in with the root user."""
        return f"http://127.0.0.1:{self.console_port}"

    @property
    def notify_arn(self) -> str | None:
        """The ARN bucket notification rules name to reach ``amqp``; None without a target."""
        return NOTIFY_ARN if self.amqp else None

    def ready(self) -> bool:
        """Whether MinIO serves S3 calls. ``/minio/health/ready`` answers 200 before the object layer
        exists (saying so only in a header); ``/minio/health/cluster`` answers 200 only once it has write
        quorum, and with ``MINIO_SYNC_BOOT`` the S3 API waits for the rest of the boot."""
        try:
            url = f"http://{self.endpoint}/minio/health/cluster"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL if it has not exited within STOP_TIMEOUT."""
        stop_group(self.process, STOP_TIMEOUT)

    def tail(self) -> str:
        """The end of the server's log, for error messages."""
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"


def minio_environment(root: Credentials, amqp: AmqpTarget | None, queue_dir: Path) -> dict[str, str]:
    """The environment of a ``minio server``: this one's, without any ``MINIO_*`` of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIO_")}
    env.update(
        MINIO_ROOT_USER=root.user,
        MINIO_ROOT_PASSWORD=root.password,
        MINIO_UPDATE="off",  # no update check over the network
        MINIO_CI_CD="on",  # a data dir on the root disk is fine for a local server
        MINIO_SYNC_BOOT="on",  # S3 calls wait for the whole boot instead of answering 503
        MINIO_BROWSER_LOGIN_ANIMATION="off",
    )
    if amqp is None:
        return env
    for target_id in ("", *amqp.also_as):
        suffix = f"_{target_id}" if target_id else ""
        target_queue = queue_dir / target_id if target_id else queue_dir
        target_queue.mkdir(parents=True, exist_ok=True)
        settings = {
            "ENABLE": "on",
            "URL": amqp.url,
            "EXCHANGE": amqp.exchange,
            "EXCHANGE_TYPE": "fanout",
            "ROUTING_KEY": ROUTING_KEY,
            "DURABLE": "on",
            "DELIVERY_MODE": "2",
            "PUBLISHING_CONFIRMS": "on",
            "QUEUE_DIR": str(target_queue),
        }
        env.update({f"MINIO_NOTIFY_AMQP_{name}{suffix}": value for name, value in settings.items()})
    return env


def _wait_ready(server: MinioServer) -> None:
    """Return once *server* is ready or has exited; TimeoutError after BOOT_TIMEOUT."""
    deadline = time.monotonic() + BOOT_TIMEOUT
    while server.process.poll() is None and not server.ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"MinIO not ready after {BOOT_TIMEOUT:.0f} s; its log ends:\n{server.tail()}")
        time.sleep(0.05)


def start_minio(
    binary: Path, base_dir: Path, root: Credentials, *, amqp: AmqpTarget | None = None
) -> MinioServer:
    """Start ``binary server`` with its data, log and notification queue under *base_dir*; return once
    it serves S3 calls.

    RuntimeError quoting the log's end when it exits on every try, TimeoutError when it is not ready
    within BOOT_TIMEOUT.
    """
    data, log, queue_dir = base_dir / "data", base_dir / "minio.log", base_dir / "events-queue"
    for directory in (data, queue_dir):
        directory.mkdir(parents=True, exist_ok=True)
    env = minio_environment(root, amqp, queue_dir)
    server: MinioServer | None = None
    for _ in range(_ATTEMPTS):
        port, console_port = free_port(), free_port()
        argv = [str(binary), "server", "--address", f"127.0.0.1:{port}"]
        argv += ["--console-address", f"127.0.0.1:{console_port}", str(data)]
        with log.open("ab") as sink:
            process = subprocess.Popen(
                argv, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = MinioServer(process, port, console_port, log, root, amqp)
        try:
            _wait_ready(server)
        except BaseException:  # not ready in time, or interrupted (Ctrl-C): leave no server behind
            server.stop()
            raise
        if process.poll() is None:
            return server
    tail = server.tail() if server else "(no log)"
    raise RuntimeError(f"MinIO exited on each of {_ATTEMPTS} tries; its log ({log}) ends:\n{tail}")
