"""The MinIO server built from source (`make servers`): the default S3 of the suite, and its bucket
notifications into RabbitMQ.

`minio_endpoint` (one per session) starts `$BUCKETRUN_SERVERS_DIR/bin/minio server` (default
`~/.cache/bucketrun/servers/bin/minio`, see `bucketrun.devtools.minio_server`) on free 127.0.0.1 ports,
with a data directory of its own, its console on a second port, fixed test-only root credentials, and
its AMQP notification target wired to the session's broker (durable exchange, persistent messages,
publisher confirms, a queue_dir), so `services apply` subscribes buckets to a target that exists. Its
notifications go to a session exchange that no test consumes. The general `s3_endpoint` uses this server
when it is built (tests/backends/s3.py); `minio_s3` is one test's scope on it.

`minio_events` is a MinIO of one test's own, publishing to that test's events exchange (`amqp_names`),
so the test sees exactly its own notifications; `start_test_minio(..., amqp=AmqpTarget(...))` wires one
to any broker (a private node that a test stops, for instance). A MinIO boots in about 0.3 s.

Without the binary these skip, naming `make servers`, except under CI=true, where they fail: CI builds
it (.ci/build-servers, versions pinned in .ci/servers.env).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aio_pika  # noqa: TID251 - test infrastructure talks to the broker directly
import pytest

from bucketrun.devtools.minio_server import (
    AmqpTarget,
    BuiltServer,
    Credentials,
    MinioServer,
    built,
    servers_dir,
    start_minio,
)
from tests.backends import record_backend
from tests.backends.rabbitmq import AmqpNames
from tests.backends.s3 import S3Endpoint, S3Scope

__all__ = [
    "FOREIGN_ARN",
    "AmqpTarget",
    "MinioServer",
    "endpoint_of",
    "mc",
    "require_built",
    "start_test_minio",
]

ROOT = Credentials("bucketrun-test", "bucketrun-test-secret")
FOREIGN_ARN = "arn:minio:sqs::AUDIT:amqp"
"""A second AMQP target of the session's MinIO, for notification rules that are someone else's."""


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


def start_test_minio(base_dir: Path, *, amqp: AmqpTarget | None = None) -> MinioServer:
    """A built MinIO with the test root user (skips or fails as `require_built` does without one)."""
    return start_minio(require_built("minio").path, base_dir, ROOT, amqp=amqp)


def endpoint_of(server: MinioServer) -> S3Endpoint:
    """The S3 API of *server*, signed in as its root user, with its notification target."""
    return S3Endpoint(
        server.endpoint,
        server.root.user,
        server.root.password,
        backend="minio",
        notify_arn=server.notify_arn,
        notify_exchange=server.amqp.exchange if server.amqp else None,
    )


async def delete_exchange(url: str, exchange: str) -> None:
    """Remove an exchange MinIO declared on its first notification."""
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(exchange, if_unused=False)


@pytest.fixture(scope="session")
def minio_endpoint(tmp_path_factory: pytest.TempPathFactory, rabbitmq_url: str) -> Iterator[S3Endpoint]:
    """The locally built MinIO server, shared by this session (skips without `make servers`)."""
    binary = require_built("minio")
    target = AmqpTarget(rabbitmq_url, f"bucketrun-test.minio-{uuid.uuid4().hex[:8]}", also_as=("AUDIT",))
    server = start_minio(binary.path, tmp_path_factory.mktemp("minio"), ROOT, amqp=target)
    detail = f"{binary.version} at {server.endpoint}, console 127.0.0.1:{server.console_port}"
    record_backend("s3-minio", "minio (built)", detail)
    try:
        yield endpoint_of(server)
    finally:
        server.stop()
        asyncio.run(delete_exchange(target.url, target.exchange))


@pytest.fixture
def minio_s3(minio_endpoint: S3Endpoint) -> Iterator[S3Scope]:
    """Per-test scope on the built MinIO: unique buckets, removed with their objects afterwards."""
    scope = S3Scope(minio_endpoint)
    yield scope
    scope.cleanup()


@pytest.fixture
def minio_events(amqp_names: AmqpNames, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MinioServer]:
    """A MinIO of this test's own whose bucket notifications go to the test's events exchange: the
    `exchange` of `tests.integration.stack.amqp_settings(amqp_names)`, which the dispatcher consumes."""
    target = AmqpTarget(amqp_names.url, f"{amqp_names.prefix}.events")
    server = start_test_minio(tmp_path_factory.mktemp("minio-events"), amqp=target)
    try:
        yield server
    finally:
        server.stop()


def _host(endpoint: S3Endpoint) -> str:
    """`MC_HOST_<alias>`'s value for *endpoint*: its URL with the keys in it."""
    scheme = "https" if endpoint.secure else "http"
    return f"{scheme}://{endpoint.access_key}:{endpoint.secret_key}@{endpoint.endpoint}"


def mc(endpoint: S3Endpoint, *args: str, config_dir: Path, unless: str = "") -> Any:
    """`mc --json ARGS` (built by `make servers`) against *endpoint* under the alias ``t``; its JSON
    lines, parsed. Fails the test, quoting mc's output, when it exits non-zero, unless its output
    contains *unless* (non-empty)."""
    binary = require_built("mc")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MC_")}, "MC_HOST_t": _host(endpoint)}
    argv = [str(binary.path), "--config-dir", str(config_dir), "--json", "--no-color", *args]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0 and not (unless and unless in result.stdout + result.stderr):
        pytest.fail(f"mc {' '.join(args)} exited {result.returncode}: {result.stdout}{result.stderr}"[:2000])
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def with_credentials(endpoint: S3Endpoint, access_key: str, secret_key: str) -> S3Endpoint:
    """*endpoint* signed in as a user with these keys, so a test can recognise them wherever they must
    not appear. On a real MinIO the user is created (or its secret reset) with MinIO's built-in
    `readwrite` policy through the real `mc admin`; moto accepts any keys."""
    if endpoint.backend == "moto":
        return replace(endpoint, access_key=access_key, secret_key=secret_key)
    with tempfile.TemporaryDirectory(prefix="mc-") as config:
        mc(endpoint, "admin", "user", "add", "t", access_key, secret_key, config_dir=Path(config))
        # A second attach (the user kept from an earlier test) is refused as already attached.
        attach = ("admin", "policy", "attach", "t", "readwrite", "--user", access_key)
        mc(endpoint, *attach, config_dir=Path(config), unless="already")
    return replace(endpoint, access_key=access_key, secret_key=secret_key)
