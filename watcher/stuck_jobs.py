"""Ends Jobs whose pod can never start, or never gets created: records each with the reason, then deletes it.

On a cluster, a pod whose image cannot be pulled, whose Secret, ConfigMap or key does not exist, or
that no node can take stays Pending until its Job's ``activeDeadlineSeconds`` (24 h by default): no
record all that time, and a ``max_concurrent_jobs`` slot held. While leading, the watcher lists
bucketrun's Pending pods every ``interval`` seconds; a pod that ``stuck_reason`` finds stuck for at
least ``grace`` has its Job recorded (``classify`` names the pod's reason: ``config-error``,
``image-pull-failed``, ``unschedulable``) and then deleted with its pods (propagationPolicy
Background), so the slot comes back.

A Job whose pods the API server refuses (PodSecurity, a missing ServiceAccount, a quota its pod can
never fit) has no pod to list: the Job controller only emits ``FailedCreate`` Events on it and tries
again for ever. Each sweep also lists those Events; a bucketrun Job they name, whose own Events
``refused_reason`` finds refused for at least ``grace`` (a quota that may free is left to wait), is
recorded as ``pod-create-refused`` with the controller's message, and deleted the same way.

Exactly once, keyed on the Job's UID like every record: the record is written and the Job marked
before the delete, so a stop between the two leaves a recorded Job that the next sweep only deletes;
the delete carries the UID as a precondition, so a new Job of the same name is never deleted, and a
Job already gone is fine. A Job that finished meanwhile is left to the finished-Job watch. The
handling of one Job runs shielded from cancellation, as the watch's does (``drain``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from dispatcher.adapters.kube import deleting, fetching
from dispatcher.adapters.kube.api import KubeApi
from dispatcher.domain import kube
from dispatcher.domain.constants import LABEL_JOB_CONTROLLER_UID, LABEL_JOB_NAME, LABEL_MANAGED_BY, MANAGED_BY
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.jobs import finished_condition
from dispatcher.domain.outcome import Outcome, stuck_reason
from dispatcher.domain.refused import refused_jobs, refused_reason
from dispatcher.runtime.concurrency import InHand

_log = structlog.get_logger(__name__)


class StuckJobSource(Protocol):
    """The API calls the sweep needs. Errors are bucketrun's."""

    async def pending_pods(self) -> list[dict[str, Any]]:
        """bucketrun's pods in phase Pending."""
        ...

    async def read_job(self, name: str) -> dict[str, Any] | None:
        """Job *name*, or None when there is none."""
        ...

    async def delete_job(self, name: str, uid: str) -> bool:
        """Delete Job *name* with its pods if its UID is *uid*; False when it is gone or another Job's."""
        ...

    async def refused_job_events(self) -> list[dict[str, Any]]:
        """The ``FailedCreate`` Events about any Job of the namespace."""
        ...

    async def job_events(self, uid: str) -> list[dict[str, Any]]:
        """Every Event kept about the Job with UID *uid*."""
        ...


class KubeStuckJobSource:
    """The ``StuckJobSource`` of a cluster: ``fetching`` and ``deleting`` calls through *api*."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def pending_pods(self) -> list[dict[str, Any]]:
        """bucketrun's pods in phase Pending, every page."""
        return await fetching.pending_pods(self.api)

    async def read_job(self, name: str) -> dict[str, Any] | None:
        """Job *name*, or None when there is none."""
        return await fetching.read_job(self.api, name)

    async def delete_job(self, name: str, uid: str) -> bool:
        """Delete Job *name* with its pods if its UID is *uid*; False when it is gone or another Job's."""
        return await deleting.delete_job(self.api, name, uid)

    async def refused_job_events(self) -> list[dict[str, Any]]:
        """The ``FailedCreate`` Events about any Job of the namespace, every page."""
        return await fetching.refused_job_events(self.api)

    async def job_events(self, uid: str) -> list[dict[str, Any]]:
        """Every Event kept about the Job with UID *uid*, every page."""
        return await fetching.job_events(self.api, uid)


class Recorder(Protocol):
    """Records one Job (``watcher.completion.Recorder.record``: skips a Job already marked recorded)."""

    def __call__(self, job: Mapping[str, Any], outcome: Outcome | None = None) -> Awaitable[object]:
        """Record *job*: with *outcome* when given, else as ``classify`` finds it from its pods."""
        ...


