"""The soak's verdict: pure functions from what was sent and what the servers hold to a report.

Nothing here talks to a server. `soak.py` gathers the facts (Jobs listed from the API, record versions
listed from the versioned records bucket, dead letters read from the DLQ, the API's own 201/409 counts)
and hands them to `build_report`; `broken_targets` says which target a run missed and `render_table`
prints it for people. Keeping the accounting pure is what lets the mutation check trust it: the same
code judges the real build and the broken one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EventKind = Literal["job", "ignore", "dead-letter"]
"""What each sent event must end as: a Job, a deliberate ignore (a delete event no service asked for),
or a dead letter (a bucket no service watches)."""


@dataclass(frozen=True)
class SentEvent:
    """One event the soak published, and what it must end as."""

    index: int
    kind: EventKind
    bucket: str
    key: str
    service: str | None = None
    job: str | None = None
    """The deterministic Job name (kind "job" only)."""


@dataclass(frozen=True)
class JobSeen:
    """One Job the API lists at the end, with the object version it claims to run."""

    name: str
    service: str
    bucket: str
    key: str
    version: str


@dataclass
class FaultRecord:
    """One injected fault: when it started and ended (seconds since the soak began), and how long the
    pipeline took after its end to make progress again (None: not measured or never)."""

    name: str
    started: float
    ended: float
    progress: str
    """What had to move again: "creates" (Jobs created) or "records" (Jobs recorded)."""
    recovered_after: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Observed:
    """Facts read from the servers once the soak is over."""

    jobs: Sequence[JobSeen]
    record_versions: Mapping[str, int]
    """Job name -> how many versions of its status.json the records bucket holds."""
    dead_letters: Sequence[tuple[str, str, str]]
    """(reason header, bucket, key) of each message read from the dead-letter queue."""
    creates_created: int
    """Job creates the API answered 201 Created."""
    creates_existing: int
    """Job creates the API answered 409 AlreadyExists (redeliveries meeting their Job)."""
    undrained: Mapping[str, int] = field(default_factory=dict)
    """Queues still holding messages when the soak gave up waiting (empty on a finished run)."""


def job_identity(job: JobSeen) -> tuple[str, str, str, str]:
    """What makes two Jobs the same work: one service on one object version."""
    return (job.service, job.bucket, job.key, job.version)


def build_report(
    sent: Sequence[SentEvent],
    observed: Observed,
    faults: Sequence[FaultRecord],
    *,
    profile: Mapping[str, Any],
) -> dict[str, Any]:
    """The soak report: counts, duplicates, losses, dead letters and recovery times (JSON-able)."""
    by_kind = Counter(event.kind for event in sent)
    expected_jobs = {event.job for event in sent if event.kind == "job" and event.job}
    listed = Counter(job.name for job in observed.jobs)
    per_version = Counter(job_identity(job) for job in observed.jobs)
    dead = Counter((bucket, key) for _, bucket, key in observed.dead_letters)
    expected_dead = Counter((e.bucket, e.key) for e in sent if e.kind == "dead-letter")

    jobs_present = expected_jobs & set(listed)
    lost_jobs = sorted(expected_jobs - set(listed))
    unexpected_jobs = sorted(set(listed) - expected_jobs)
    duplicate_jobs = sum(count - 1 for count in per_version.values() if count > 1) + sum(
        count - 1 for count in listed.values() if count > 1
    )
    # The API's own log: every 201 beyond one per listed Job made a second Job for some version.
    extra_creates = max(0, observed.creates_created - len(listed))
    records = {name: count for name, count in observed.record_versions.items() if count > 0}
    lost_records = sorted(name for name in listed if name not in records)
    duplicate_records = sum(count - 1 for count in records.values() if count > 1)
    dead_matched = sum(min(count, expected_dead[item]) for item, count in dead.items())
    unexpected_dead = sum(max(0, count - expected_dead[item]) for item, count in dead.items())
    missing_dead = sum(max(0, count - dead[item]) for item, count in expected_dead.items())
    accounted = len(jobs_present) + by_kind["ignore"] + dead_matched
    return {
        "profile": dict(profile),
        "events_in": len(sent),
        "events_for_jobs": by_kind["job"],
        "events_ignored_on_purpose": by_kind["ignore"],
        "events_for_dead_letter": by_kind["dead-letter"],
        "jobs_created": observed.creates_created,
        "jobs_listed": len(listed),
        "creates_answered_409": observed.creates_existing,
        "records_written": sum(records.values()),
        "jobs_recorded": len(records),
        "duplicate_jobs": duplicate_jobs + extra_creates,
        "duplicate_records": duplicate_records,
        "lost_jobs": len(lost_jobs),
        "lost_records": len(lost_records),
        "unexpected_jobs": len(unexpected_jobs),
        "dlq_entries": len(observed.dead_letters),
        "dlq_reasons": dict(Counter(reason for reason, _, _ in observed.dead_letters)),
        "dlq_unexpected": unexpected_dead,
        "dlq_missing": missing_dead,
        "accounted_for": accounted,
        "undrained_queues": dict(observed.undrained),
        "faults": [asdict(fault) for fault in faults],
        "examples": {
            "lost_jobs": lost_jobs[:5],
            "lost_records": lost_records[:5],
            "unexpected_jobs": unexpected_jobs[:5],
            "duplicate_versions": [list(key) for key, count in per_version.items() if count > 1][:5],
        },
    }


def broken_targets(report: Mapping[str, Any]) -> list[str]:
    """Each target the report misses, as a sentence naming the figure (empty: every target met)."""
    broken = []
    for figure, what in (
        ("lost_jobs", "events without a Job"),
        ("lost_records", "Jobs without a record"),
        ("duplicate_jobs", "duplicate Jobs"),
        ("duplicate_records", "duplicate records"),
        ("unexpected_jobs", "Jobs no event asked for"),
        ("dlq_unexpected", "dead letters no bad event explains"),
        ("dlq_missing", "bad events that never reached the dead-letter queue"),
    ):
        if report[figure]:
            broken.append(f"{figure}={report[figure]}: {what} (target 0)")
    if report["accounted_for"] != report["events_in"]:
        broken.append(
            f"accounted_for={report['accounted_for']} != events_in={report['events_in']}: "
            "Jobs + deliberate ignores + dead letters must equal the events sent"
        )
    if report["undrained_queues"]:
        broken.append(f"queues not drained at the end: {report['undrained_queues']}")
    for fault in report["faults"]:
        if fault["recovered_after"] is None:
            note = fault["note"] or "its threshold was never reached"
            why = note if note.startswith("not injected") else f"no progress after it ended ({note})"
            broken.append(f"fault {fault['name']!r}: {why}")
    return broken


def render_table(report: Mapping[str, Any]) -> str:
    """The report as two plain-text tables: figures with their targets, then faults with recovery."""
    rows = [
        ("events in", report["events_in"], ""),
        (
            "  for Jobs / ignored on purpose / for the DLQ",
            _slash(report, "events_for_jobs", "events_ignored_on_purpose", "events_for_dead_letter"),
            "",
        ),
        ("Jobs created (API 201)", report["jobs_created"], ""),
        ("Jobs listed at the end", report["jobs_listed"], ""),
        ("creates answered 409 (redeliveries)", report["creates_answered_409"], ""),
        ("records written (distinct status.json contents)", report["records_written"], ""),
        ("duplicate Jobs", report["duplicate_jobs"], "0"),
        ("duplicate records", report["duplicate_records"], "0"),
        ("lost: events without a Job", report["lost_jobs"], "0"),
        ("lost: Jobs without a record", report["lost_records"], "0"),
        ("DLQ entries", report["dlq_entries"], str(report["events_for_dead_letter"])),
        ("  by reason", ", ".join(f"{k}: {v}" for k, v in report["dlq_reasons"].items()) or "-", ""),
        ("accounted for (Jobs + ignores + DLQ)", report["accounted_for"], str(report["events_in"])),
    ]
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{'figure':<{width}}  {'value':>12}  target", "-" * (width + 24)]
    lines += [f"{name:<{width}}  {value!s:>12}  {target}" for name, value, target in rows]
    wide = max([len("fault"), *(len(fault["name"]) for fault in report["faults"])])
    lines += ["", f"{'fault':<{wide}} {'start s':>8} {'end s':>8} {'recovered after s':>18}  progress / note"]
    for fault in report["faults"]:
        recovered = "-" if fault["recovered_after"] is None else f"{fault['recovered_after']:.2f}"
        note = f"{fault['progress']}{' / ' + fault['note'] if fault['note'] else ''}"
        lines.append(
            f"{fault['name']:<{wide}} {fault['started']:>8.1f} {fault['ended']:>8.1f} {recovered:>18}  {note}"
        )
    return "\n".join(lines)


def _slash(report: Mapping[str, Any], *figures: str) -> str:
    return " / ".join(str(report[figure]) for figure in figures)
