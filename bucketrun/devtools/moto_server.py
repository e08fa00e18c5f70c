"""A throwaway local S3 server for the demo: ``python -m moto.server`` on a free loopback port.

moto is in the demo extra (``pip install -e '.[demo]'``, which ``make demo`` runs) and the dev
extra; without it ``MotoUnavailableError`` says how to get it. The server's request log goes to a
file, never to a pipe nobody reads (a full pipe would block the server mid-request).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

BOOT_TIMEOUT: Final = 30.0
"""Seconds the server may take to accept connections."""
_ATTEMPTS: Final = 5


class MotoUnavailableError(RuntimeError):
    """moto is not installed in this interpreter's environment."""


@dataclass
class MotoServer:
    """A running moto server; ``stop()`` ends it (and everything it started)."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def endpoint(self) -> str:
        """``host:port`` for ``BUCKETRUN_STORAGE__ENDPOINT``."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Terminate the server's process group, killing it if it does not exit within 10 s."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (callers retry on a bind race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host``:``port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def start_moto(log: Path) -> MotoServer:
    """Start a moto server on 127.0.0.1 with its log appended to ``log``; wait until it accepts.

    ``MotoUnavailableError`` when moto is not installed; ``RuntimeError`` quoting the log's end when it
    does not come up (a lost port race is retried on other ports).
    """
    if importlib.util.find_spec("moto") is None:
        raise MotoUnavailableError(
            "no S3 server: moto is not installed and BUCKETRUN_STORAGE__ENDPOINT is not set; install the "
            "demo extra (make demo, or pip install -e '.[demo]'), or build MinIO with make servers"
        )
    log.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(_ATTEMPTS):
        port = free_port()
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = MotoServer(process, port, log)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if port_open("127.0.0.1", port):
                return server
            time.sleep(0.05)
        server.stop()
    raise RuntimeError(
        f"the moto server did not start on any of {_ATTEMPTS} ports; its log ({log}) ends:\n"
        f"{log.read_text(errors='replace')[-2000:]}"
    )
