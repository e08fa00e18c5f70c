"""The demo's progress lines: one line each time one of its Jobs changes phase (queued, running, done,
failed), whichever executor runs them.

Two readers, one line format: ``LocalProgress`` reads the local executor's state directory (its
``jobs/NAME/status.json`` records hold the Job and its pods), ``KubeProgress`` lists bucketrun's Jobs and
their pods from the Kubernetes API. Both hand the same ``{"job": ..., "pods": [...]}`` record to
``job_phase``, so a Job reads the same on either.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Protocol, TextIO

from dispatcher.adapters.kube.api import KubeApi
from dispatcher.adapters.kube.fetching import list_job_pods, list_jobs
from dispatcher.domain import kube
from dispatcher.domain.constants import ANNOTATION_KEY, LABEL_JOB_CONTROLLER_UID
from dispatcher.domain.jobs import finished_condition
from dispatcher.executors.local.statefiles import read_json
from dispatcher.runtime.settings import ClusterSettings

STARTED_PHASES: Final = frozenset({"Running", "Succeeded", "Failed"})
"""Pod phases after its containers started: the Job is running until the controller marks it finished."""


def job_phase(record: Mapping[str, Any]) -> str:
    """``queued``, ``running``, ``done`` or ``failed`` for a Job record ``{"job": ..., "pods": [...]}``
    (pods oldest first), as the local executor writes it and ``KubeProgress`` builds it."""
    finished = finished_condition(record.get("job", {}))
    if finished is not None:
        return "done" if finished == "Complete" else "failed"
    pods = record.get("pods") or ()
    started = pods and kube.pod_status(pods[-1]).get("phase") in STARTED_PHASES
    return "running" if started else "queued"


def phase_line(name: str, record: Mapping[str, Any], phase: str) -> str:
    """The line printed when Job *name* reaches *phase*: its name, the object it runs on, the phase."""
    key = str(kube.annotations(record.get("job", {})).get(ANNOTATION_KEY, "?"))
    return f"  job {name:<48} {key:<16} {phase}"


class Progress(Protocol):
    """Prints a line whenever one of the demo's Jobs changes phase."""

    async def update(self) -> set[str]:
        """Print what changed since the last call; the names of the failed Jobs seen so far."""
        ...

    def logs_hint(self) -> str:
        """Where a person reads the logs of a failed Job."""
        ...


class _Lines:
    """The phases already printed, so each change prints once."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.seen: dict[str, str] = {}

    def show(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> set[str]:
        for name, record in records:
            phase = job_phase(record)
            if self.seen.get(name) != phase:
                self.seen[name] = phase
                print(phase_line(name, record, phase), file=self._out, flush=True)
        return {name for name, phase in self.seen.items() if phase == "failed"}


class LocalProgress:
    """Progress of the local executor's Jobs, read from its state directory (Jobs of earlier runs, left
    in the same directory, are skipped)."""

    def __init__(self, state_dir: Path, out: TextIO) -> None:
        self._jobs = state_dir / "jobs"
        self._lines = _Lines(out)
        self._since = time.time()

    async def update(self) -> set[str]:
        """Print what changed; the names of failed Jobs seen so far."""
        return self._lines.show(self._records())

    def _records(self) -> Iterable[tuple[str, Mapping[str, Any]]]:
        if not self._jobs.is_dir():
            return
        for directory in sorted(self._jobs.iterdir()):
            if directory.stat().st_mtime < self._since and directory.name not in self._lines.seen:
                continue  # a Job of an earlier run
            record = read_json(directory / "status.json")
            if isinstance(record, dict):
                yield directory.name, record

    def logs_hint(self) -> str:
        """The state directory, where each Job's logs are kept."""
        return f"logs under {self._jobs}"


class KubeProgress:
    """Progress of bucketrun's Jobs in one namespace, read from the Kubernetes API (two lists a call:
    the Jobs, and the pods Jobs created). Use it as an async context manager: it holds a connection."""

    def __init__(self, api: KubeApi, out: TextIO, kubectl: str) -> None:
        self._api = api
        self._lines = _Lines(out)
        self._kubectl = kubectl

    @classmethod
    async def connect(cls, settings: ClusterSettings, out: TextIO, kubectl: str) -> KubeProgress:
        """Progress of the cluster *settings* name; *kubectl* is the command a person would type
        (``KUBECONFIG=... kubectl``), for ``logs_hint``."""
        return cls(await KubeApi.from_settings(settings), out, kubectl)

    async def __aenter__(self) -> KubeProgress:
        """Nothing to start: the connection opens with the first list."""
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the connection."""
        await self._api.close()

    async def update(self) -> set[str]:
        """Print what changed; the names of failed Jobs seen so far."""
        jobs = await list_jobs(self._api)
        pods = await list_job_pods(self._api)
        return self._lines.show(sorted(job_records(jobs, pods), key=lambda record: record[0]))

    def logs_hint(self) -> str:
        """The kubectl command that prints a failed Job's logs."""
        return f"logs: {self._kubectl} logs -n {self._api.namespace} job/NAME --all-containers"


def job_records(
    jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """(name, ``{"job": job, "pods": its pods, oldest first}``) for each Job, its pods matched by the
    Job controller's ``controller-uid`` label."""
    by_uid: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        by_uid.setdefault(kube.labels(pod).get(LABEL_JOB_CONTROLLER_UID, ""), []).append(pod)
    records = []
    for job in jobs:
        owned = by_uid.get(kube.uid(job), [])
        owned.sort(key=lambda pod: str(kube.meta(pod).get("creationTimestamp", "")))
        records.append((kube.name(job), {"job": job, "pods": owned}))
    return records
