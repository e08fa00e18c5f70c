"""The ``local`` executor: runs each Job's pod as local processes, exactly once across restarts.

The embedded default: no cluster, the same rendered Job. Each Job's pod (its ``spec.template``, with
the name, labels and owner the Job controller would give it) runs through ``LocalPodRunner``, with the
ConfigMaps from ``ensure_config_map`` and the Secrets from ``provide_secrets``. What the Job controller
does around it is done here: ``backoffLimit`` (a new pod per failed attempt), ``podFailurePolicy``,
``activeDeadlineSeconds`` (counted from the Job's start, queueing included) and the status.

State directory (``state_dir``)::

    lock                      held (flock) while an executor uses the directory
    configmaps/<name>.json    ConfigMaps seen by ensure_config_map (their data outlive a restart)
    jobs/<name>/manifest.json the Job as created, with its uid: the claim of the name
    jobs/<name>/status.json   {"job": the Job with its Kubernetes-shaped status, "pods": [Pod status …]}
    jobs/<name>/pods/<pod>/   each pod's workdir: logs/<container>.log, volumes, scratch
    staging/                  claims being prepared (emptied at start)

**Exactly once.** A Job name is claimed by renaming a staging directory that already holds
``manifest.json`` (and the first ``status.json``) to ``jobs/<name>``; the rename fails when the name
exists, so a second create of the name, by this process or after a restart, is ``EXISTS``. (Creating
``jobs/<name>`` with ``mkdir`` and writing the manifest afterwards would leave a claim without a
manifest if the process died in between, and that Job would never run.)

**Status.** ``status.json`` is replaced atomically on every change (container started, exited, Job
finished), so a reader never sees half of it; the claim and the final status are also flushed to disk.

**Restarts.** Jobs claimed but not finished when the previous process stopped are run again, in the
order they were created: they count as created (their claim stands) and as active. The pod that was
running is recorded as Failed with a ``DisruptionTarget`` condition (reason ``ExecutorRestarted``) and
does not count against ``backoffLimit``; the Job's ``startTime`` (and so its deadline) starts again, as
Kubernetes does when a suspended Job resumes. Their names are in ``recovered``. ``close()`` leaves the
Jobs that are running unfinished on disk, the same way (their processes are killed).

**Recorded, durably.** ``finished()`` hands out each finished Job that is not yet marked recorded:
those that finish in this process, and, first, those that finished before a restart without being
marked (a crash between the final status and the watcher's record). ``mark_recorded`` stores the mark
as the ``bucketrun.io/recorded`` annotation (the Job's UID) in ``status.json``, flushed to disk, as the
watcher annotates a Job on a cluster; a Job is handed out again after every restart until it is marked.
``finished_jobs`` feeds them to the watcher's recorder (``LocalFinishedJobs``), which reads the pods
from ``status.json`` and the logs from the pods' workdirs (``job_pods``, ``container_log``).

**Concurrency.** At most ``max_running`` pods run at once; other Jobs wait, in creation order, with a
Pending pod, and count as active meanwhile.

Only Jobs of one pod are supported (``completions`` and ``parallelism`` 1), and not ``suspend: true``
(there is no Kueue to admit them): such Jobs are refused as invalid.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import structlog

from dispatcher.domain import kube
from dispatcher.domain.constants import ANNOTATION_RECORDED
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.domain.jobs import (
    CreateOutcome,
    JobFacts,
    JobIndex,
    finished_condition,
    is_recorded,
    job_service,
)
from dispatcher.domain.timestamps import rfc3339
from dispatcher.executors.base import JobHandler
from dispatcher.executors.local.finished import LocalFinishedJobs
from dispatcher.executors.local.job_files import MANIFEST, STATUS, JobFiles, is_object_name, read_log
from dispatcher.executors.local.pod.model import ContainerState
from dispatcher.executors.local.pod.spec import parse_pod
from dispatcher.executors.local.runner import LocalPodRunner, PodSpecError, StaticPodRefs
from dispatcher.executors.local.statefiles import (
    claim_directory,
    dump_json,
    read_json,
    write_json_atomic,
)
from dispatcher.executors.local.status import (
    DEFAULT_BACKOFF_LIMIT,
    MESSAGE_DEADLINE,
    REASON_DEADLINE,
    Finish,
    Retry,
    after_pod,
    interrupted_pod_status,
    job_status,
    pod_manifest,
    pod_name,
    pod_status,
    was_started,
)
from dispatcher.rendering.manifest_checks import check_manifest
from dispatcher.rendering.secrets import ServiceSecret
from dispatcher.runtime.settings import Settings

_log = structlog.get_logger(__name__)

_REASON_INVALID: Final = "invalid-manifest"

JobRecord = dict[str, Any]
"""The content of ``status.json``: ``{"job": <Job with status>, "pods": [<Pod with status>, …]}``."""


@dataclass(eq=False)
class _LocalJob:
    """One unfinished Job in memory."""

    manifest: dict[str, Any]
    directory: Path
    start_time: datetime
    pods: list[dict[str, Any]] = field(default_factory=list)
    succeeded: int = 0
    failed: int = 0
    finish: Finish | None = None
    finished_at: datetime | None = None
    expired: bool = False
    runner: LocalPodRunner | None = None

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    def record(self) -> JobRecord:
        status = job_status(
            start_time=self.start_time,
            pods=self.pods,
            succeeded=self.succeeded,
            failed=self.failed,
            finish=self.finish,
            finished_at=self.finished_at,
        )
        return {"job": {**self.manifest, "status": status}, "pods": self.pods}


class LocalExecutor:
    """Runs Jobs as local processes; see the module docstring for the guarantees."""

    def __init__(self, state_dir: Path, *, max_running: int = 4, grace_seconds: float = 5.0) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {max_running}")
        if grace_seconds < 0:
            raise ValueError(f"grace_seconds must not be negative, got {grace_seconds}")
        self.state_dir = Path(state_dir)
        self._files = JobFiles(self.state_dir)
        self._jobs_dir = self._files.jobs_dir
        self._config_dir = self.state_dir / "configmaps"
        self._staging_dir = self._files.staging_dir
        self.max_running = max_running
        self._grace = grace_seconds
        self._slots = asyncio.Semaphore(max_running)  # FIFO: waiters are served in arrival order
        self._config_maps: dict[str, dict[str, str]] = {}
        self._secrets: dict[str, dict[str, bytes]] = {}
        self._refs = StaticPodRefs(config_maps=self._config_maps, secrets=self._secrets)
        self._index = JobIndex()
        self._jobs: dict[str, _LocalJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._claims: set[asyncio.Future[bool]] = set()
        # Names only: a record is read when it is handed out, so unconsumed notifications stay small.
        self._finished: asyncio.Queue[str | None] = asyncio.Queue()
        self._lock_fd: int | None = None
        self._closed = False
        self.recovered: tuple[str, ...] = ()
        """Jobs found unfinished by ``start()`` and run again, in creation order."""
        self.unrecorded: tuple[str, ...] = ()
        """Jobs found finished but not marked recorded by ``start()``, handed out first by ``finished()``."""

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self, *, count_jobs: bool = True) -> None:
        """Take the state directory, load its ConfigMaps and Jobs, and run the unfinished Jobs again.
        The Jobs are counted whatever *count_jobs* says: they are this process's own.

        ``RuntimeError`` if another executor holds the directory.
        """
        del count_jobs
        if self._lock_fd is not None:
            return
        for directory in (self._jobs_dir, self._config_dir, self._staging_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._files.try_lock()
        if self._lock_fd is None:
            raise RuntimeError(f"state directory {self.state_dir} is in use by another local executor")
        for leftover in self._staging_dir.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)  # claims that never completed
        for path in sorted(self._config_dir.glob("*.json")):
            config_map = read_json(path)
            if isinstance(config_map, dict):
                self._config_maps[path.stem] = dict(config_map.get("data") or {})
        recovered, unrecorded = self._load_jobs()
        self.recovered = tuple(job.name for job in recovered)
        self.unrecorded = unrecorded
        for name in unrecorded:
            self._finished.put_nowait(name)
        for job in recovered:
            _log.warning("local executor: running an unfinished Job again", job=job.name)
            self._launch(job)

    async def close(self) -> None:
        """Stop: kill running pods (their Jobs stay unfinished on disk), end ``finished()`` iterators."""
        if self._closed:
            return
        self._closed = True
        if self._claims:
            await asyncio.wait(list(self._claims))  # a claim in progress ends before the lock is released
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._finished.put_nowait(None)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    async def ready(self) -> bool:
        """True between ``start()`` and ``close()``."""
        return self._lock_fd is not None and not self._closed

    # -- the objects a Job needs -------------------------------------------------------------------

    async def ensure_config_map(self, doc: Mapping[str, Any]) -> None:
        """Keep ConfigMap *doc* for the pods that mount it (and on disk, for after a restart)."""
        name = kube.meta(doc).get("name")
        if not isinstance(name, str) or not is_object_name(name):
            raise PermanentError(
                f"ConfigMap name {name!r} is not a DNS-1123 subdomain", reason=_REASON_INVALID
            )
        if name in self._config_maps:
            return
        problems = check_manifest(doc)
        data = doc.get("data") or {}
        if not isinstance(data, Mapping) or not all(isinstance(v, str) for v in data.values()):
            problems.append("data must map keys to strings")
        if problems:
            raise PermanentError(f"ConfigMap {name}: {'; '.join(problems)}", reason=_REASON_INVALID)
        stored = {"metadata": {"name": name}, "data": dict(data)}
        await asyncio.to_thread(write_json_atomic, self._config_dir / f"{name}.json", stored, durable=True)
        self._config_maps[name] = stored["data"]

    async def provide_secrets(self, secrets: Sequence[ServiceSecret]) -> None:
        """Keep the services' Secrets for the pods that refer to them (in memory only: never on disk, so
        give them before ``start`` runs the unfinished Jobs of a previous process again)."""
        for secret in secrets:
            await self.ensure_secret(secret.name, secret.plain_values())

    async def ensure_secret(self, name: str, data: Mapping[str, str | bytes]) -> bool:
        """Keep Secret *name* for the pods that refer to it (in memory only); True if it changed."""
        encoded = {
            key: value.encode() if isinstance(value, str) else bytes(value) for key, value in data.items()
        }
        changed = self._secrets.get(name) != encoded
        self._secrets[name] = encoded
        return changed

    # -- Jobs ----------------------------------------------------------------------------------------

    async def create_job(self, doc: Mapping[str, Any]) -> CreateOutcome:
        """Claim the Job's name and queue its pod: ``CREATED``, or ``EXISTS`` if the name was claimed.

        ``PermanentError(reason="invalid-manifest")`` for a Job the API server (or this executor)
        would refuse.
        """
        if self._lock_fd is None or self._closed:
            raise RuntimeError("the local executor is not running: call start() first")
        name = _check_job(doc)
        directory = self._jobs_dir / name
        if directory.exists():
            return CreateOutcome.EXISTS
        now = _now()
        manifest = _json_copy(doc)
        metadata = manifest["metadata"]
        metadata.setdefault("namespace", "default")
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = rfc3339(now)
        manifest.pop("status", None)
        job = _LocalJob(manifest, directory, now)
        job.pods.append(self._pending_pod(job))
        files = {MANIFEST: dump_json(manifest), STATUS: dump_json(job.record())}
        claim = asyncio.ensure_future(asyncio.to_thread(claim_directory, directory, self._staging_dir, files))
        # The Job is launched by the claim itself: a caller cancelled meanwhile must not leave a claimed
        # name whose Job never runs (a redelivered event would find it EXISTS).
        claim.add_done_callback(lambda done: self._launch(job) if _claimed(done) else None)
        self._claims.add(claim)
        claim.add_done_callback(self._claims.discard)
        try:
            claimed = await asyncio.shield(claim)
        except OSError as error:
            raise TransientError(
                f"cannot claim Job {name} in {self._jobs_dir}: {error}", kind="local-state"
            ) from error
        return CreateOutcome.CREATED if claimed else CreateOutcome.EXISTS

    @property
    def counting(self) -> bool:
        """Always: the executor sees its own Jobs claimed and finished, and counts them as it goes."""
        return True

    async def count_jobs(self, enabled: bool) -> None:
        """Nothing: counting the executor's own Jobs costs nothing."""
        del enabled

    def active_jobs(self, service: str) -> int:
        """The service's Jobs not finished yet (running or waiting for a slot)."""
        return self._index.active(service)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, re-checking after each change of the Job counts."""
        await self._index.wait_until(predicate)

    def job_status(self, name: str) -> JobRecord | None:
        """The Job's current record (as in ``status.json``), or None if no such Job was created."""
        job = self._jobs.get(name)
        if job is not None:
            return copy.deepcopy(job.record())  # the caller's to keep: the live one changes
        return self._files.record(name)

    def log_path(self, name: str, container: str, *, attempt: int = -1) -> Path | None:
        """The log file of *container* in the Job's pod number *attempt* (default: the last one)."""
        record = self.job_status(name)
        if record is None or not record["pods"]:
            return None
        pod = str(record["pods"][attempt]["metadata"]["name"])
        return self._files.log_path(name, pod, container)

    async def finished(self) -> AsyncIterator[tuple[str, JobRecord]]:
        """Each Job not marked recorded, once per process, as ``(name, record)``: first those found
        finished by ``start()``, then each one finishing here. Ends after ``close()``.

        Meant for one consumer: two iterators would share the notifications between them.
        """
        while True:
            name = await self._finished.get()
            if name is None:
                self._finished.put_nowait(None)  # let any other iterator end too
                return
            record = self.job_status(name)
            if record is not None:
                yield name, record

    # -- finished Jobs, for the watcher ----------------------------------------------------------------

    def finished_jobs(self, handle: JobHandler, settings: Settings) -> LocalFinishedJobs:
        """``finished()`` feeding *handle*, one Job at a time, transient failures retried with the
        dispatch retry delays."""
        return LocalFinishedJobs(
            self,
            handle,
            retry_base=settings.dispatch.retry_base_delay,
            retry_cap=settings.dispatch.max_retry_delay,
        )

    async def job_pods(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The pods of the executor's record of the Job (one per attempt), oldest first."""
        record = self.job_status(kube.name(job))
        return list(record["pods"]) if record is not None else []

    async def container_log(
        self, job: Mapping[str, Any], pod: str, container: str, tail_lines: int
    ) -> str | None:
        """The last *tail_lines* lines of the container's log file in the newest pod's workdir (the
        file's end only is read: a log may be large)."""
        del pod
        path = self.log_path(kube.name(job), container)
        if path is None:
            return None
        return await asyncio.to_thread(read_log, path, tail_lines)

    async def mark_recorded(self, job: Mapping[str, Any]) -> None:
        """Mark finished *job* recorded (with its UID), durably: ``finished()`` never hands it out again,
        in this process or after a restart. A Job unknown, unfinished or of another UID is left alone
        (the mark is for the Job that was recorded, not for a later one of the same name)."""
        await asyncio.to_thread(self._mark_recorded, kube.name(job), kube.uid(job))

    def _mark_recorded(self, name: str, uid: str) -> None:
        if name in self._jobs:
            return
        record = self._files.record(name)
        if record is None or finished_condition(record["job"]) is None:
            return
        metadata = record["job"]["metadata"]
        if metadata.get("uid") != uid:
            return
        metadata.setdefault("annotations", {})[ANNOTATION_RECORDED] = uid
        with contextlib.suppress(FileNotFoundError):  # deleted meanwhile (`bucketrun jobs delete`)
            write_json_atomic(self._jobs_dir / name / STATUS, record, durable=True)

    # -- running -------------------------------------------------------------------------------------

    def _launch(self, job: _LocalJob) -> None:
        self._jobs[job.name] = job
        self._index.observe(JobFacts(job.name, job_service(job.manifest), finished=False))
        if self._closed:
            return  # claimed during close(): it runs after the next start(), like any unfinished Job
        task = asyncio.create_task(self._run_job(job), name=f"local job {job.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_report_crash)

    async def _run_job(self, job: _LocalJob) -> None:
        loop = asyncio.get_running_loop()
        seconds = job.manifest["spec"].get("activeDeadlineSeconds")
        deadline = loop.time() + float(seconds) if seconds is not None else None
        timer = loop.call_at(deadline, self._expire, job) if deadline is not None else None
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._slots.acquire()
            except TimeoutError:
                job.expired = True
                self._fail_pending_pod(job)
                self._finish(job, Finish("Failed", REASON_DEADLINE, MESSAGE_DEADLINE))
                return
            try:
                while job.finish is None:
                    await self._attempt(job)
            finally:
                self._slots.release()
        finally:
            if timer is not None:
                timer.cancel()

    async def _attempt(self, job: _LocalJob) -> None:
        """Run the Job's pending pod once and apply the controller's decision."""
        pod = job.pods[-1]
        if job.expired:
            self._fail_pending_pod(job)
            self._finish(job, Finish("Failed", REASON_DEADLINE, MESSAGE_DEADLINE))
            return
        spec = job.manifest["spec"]
        restart_policy = spec["template"]["spec"].get("restartPolicy")
        started = _now()
        manifest = pod_manifest(
            job.manifest, name=pod["metadata"]["name"], uid=pod["metadata"]["uid"], created=started
        )
        backoff_limit = spec.get("backoffLimit")
        restarts = DEFAULT_BACKOFF_LIMIT if backoff_limit is None else int(backoff_limit)
        try:
            runner = LocalPodRunner(
                manifest,
                workdir=job.directory / "pods" / pod["metadata"]["name"],
                refs=self._refs,
                on_change=lambda _state: self._on_change(job, pod, started),
                grace_seconds=self._grace,
                # OnFailure restarts the containers in place, each restart counting against the limit.
                max_restarts=restarts if restart_policy == "OnFailure" else 0,
            )
        except PodSpecError as error:  # checked at create; only a hand-edited state file gets here
            pod["status"] = {"phase": "Failed", "reason": "InvalidPodSpec", "message": str(error)}
            job.failed += 1
            self._finish(job, Finish("Failed", "InvalidPodSpec", str(error)))
            return
        job.runner = runner
        try:
            outcome = await runner.run()
        finally:
            job.runner = None
        pod["status"] = pod_status(
            (*outcome.init_containers, *outcome.containers), started=started, outcome=outcome
        )
        decision = after_pod(spec, pod, failed_before=job.failed, deadline_exceeded=job.expired)
        if outcome.phase == "Succeeded":
            job.succeeded += 1
        elif not isinstance(decision, Retry) or decision.counted:
            job.failed += 1
        if isinstance(decision, Finish):
            self._finish(job, decision)
            return
        job.pods.append(self._pending_pod(job))
        self._write_status(job)

    def _on_change(self, job: _LocalJob, pod: dict[str, Any], started: datetime) -> None:
        runner = job.runner
        states: tuple[ContainerState, ...] = runner.container_states() if runner is not None else ()
        pod["status"] = pod_status(states, started=started)
        self._write_status(job)

    def _expire(self, job: _LocalJob) -> None:
        """The Job's activeDeadlineSeconds passed: stop its pod (a waiting Job is failed by its task)."""
        job.expired = True
        if job.runner is not None:
            task = asyncio.create_task(
                job.runner.kill(REASON_DEADLINE, MESSAGE_DEADLINE), name=f"deadline of {job.name}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _finish(self, job: _LocalJob, finish: Finish) -> None:
        # Synchronous on purpose: close() cancels the Job tasks, and nothing may come between the final
        # status on disk and the bookkeeping (a few milliseconds of fsync in the event loop).
        job.finish = finish
        job.finished_at = _now()
        record = job.record()
        write_json_atomic(job.directory / STATUS, record, durable=True)
        del self._jobs[job.name]
        self._index.observe(JobFacts.of(record["job"]))
        self._finished.put_nowait(job.name)
        _log.info(
            "local executor: Job finished", job=job.name, condition=finish.condition, reason=finish.reason
        )

    # -- records -------------------------------------------------------------------------------------

    @staticmethod
    def _pending_pod(job: _LocalJob) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name(job.name), "uid": str(uuid.uuid4())},
            "status": {"phase": "Pending"},
        }

    @staticmethod
    def _fail_pending_pod(job: _LocalJob) -> None:
        pod = job.pods[-1]
        pod["status"] = {"phase": "Failed", "reason": REASON_DEADLINE, "message": MESSAGE_DEADLINE}
        job.failed += 1

    def _write_status(self, job: _LocalJob) -> None:
        # Progress is written without fsync: it is replaced atomically, and the final status is durable.
        write_json_atomic(job.directory / STATUS, job.record(), durable=False)

    def _load_jobs(self) -> tuple[list[_LocalJob], tuple[str, ...]]:
        """Index every Job on disk. The unfinished ones, made ready to run again, and the names of the
        finished ones not marked recorded, each in creation order."""
        unfinished: list[_LocalJob] = []
        unrecorded: list[tuple[str, str]] = []
        for directory in self._jobs_dir.iterdir():
            manifest = read_json(directory / MANIFEST)
            if not isinstance(manifest, dict):
                _log.warning(
                    "local executor: ignoring a Job directory without a manifest", path=str(directory)
                )
                continue
            record = read_json(directory / STATUS) or {}
            job_doc = record.get("job") or manifest
            if finished_condition(job_doc) is not None:
                self._index.observe(JobFacts.of(job_doc))
                if not is_recorded(job_doc):
                    unrecorded.append((job_doc["metadata"].get("creationTimestamp", ""), directory.name))
                continue
            job = _LocalJob(manifest, directory, _now(), pods=list(record.get("pods") or []))
            job.failed = int(kube.job_status(job_doc).get("failed", 0))
            if job.pods and was_started(job.pods[-1]):
                last = job.pods[-1]
                last["status"] = interrupted_pod_status(last["status"])
            if not job.pods or job.pods[-1]["status"].get("phase") != "Pending":
                job.pods.append(self._pending_pod(job))
            unfinished.append(job)
        unfinished.sort(key=lambda job: (job.manifest["metadata"].get("creationTimestamp", ""), job.name))
        return unfinished, tuple(name for _, name in sorted(unrecorded))


def _check_job(doc: Mapping[str, Any]) -> str:
    """The Job's name, or ``PermanentError`` naming what the API server or this executor would refuse."""
    name = kube.meta(doc).get("name")
    problems = []
    if not isinstance(name, str) or not name:
        problems.append("metadata.name is required")
    problems += check_manifest({**doc, "kind": "Job"})
    spec = doc.get("spec") or {}
    for key in ("completions", "parallelism"):
        if spec.get(key, 1) != 1:
            problems.append(f"spec.{key} {spec[key]!r}: the local executor runs Jobs of exactly one pod")
    if spec.get("suspend"):
        problems.append("spec.suspend true needs Kueue to admit the Job; the local executor has none")
    template = spec.get("template")
    if not isinstance(template, Mapping) or not isinstance(template.get("spec"), Mapping):
        problems.append("spec.template.spec is required")
    elif not problems:
        try:
            parse_pod({"metadata": {"name": f"{name}-check"}, "spec": template["spec"]})
        except PodSpecError as error:
            problems.append(f"spec.template.{error}")
    if problems:
        raise PermanentError(f"Job {name!r} is invalid: {'; '.join(problems)}", reason=_REASON_INVALID)
    return str(name)


def _report_crash(task: asyncio.Task[None]) -> None:
    # A Job task only ends with an exception on a bug or a failing disk; the Job then stays unfinished
    # (it runs again after a restart), and this must not go unnoticed.
    if not task.cancelled() and task.exception() is not None:
        _log.error("local executor: a Job task failed", task=task.get_name(), error=repr(task.exception()))


def _claimed(claim: asyncio.Future[bool]) -> bool:
    return not claim.cancelled() and claim.exception() is None and claim.result()


def _json_copy(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy through JSON: what is stored is exactly what can be read back."""
    try:
        copied = json.loads(dump_json(doc))
    except (TypeError, ValueError) as error:
        raise PermanentError(f"Job is not plain JSON data: {error}", reason=_REASON_INVALID) from error
    if not isinstance(copied, dict):
        raise PermanentError("a Job must be a mapping", reason=_REASON_INVALID)
    return copied


def _now() -> datetime:
    return datetime.now(UTC)
