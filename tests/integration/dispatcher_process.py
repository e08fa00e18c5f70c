"""`bucketrun dispatcher` as a real child process, for tests that signal, kill and restart it.

The child is configured only by environment variables, exactly as in a pod: `settings_environment`
turns a `Settings` into the `BUCKETRUN_*` variables that load back to it. Each child runs in its own
process group (so a SIGKILL takes everything it started) with stdout and stderr in a log file; the
`DispatcherLauncher` kills every group it started and prints their logs when the test ends (pytest shows
that output only for a failed test).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dispatcher.runtime.settings import ENV_PREFIX, Settings, settings_environment
from tests.backends import free_port
from tests.integration.stack import until

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND = (sys.executable, "-m", "bucketrun.cli.main", "dispatcher")
"""What a pod runs (``bucketrun dispatcher``), with this interpreter."""
READY_WITHIN = 45.0
"""Seconds a child may take to answer ``/readyz`` 200 (interpreter start, informer sync, topology)."""
_LOG_TAIL = 20_000


def child_environment(settings: Settings) -> dict[str, str]:
    """This process's environment without any ``BUCKETRUN_*`` variable, plus those of *settings*."""
    inherited = {name: value for name, value in os.environ.items() if not name.upper().startswith(ENV_PREFIX)}
    return {**inherited, **settings_environment(settings)}


def start_in_group(command: Sequence[str], settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    """Run *command* configured by *settings*' environment only, as in a pod, in a process group of its
    own (so a SIGKILL takes everything it started), stdout and stderr appended to *log_path*."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            env=child_environment(settings),
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # its own process group: killed whole, never left behind
        )


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL *proc*'s whole process group and reap it (safe to call again)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def with_settings(settings: Settings, **groups: Mapping[str, Any]) -> Settings:
    """*settings* with some fields of some groups replaced: ``with_settings(s, amqp={"prefetch": 8})``."""
    updates = {
        name: getattr(settings, name).model_copy(update=dict(values)) for name, values in groups.items()
    }
    return settings.model_copy(update=updates)


@dataclass
class DispatcherProcess:
    """One ``bucketrun dispatcher`` child: its process group, log file and health endpoints."""

    settings: Settings
    log_path: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.proc = start_in_group(COMMAND, self.settings, self.log_path)

    @property
    def pid(self) -> int:
        """The dispatcher's process id (also its process group id)."""
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        """Its exit code, or None while it runs."""
        return self.proc.poll()

    def terminate(self) -> None:
        """SIGTERM to the dispatcher alone, as the kubelet sends it: a graceful stop is asked for."""
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL its whole process group and reap it (a crash; safe to call again)."""
        kill_group(self.proc)

    def log(self) -> str:
        """Everything it wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Its structured log records (JSON lines: stderr is not a terminal); other lines skipped."""
        found = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    found.append(record)
        return found

    def logged(self, event: str) -> list[dict[str, Any]]:
        """Its log records whose message is *event*."""
        return [record for record in self.records() if record.get("event") == event]

    async def status(self, path: str) -> int | None:
        """HTTP status of ``GET path`` on its metrics port, or None while nothing answers there."""
        url = f"http://127.0.0.1:{self.settings.metrics.port}{path}"
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.get(url) as response,
            ):
                return response.status
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def wait_status(self, path: str, expected: int, within: float = READY_WITHIN) -> None:
        """Wait until ``GET path`` answers *expected*; fail at once, with the log, if the process exits."""

        async def answered() -> bool:
            if self.returncode is not None:
                pytest.fail(f"the dispatcher exited with {self.returncode} before {path} answered {expected}")
            return await self.status(path) == expected

        await until(answered, f"{path} to answer {expected}", within=within)

    async def wait_exit(self, within: float) -> tuple[int, float]:
        """Wait for it to exit: (exit code, seconds waited); fail if it still runs after *within* s."""
        started = time.monotonic()

        async def exited() -> bool:
            return self.returncode is not None

        await until(exited, "the dispatcher to exit", within=within)
        return self.proc.wait(), time.monotonic() - started


@dataclass
class DispatcherLauncher:
    """Starts dispatcher children for one test; `close()` kills them all and prints their logs."""

    directory: Path
    started: list[DispatcherProcess] = field(default_factory=list)

    async def start(self, settings: Settings, *, wait_ready: bool = True) -> DispatcherProcess:
        """A new child with *settings* on a fresh metrics port; by default once ``/readyz`` says 200."""
        settings = with_settings(settings, metrics={"host": "127.0.0.1", "port": free_port()})
        log_path = self.directory / f"dispatcher-{len(self.started) + 1}.log"
        process = DispatcherProcess(settings, log_path)
        self.started.append(process)
        if wait_ready:
            await process.wait_status("/readyz", 200)
        return process

    def close(self) -> None:
        """Kill every child's process group and print each log (shown by pytest when the test failed)."""
        for process in self.started:
            process.kill()
        for process in self.started:
            text = process.log()
            print(f"\n----- {process.log_path.name} (pid {process.pid}, exit {process.returncode}) -----")
            print(text[-_LOG_TAIL:] if len(text) > _LOG_TAIL else text)
