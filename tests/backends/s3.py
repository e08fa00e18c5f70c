"""S3 for tests: a MinIO container, a configured endpoint, the MinIO built here, or (fallback) moto.

Choice order (`s3_endpoint`):
1. testcontainers MinIO, where a Docker engine answers;
2. `BUCKETRUN_TEST_S3_ENDPOINT` (+ `_ACCESS_KEY`, `_SECRET_KEY`, optional `_REGION`, `_SECURE`)
   for a real MinIO;
3. the MinIO built from source by `make servers` (`minio_endpoint`, tests/backends/minio_server.py),
   with its AMQP target wired to the session's broker;
4. only where it is not built: `moto_server` started here on 127.0.0.1 (no AMQP notifications, no
   signature checks — see ENVIRONMENT.md); the summary says why.

Each test gets unique bucket names from `s3` and everything it created is removed afterwards.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import urllib3
from minio import Minio  # noqa: TID251 - test infrastructure talks to S3 directly
from minio.deleteobjects import DeleteObject  # noqa: TID251

from bucketrun.devtools.minio_server import built, servers_dir
from bucketrun.devtools.moto_server import start_moto
from tests.backends import docker_available, import_quietly, record_backend

BOOT_TIMEOUT = 30.0


@dataclass(frozen=True)
class S3Endpoint:
    """Where the S3 server is and how to sign in (credentials are test-only)."""

    endpoint: str  # host:port, as the minio client wants it
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    secure: bool = False
    backend: str = "moto"
    notify_arn: str | None = None
    """The ARN of the server's AMQP notification target (MinIO built here), None where there is none."""
    notify_exchange: str | None = None
    """The exchange that target publishes to."""

    @property
    def url(self) -> str:
        """The endpoint as a URL."""
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"

    def client(self, *, read_timeout: float = 30.0, resend_reads: bool = True) -> Minio:
        """A minio client for this endpoint (region set so presigning needs no network call); a request
        may take *read_timeout* seconds to answer, and without *resend_reads* one that timed out is not
        sent again (for a slow listing: resending only piles up work on the server)."""
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            secure=self.secure,
            # Bounded waits: a stuck server must fail the test, not hang the run.
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=5, read=read_timeout),
                retries=urllib3.Retry(total=2, read=None if resend_reads else 0, backoff_factor=0.2),
            ),
        )


@pytest.fixture(scope="session")
def s3_endpoint(request: pytest.FixtureRequest) -> Iterator[S3Endpoint]:
    """The S3 server shared by this test session."""
    if docker_available():
        containers = import_quietly("testcontainers.community.minio")
        with containers.MinioContainer() as minio:
            cfg = minio.get_config()
            record_backend("s3", "testcontainers-minio", cfg["endpoint"])
            yield S3Endpoint(cfg["endpoint"], cfg["access_key"], cfg["secret_key"], backend="minio")
        return
    if endpoint := os.environ.get("BUCKETRUN_TEST_S3_ENDPOINT"):
        record_backend("s3", "env", endpoint)
        yield S3Endpoint(
            endpoint,
            os.environ["BUCKETRUN_TEST_S3_ACCESS_KEY"],
            os.environ["BUCKETRUN_TEST_S3_SECRET_KEY"],
            region=os.environ.get("BUCKETRUN_TEST_S3_REGION", "us-east-1"),
            secure=os.environ.get("BUCKETRUN_TEST_S3_SECURE", "false").lower() in {"1", "true", "yes"},
            backend="env",
        )
        return
    if (minio := built("minio")) is not None:
        endpoint: S3Endpoint = request.getfixturevalue("minio_endpoint")
        record_backend("s3", "minio (built)", f"{minio.version} at {endpoint.endpoint}")
        yield endpoint
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    why = f"fallback: no MinIO built in {servers_dir() / 'bin'}, run `make servers`"
    record_backend("s3", "moto", f"{endpoint.endpoint}; {why}")
    yield endpoint


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[S3Endpoint]:
    """A moto server of this session: the fallback S3, and the one store here that refuses MinIO's
    ARNs (the exit-3 path of `services apply`)."""
    server = start_moto(Path(tempfile.mkstemp(prefix="moto-", suffix=".log")[1]))
    record_backend("s3-moto", "moto", server.endpoint)
    try:
        yield S3Endpoint(server.endpoint, "testing", "testing", backend="moto")
    finally:
        server.stop()


@dataclass
class S3Scope:
    """One test's view of S3: unique bucket names, removed with their objects at teardown."""

    endpoint: S3Endpoint
    prefix: str = field(default_factory=lambda: f"t-{uuid.uuid4().hex[:10]}")
    buckets: list[str] = field(default_factory=list)

    def bucket(self, role: str, *, create: bool = True) -> str:
        """A unique bucket name for *role* (valid S3 name), created unless create=False."""
        name = f"{self.prefix}-{role}".lower()
        self.buckets.append(name)
        if create:
            client = self.endpoint.client()
            if not client.bucket_exists(name):
                client.make_bucket(name)
        return name

    def cleanup(self) -> None:
        """Remove every object (all versions) and every bucket this test named."""
        client = self.endpoint.client()
        for name in self.buckets:
            if not client.bucket_exists(name):
                continue
            doomed = [
                DeleteObject(obj.object_name or "", obj.version_id)
                for obj in client.list_objects(name, recursive=True, include_version=True)
            ]
            for error in client.remove_objects(name, doomed):
                raise RuntimeError(f"could not delete {error.name} from {name}: {error.message}")
            client.remove_bucket(name)


@pytest.fixture
def s3(s3_endpoint: S3Endpoint) -> Iterator[S3Scope]:
    """Per-test S3 scope with unique buckets."""
    scope = S3Scope(s3_endpoint)
    yield scope
    scope.cleanup()


@pytest.fixture
def moto_s3(moto_endpoint: S3Endpoint) -> Iterator[S3Scope]:
    """Per-test scope on the session's moto server (for what only moto does here)."""
    scope = S3Scope(moto_endpoint)
    yield scope
    scope.cleanup()
