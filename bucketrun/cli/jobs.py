"""``bucketrun jobs list|show|logs|delete``: Jobs where they run first, then from the records location.

Where Jobs run (``dispatcher.executors.admin.JobAdmin``: the cluster, or the local executor's state
directory) knows the Jobs that still exist, running ones included; the records location keeps the
finished ones after their Jobs and pods are gone (TTL, ``jobs delete``), until the records retention
deletes them. A Job in both is shown from where it runs. Each command returns ``(text, exit code)``;
``delete`` prints a line per Job as it goes (``emit``), as ``services apply`` does.

``list`` is newest first (by the Job's creation time) and pages with a cursor, not a page number: the
next page starts after the last Job shown, so Jobs created meanwhile never shift it. Records are
listed (no read) and read newest-written first, only as far as the page needs: a record is written
after its Job was created, so once a page's Jobs are all newer than the next unread record (give or
take ``_CLOCK_SLACK`` between the cluster's and the store's clocks), no unread record belongs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import textwrap
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bucketrun.cli.common import EXIT_OK, Commands, UsageError, load_settings
from dispatcher.adapters.kube import ClusterConfigError
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain import kube
from dispatcher.domain.errors import BucketrunError
from dispatcher.domain.jobs import api_time, job_service
from dispatcher.domain.outcome import classify
from dispatcher.domain.record import OutputList, build_record, container_names, tail
from dispatcher.executors.admin import JobAdmin, JobStatus, JobSummary, summarize, summarize_record
from dispatcher.executors.build import job_admin_of
from dispatcher.runtime.logs import configure_logging
from dispatcher.runtime.settings import Settings
from watcher.records import RecordRef, RecordStore

EXIT_NOT_FOUND: Final = 1
"""A Job named was found neither where Jobs run nor in the records (or has no such log)."""
EXIT_SKIPPED: Final = 3
"""``delete``: some Jobs were left alone (unfinished or not yet recorded, without ``--force``)."""
EXIT_FAILED: Final = 4
"""The cluster or the store failed (``delete``: the lines printed before were done)."""
DEFAULT_LIMIT: Final = 100
RUN_CONTAINER: Final = "run"
"""The container that runs the service's script (OSCAR's ``oscar-container``)."""
_READ_AHEAD: Final = 32
"""Records read at once while filling a page."""
_CLOCK_SLACK: Final = timedelta(minutes=5)
_OLDEST: Final = datetime.min.replace(tzinfo=UTC)
_DELETE_STATUSES: Final = {
    "succeeded": {JobStatus.SUCCEEDED},
    "failed": {JobStatus.FAILED},
    "all": set(JobStatus),
}

Emit = Callable[[str], object]

COMMON = """\
Jobs come from where they run (BUCKETRUN_CLUSTER__EXECUTOR: the cluster's namespace, or the local
executor's state directory BUCKETRUN_CLUSTER__LOCAL_STATE_DIR), then from the job records
(BUCKETRUN_STORAGE__RECORDS_BUCKET/RECORDS_PREFIX), which outlive the Jobs until the records retention
(BUCKETRUN_WATCHER__RECORDS_RETENTION_DAYS) removes them.
Statuses, as oscar-cli shows them: pending (waiting for a node or for its turn), running, succeeded,
failed (the record's outcome says why: oom-killed, deadline-exceeded, ...).
exit codes: 0 done, 1 no such Job (or no such log), 2 usage or settings error, 3 (delete) some Jobs were
skipped, 4 the cluster or the store failed."""


def add_commands(commands: Commands) -> None:
    """Add ``jobs`` and its subcommands."""
    jobs = _command(
        commands,
        "jobs",
        "list, inspect and delete Jobs: where they run, then from the job records",
        "Manage bucketrun's Jobs as `oscar-cli service logs list|get|remove` manages OSCAR's.",
    )
    jobs_commands = jobs.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND", required=True)
    _add_list(jobs_commands)
    show = _command(
        jobs_commands,
        "show",
        "a Job's record (JSON), even after the Job is deleted",
        "Print Job NAME's record as JSON: the stored one, or while the Job runs (or before it is "
        "recorded) one built from the Job and its pods, with recorded: false.",
    )
    show.add_argument("name", help="Job name")
    _add_logs(jobs_commands)
    _add_delete(jobs_commands)
    jobs.set_defaults(handler=_run)


def _add_list(commands: Commands) -> None:
    listing = _command(
        commands,
        "list",
        "one line per Job, newest first: name, service, status, times, where it is kept",
        "List Jobs newest first (by creation time), one page at a time: --limit Jobs, and a last "
        "line '(more Jobs: --continue TOKEN)' when there are more; run the same command with that "
        "--continue for the next page. Columns: JOB, SERVICE, STATUS (with the record's outcome when it "
        "says more than 'failed'), CREATED, STARTED, FINISHED (UTC), KEPT (job: the Job exists; "
        "job+record: it exists and is recorded; record: only its record is left).",
        "bucketrun jobs list --service upper",
        "bucketrun jobs list --service upper --status failed,running --limit 20",
        "bucketrun jobs list --service upper --continue 2026-12-04T10:00:00Z/upper-4kq2m7x9a3bd",
        'bucketrun jobs list --json          {"jobs": [...], "continue": TOKEN or null}',
    )
    listing.add_argument("--service", help="only this service's Jobs")
    listing.add_argument(
        "--status",
        type=_statuses,
        action="extend",
        default=[],
        metavar="STATUS[,STATUS]",
        help="only Jobs with these statuses: pending, running, succeeded, failed (comma-separated, or "
        "the option repeated)",
    )
    listing.add_argument(
        "--limit", type=_count, default=DEFAULT_LIMIT, help=f"Jobs per page (default {DEFAULT_LIMIT}; 0: all)"
    )
    listing.add_argument(
        "--continue",
        dest="after",
        metavar="TOKEN",
        help="the next page: the TOKEN the previous page's last line gave (same --service and --status)",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _add_logs(commands: Commands) -> None:
    logs = _command(
        commands,
        "logs",
        "a Job's log: the whole 'run' container by default, every container with --all",
        "Print the log of Job NAME's 'run' container (the service's script), whole, from its "
        "newest pod while the pod exists, else the copy in its record (the last "
        "BUCKETRUN_WATCHER__LOG_TAIL_LINES lines). --all prints every container (stage-in, run, "
        "stage-out), each after a line '==> CONTAINER <=='. --latest --service S picks the service's "
        "newest Job, as oscar-cli's 'service logs get --latest'.",
        "bucketrun jobs logs upper-4kq2m7x9a3bd",
        "bucketrun jobs logs --latest --service upper --all",
        "bucketrun jobs logs upper-4kq2m7x9a3bd --container stage-out --tail 50",
    )
    logs.add_argument("name", nargs="?", help="Job name (or --latest with --service)")
    logs.add_argument("--latest", action="store_true", help="the newest Job of --service")
    logs.add_argument("--service", help="the service whose newest Job --latest picks")
    which = logs.add_mutually_exclusive_group()
    which.add_argument("--all", action="store_true", help="every container, each headed by its name")
    which.add_argument("--container", help="this container only (stage-in, run, stage-out)")
    logs.add_argument("--tail", type=_count, metavar="N", help="only the last N lines of each log")


def _add_delete(commands: Commands) -> None:
    delete = _command(
        commands,
        "delete",
        "delete Jobs with their pods (and with --records their records); unfinished ones need --force",
        "Delete the named Jobs, or a service's Jobs with a status, with their pods "
        "(propagationPolicy Background: the pods go too). With --records, also their records, including "
        "those of Jobs already gone. Without --force these are skipped and named, with the reason: "
        "unfinished Jobs (pending or running: --force stops them), and finished Jobs the watcher has not "
        "recorded yet (--force deletes them unrecorded). --status succeeded is what oscar-cli's "
        "'service logs remove' deletes by default, --status all what its --all does (but running Jobs "
        "stay without --force). With the local executor an unfinished Job is never deleted while "
        "`bucketrun serve` runs (only serve can stop it); stop serve first. Needs the Role "
        "bucketrun-jobs-admin (deploy/kubernetes).",
        "bucketrun jobs delete upper-4kq2m7x9a3bd upper-x7m2p4q9z1kd",
        "bucketrun jobs delete --service upper --status succeeded --dry-run",
        "bucketrun jobs delete --service upper --status all --records --force",
    )
    delete.add_argument("names", nargs="*", metavar="NAME", help="Job name")
    delete.add_argument("--service", help="delete this service's Jobs (with --status)")
    delete.add_argument(
        "--status", choices=sorted(_DELETE_STATUSES), help="which of the service's Jobs (with --service)"
    )
    delete.add_argument("--records", action="store_true", help="delete their records too")
    delete.add_argument("--force", action="store_true", help="also unfinished and unrecorded Jobs")
    delete.add_argument("--dry-run", action="store_true", help="print what would be deleted; delete nothing")


def _command(
    commands: Commands, name: str, summary: str, description: str, *examples: str
) -> argparse.ArgumentParser:
    """A (sub)command: *summary* in its group's list, *description* as a paragraph, then the examples
    and ``COMMON``, lines kept as written."""
    shown = "".join(f"  {example}\n" for example in examples)
    return commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=100),
        epilog=(f"examples:\n{shown}\n" if examples else "") + COMMON,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _statuses(text: str) -> list[JobStatus]:
    try:
        return [JobStatus(part.strip().lower()) for part in text.split(",") if part.strip()]
    except ValueError:
        choices = ", ".join(str(status) for status in JobStatus)
        raise argparse.ArgumentTypeError(f"{text!r}: each status must be one of {choices}") from None


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _run(args: argparse.Namespace) -> tuple[str, int]:
    settings = load_settings()
    configure_logging(level="WARNING")
    try:
        if args.jobs_command == "list":
            before = parse_cursor(args.after) if args.after else None
            return asyncio.run(
                list_jobs(
                    settings,
                    args.service,
                    set(args.status),
                    limit=args.limit,
                    before=before,
                    as_json=args.json,
                )
            )
        if args.jobs_command == "show":
            return asyncio.run(show_job(settings, args.name))
        if args.jobs_command == "logs":
            return asyncio.run(_logs(settings, args))
        return asyncio.run(_delete(settings, args))
    except ClusterConfigError as error:
        raise UsageError(f"error: {error}") from error
    except BucketrunError as error:
        return f"error: {error}", EXIT_FAILED


def _logs(settings: Settings, args: argparse.Namespace) -> Coroutine[Any, Any, tuple[str, int]]:
    if args.latest == bool(args.name) or (args.latest and not args.service):
        raise UsageError("error: name a Job, or give --latest with --service")
    return job_logs(
        settings,
        args.name,
        args.container,
        all_containers=args.all,
        latest_of=args.service if args.latest else None,
        tail_lines=args.tail,
    )


def _delete(settings: Settings, args: argparse.Namespace) -> Coroutine[Any, Any, tuple[str, int]]:
    if bool(args.names) == bool(args.service) or bool(args.service) != bool(args.status):
        raise UsageError("error: name Jobs, or give --service with --status succeeded|failed|all")
    return delete_jobs(
        settings,
        args.names,
        service=args.service,
        status=args.status,
        records=args.records,
        force=args.force,
        dry_run=args.dry_run,
    )


def _store(settings: Settings) -> RecordStore:
    return RecordStore(
        Storage(settings.storage), settings.storage.records_bucket, settings.storage.records_prefix
    )


# -- list --------------------------------------------------------------------------------------------

Cursor = tuple[datetime, str]
"""A Job's place in the newest-first order: (creation time, name)."""


def cursor_of(summary: JobSummary) -> Cursor:
    """*summary*'s place in the order (a Job of unknown creation time sorts as the oldest)."""
    return (summary.created_at or _OLDEST, summary.name)


def format_cursor(cursor: Cursor) -> str:
    """The ``--continue`` token of a place: ``<creation time>/<name>``."""
    return f"{cursor[0].astimezone(UTC).isoformat().replace('+00:00', 'Z')}/{cursor[1]}"


def parse_cursor(token: str) -> Cursor:
    """The place a ``--continue`` token names; ``UsageError`` for anything else."""
    moment, _, name = token.partition("/")
    when = api_time(moment)
    if when is None or not name:
        raise UsageError(f"error: --continue {token!r} is not a token a page of `jobs list` printed")
    return (when, name)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``jobs list``: its Jobs, newest first, and where the next page starts (None: last)."""

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


async def list_jobs(
    settings: Settings,
    service: str | None = None,
    statuses: Collection[JobStatus] = (),
    *,
    limit: int = DEFAULT_LIMIT,
    before: Cursor | None = None,
    as_json: bool = False,
) -> tuple[str, int]:
    """One page of Jobs as a table (or JSON), newest first, with the token of the next page."""
    async with job_admin_of(settings.cluster) as admin:
        page = await newest_jobs(
            admin, _store(settings), service=service, statuses=statuses, limit=limit, before=before
        )
    token = format_cursor(page.next) if page.next else None
    if as_json:
        return json.dumps(
            {"jobs": [row.as_json() for row in page.jobs], "continue": token}, indent=2
        ), EXIT_OK
    if not page.jobs:
        return "no Jobs" + (f" of service {service}" if service else "") + _status_words(statuses), EXIT_OK
    text = _table(["JOB", "SERVICE", "STATUS", "CREATED", "STARTED", "FINISHED", "KEPT"], page.jobs)
    return text + (f"\n(more Jobs: --continue {token})" if token else ""), EXIT_OK


def _status_words(statuses: Collection[JobStatus]) -> str:
    return f" with status {', '.join(sorted(statuses))}" if statuses else ""


def _table(header: list[str], jobs: Sequence[JobSummary]) -> str:
    table = [header, *(_cells(summary) for summary in jobs)]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _cells(summary: JobSummary) -> list[str]:
    status = str(summary.status)
    if summary.outcome and summary.outcome != status:
        status += f" ({summary.outcome})"
    kept = "record" if not summary.live else "job+record" if summary.recorded else "job"
    times = (summary.created, summary.started, summary.finished)
    return [summary.name, summary.service or "-", status, *(time or "-" for time in times), kept]


# -- show --------------------------------------------------------------------------------------------


async def show_job(settings: Settings, name: str) -> tuple[str, int]:
    """The Job's record as JSON: the stored one of this very Job, else one built from the Job and its
    pods (``recorded: false``), else the stored one of a Job already gone."""
    store = _store(settings)
    async with job_admin_of(settings.cluster) as admin:
        job = await admin.read_job(name)
        if job is not None:
            stored = await store.read(job_service(job) or "", name)
            if stored is not None and stored.get("uid") == kube.uid(job):
                return _json(stored), EXIT_OK
            record = build_record(
                job,
                classify(job, await admin.job_pods(job)),
                outputs=OutputList(),
                logs={},
                records_prefix=settings.storage.records_prefix,
            )
            record["recorded"] = False
            return _json(record), EXIT_OK
    found = await store.find(name)
    if not found:
        return _nowhere(name), EXIT_NOT_FOUND
    return _json(found[-1].record), EXIT_OK


def _nowhere(name: str) -> str:
    return f"error: no Job {name!r} where Jobs run or in the records location"


def _json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True)


# -- logs --------------------------------------------------------------------------------------------


async def job_logs(
    settings: Settings,
    name: str | None,
    container: str | None = None,
    *,
    all_containers: bool = False,
    latest_of: str | None = None,
    tail_lines: int | None = None,
) -> tuple[str, int]:
    """The log of Job *name*'s ``run`` container (or *container*, or every one), whole (or its last
    *tail_lines* lines), from its newest pod while that exists, else from its record. With *latest_of*,
    the newest Job of that service."""
    store = _store(settings)
    async with job_admin_of(settings.cluster) as admin:
        if latest_of is not None:
            newest = await newest_jobs(admin, store, service=latest_of, limit=1)
            if not newest.jobs:
                return f"error: service {latest_of!r} has no Jobs", EXIT_NOT_FOUND
            name = newest.jobs[0].name
        if name is None:
            raise UsageError("error: name a Job, or give --latest with --service")
        job = await admin.read_job(name)
        if job is not None:
            names = [container] if container else container_names(job) if all_containers else [RUN_CONTAINER]
            texts = await _live_logs(admin, job, names, tail_lines)
            if any(text is not None for text in texts.values()):
                return _logs_text(texts, headed=all_containers), EXIT_OK
    found, code = await _recorded_logs(
        store, name, container, all_containers=all_containers, tail_lines=tail_lines
    )
    if code != EXIT_OK and job is not None:
        return (
            f"error: Job {name!r} has no log of {', '.join(names)} yet: no container of it has started",
            code,
        )
    return found, code


async def _live_logs(
    admin: JobAdmin, job: Mapping[str, Any], names: Sequence[str], tail_lines: int | None
) -> dict[str, str | None]:
    pods = await admin.job_pods(job)
    if not pods:
        return dict.fromkeys(names)
    pod = kube.name(pods[-1])
    return {each: await admin.container_log(job, pod, each, tail_lines=tail_lines) for each in names}


async def _recorded_logs(
    store: RecordStore, name: str, container: str | None, *, all_containers: bool, tail_lines: int | None
) -> tuple[str, int]:
    found = await store.find(name)
    if not found:
        return _nowhere(name) + " (or it has no log yet)", EXIT_NOT_FOUND
    record = found[-1].record
    kept = list(record.get("logs") or {})  # in the Job's container order
    names = [container] if container else kept if all_containers else [RUN_CONTAINER]
    texts = {each: await store.read_log(str(record.get("service")), name, each) for each in names}
    if not any(text is not None for text in texts.values()):
        missing = record.get("logs_missing") or {}
        why = "; ".join(f"{each}: {missing[each]}" for each in names if each in missing)
        return (
            f"error: the record of Job {name!r} keeps no log of {', '.join(names)}"
            + (f" ({why})" if why else "")
            + (f"; it keeps: {', '.join(kept)}" if kept else ""),
            EXIT_NOT_FOUND,
        )
    if tail_lines is not None:
        texts = {each: None if text is None else tail(text, tail_lines) for each, text in texts.items()}
    return _logs_text(texts, headed=all_containers), EXIT_OK


def _logs_text(texts: Mapping[str, str | None], *, headed: bool) -> str:
    if not headed:
        return "\n".join(text.removesuffix("\n") for text in texts.values() if text is not None)
    return "\n".join(
        f"==> {each} <==\n" + ("(no log)" if text is None else text.removesuffix("\n"))
        for each, text in texts.items()
    )


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
    """Delete the Jobs *names*, or *service*'s Jobs with *status* (``succeeded``, ``failed``, ``all``),
    with their pods, and with *records* their records; a line per Job through *emit*. Returns (message
    for the error stream, exit code)."""
    store = _store(settings)
    done = Tally()
    try:
        async with job_admin_of(settings.cluster) as admin:
            if names:
                targets, missing = await _named(admin, store, names, records=records)
            else:
                targets, missing = await _selected(admin, store, service or "", status or "all", records), []
            unstoppable = await admin.unstoppable() if any(map(_unfinished, targets)) else None
            for target in targets:
                why = refusal(target.summary, force=force, unstoppable=unstoppable)
                if why is None:
                    await _delete_one(
                        admin, store, target, records=records, dry_run=dry_run, emit=emit, tally=done
                    )
                else:
                    emit(f"skip job {target.summary.name}: {why}")
                    done.skipped += 1
    except ClusterConfigError:
        raise
    except BucketrunError as error:
        return f"error: {error}\nstopped; the lines above were done", EXIT_FAILED
    emit(done.summary(dry_run=dry_run, selection=None if names else _selection(service, status)))
    if missing:
        return "\n".join(missing), EXIT_NOT_FOUND
    return "", EXIT_SKIPPED if done.skipped else EXIT_OK


def _unfinished(target: Target) -> bool:
    return target.summary.live and not target.summary.status.finished


def _selection(service: str | None, status: str | None) -> str:
    return f"service {service}" + ("" if status == "all" else f" with status {status}")


@dataclass
class Tally:
    """What a ``delete`` did."""

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


async def _named(
    admin: JobAdmin, store: RecordStore, names: Sequence[str], *, records: bool
) -> tuple[list[Target], list[str]]:
    """The Jobs *names* (with *records*, also those only their records keep), and a line per name found
    nowhere."""
    targets: list[Target] = []
    missing: list[str] = []
    for name in dict.fromkeys(names):
        job = await admin.read_job(name)
        if job is not None and job_service(job) is not None:
            targets.append(Target(summarize(job, []), job))
            continue
        if job is not None:
            missing.append(f"error: Job {name!r} is not bucketrun's (it has no service label); left alone")
            continue
        stored = await store.find(name)
        if stored and records:
            targets += [Target(summarize_record(each.record), None) for each in stored]
        elif stored:
            missing.append(f"error: Job {name!r} is gone; only its record is left (--records deletes it)")
        else:
            missing.append(_nowhere(name))
    return targets, missing


async def _selected(
    admin: JobAdmin, store: RecordStore, service: str, status: str, records: bool
) -> list[Target]:
    """*service*'s Jobs with *status*, and with *records* those only their records keep, newest first."""
    wanted = _DELETE_STATUSES[status]
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


async def _delete_one(
    admin: JobAdmin,
    store: RecordStore,
    target: Target,
    *,
    records: bool,
    dry_run: bool,
    emit: Emit,
    tally: Tally,
) -> None:
    summary = target.summary
    if target.job is not None:
        if dry_run or await admin.delete_job(target.job):
            emit(f"delete job {summary.name} ({summary.status if summary.status.finished else 'unfinished'})")
            tally.jobs += 1
        else:
            emit(f"job {summary.name} was gone already")
    if not records:
        return
    if dry_run:
        if summary.recorded or not summary.live:
            emit(f"delete record {summary.name}")
            tally.records += 1
        return
    count = await store.delete(summary.service, summary.name)
    if count:
        emit(f"delete record {summary.name} ({count} objects)")
        tally.records += 1
