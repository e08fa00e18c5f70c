"""``bucketrun jobs list|show|logs|delete``: Jobs where they run first, then from the records location.

The Jobs, pages, logs and deletes are ``bucketrun.admin.jobs``' (shared with the API's ``/system/logs``
routes); this module parses the command line and words the answers. Each command returns ``(text, exit
code)``; ``delete`` prints a line per Job as it goes (``emit``), as ``services apply`` does. ``list`` is
newest first and pages with a cursor (``--continue``), not a page number, so Jobs created meanwhile
never shift a page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import textwrap
from collections.abc import Collection, Coroutine, Mapping, Sequence
from typing import Any

from bucketrun.admin.jobs import (
    DEFAULT_LIMIT,
    DELETE_STATUSES,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    Cursor,
    delete_jobs,
    format_cursor,
    newest_jobs,
    nowhere,
    read_cursor,
    read_logs,
    record_store,
)
from bucketrun.cli.common import EXIT_OK, Commands, UsageError, load_settings
from dispatcher.adapters.kube import ClusterConfigError
from dispatcher.domain import kube
from dispatcher.domain.errors import BucketrunError
from dispatcher.domain.jobs import job_service
from dispatcher.domain.outcome import classify
from dispatcher.domain.record import OutputList, build_record
from dispatcher.executors.admin import JobStatus, JobSummary
from dispatcher.executors.build import job_admin_of
from dispatcher.runtime.logs import configure_logging
from dispatcher.runtime.settings import Settings

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
        "--status", choices=sorted(DELETE_STATUSES), help="which of the service's Jobs (with --service)"
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


def parse_cursor(token: str) -> Cursor:
    """The place a ``--continue`` token names; ``UsageError`` for anything else."""
    cursor = read_cursor(token)
    if cursor is None:
        raise UsageError(f"error: --continue {token!r} is not a token a page of `jobs list` printed")
    return cursor


# -- list --------------------------------------------------------------------------------------------


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
            admin, record_store(settings), service=service, statuses=statuses, limit=limit, before=before
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
    store = record_store(settings)
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
        return nowhere(name), EXIT_NOT_FOUND
    return _json(found[-1].record), EXIT_OK


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
    store = record_store(settings)
    async with job_admin_of(settings.cluster) as admin:
        if latest_of is not None:
            newest = await newest_jobs(admin, store, service=latest_of, limit=1)
            if not newest.jobs:
                return f"error: service {latest_of!r} has no Jobs", EXIT_NOT_FOUND
            name = newest.jobs[0].name
        if name is None:
            raise UsageError("error: name a Job, or give --latest with --service")
        logs = await read_logs(
            admin, store, name, container=container, every=all_containers, tail_lines=tail_lines
        )
    if logs.found:
        return _logs_text(logs.texts, headed=all_containers), EXIT_OK
    if logs.job is not None:
        return (
            f"error: Job {name!r} has no log of {', '.join(logs.asked)} yet: no container of it has started",
            EXIT_NOT_FOUND,
        )
    if logs.record is None:
        return nowhere(name) + " (or it has no log yet)", EXIT_NOT_FOUND
    return _kept_none(name, logs.record, list(logs.texts)), EXIT_NOT_FOUND


def _kept_none(name: str, record: Mapping[str, Any], names: Sequence[str]) -> str:
    """The error for a record that keeps no log of the containers *names*: why, and what it keeps."""
    kept = list(record.get("logs") or {})
    missing = record.get("logs_missing") or {}
    why = "; ".join(f"{each}: {missing[each]}" for each in names if each in missing)
    return (
        f"error: the record of Job {name!r} keeps no log of {', '.join(names)}"
        + (f" ({why})" if why else "")
        + (f"; it keeps: {', '.join(kept)}" if kept else "")
    )


def _logs_text(texts: Mapping[str, str | None], *, headed: bool) -> str:
    if not headed:
        return "\n".join(text.removesuffix("\n") for text in texts.values() if text is not None)
    return "\n".join(
        f"==> {each} <==\n" + ("(no log)" if text is None else text.removesuffix("\n"))
        for each, text in texts.items()
    )
