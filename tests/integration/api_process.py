"""`bucketrun api` as a separate process, started as a user starts it, for the tests of real OSCAR clients
(oscar-cli, oscar-python) that reach it over HTTP; or an app served in the test's own event loop, with
its metrics endpoint, as `bucketrun api` serves them."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator

import pytest
import uvicorn
from fastapi import FastAPI
from minio.credentials.providers import StaticProvider  # noqa: TID251 - the tests remove the user the API made
from minio.error import MinioAdminException  # noqa: TID251
from minio.minioadmin import MinioAdmin  # noqa: TID251

from bucketrun.api.metrics import metrics_of
from bucketrun.api.server import serve_on
from bucketrun.api.store_user import policy_name
from dispatcher.runtime.settings import MetricsSettings
from tests.backends.s3 import S3Endpoint
from tests.integration.stack import until

START_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def api_process(env: dict[str, str]) -> AsyncIterator[str]:
    """`bucketrun api --port 0` with the environment *env* (its metrics on a free port unless *env* names
    one); yields its URL once it listens, then stops it with SIGTERM and fails the test if it did not end
    by that signal or wrote a traceback."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bucketrun.cli.main",
        "api",
        "--port",
        "0",
        env={"BUCKETRUN_METRICS__PORT": "0", **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen: list[str] = []
    url = ""
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while not url:
                line = (await process.stderr.readline()).decode()
                if not line:
                    pytest.fail(f"bucketrun api exited ({await process.wait()}): {''.join(seen)}")
                seen.append(line)
                if found := re.search(r"listening on (http://\S+)", line):
                    url = found.group(1)
        drain = asyncio.create_task(process.stderr.read())  # never let a full pipe stall the server
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            async with asyncio.timeout(START_TIMEOUT):
                await process.wait()
    errors = (await drain).decode()
    # uvicorn stops gracefully on SIGTERM, then raises it again: the exit is by that signal.
    assert process.returncode in (0, -signal.SIGTERM), errors[-3000:]
    assert "Traceback" not in errors, errors[-3000:]


@contextlib.asynccontextmanager
async def api_in_loop(app: FastAPI, metrics_port: int) -> AsyncIterator[str]:
    """*app* served by uvicorn in this event loop on a free port, its metrics on *metrics_port* (as
    `bucketrun api` serves them); yields the API's URL once it accepts, and stops it at the end."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    metrics = MetricsSettings(host="127.0.0.1", port=metrics_port)
    serving = asyncio.create_task(serve_on(server, sock, metrics, metrics_of(app).registry))

    async def started() -> bool:
        if serving.done():
            serving.result()  # its error, if it ended
        return bool(server.started)

    try:
        await until(started, "the API to accept connections", within=START_TIMEOUT)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, START_TIMEOUT)
        sock.close()


def remove_store_user(endpoint: S3Endpoint, access_key: str, definitions_bucket: str) -> None:
    """Remove the API users' MinIO user and its policy, which `bucketrun api` created on *endpoint*
    (nothing when they are gone already: the test's MinIO often goes with the test anyway)."""
    admin = MinioAdmin(
        endpoint=endpoint.endpoint,
        credentials=StaticProvider(endpoint.access_key, endpoint.secret_key),
        region=endpoint.region,
        secure=endpoint.secure,
    )
    with contextlib.suppress(MinioAdminException):
        admin.user_remove(access_key)
        admin.policy_remove(policy_name(definitions_bucket))
