"""Containers left running by an agent that was killed (SIGKILL: it could not stop them).

Each container runs in a session of its own, so it outlives an agent that dies without cleaning up.
Every container's HOME is its pod's directory under the agent's workdir (`<workdir>/pods/<pod>/home`),
and HOME is inherited by whatever it starts, wherever it `cd`s. So a new agent on the same workdir
finds the leftovers of the previous one by their environment, and kills them before it runs anything
(a pod that sets HOME itself escapes this).
"""

from __future__ import annotations

import os
import signal
from contextlib import suppress
from pathlib import Path

_PROC = Path("/proc")


def _home(pid: str) -> str | None:
    try:
        environ = (_PROC / pid / "environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        if entry.startswith(b"HOME="):
            return entry[5:].decode(errors="replace")
    return None


def leftover_pids(workroot: Path) -> list[int]:
    """Processes (other than this one) whose HOME lies under `<workroot>/pods/`."""
    prefix = str(workroot.resolve() / "pods") + os.sep
    mine = os.getpid()
    found = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == mine:
            continue
        home = _home(entry.name)
        if home is not None and home.startswith(prefix):
            found.append(int(entry.name))
    return found


def kill_leftovers(workroot: Path) -> list[int]:
    """SIGKILL every leftover container process of a previous agent on *workroot*; their pids."""
    pids = leftover_pids(workroot)
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids
