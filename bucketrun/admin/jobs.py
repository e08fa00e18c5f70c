"""Jobs where they run first, then from the records location: the pages, logs and deletes that
``bucketrun jobs`` and the API's ``/system/logs`` routes share.

Where Jobs run (``dispatcher.executors.admin.JobAdmin``: the cluster, or the local executor's state
directory) knows the Jobs that still exist, running ones included; the records location keeps the
finished ones after their Jobs and pods are gone (TTL, deletes), until the records retention deletes
them. A Job in both is shown from where it runs.

Pages are newest first (by the Job's creation time) and follow a cursor, not a page number: the next
page starts after the last Job shown, so Jobs created meanwhile never shift it. Records are listed (no
read) and read newest-written first, only as far as the page needs: a record is written after its Job
was created, so once a page's Jobs are all newer than the next unread record (give or take
``_CLOCK_SLACK`` between the cluster's and the store's clocks), no unread record belongs on it.

``delete_jobs`` prints a line per Job as it goes (``emit``) and returns ``(message, exit code)``, as
``bucketrun.admin.commands`` does, so a failure half-way still shows what was done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from dispatcher.adapters.kube import ClusterConfigError
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain import kube
from dispatcher.domain.errors import BucketrunError
from dispatcher.domain.jobs import api_time, job_service
from dispatcher.domain.record import container_names, tail
from dispatcher.executors.admin import JobAdmin, JobStatus, JobSummary, summarize, summarize_record
from dispatcher.executors.build import job_admin_of
from dispatcher.runtime.settings import Settings
from watcher.records import RecordRef, RecordStore

EXIT_OK: Final = 0
EXIT_NOT_FOUND: Final = 1
"""A Job named was found neither where Jobs run nor in the records (or has no such log)."""
EXIT_SKIPPED: Final = 3
"""``delete``: some Jobs were left alone (unfinished or not yet recorded, without ``force``)."""
EXIT_FAILED: Final = 4
"""The cluster or the store failed (``delete``: the lines emitted before were done)."""
DEFAULT_LIMIT: Final = 100
RUN_CONTAINER: Final = "run"
"""The container that runs the service's script (OSCAR's ``oscar-container``)."""
DELETE_STATUSES: Final = {
    "succeeded": frozenset({JobStatus.SUCCEEDED}),
    "failed": frozenset({JobStatus.FAILED}),
    "all": frozenset(JobStatus),
}
"""What ``delete_jobs(service=..., status=...)`` may be asked for, and the statuses each selects."""
_READ_AHEAD: Final = 32
"""Records read at once while filling a page."""
_CLOCK_SLACK: Final = timedelta(minutes=5)
_OLDEST: Final = datetime.min.replace(tzinfo=UTC)

Emit = Callable[[str], object]


def record_store(settings: Settings) -> RecordStore:
    """The records location of *settings*."""
    return RecordStore(
        Storage(settings.storage), settings.storage.records_bucket, settings.storage.records_prefix
    )


def nowhere(name: str) -> str:
    """The error for a Job found neither where Jobs run nor in the records."""
    return f"error: no Job {name!r} where Jobs run or in the records location"


# -- pages -------------------------------------------------------------------------------------------

Cursor = tuple[datetime, str]
"""A Job's place in the newest-first order: (creation time, name)."""


def cursor_of(summary: JobSummary) -> Cursor:
    """*summary*'s place in the order (a Job of unknown creation time sorts as the oldest)."""
    return (summary.created_at or _OLDEST, summary.name)


def format_cursor(cursor: Cursor) -> str:
    """The token of a place: ``<creation time>/<name>`` (URL-safe: a DNS name after an RFC 3339 time)."""
    return f"{cursor[0].astimezone(UTC).isoformat().replace('+00:00', 'Z')}/{cursor[1]}"


