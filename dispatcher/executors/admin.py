"""Job management for people (``bucketrun jobs``): every Job with its pods, one Job, its pods and whole
logs, and deleting a Job with its pods, wherever Jobs run.

The executor protocol (``base.Executor``) serves the processes; this one serves a command run next to
them. ``KubeJobAdmin`` is the cluster's (the kube adapter's verb modules, Role ``bucketrun-operator``
for the reads and ``bucketrun-jobs-admin`` for deletes); ``local.admin.LocalJobAdmin`` reads the local
executor's state directory from outside the process that runs the Jobs.

A Job's status is given in OSCAR's four words (``JobStatus``, as ``oscar-cli service logs list`` shows
the pod phase): ``pending`` until its newest pod runs, ``running``, then ``succeeded`` or ``failed`` from
its Complete/Failed condition, or for a Job known only by its record, from the record's outcome.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from dispatcher.adapters.kube import deleting, fetching
from dispatcher.adapters.kube.api import KubeApi
from dispatcher.domain import kube
from dispatcher.domain.constants import LABEL_JOB_CONTROLLER_UID
from dispatcher.domain.jobs import api_time, finished_condition, is_recorded, job_service
from dispatcher.domain.outcome import OutcomeKind
from dispatcher.domain.record import finished_at

JobWithPods = tuple[dict[str, Any], list[dict[str, Any]]]
"""A Job document and its pods, oldest first (only an unfinished Job's pods are looked up)."""


class JobStatus(enum.StrEnum):
    """Where a Job is, in the four words ``oscar-cli service logs list --status`` filters on."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """Succeeded or failed: the Job will start no other pod."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED)


def job_status(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobStatus:
    """The status of *job* with *pods* (oldest first): its finished condition, else whether its newest
    pod runs (a pod that already succeeded counts as running until the Job says Complete)."""
    finished = finished_condition(job)
    if finished is not None:
        return JobStatus.SUCCEEDED if finished == "Complete" else JobStatus.FAILED
    phase = kube.pod_status(pods[-1]).get("phase") if pods else None
    return JobStatus.RUNNING if phase in ("Running", "Succeeded") else JobStatus.PENDING


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One line of ``bucketrun jobs list``: a Job from the cluster (or local executor), or its record."""

    name: str
    service: str
    status: JobStatus
    created: str | None
    started: str | None
    finished: str | None
    uid: str
    recorded: bool
    """A record of this very Job (its UID) is stored."""
    live: bool
    """The Job itself still exists (False: only its record is left)."""
    outcome: str | None = None
    """The record's outcome (``oom-killed``, ``deadline-exceeded``…), when the record was read."""

    @property
    def created_at(self) -> datetime | None:
        """``created`` as a datetime (None when unknown)."""
        return api_time(self.created)

    def as_json(self) -> dict[str, Any]:
        """The summary as plain JSON data."""
        return {
            "job": self.name,
            "service": self.service,
            "status": str(self.status),
            "outcome": self.outcome,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "uid": self.uid,
            "recorded": self.recorded,
            "live": self.live,
        }


def summarize(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobSummary:
    """The summary of a Job that exists, with its pods."""
    return JobSummary(
        name=kube.name(job),
        service=job_service(job) or "",
        status=job_status(job, pods),
        created=kube.meta(job).get("creationTimestamp"),
        started=kube.job_status(job).get("startTime"),
        finished=finished_at(job),
        uid=kube.uid(job),
        recorded=is_recorded(job),
        live=True,
    )


def summarize_record(record: Mapping[str, Any]) -> JobSummary:
    """The summary of a Job known by its record (``dispatcher.domain.record``) only."""
    outcome = record.get("outcome")
    succeeded = outcome == OutcomeKind.SUCCEEDED
    return JobSummary(
        name=str(record.get("job") or ""),
        service=str(record.get("service") or ""),
        status=JobStatus.SUCCEEDED if succeeded else JobStatus.FAILED,
        created=_text(record.get("created")),
        started=_text(record.get("started")),
        finished=_text(record.get("finished")),
        uid=str(record.get("uid") or ""),
        recorded=True,
        live=False,
        outcome=_text(outcome),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class JobAdmin(Protocol):
    """What ``bucketrun jobs`` needs of wherever Jobs run. Errors are bucketrun's."""

    async def jobs(self, *, with_pods: bool = True) -> list[JobWithPods]:
        """Every bucketrun Job, each with its pods if it is unfinished and *with_pods* (an empty list
        otherwise: enough to tell finished from unfinished, not pending from running)."""
        ...

    async def read_job(self, name: str) -> dict[str, Any] | None:
        """Job *name*, or None when there is none."""
        ...

    async def job_pods(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pods of *job* (this very Job, by UID), oldest first."""
        ...

    async def container_log(
        self, job: Mapping[str, Any], pod: str, container: str, *, tail_lines: int | None = None
    ) -> str | None:
        """The log of *container* in *pod* of *job*, whole or its last *tail_lines* lines; None when
        there is none (the pod is gone, the container never started)."""
        ...

    async def unstoppable(self) -> str | None:
        """Why unfinished Jobs cannot be deleted from here now, or None when they can."""
        ...

    async def delete_job(self, job: Mapping[str, Any]) -> bool:
        """Delete *job* and its pods if it is still that Job (its UID); False when it is gone already or
        the name is another Job's now."""
        ...


class KubeJobAdmin:
    """The ``JobAdmin`` of a cluster: ``fetching`` and ``deleting`` calls through *api*."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def jobs(self, *, with_pods: bool = True) -> list[JobWithPods]:
        """bucketrun's Jobs (every page), and the pods of the unfinished ones from one list of the
        namespace's Job pods (none when every Job has finished, or without *with_pods*)."""
        found = await fetching.list_jobs(self.api)
        unfinished = {kube.uid(job) for job in found if finished_condition(job) is None}
        pods: dict[str, list[dict[str, Any]]] = {}
        if unfinished and with_pods:
            listed = await fetching.list_job_pods(self.api)
            listed.sort(key=lambda pod: str(kube.meta(pod).get("creationTimestamp", "")))
            for pod in listed:
                owner = kube.labels(pod).get(LABEL_JOB_CONTROLLER_UID, "")
                if owner in unfinished:
                    pods.setdefault(owner, []).append(pod)
        return [(job, pods.get(kube.uid(job), [])) for job in found]

    async def read_job(self, name: str) -> dict[str, Any] | None:
        """Job *name*, or None when there is none."""
        return await fetching.read_job(self.api, name)

    async def job_pods(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pods with the Job's controller-uid label, oldest first."""
        return await fetching.job_pods(self.api, kube.uid(job))

    async def container_log(
        self, job: Mapping[str, Any], pod: str, container: str, *, tail_lines: int | None = None
    ) -> str | None:
        """The kubelet's log of the container (None once the pod is gone)."""
        del job
        return await fetching.pod_log(self.api, pod, container, tail_lines=tail_lines)

    async def unstoppable(self) -> str | None:
        """None: deleting a Job stops its pods (the garbage collector deletes them)."""
        return None

    async def delete_job(self, job: Mapping[str, Any]) -> bool:
        """Delete the Job with propagationPolicy Background (its pods go too), its UID as precondition."""
        return await deleting.delete_job(self.api, kube.name(job), kube.uid(job))
