"""``LocalJobAdmin``: ``bucketrun jobs`` on the local executor's state directory, from another process.

The Jobs run inside ``bucketrun serve`` (it holds the directory's lock); this reads their files as they
are (``job_files``) and deletes finished ones at any time. An unfinished Job can only be stopped by the
process that runs it: it is deleted only when no executor holds the directory (``serve`` is stopped,
and would run it again at its next start), under the lock, so none starts meanwhile.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from dispatcher.domain import kube
from dispatcher.domain.errors import PermanentError
from dispatcher.domain.jobs import finished_condition
from dispatcher.executors.admin import JobWithPods
from dispatcher.executors.local.job_files import JobFiles, read_log

RUNNING_ELSEWHERE: Final = (
    "it runs in the local executor of `bucketrun serve`, which alone can stop it: stop serve first "
    "(it runs the Job again at its next start unless the Job is deleted meanwhile)"
)


class LocalJobAdmin:
    """The ``JobAdmin`` of the local executor's state directory *state_dir*."""

    def __init__(self, state_dir: Path) -> None:
        self.files = JobFiles(state_dir)

    async def jobs(self, *, with_pods: bool = True) -> list[JobWithPods]:
        """Every Job on disk with its pods (one per attempt) as its ``status.json`` has them (they are
        in the same file: *with_pods* saves nothing here)."""
        del with_pods
        return await asyncio.to_thread(self._jobs)

    def _jobs(self) -> list[JobWithPods]:
        found: list[JobWithPods] = []
        for name in self.files.names():
            record = self.files.record(name)
            if record is not None and isinstance(record.get("job"), dict):
                found.append((record["job"], list(record.get("pods") or [])))
        return found

    async def read_job(self, name: str) -> dict[str, Any] | None:
        """Job *name* with its status, or None when there is none."""
        record = await asyncio.to_thread(self.files.record, name)
        job = record.get("job") if record is not None else None
        return job if isinstance(job, dict) else None

    async def job_pods(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The Job's pods (one per attempt), oldest first, if the Job on disk is still this one."""
        record = await asyncio.to_thread(self.files.record, kube.name(job))
        if record is None or kube.uid(record.get("job") or {}) != kube.uid(job):
            return []
        return list(record.get("pods") or [])

    async def container_log(
        self, job: Mapping[str, Any], pod: str, container: str, *, tail_lines: int | None = None
    ) -> str | None:
        """The container's log file in the pod's workdir, whole or its last *tail_lines* lines."""
        path = self.files.log_path(kube.name(job), pod, container)
        return await asyncio.to_thread(read_log, path, tail_lines)

    async def unstoppable(self) -> str | None:
        """Why an unfinished Job cannot be deleted now: an executor holds the directory (None if not)."""
        fd = await asyncio.to_thread(self.files.try_lock)
        if fd is None:
            return RUNNING_ELSEWHERE
        os.close(fd)
        return None

    async def delete_job(self, job: Mapping[str, Any]) -> bool:
        """Remove the Job's directory (its pods' workdirs and logs with it). A Job unfinished on disk
        only under the directory's lock: ``PermanentError`` (reason ``executor-running``) while an
        executor holds it."""
        return await asyncio.to_thread(self._delete, kube.name(job), kube.uid(job))

    def _delete(self, name: str, uid: str) -> bool:
        record = self.files.record(name)
        if record is None or finished_condition(record.get("job") or {}) is not None:
            return self.files.remove(name, uid)
        fd = self.files.try_lock()
        if fd is None:
            refusal = f"Job {name} was not deleted: {RUNNING_ELSEWHERE}"
            raise PermanentError(refusal, reason="executor-running")
        try:
            return self.files.remove(name, uid)
        finally:
            os.close(fd)
