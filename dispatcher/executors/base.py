"""The executor interface: what the consumer needs from wherever Jobs run."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from dispatcher.domain.jobs import CreateOutcome
from dispatcher.rendering.secrets import ServiceSecret


class Executor(Protocol):
    """Creates Jobs exactly once by name and counts each service's unfinished Jobs.

    Errors are bucketrun's: ``TransientError`` (try again later, honouring ``retry_after``) or
    ``PermanentError`` (dead-letter with ``reason``). An existing name is the outcome ``EXISTS``.
    """

    async def start(self) -> None:
        """Get ready: once this returns, ``active_jobs`` counts every Job that already exists."""
        ...

    async def close(self) -> None:
        """Release everything ``start`` took."""
        ...

    async def ready(self) -> bool:
        """True when Jobs can be created now (for readiness probes); never raises."""
        ...

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

    def active_jobs(self, service: str) -> int:
        """The service's Jobs not yet Complete or Failed, including those just created."""
        ...

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, re-checked after every change of the Job counts.

        For example ``await executor.wait_until(lambda: executor.active_jobs("a") < cap)`` to resume a
        service at its cap as soon as one of its Jobs finishes. Bound it with ``asyncio.timeout``.
        """
        ...
