"""Memory limits without cgroups: an RSS watchdog that OOM-kills a container over its limit.

A kubelet enforces `resources.limits.memory` through the container's cgroup: the kernel's OOM killer
SIGKILLs the process and the runtime reports reason OOMKilled, exit code 137. The agent runs as a
plain process and creates no cgroups, so it samples instead: every `poll_seconds` it sums the resident
set size (VmRSS in /proc) of every process in each running container's session, and when the sum
exceeds the container's memory limit it SIGKILLs the whole session and remembers the container, whose
terminated state is then reported as OOMKilled (exit code 137). Differences from the kernel: a
spike shorter than the sampling interval is missed, and page cache is not counted.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from dispatcher.domain.quantity import parse_quantity
from dispatcher.executors.local.pod.processes import session_members, signal_container

OOM_REASON = "OOMKilled"
OOM_EXIT_CODE = 137
"""128 + SIGKILL, as the runtime reports an OOM kill."""


def memory_limits(pod: Mapping[str, Any]) -> dict[str, int]:
    """Bytes of `resources.limits.memory` by container name (init containers too), where one is set."""
    spec = pod.get("spec") or {}
    limits = {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        raw = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if raw is not None:
            limits[str(container.get("name"))] = int(parse_quantity(raw) // Fraction(1))
    return limits


def process_rss(pid: int) -> int:
    """Resident bytes of one process (0 if it is gone or has no memory, as a zombie)."""
    try:
        with Path(f"/proc/{pid}/status").open("rb") as handle:
            for line in handle:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def session_rss(session: int) -> int:
    """Resident bytes of every live process of the session led by *session*."""
    members = set(session_members(session)) | {session}
    return sum(process_rss(pid) for pid in members)


class MemoryWatchdog:
    """Watches one pod's running containers; *limits()* gives each container's limit in bytes at each
    sample (0: kill at once, the OOM fault), *pids()* the running containers' session ids."""

    def __init__(
        self,
        pids: Callable[[], Mapping[str, int]],
        limits: Callable[[], Mapping[str, int]],
        poll_seconds: float,
    ) -> None:
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, got {poll_seconds}")
        self._pids = pids
        self._limits = limits
        self._poll = poll_seconds
        self._killed: set[str] = set()

    def take_oom(self, container: str) -> bool:
        """True (once) if the watchdog killed *container*'s last run."""
        if container in self._killed:
            self._killed.discard(container)
            return True
        return False

    def sample(self) -> list[str]:
        """One sample: kill every container over its limit; the names of those killed now."""
        limits = self._limits()
        killed = []
        for name, pid in self._pids().items():
            limit = limits.get(name)
            if limit is None or name in self._killed:
                continue
            if limit == 0 or session_rss(pid) > limit:
                signal_container(pid, signal.SIGKILL)
                self._killed.add(name)
                killed.append(name)
        return killed

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(self._poll)
