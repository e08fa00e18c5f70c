"""The executor protocol: everything the dispatcher and the watcher need from wherever Jobs run.

One protocol, two halves. The dispatcher creates, and counts while a cap needs it (``start`` first); the
watcher records what finished (``finished_jobs``, ``job_pods``, ``container_log``, ``mark_recorded``),
which needs no ``start`` of its own: a ``kubernetes`` executor reads the API as it is, and the
``local`` one is shared with the dispatcher that started it (``bucketrun serve``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from dispatcher.domain.jobs import CreateOutcome
from dispatcher.rendering.secrets import ServiceSecret

if TYPE_CHECKING:
    from dispatcher.runtime.settings import Settings

JobHandler = Callable[[Mapping[str, Any]], Awaitable[object]]
"""Records one finished Job (``Recorder.record``). Errors are bucketrun's."""


class FinishedJobs(Protocol):
    """An executor's finished Jobs not marked recorded, each handed to one handler until it is done."""

    async def run(self) -> None:
        """Hand each finished, unrecorded Job to the handler (again after a ``TransientError``, with
        backoff; a ``PermanentError`` leaves it unmarked for the next run) until cancelled. The handling
        of one Job runs shielded: a cancellation does not cut a record from its event and its mark."""
        ...

    async def drain(self, grace: float) -> bool:
        """Wait (at most *grace* s) for the Jobs in hand, after ``run`` was cancelled; True if all ended."""
        ...


class Executor(Protocol):
    """Creates Jobs exactly once by name, counts each service's unfinished Jobs, and shows the finished
    ones with their pods and logs until they are marked recorded.

    Errors are bucketrun's: ``TransientError`` (try again later, honouring ``retry_after``) or
    ``PermanentError`` (dead-letter with ``reason``). An existing name is the outcome ``EXISTS``.
    """

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self, *, count_jobs: bool = True) -> None:
        """Get ready; with *count_jobs* (``count_jobs(True)``), ``active_jobs`` counts every Job that
        already exists once this returns."""
        ...

    async def close(self) -> None:
        """Release everything ``start`` took (and the connections the executor was built with)."""
        ...

    async def ready(self) -> bool:
        """True when Jobs can be created now (for readiness probes); never raises."""
        ...

    # -- create --------------------------------------------------------------------------------------

    async def provide_secrets(self, secrets: Sequence[ServiceSecret]) -> None:
        """Make the services' Secrets available to the Jobs that reference them, before any is created.

        The dispatcher calls it before ``start`` and on every reload. The local executor keeps them for
        its pods; in a cluster ``bucketrun services apply`` writes them, and this does nothing.
        """
        ...

    async def ensure_config_map(self, doc: Mapping[str, Any]) -> None:
        """Make sure the service's immutable ConfigMap *doc* exists (cheap once it is known)."""
        ...

    async def create_job(self, doc: Mapping[str, Any]) -> CreateOutcome:
        """Create the Job *doc*: ``CREATED``, or ``EXISTS`` when its name is taken."""
        ...

    # -- count ---------------------------------------------------------------------------------------

    @property
    def counting(self) -> bool:
        """True while ``active_jobs`` is current."""
        ...

    async def count_jobs(self, enabled: bool) -> None:
        """Keep ``active_jobs`` current, or stop (the dispatcher counts while some service has
        ``max_concurrent_jobs``; a cluster's informer costs the API server a watch). Enabling returns
        once the counts include every Job that already exists; stopping empties them and wakes every
        ``wait_until``. An executor that counts anyway (the local one) ignores it."""
        ...

    def active_jobs(self, service: str) -> int:
        """The service's Jobs not yet Complete or Failed, including those just created (while counting;
        else 0)."""
        ...

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, re-checked after every change of the Job counts.

        For example ``await executor.wait_until(lambda: executor.active_jobs("a") < cap)`` to resume a
        service at its cap as soon as one of its Jobs finishes. Bound it with ``asyncio.timeout``.
        """
        ...

    # -- finished Jobs -------------------------------------------------------------------------------

    def finished_jobs(self, handle: JobHandler, settings: Settings) -> FinishedJobs:
        """The finished Jobs not marked recorded, to be handed to *handle* (``Recorder.record``) as
        ``settings`` say (the watcher's concurrency and watch timeout, or the dispatch retry delays)."""
        ...

    async def job_pods(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pods of *job* (this very Job, by UID), oldest first; empty when they are gone."""
        ...

    async def container_log(
        self, job: Mapping[str, Any], pod: str, container: str, tail_lines: int
    ) -> str | None:
        """The last *tail_lines* lines of *container*'s log in *pod* of *job*; None when there is none."""
        ...

    async def mark_recorded(self, job: Mapping[str, Any]) -> None:
        """Mark *job* recorded, durably, with its UID as the value (``is_recorded``): ``finished_jobs``
        never hands it out again, and a later Job of the same name is not taken for recorded. A Job
        gone meanwhile needs no mark."""
        ...
