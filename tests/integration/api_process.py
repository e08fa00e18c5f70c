"""`bucketrun api` as a separate process, started as a user starts it, for the tests of real OSCAR clients
(oscar-cli, oscar-python) that reach it over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator

import pytest

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