def read_cursor(token: str) -> Cursor | None:
    """The place *token* names, or None when it is not a token ``format_cursor`` wrote."""
    moment, _, name = token.partition("/")
    when = api_time(moment)
    if when is None or not name:
        return None
    return (when, name)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of Jobs, newest first, and where the next page starts (None: this is the last)."""

    jobs: list[JobSummary]
    next: Cursor | None


def _wanted(summary: JobSummary, statuses: Collection[JobStatus], before: Cursor | None) -> bool:
    return (not statuses or summary.status in statuses) and (before is None or cursor_of(summary) < before)


def _page_complete(rows: list[JobSummary], limit: int, next_written: datetime | None) -> bool:
    """Whether no record written at *next_written* or earlier can be among the first ``limit`` + 1 of
    *rows* (newest first): the one past the page is known too, so the page knows if there is more."""
    if limit == 0 or next_written is None or len(rows) <= limit:
        return False
    return cursor_of(rows[limit])[0] > next_written + _CLOCK_SLACK


async def newest_jobs(
    admin: JobAdmin,
    store: RecordStore,
    *,
    service: str | None = None,
    statuses: Collection[JobStatus] = (),
    limit: int = DEFAULT_LIMIT,
    before: Cursor | None = None,
) -> Page:
    """The page of Jobs (of *service*, with *statuses*) that comes after *before*: at most *limit* (0:
    all), newest first; the Jobs where they run, then those only their records keep."""
    live = [summarize(job, pods) for job, pods in await admin.jobs()]
    live = [summary for summary in live if service is None or summary.service == service]
    names = {summary.name for summary in live}
    rows = sorted((s for s in live if _wanted(s, statuses, before)), key=cursor_of, reverse=True)
    refs = [ref for ref in await store.status_objects(service) if ref.name not in names]
    refs.sort(key=lambda ref: ref.written or _OLDEST, reverse=True)
    for start in range(0, len(refs), _READ_AHEAD):
        if _page_complete(rows, limit, refs[start].written):
            break
        rows += [
            summary
            for summary in await _summaries(store, refs[start : start + _READ_AHEAD])
            if _wanted(summary, statuses, before)
        ]
        rows.sort(key=cursor_of, reverse=True)
    if limit and len(rows) > limit:
        return Page(rows[:limit], cursor_of(rows[limit - 1]))
    return Page(rows, None)


async def _summaries(store: RecordStore, refs: Sequence[RecordRef]) -> list[JobSummary]:
    records = await asyncio.gather(*(store.read(ref.service, ref.name) for ref in refs))
    return [summarize_record(record) for record in records if record is not None]


# -- logs --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobLogs:
    """What ``read_logs`` found: the Job's newest pod's logs, else its record's copies."""

    job: Mapping[str, Any] | None
    """The Job while it exists (None: gone, or not *service*'s)."""
    asked: list[str]
    """The containers asked of the Job's newest pod (none without a Job)."""
    record: Mapping[str, Any] | None
    """The record read when no pod had a log (None: the pod had one, or there is no record)."""
    texts: dict[str, str | None]
    """Each container asked of the source read last, with its log (None: that source has none)."""

    @property
    def found(self) -> bool:
        """Some container's log was read."""
        return any(text is not None for text in self.texts.values())


def chosen_containers(container: str | None, *, every: bool, available: Sequence[str]) -> list[str]:
    """The containers whose logs are read: *container*, else every one *available* with *every*, else
    the ``run`` container."""
    if container:
        return [container]
    return list(available) if every else [RUN_CONTAINER]


