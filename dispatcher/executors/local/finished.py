"""The ``local`` executor's finished Jobs: each one ``LocalExecutor.finished()`` reports, handed to the
recorder in turn until it is done.

Exactly once rests on the executor: it hands out every finished Job not marked recorded (first those a
previous process left unmarked), and ``mark_recorded`` stores the mark durably. Here a Job is handled
one at a time; a ``TransientError`` is retried with backoff (capped, full jitter, Retry-After
honoured) until it is recorded, a ``PermanentError`` is logged and the Job left unmarked, so the next
start hands it out again. Each Job's handling runs shielded (``InHand``): ``drain()`` lets the one in
hand finish when the run is cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from dispatcher.domain.errors import PermanentError
from dispatcher.executors.base import JobHandler
from dispatcher.runtime.concurrency import InHand
from dispatcher.runtime.retrying import retry_transient

if TYPE_CHECKING:
    from dispatcher.executors.local.executor import LocalExecutor

_log = structlog.get_logger(__name__)


class LocalFinishedJobs:
    """Feeds each Job *executor* reports finished to *handle*, one at a time, until cancelled."""

    def __init__(
        self, executor: LocalExecutor, handle: JobHandler, *, retry_base: float, retry_cap: float
    ) -> None:
        self._executor = executor
        self._handle = handle
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._in_hand = InHand()

    async def run(self) -> None:
        """Hand out the executor's finished Jobs until cancelled, or until the executor closes."""
        async for name, record in self._executor.finished():
            await self._in_hand.run(self._handle_until_done(record["job"]), name=f"record {name}")

    async def drain(self, grace: float) -> bool:
        """Wait (at most *grace* s) for the Job in hand to be handled; True if it was."""
        return await self._in_hand.drain(grace)

    async def _handle_until_done(self, job: Mapping[str, Any]) -> None:
        try:
            await retry_transient(
                lambda: self._handle(job),
                what="recording a local job failed",
                base=self._retry_base,
                cap=self._retry_cap,
            )
        except PermanentError as error:
            _log.error("recording a local job failed for good", error=str(error))
