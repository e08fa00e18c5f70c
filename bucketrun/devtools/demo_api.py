"""The demo's OSCAR-compatible API: ``bucketrun api`` as a child process, for oscar-cli and oscar-python.

Started where the demo runs the built MinIO (with notifications) and its own cluster, and the ``api``
extra is installed. The child is configured by environment variables only, as in a pod: the demo's
settings, a fixed demo-only login, a store user of its own for put-file/get-file (never the MinIO
root's keys), and a services directory the demo's dispatcher also reads, so a service created with
``oscar-cli apply`` runs like the demo's own. Its log goes to ``api.log`` in the demo's directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bucketrun.devtools.minio_server import Credentials
from bucketrun.devtools.moto_server import port_open
from dispatcher.runtime.settings import ENV_PREFIX, Settings, settings_environment

DEMO_API_LOGIN: Final = Credentials("demo", "demo-oscar-password")
"""oscar-cli's login to the demo's API: fixed, for this local demo only."""
DEMO_STORE_USER: Final = Credentials("demo-oscar-user", "demo-oscar-user-secret")
"""The MinIO user the API creates for its users (put-file, get-file): fixed, demo-only."""
CLUSTER_ID: Final = "demo"
"""The cluster name the printed ``oscar-cli cluster add`` uses."""
_PREFERRED_PORT: Final = 8080  # OSCAR's
_START_TIMEOUT: Final = 30.0
_LISTENING: Final = re.compile(r"bucketrun api listening on (http://\S+)")


class DemoApiError(RuntimeError):
    """``bucketrun api`` did not start; the message has the end of its log."""


def api_installed() -> bool:
    """Whether the ``api`` extra (FastAPI, uvicorn) is importable here."""
    return all(importlib.util.find_spec(name) is not None for name in ("fastapi", "uvicorn"))


@dataclass(frozen=True)
class DemoApi:
    """The running API: where it listens and where it logs."""

    url: str
    log: Path

    def lines(self) -> list[str]:
        """What the demo prints about it: the login and the oscar-cli commands that use it."""
        login = DEMO_API_LOGIN
        return [
            f"OSCAR API: {self.url}  user {login.user}  password {login.password}  (demo-only credentials; "
            f"log: {self.log})",
            "  drive it with the real oscar-cli, as an OSCAR user would:",
            f"    oscar-cli cluster add {CLUSTER_ID} {self.url} {login.user} {login.password} --disable-ssl",
            "    oscar-cli apply services.yaml        # your FDL: its services run here like the demo's own",
            "    oscar-cli service put-file SERVICE minio.default FILE BUCKET/FOLDER/FILE",
            "    oscar-cli service logs list SERVICE; oscar-cli service get-file SERVICE minio.default ...",
        ]


def api_environment(settings: Settings, services_dir: Path, port: int) -> dict[str, str]:
    """The child's environment: this one's without ``BUCKETRUN_*``, the demo's settings, the API's."""
    inherited = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}
    return {
        **inherited,
        **settings_environment(settings),
        "BUCKETRUN_API__USERNAME": DEMO_API_LOGIN.user,
        "BUCKETRUN_API__PASSWORD": DEMO_API_LOGIN.password,
        "BUCKETRUN_API__PORT": str(port),
        "BUCKETRUN_METRICS__PORT": "0",  # the demo's dispatcher and watcher serve theirs on the demo's port
        "BUCKETRUN_API__SERVICES_DIR": str(services_dir),
        "BUCKETRUN_API__STORE_ACCESS_KEY": DEMO_STORE_USER.user,
        "BUCKETRUN_API__STORE_SECRET_KEY": DEMO_STORE_USER.password,
    }


@contextlib.asynccontextmanager
async def demo_api(settings: Settings, services_dir: Path, log: Path) -> AsyncIterator[DemoApi]:
    """``bucketrun api`` running until the block ends (then SIGTERM); ``DemoApiError`` if it does not
    listen within ``_START_TIMEOUT`` s."""
    port = 0 if port_open("127.0.0.1", _PREFERRED_PORT) else _PREFERRED_PORT
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bucketrun.cli.main",
            "api",
            env=api_environment(settings, services_dir, port),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    try:
        url = await _listening(process, log)
        yield DemoApi(url, log)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), _START_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()


async def _listening(process: asyncio.subprocess.Process, log: Path) -> str:
    """The URL the child prints once it accepts connections."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _START_TIMEOUT
    while True:
        text = await asyncio.to_thread(log.read_text, errors="replace")
        if found := _LISTENING.search(text):
            return found.group(1)
        if process.returncode is not None or loop.time() > deadline:
            why = f"exited {process.returncode}" if process.returncode is not None else "is not listening"
            raise DemoApiError(f"bucketrun api {why} after starting ({log}):\n{text[-2000:]}")
        # Its only signal is the line in its log: look again shortly, or sooner if it exits.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 0.1)
