"""The MinIO server built from source (`make servers`), for tests whose point is what only a real S3 does.

`minio_endpoint` (one per session) starts `$BUCKETRUN_SERVERS_DIR/bin/minio server` (default
`~/.cache/bucketrun/servers/bin/minio`) on free 127.0.0.1 ports, with a data directory of its own, its
console on a second port and fixed test-only root credentials; it is ready when
`/minio/health/ready` answers 200, and it is stopped with the session. `minio_s3` is one test's scope on
it (unique buckets, removed afterwards), as `s3` is on the general S3 server.

The general `s3`/`s3_endpoint` fixtures keep their own choice; these are for checks that moto cannot
make (signatures, POST policies). Without the binary they skip, naming `make servers`, except under
CI=true, where they fail: CI builds it (.ci/build-servers, versions pinned in .ci/servers.env).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import urllib3
from minio import Minio  # noqa: TID251 - test infrastructure talks to S3 directly
from minio.error import MinioException  # noqa: TID251

from tests.backends import free_port, record_backend
from tests.backends.s3 import S3Endpoint, S3Scope

BOOT_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
ATTEMPTS = 3  # free ports are picked before the server binds them: a lost race is retried
ROOT_USER = "bucketrun-test"
ROOT_PASSWORD = "bucketrun-test-secret"


@dataclass(frozen=True)
class BuiltServer:
    """A binary built by `make servers` and the pinned version it was built at (its stamp file)."""

    path: Path
    version: str


def servers_dir() -> Path:
    """Where `make servers` puts its binaries: `$BUCKETRUN_SERVERS_DIR` or ~/.cache/bucketrun/servers."""
    configured = os.environ.get("BUCKETRUN_SERVERS_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "bucketrun" / "servers"


def built(name: str) -> BuiltServer | None:
    """The binary *name* (``minio``, ``mc``) with its version, or None when it was not built."""
    path = servers_dir() / "bin" / name
    stamp = path.with_name(f"{name}.version")
    if not (path.is_file() and os.access(path, os.X_OK) and stamp.is_file()):
        return None
    return BuiltServer(path, stamp.read_text().strip())


def require_built(name: str) -> BuiltServer:
    """The built binary *name*; skip the test without it, or fail under CI (which builds it)."""
    server = built(name)
    if server is not None:
        return server
    where = servers_dir() / "bin"
    message = f"{name} is not built in {where}: run `make servers` (builds MinIO and mc from source)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message}; CI builds it before the tests, so this is a broken CI set-up")
    pytest.skip(message)


@dataclass
class MinioServer:
    """One running `minio server`; `stop()` ends its process group."""

    process: subprocess.Popen[bytes]
    port: int
    console_port: int
    log: Path

    @property
    def endpoint(self) -> str:
        """``host:port`` of the S3 API."""
        return f"127.0.0.1:{self.port}"

    @property
    def s3(self) -> S3Endpoint:
        """The S3 API of this server, signed in as the test root user."""
        return S3Endpoint(self.endpoint, ROOT_USER, ROOT_PASSWORD, backend="minio")

    def ready(self) -> bool:
        """Whether MinIO serves signed S3 requests. Its readiness probe alone is not enough: it answers
        200 before the object layer exists (saying so only in a header), and until then S3 calls get 503
        with `Retry-After: 60`, which a retrying client obeys. With MINIO_SYNC_BOOT the S3 API holds
        calls until every subsystem (bucket metadata included) is up, so one answered call means ready."""
        url = f"http://{self.endpoint}/minio/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.headers.get("x-minio-server-status") == "unavailable":
                    return False
            probe = Minio(
                self.endpoint,
                access_key=ROOT_USER,
                secret_key=ROOT_PASSWORD,
                region="us-east-1",
                secure=False,
                http_client=urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=5), retries=False),
            )
            probe.bucket_exists("bucketrun-readiness-probe")
        except (urllib.error.URLError, OSError, urllib3.exceptions.HTTPError, MinioException):
            return False
        return True

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL if it has not exited within STOP_TIMEOUT."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def tail(self) -> str:
        """The end of the server's log, for error messages."""
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"


def _environment() -> dict[str, str]:
    # Nothing of an operator's MinIO settings may leak in; the test credentials are fixed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINIO_")}
    env.update(
        MINIO_ROOT_USER=ROOT_USER,
        MINIO_ROOT_PASSWORD=ROOT_PASSWORD,
        MINIO_UPDATE="off",  # no update check over the network
        MINIO_CI_CD="on",  # a data dir on the root disk is fine for a test server
        MINIO_SYNC_BOOT="on",  # S3 calls wait for the whole boot instead of answering 503 (see ready())
    )
    return env


def start_minio(binary: Path, base_dir: Path) -> MinioServer:
    """Start `binary server` with its data under *base_dir*; return once it reports ready.

    Raises RuntimeError quoting the log's end when it exits early, TimeoutError when it is not ready
    within BOOT_TIMEOUT.
    """
    data, log = base_dir / "data", base_dir / "minio.log"
    data.mkdir(parents=True, exist_ok=True)
    for _ in range(ATTEMPTS):
        port, console_port = free_port(), free_port()
        argv = [str(binary), "server", "--address", f"127.0.0.1:{port}"]
        argv += ["--console-address", f"127.0.0.1:{console_port}", str(data)]
        with log.open("ab") as sink:  # a file, never a pipe nobody reads
            process = subprocess.Popen(
                argv, env=_environment(), stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        server = MinioServer(process, port, console_port, log)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while process.poll() is None and not server.ready():
            if time.monotonic() > deadline:
                server.stop()
                raise TimeoutError(f"MinIO not ready after {BOOT_TIMEOUT}s; its log ends:\n{server.tail()}")
            time.sleep(0.05)
        if process.poll() is None:
            return server
    raise RuntimeError(f"MinIO exited on each of {ATTEMPTS} tries; its log ({log}) ends:\n{server.tail()}")


@pytest.fixture(scope="session")
def minio_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """The locally built MinIO server, shared by this session (skips without `make servers`)."""
    binary = require_built("minio")
    server = start_minio(binary.path, tmp_path_factory.mktemp("minio"))
    detail = f"{binary.version} at {server.endpoint}, console 127.0.0.1:{server.console_port}"
    record_backend("s3-minio", "minio (built)", detail)
    try:
        yield server.s3
    finally:
        server.stop()


@pytest.fixture
def minio_s3(minio_endpoint: S3Endpoint) -> Iterator[S3Scope]:
    """Per-test scope on the built MinIO: unique buckets, removed with their objects afterwards."""
    scope = S3Scope(minio_endpoint)
    yield scope
    scope.cleanup()
