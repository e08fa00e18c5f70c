"""A real Prometheus server for tests: Debian's ``prometheus`` binary on a free port, with its data in a
temporary directory, queried over its HTTP API.

The server runs in its own process group and is always stopped (SIGTERM, then SIGKILL after a bound)
when the context ends, so no process outlives the test. Its log goes to a file, shown by the test on
failure.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.backends import free_port, record_backend
from tests.integration.stack import until

READY_WITHIN = 30.0
STOP_WITHIN = 10.0


def prometheus_tool(name: str) -> str:
    """The path of Debian's ``prometheus`` package's *name* (``prometheus`` or ``promtool``), or skip
    the test — except under CI, which installs the package (.ci/install-system-deps): fail there."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{name} is missing under CI: install Debian's prometheus package")
        pytest.skip(f"{name} is not installed (apt-get install prometheus)")
    return path


def scrape_config(targets: dict[str, str], rule_files: list[Path], interval: str = "1s") -> dict[str, Any]:
    """A Prometheus configuration scraping each job's one ``host:port`` every *interval* and evaluating
    *rule_files* as often."""
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()
        ],
    }


@dataclass
class Prometheus:
    """A running server: its API's base URL and its log."""

    url: str
    log_path: Path

    def log(self) -> str:
        """What the server wrote so far."""
        return self.log_path.read_text(errors="replace")

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        """``GET /api/v1/<path>``'s JSON body (``status`` is "success" or "error" with ``error``)."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"{self.url}/api/v1/{path}", params=params) as response,
        ):
            body: dict[str, Any] = await response.json()
            return body

    async def query(self, expr: str) -> dict[str, Any]:
        """An instant query at the current time: the API's whole answer."""
        return await self.get("query", query=expr)

    async def values(self, expr: str) -> list[float]:
        """The values of an instant vector query (an error fails the test, naming the query)."""
        answer = await self.query(expr)
        assert answer["status"] == "success", f"{expr}: {answer.get('error')}"
        return [float(sample["value"][1]) for sample in answer["data"]["result"]]

    async def has_data(self, expr: str) -> bool:
        """Whether *expr* returns at least one sample whose value is a number (not NaN)."""
        return any(not math.isnan(value) for value in await self.values(expr))


@contextlib.asynccontextmanager
async def running_prometheus(config: dict[str, Any], directory: Path) -> AsyncIterator[Prometheus]:
    """Start Prometheus with *config* (files and data under *directory*), wait for ``/-/ready``, and stop
    it at the end whatever happens."""
    binary = prometheus_tool("prometheus")
    config_path = directory / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = directory / "prometheus.log"
    process = _spawn(binary, config_path, directory / "data", port, log_path)
    server = Prometheus(f"http://127.0.0.1:{port}", log_path)
    try:
        record_backend("prometheus", "local", f"{binary} on 127.0.0.1:{port}")

        async def ready() -> bool:
            assert process.poll() is None, f"prometheus exited:\n{server.log()[-4000:]}"
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                    session.get(f"{server.url}/-/ready") as response,
                ):
                    return response.status == 200
            except (aiohttp.ClientError, TimeoutError):
                return False

        await until(ready, "Prometheus /-/ready", within=READY_WITHIN)
        yield server
    finally:
        _stop(process)


def _spawn(binary: str, config: Path, data: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: stopped whole
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_WITHIN)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def wait_for_data(server: Prometheus, expr: str, what: str, within: float = 30.0) -> None:
    """Wait until *expr* returns a number (bounded; fails naming *what*)."""

    async def check() -> bool:
        return await server.has_data(expr)

    await until(check, what, within=within)