async def read_logs(
    admin: JobAdmin,
    store: RecordStore,
    name: str,
    *,
    container: str | None = None,
    every: bool = False,
    tail_lines: int | None = None,
    service: str | None = None,
) -> JobLogs:
    """The logs of Job *name*'s chosen containers (``chosen_containers``), whole or their last
    *tail_lines* lines: from its newest pod while the Job exists and some container of it has a log,
    else from its newest record. With *service*, a Job or record of another service is not looked at."""
    job = await admin.read_job(name)
    if job is not None and service is not None and job_service(job) != service:
        job = None
    asked: list[str] = []
    if job is not None:
        asked = chosen_containers(container, every=every, available=container_names(job))
        texts = await _live_logs(admin, job, asked, tail_lines)
        if any(text is not None for text in texts.values()):
            return JobLogs(job, asked, None, texts)
    found = await store.find(name, service=service)
    if not found:
        return JobLogs(job, asked, None, {})
    record = found[-1].record
    kept = list(record.get("logs") or {})  # in the Job's container order
    names = chosen_containers(container, every=every, available=kept)
    texts = {each: await store.read_log(str(record.get("service")), name, each) for each in names}
    if tail_lines is not None:
        texts = {each: None if text is None else tail(text, tail_lines) for each, text in texts.items()}
    return JobLogs(job, asked, record, texts)


async def _live_logs(
    admin: JobAdmin, job: Mapping[str, Any], names: Sequence[str], tail_lines: int | None
) -> dict[str, str | None]:
    pods = await admin.job_pods(job)
    if not pods:
        return dict.fromkeys(names)
    pod = kube.name(pods[-1])
    return {each: await admin.container_log(job, pod, each, tail_lines=tail_lines) for each in names}


# -- delete ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A Job chosen for deletion: its summary, and its document while it exists."""

    summary: JobSummary
    job: Mapping[str, Any] | None


def refusal(summary: JobSummary, *, force: bool, unstoppable: str | None) -> str | None:
    """Why the Job must be left alone (None: delete it). An unfinished Job is deleted only with *force*,
    and not at all where it cannot be stopped from here (*unstoppable* says why); a finished one not
    yet recorded only with *force*."""
    if not summary.live:
        return None
    if not summary.status.finished:
        if unstoppable:
            return f"not finished, and {unstoppable}"
        return None if force else "not finished (pending or running); --force deletes it and stops its pods"
    if summary.recorded or force:
        return None
    return "finished but not recorded yet (the watcher records it soon); --force deletes it unrecorded"


@dataclass
class Tally:
    """What a delete did."""

    jobs: int = 0
    records: int = 0
    skipped: int = 0

    def summary(self, *, dry_run: bool, selection: str | None) -> str:
        """The last line: counts, or that the selection matched nothing."""
        if selection is not None and not (self.jobs or self.records or self.skipped):
            return f"no Jobs of {selection}"
        counts = f"{self.jobs} job(s) and {self.records} record(s)"
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        if dry_run:
            return f"dry run: would delete {counts}{skipped}; nothing was deleted"
        return f"deleted {counts}{skipped}"


@dataclass(frozen=True, slots=True)
class Deletion:
    """Which Jobs a delete is for, and how far it goes."""

    names: Sequence[str] = ()
    """These Jobs (of ``service`` when it is given too)…"""
    service: str | None = None
    status: str | None = None
    """…or *service*'s Jobs with this status (a key of ``DELETE_STATUSES``)."""
    records: bool = False
    """Delete their records too, and those of Jobs only their records keep."""
    force: bool = False
    """Also unfinished and unrecorded Jobs (``refusal``)."""
    dry_run: bool = False
    tally: Tally = field(default_factory=Tally)


async def delete_jobs(
    settings: Settings,
    names: Sequence[str] = (),
    *,
    service: str | None = None,
    status: str | None = None,
    records: bool = False,
    force: bool = False,
    dry_run: bool = False,
    emit: Emit = print,
) -> tuple[str, int]:
    """Delete the Jobs *names* (of *service* only, when both are given), or *service*'s Jobs with
    *status* (``succeeded``, ``failed``, ``all``), with their pods, and with *records* their records; a
    line per Job through *emit*. Returns (message for the error stream, exit code)."""
    ask = Deletion(names, service, status, records, force, dry_run)
    try:
        async with job_admin_of(settings.cluster) as admin:
            missing = await _delete_chosen(admin, record_store(settings), ask, emit)
    except ClusterConfigError:
        raise
    except BucketrunError as error:
        return f"error: {error}\nstopped; the lines above were done", EXIT_FAILED
    emit(ask.tally.summary(dry_run=dry_run, selection=None if names else _selection(service, status)))
    if missing:
        return "\n".join(missing), EXIT_NOT_FOUND
    return "", EXIT_SKIPPED if ask.tally.skipped else EXIT_OK


