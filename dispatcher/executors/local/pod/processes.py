"""Container processes: each in its own session, signalled as a whole, never left behind.

A container is its main process plus everything it starts. Each container runs as the leader of a
new session (and process group), so a signal reaches shell children too: the runner signals the
process group and, on Linux, every process still in the session (children that moved to another
process group, e.g. under `set -m`, stay in the session). When the main process exits, whatever
it left running is killed, as the kernel does when PID 1 of a container's PID namespace exits.
A process that starts a session of its own (`setsid`, a double-forking daemon) escapes; only
cgroups could follow it, and the local runner does not use them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

_PROC = "/proc"
# How long leftovers of a finished container may take to disappear after SIGKILL.
_LEFTOVER_TIMEOUT = 2.0
_LEFTOVER_POLL = 0.005


def exit_status(returncode: int) -> tuple[int, int | None]:
    """(exit code, signal) for a returncode as asyncio reports it; killed by signal N is 128 + N."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


def session_members(session: int) -> list[int]:
    """The live (not zombie) processes whose session id is *session*; empty where /proc is unavailable."""
    # Runs after every container exit: plain os calls, as pathlib triples the cost of the scan.
    members = []
    try:
        entries = [entry.name for entry in os.scandir(_PROC) if entry.name.isdigit()]
    except OSError:
        return []
    for name in entries:
        try:
            fd = os.open(f"{_PROC}/{name}/stat", os.O_RDONLY)
        except OSError:
            continue  # exited since the listing
        try:
            stat = os.read(fd, 1024)
        except OSError:
            continue
        finally:
            os.close(fd)
        # "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 3 and fields[0] != b"Z" and int(fields[3]) == session:
            members.append(int(name))
    return members


def signal_container(leader: int, signum: int) -> None:
    """Send *signum* to the process group led by *leader* and to every process left in its session."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(leader, signum)
    for pid in session_members(leader):
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def start_error_exit_code(error: OSError, cwd: Path) -> int:
    """The exit code for a container that cannot be started: 127 not found, 126 not executable, else 128."""
    if isinstance(error, FileNotFoundError) and error.filename != str(cwd):
        return 127
    if isinstance(error, PermissionError):
        return 126
    return 128


class ContainerProcess:
    """One running container: its main process and its session."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._escalation: asyncio.TimerHandle | None = None
        self._exited = False

    @property
    def pid(self) -> int:
        """The main process id, which is also the process group and session id."""
        return self._process.pid

    @classmethod
    async def start(
        cls, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path
    ) -> ContainerProcess:
        """Start *argv* in a new session, stdout and stderr appended to *log*; OSError if it cannot start."""
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            os.close(fd)
        return cls(process)

    def terminate(self, grace_seconds: float) -> None:
        """SIGTERM the container now and SIGKILL it after *grace_seconds* unless it has exited by then."""
        if self._exited or self._escalation is not None:
            return
        signal_container(self.pid, signal.SIGTERM)
        self._escalation = asyncio.get_running_loop().call_later(grace_seconds, self.kill)

    def kill(self) -> None:
        """SIGKILL the container now."""
        if not self._exited:
            signal_container(self.pid, signal.SIGKILL)

    async def wait(self) -> int:
        """Wait for the main process to exit, kill what it left behind, and return its returncode.

        If the wait is cancelled, the container is killed before the cancellation propagates.
        """
        try:
            returncode = await self._process.wait()
        except BaseException:
            self.kill()
            raise
        self._exited = True
        if self._escalation is not None:
            self._escalation.cancel()
        # Linux does not reuse an id while it names a live process group or session, so this reaches
        # only the container's leftovers (reuse in the instant after the last one died needs pid wrap-around).
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if session_members(self.pid):
            signal_container(self.pid, signal.SIGKILL)
            await _until_gone(self.pid)
        return returncode


async def _until_gone(session: int) -> None:
    # Processes that are not our children cannot be awaited, only observed: poll /proc, bounded.
    deadline = time.monotonic() + _LEFTOVER_TIMEOUT
    while session_members(session) and time.monotonic() < deadline:  # noqa: ASYNC110 - nothing to wait on
        await asyncio.sleep(_LEFTOVER_POLL)