def owning_job(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, UID) of the Job that controls *pod*: its controller ownerReference, else its Job labels."""
    for owner in kube.owner_references(pod):
        if owner.get("controller") and owner.get("kind") == "Job" and owner.get("name") and owner.get("uid"):
            return str(owner["name"]), str(owner["uid"])
    labels = kube.labels(pod)
    name, uid = labels.get(LABEL_JOB_NAME), labels.get(LABEL_JOB_CONTROLLER_UID)
    return (str(name), str(uid)) if name and uid else None


@dataclass
class SweepStats:
    """What the sweep has done so far (for tests and logs)."""

    sweeps: int = 0
    """Looks at the Pending pods."""
    ended: int = 0
    """Jobs recorded and deleted (or found deleted) because their pod could never start (or be created)."""
    failures: int = 0
    """Failed looks or Jobs (each tried again at the next sweep)."""


class StuckJobSweep:
    """Records and deletes the Jobs whose pods ``stuck_reason`` finds stuck, every *interval* seconds."""

    def __init__(
        self,
        source: StuckJobSource,
        record: Recorder,
        *,
        grace: float,
        interval: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if grace <= 0 or interval <= 0:
            raise ValueError(f"grace and interval must be positive, got {grace} and {interval}")
        self._source = source
        self._record = record
        self._grace = timedelta(seconds=grace)
        self._interval = interval
        self._clock = clock
        self._in_hand = InHand()
        self.stats = SweepStats()

    async def run(self, *, max_sweeps: int | None = None) -> None:
        """Sweep every *interval* seconds until cancelled (or *max_sweeps* times, for tests)."""
        while max_sweeps is None or self.stats.sweeps < max_sweeps:
            try:
                await self.sweep()
            except TransientError as error:
                self.stats.failures += 1
                _log.warning("looking for pods that cannot start failed; trying again", error=str(error))
            if max_sweeps is None or self.stats.sweeps < max_sweeps:
                await asyncio.sleep(self._interval)

    async def sweep(self) -> int:
        """One look at the Pending pods, then at the Jobs refused a pod; how many Jobs it ended. Errors of
        one Job are logged, not raised."""
        self.stats.sweeps += 1
        pods = await self._source.pending_pods()
        now = self._clock()
        ended = 0
        for pod in pods:
            outcome = stuck_reason(pod, now, self._grace)
            owner = owning_job(pod) if outcome is not None else None
            if outcome is None or owner is None:
                continue
            if await self._in_hand.run(self._end(*owner, outcome), name=f"end stuck Job {owner[0]}"):
                ended += 1
        try:
            events = await self._source.refused_job_events()
        except PermanentError as error:  # a Role without `list events`: the pods' sweep goes on
            self.stats.failures += 1
            _log.warning(
                "cannot list the FailedCreate Events: Jobs refused a pod are not ended", error=str(error)
            )
            return ended
        for name, uid in refused_jobs(events, now, self._grace):
            if await self._in_hand.run(self._end_refused(name, uid, now), name=f"end refused Job {name}"):
                ended += 1
        return ended

    async def drain(self, grace: float) -> bool:
        """Wait (at most *grace* s) for the Job in hand to be recorded and deleted; True if it was."""
        return await self._in_hand.drain(grace)

    async def _end(self, name: str, uid: str, outcome: Outcome) -> bool:
        """Record Job *name* (UID *uid*), whose pod *outcome* says cannot start, then delete it; False when
        there was nothing to do or it failed. The Recorder classifies the Job's pods again."""
        try:
            job = await self._source.read_job(name)
            if job is None or kube.uid(job) != uid or finished_condition(job) is not None:
                return False  # gone, replaced by a new Job of that name, or for the finished-Job watch
            return await self._record_and_delete(job, outcome, given=False)
        except (TransientError, PermanentError) as error:
            return self._failed(name, error)

    async def _end_refused(self, name: str, uid: str, now: datetime) -> bool:
        """Record Job *name* (UID *uid*) as refused a pod, then delete it, if bucketrun's and if its Events
        show the refusal persisting (``refused_reason``); False when not, or when it failed."""
        try:
            job = await self._source.read_job(name)
            if job is None or kube.uid(job) != uid or kube.labels(job).get(LABEL_MANAGED_BY) != MANAGED_BY:
                return False  # gone, replaced, or not bucketrun's
            outcome = refused_reason(job, await self._source.job_events(uid), now, self._grace)
            return outcome is not None and await self._record_and_delete(job, outcome, given=True)
        except (TransientError, PermanentError) as error:
            return self._failed(name, error)

    async def _record_and_delete(self, job: Mapping[str, Any], outcome: Outcome, *, given: bool) -> bool:
        """Record *job* (with *outcome* if *given*), then delete it with its pods (UID precondition)."""
        name = kube.name(job)
        await self._record(job, outcome if given else None)
        deleted = await self._source.delete_job(name, kube.uid(job))
        self.stats.ended += 1
        _log.info(
            "ended a Job whose pod cannot start",
            job=name,
            outcome=outcome.kind.value,
            reason=outcome.reason,
            detail=outcome.message,
            deleted=deleted,
        )
        return True

    def _failed(self, name: str, error: TransientError | PermanentError) -> bool:
        self.stats.failures += 1
        _log.warning("ending a Job whose pod cannot start failed", job=name, error=str(error))
        return False
