"""When has the run container ended, and how? Decided from observations of the shared state directory.

The wrapper (``job_templates/run.sh``) writes ``run.pid`` when it starts and ``exit-code`` (atomically, by
rename) when the script ends. A container killed outright (OOMKilled, evicted, SIGKILL) writes no exit
code, so stage-out also watches the recorded process through ``/proc`` (the pod shares one process
namespace): once that process is gone and no exit code appeared within a short grace, it was killed.
Until ``run.pid`` exists the run container has not started: its image is being pulled, or it never
will start (an image that cannot be pulled, a missing Secret, ConfigMap or key, a command that cannot
run). If neither ``run.pid`` nor ``exit-code`` appears within ``start_timeout`` of stage-out's first look,
it gives up (``NeverStarted``); the grants' expiry ends any wait too. On a cluster the watcher usually
ends such a pod first (it records and deletes Jobs stuck in those waiting states); the local executor,
which ends a container that cannot run at once, relies on this bound.

``decide`` is a pure function of (state, observation); ``wait_for_run`` is the loop that feeds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from job_templates.stager.contract import DEFAULT_RUN_START_TIMEOUT

PID_FILE: Final = "run.pid"
EXIT_CODE_FILE: Final = "exit-code"

DEFAULT_POLL_SECONDS = 0.25
"""How often stage-out looks at the state directory and the run process."""
DEFAULT_GRACE_SECONDS = 2.0
"""How long a vanished run process may take to show its exit code before it counts as killed."""


@dataclass(frozen=True)
class ProcessId:
    """A process, told apart from a later one that reuses its PID by its start time (clock ticks)."""

    pid: int
    start_ticks: int


@dataclass(frozen=True)
class Observation:
    """One look at the run container's traces."""

    at: float
    """Monotonic time of the look, in seconds."""
    exit_code: int | None
    """The script's exit code, once ``exit-code`` exists and holds a number."""
    pid: int | None
    """The PID in ``run.pid``, once it exists and holds a number."""
    process: ProcessId | None
    """That PID's process if it is alive (not a zombie); None if gone or no PID yet."""
    expired: bool
    """Whether the grants have expired."""


@dataclass(frozen=True)
class Finished:
    """The script ended and the wrapper recorded its exit code."""

    exit_code: int


@dataclass(frozen=True)
class Killed:
    """The run container's process vanished without recording an exit code."""

    pid: int


@dataclass(frozen=True)
class Expired:
    """The grants expired before the script ended (or before the run container even started)."""


@dataclass(frozen=True)
class NeverStarted:
    """Neither ``run.pid`` nor ``exit-code`` appeared within the start timeout: the run container never
    started (or its wrapper never ran)."""

    waited: float
    """Seconds stage-out waited for it."""


Verdict = Finished | Killed | Expired | NeverStarted


@dataclass(frozen=True)
class WatchState:
    """What ``decide`` remembers between observations."""

    process: ProcessId | None = None
    """The run process as first seen alive (a different start time later means a reused PID)."""
    gone_since: float | None = None
    """When the run process was first seen gone."""
    first_look: float | None = None
    """When stage-out first looked (the start timeout counts from there)."""


def decide(
    state: WatchState,
    seen: Observation,
    *,
    grace: float = DEFAULT_GRACE_SECONDS,
    start_timeout: float = DEFAULT_RUN_START_TIMEOUT,
) -> tuple[WatchState, Verdict | None]:
    """The new state, and the verdict if the run container has ended (None: keep waiting)."""
    first_look = seen.at if state.first_look is None else state.first_look
    state = replace(state, first_look=first_look)
    if seen.exit_code is not None:
        return state, Finished(seen.exit_code)
    if seen.expired:
        return state, Expired()
    if seen.pid is None:
        waited = seen.at - first_look
        return state, NeverStarted(waited) if waited >= start_timeout else None
    alive = seen.process is not None and (state.process is None or seen.process == state.process)
    if alive:
        return replace(state, process=state.process or seen.process, gone_since=None), None
    gone_since = state.gone_since if state.gone_since is not None else seen.at
    # The wrapper renames exit-code into place before it exits; the grace covers a slow filesystem.
    if seen.at - gone_since >= grace:
        return replace(state, gone_since=gone_since), Killed(seen.pid)
    return replace(state, gone_since=gone_since), None


def parse_number(text: str) -> int | None:
    """The integer in a state file (``"0\\n"``), or None for a partly written or garbled one."""
    try:
        return int(text.strip())
    except ValueError:
        return None


def parse_proc_stat(text: str) -> ProcessId | None:
    """The identity of a process from its ``/proc/<pid>/stat`` line; None for a zombie (it has exited)."""
    # The command name (field 2) is in parentheses and may itself contain spaces and parentheses.
    head, _, rest = text.rpartition(")")
    fields = rest.split()
    if not head or len(fields) < 20:
        return None
    pid_text = head.split("(", 1)[0].strip()
    state, start = fields[0], fields[19]  # fields 3 (state) and 22 (starttime)
    if state in {"Z", "X", "x"} or not pid_text.isdigit() or not start.isdigit():
        return None
    return ProcessId(int(pid_text), int(start))


def probe_process(pid: int, proc: Path = Path("/proc")) -> ProcessId | None:
    """The live process ``pid`` as ``/proc`` shows it, or None when there is none (or only a zombie)."""
    try:
        text = (proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
    except OSError:  # gone (ENOENT/ESRCH) between looking and reading
        return None
    return parse_proc_stat(text)


def read_number(path: Path) -> int | None:
    """The integer in the state file ``path``, or None while it is missing or garbled."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return parse_number(text)


@dataclass(frozen=True)
class Watcher:
    """Looks at the state directory and ``/proc`` until ``decide`` reaches a verdict.

    Every clock and the sleep are parameters so the loop runs in tests without waiting.
    """

    state_dir: Path
    expires_at: datetime
    poll: float = DEFAULT_POLL_SECONDS
    grace: float = DEFAULT_GRACE_SECONDS
    start_timeout: float = DEFAULT_RUN_START_TIMEOUT
    proc: Path = Path("/proc")
    monotonic: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    sleep: Callable[[float], None] = time.sleep

    def observe(self) -> Observation:
        """One look at the run container's traces."""
        # Read the exit code before probing the process: a script that ends between the two looks
        # is then seen as finished on the next look rather than as vanished.
        exit_code = read_number(self.state_dir / EXIT_CODE_FILE)
        pid = read_number(self.state_dir / PID_FILE)
        process = probe_process(pid, self.proc) if pid is not None and pid > 0 else None
        return Observation(
            at=self.monotonic(),
            exit_code=exit_code,
            pid=pid if pid is not None and pid > 0 else None,
            process=process,
            expired=self.now() >= self.expires_at,
        )

    def wait(self) -> Verdict:
        """Block until the run container has ended (or never started, or the grants expired); how."""
        state = WatchState()
        while True:
            state, verdict = decide(state, self.observe(), grace=self.grace, start_timeout=self.start_timeout)
            if verdict is not None:
                return verdict
            self.sleep(self.poll)