async def _delete_chosen(admin: JobAdmin, store: RecordStore, ask: Deletion, emit: Emit) -> list[str]:
    """Delete what *ask* names, counting in its tally; a line per name found nowhere."""
    if ask.names:
        targets, missing = await _named(admin, store, ask.names, records=ask.records, service=ask.service)
    else:
        targets = await _selected(admin, store, ask.service or "", ask.status or "all", ask.records)
        missing = []
    unstoppable = await admin.unstoppable() if any(map(_unfinished, targets)) else None
    for target in targets:
        why = refusal(target.summary, force=ask.force, unstoppable=unstoppable)
        if why is None:
            await _delete_one(admin, store, target, ask, emit)
        else:
            emit(f"skip job {target.summary.name}: {why}")
            ask.tally.skipped += 1
    return missing


def _unfinished(target: Target) -> bool:
    return target.summary.live and not target.summary.status.finished


def _selection(service: str | None, status: str | None) -> str:
    return f"service {service}" + ("" if status == "all" else f" with status {status}")


async def _named(
    admin: JobAdmin, store: RecordStore, names: Sequence[str], *, records: bool, service: str | None
) -> tuple[list[Target], list[str]]:
    """The Jobs *names* (of *service*; with *records*, also those only their records keep), and a line
    per name found nowhere."""
    targets: list[Target] = []
    missing: list[str] = []
    for name in dict.fromkeys(names):
        job = await admin.read_job(name)
        owner = None if job is None else job_service(job)
        if job is not None and owner is not None and (service is None or owner == service):
            targets.append(Target(summarize(job, []), job))
            continue
        if job is not None and owner is None:
            missing.append(f"error: Job {name!r} is not bucketrun's (it has no service label); left alone")
            continue
        stored = await store.find(name, service=service)
        if stored and records:
            targets += [Target(summarize_record(each.record), None) for each in stored]
        elif stored:
            missing.append(f"error: Job {name!r} is gone; only its record is left (--records deletes it)")
        else:
            missing.append(nowhere(name))
    return targets, missing


async def _selected(
    admin: JobAdmin, store: RecordStore, service: str, status: str, records: bool
) -> list[Target]:
    """*service*'s Jobs with *status*, and with *records* those only their records keep, newest first."""
    wanted = DELETE_STATUSES[status]
    existing = await admin.jobs(with_pods=False)  # finished or not is all that matters here
    targets = [
        Target(summary, job)
        for job, pods in existing
        if (summary := summarize(job, pods)).service == service and summary.status in wanted
    ]
    if records:
        live = {kube.name(job) for job, _ in existing}
        refs = [ref for ref in await store.status_objects(service) if ref.name not in live]
        targets += [Target(each, None) for each in await _summaries(store, refs) if each.status in wanted]
    targets.sort(key=lambda target: cursor_of(target.summary), reverse=True)
    return targets


async def _delete_one(admin: JobAdmin, store: RecordStore, target: Target, ask: Deletion, emit: Emit) -> None:
    summary = target.summary
    if target.job is not None:
        if ask.dry_run or await admin.delete_job(target.job):
            emit(f"delete job {summary.name} ({summary.status if summary.status.finished else 'unfinished'})")
            ask.tally.jobs += 1
        else:
            emit(f"job {summary.name} was gone already")
    if not ask.records:
        return
    if ask.dry_run:
        if summary.recorded or not summary.live:
            emit(f"delete record {summary.name}")
            ask.tally.records += 1
        return
    count = await store.delete(summary.service, summary.name)
    if count:
        emit(f"delete record {summary.name} ({count} objects)")
        ask.tally.records += 1
