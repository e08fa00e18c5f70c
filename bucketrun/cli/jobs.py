"""``bucketrun jobs list|show|logs``: Jobs from the cluster first, then from the records location.

The cluster knows the Jobs that still exist (running ones included); the records location keeps the
finished ones after their Jobs and pods are deleted (TTL). With the local executor there is no cluster
to ask: only the records are read. Each command returns ``(text, exit code)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from typing import Any, Final

from bucketrun.cli.common import EXIT_INVALID, Commands, load_settings
from dispatcher.adapters.kube import fetching
from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain import kube
from dispatcher.domain.errors import BucketrunError
from dispatcher.domain.jobs import finished_condition, is_recorded, job_service
from dispatcher.domain.outcome import classify
from dispatcher.domain.record import OutputList, build_record, container_names
from dispatcher.executors.build import cluster_of
from dispatcher.runtime.settings import Settings
from watcher.records import RecordStore

EXIT_NOT_FOUND: Final = 1
_PAGE: Final = 500


def add_commands(commands: Commands) -> None:
    """Add ``jobs list``, ``jobs show`` and ``jobs logs``."""
    jobs = commands.add_parser(
        "jobs", help="list and inspect Jobs: from the cluster, then from the records location"
    )
    jobs_commands = jobs.add_subparsers(dest="jobs_command", metavar="SUBCOMMAND", required=True)
    jobs_list = jobs_commands.add_parser("list", help="one line per Job: name, service, state, finish time")
    jobs_list.add_argument("--service", help="only this service's Jobs")
    jobs_show = jobs_commands.add_parser("show", help="a Job's record (JSON), even after the Job is deleted")
    jobs_show.add_argument("name", help="Job name")
    jobs_logs = jobs_commands.add_parser("logs", help="a Job's container logs (newest pod, or the record)")
    jobs_logs.add_argument("name", help="Job name")
    jobs_logs.add_argument("--container", help="only this container (stage-in, run, stage-out)")
    jobs.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> tuple[str, int]:
    settings = load_settings()
    try:
        if args.jobs_command == "list":
            return asyncio.run(list_jobs(settings, args.service))
        if args.jobs_command == "show":
            return asyncio.run(show_job(settings, args.name))
        return asyncio.run(job_logs(settings, args.name, args.container))
    except BucketrunError as error:
        return f"error: {error}", EXIT_INVALID


def _store(settings: Settings) -> RecordStore:
    return RecordStore(
        Storage(settings.storage), settings.storage.records_bucket, settings.storage.records_prefix
    )


async def list_jobs(settings: Settings, service: str | None = None) -> tuple[str, int]:
    """One line per Job (cluster and records merged by name): name, service, state, finished time."""
    rows: dict[str, tuple[str, str, str, str]] = {}
    async with cluster_of(settings.cluster) as cluster:
        if cluster is not None:
            token: str | None = None
            while True:
                page = await fetching.list_job_documents(cluster, limit=_PAGE, continue_token=token)
                for job in page.items:
                    if service is None or job_service(job) == service:
                        rows[kube.name(job)] = _cluster_row(job)
                token = page.continue_token
                if not token:
                    break
    for stored in await _store(settings).find(service=service):
        record = stored.record
        rows.setdefault(
            str(record.get("job")),
            (
                str(record.get("job")),
                str(record.get("service")),
                f"{record.get('outcome')} (recorded)",
                str(record.get("finished") or "-"),
            ),
        )
    header = ("JOB", "SERVICE", "STATE", "FINISHED")
    table = [header, *(rows[name] for name in sorted(rows))]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ), 0


def _cluster_row(job: Mapping[str, Any]) -> tuple[str, str, str, str]:
    finished = finished_condition(job)
    state = finished.lower() if finished else "active"
    if is_recorded(job):
        state += " (recorded)"
    finished_at = kube.job_status(job).get("completionTime")
    return (kube.name(job), job_service(job) or "-", state, str(finished_at or "-"))


async def show_job(settings: Settings, name: str) -> tuple[str, int]:
    """The Job's record as JSON: built from the cluster while the Job exists, else the stored one."""
    async with cluster_of(settings.cluster) as cluster:
        if cluster is not None:
            job = await fetching.read_job(cluster, name)
            if job is not None:
                pods = await fetching.job_pods(cluster, str(kube.meta(job).get("uid", "")))
                stored = await _store(settings).read(job_service(job) or "", name)
                if stored is not None and stored.get("uid") == kube.meta(job).get("uid"):
                    return _json(stored), 0
                record = build_record(
                    job,
                    classify(job, pods),
                    outputs=OutputList(),
                    logs={},
                    records_prefix=settings.storage.records_prefix,
                )
                record["recorded"] = False
                return _json(record), 0
    found = await _store(settings).find(name)
    if not found:
        return f"error: no Job {name!r} in the cluster or the records location", EXIT_NOT_FOUND
    return _json(found[-1].record), 0


async def job_logs(settings: Settings, name: str, container: str | None = None) -> tuple[str, int]:
    """The Job's container logs (newest pod), from the cluster while its pod exists, else the record."""
    async with cluster_of(settings.cluster) as cluster:
        if cluster is not None:
            job = await fetching.read_job(cluster, name)
            if job is not None:
                pods = await fetching.job_pods(cluster, kube.uid(job))
                if pods:
                    pod = str(kube.meta(pods[-1]).get("name", ""))
                    texts = {
                        each: await fetching.pod_log(
                            cluster, pod, each, tail_lines=settings.watcher.log_tail_lines
                        )
                        for each in ([container] if container else container_names(job))
                    }
                    if any(text is not None for text in texts.values()):
                        return _logs_text(texts, container), 0
    store = _store(settings)
    found = await store.find(name)
    if not found:
        return f"error: no Job {name!r} in the cluster or the records location", EXIT_NOT_FOUND
    record = found[-1].record
    service = str(record.get("service"))
    names = [container] if container else sorted(record.get("logs") or {})
    texts = {each: await store.read_log(service, name, each) for each in names}
    if not any(text is not None for text in texts.values()):
        return f"error: no logs of Job {name!r} (container {container or 'any'}) were kept", EXIT_NOT_FOUND
    return _logs_text(texts, container), 0


def _logs_text(texts: Mapping[str, str | None], container: str | None) -> str:
    if container:
        return (texts.get(container) or "").rstrip("\n")
    parts = [f"==> {each} <==\n{(text or '').rstrip()}" for each, text in texts.items() if text is not None]
    return "\n\n".join(parts)


def _json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, indent=2, sort_keys=True)
