"""`bucketrun jobs` decisions without servers: a Job's status in OSCAR's words, the newest-first pages
over Jobs and records (reading only the records a page needs), the cursor, what `delete` leaves alone,
and which keys the records sweep may delete."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bucketrun.admin.jobs import Page, cursor_of, format_cursor, newest_jobs, refusal
from bucketrun.cli.common import UsageError
from bucketrun.cli.jobs import parse_cursor
from dispatcher.adapters.s3.storage import ObjectInfo
from dispatcher.domain.constants import ANNOTATION_RECORDED, LABEL_MANAGED_BY, LABEL_SERVICE, MANAGED_BY
from dispatcher.executors.admin import JobStatus, job_status, summarize, summarize_record
from watcher.records import RecordRef
from watcher.retention import expired_keys, is_record_file

T0 = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def job(
    name: str,
    created: datetime,
    *,
    condition: str | None = None,
    recorded: bool = False,
    service: str = "upper",
) -> dict[str, Any]:
    uid = f"uid-{name}"
    status: dict[str, Any] = {"startTime": stamp(created)}
    if condition:
        status["conditions"] = [{"type": condition, "status": "True", "lastTransitionTime": stamp(created)}]
    return {
        "metadata": {
            "name": name,
            "uid": uid,
            "creationTimestamp": stamp(created),
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SERVICE: service},
            "annotations": {ANNOTATION_RECORDED: uid} if recorded else {},
        },
        "status": status,
    }


def pod(phase: str, created: datetime = T0) -> dict[str, Any]:
    return {"metadata": {"name": "p", "creationTimestamp": stamp(created)}, "status": {"phase": phase}}


def record(
    name: str, created: datetime, outcome: str = "succeeded", service: str = "upper"
) -> dict[str, Any]:
    return {
        "job": name,
        "service": service,
        "uid": f"uid-{name}",
        "outcome": outcome,
        "created": stamp(created),
    }


@pytest.mark.parametrize(
    ("condition", "pods", "expected"),
    [
        ("Complete", [], JobStatus.SUCCEEDED),
        ("Failed", [pod("Running")], JobStatus.FAILED),
        (None, [], JobStatus.PENDING),  # no pod yet, or suspended for Kueue
        (None, [pod("Pending")], JobStatus.PENDING),  # scheduling, pulling, or stage-in running
        (None, [pod("Failed"), pod("Running")], JobStatus.RUNNING),
        (None, [pod("Running"), pod("Failed")], JobStatus.PENDING),  # waiting for the next attempt
        (None, [pod("Succeeded")], JobStatus.RUNNING),  # the Job controller has not said Complete yet
    ],
)
def test_a_job_s_status_is_its_condition_else_its_newest_pod(condition, pods, expected) -> None:
    assert job_status(job("j", T0, condition=condition), pods) == expected


def test_a_record_is_succeeded_or_failed_with_its_outcome() -> None:
    summary = summarize_record(record("j", T0, "oom-killed"))
    assert (summary.status, summary.outcome, summary.live, summary.recorded) == (
        JobStatus.FAILED,
        "oom-killed",
        False,
        True,
    )


def test_a_cursor_round_trips_and_refuses_what_no_page_printed() -> None:
    summary = summarize(job("upper-abc", T0), [])
    token = format_cursor(cursor_of(summary))
    assert token == "2026-12-04T10:00:00Z/upper-abc"
    assert parse_cursor(token) == (T0, "upper-abc")
    unknown = summarize({"metadata": {"name": "no-time"}}, [])  # sorts as the oldest, and still pages
    assert parse_cursor(format_cursor(cursor_of(unknown))) == cursor_of(unknown)
    for bad in ("page-2", "2026-12-04T10:00:00Z/", "yesterday/upper-abc"):
        with pytest.raises(UsageError):
            parse_cursor(bad)


@dataclass
class FakeAdmin:
    existing: list[tuple[dict[str, Any], list[dict[str, Any]]]]

    async def jobs(self, *, with_pods: bool = True):
        return self.existing


@dataclass
class FakeStore:
    """Records with their write times; counts the reads."""

    records: dict[str, tuple[dict[str, Any], datetime]]
    reads: list[str] = field(default_factory=list)

    async def status_objects(self, service=None):
        return [
            RecordRef(body["service"], name, f"records/{body['service']}/{name}/status.json", written)
            for name, (body, written) in self.records.items()
            if service is None or body["service"] == service
        ]

    async def read(self, service, name):
        self.reads.append(name)
        return self.records[name][0]


def _records(count: int, *, newest: datetime) -> dict[str, tuple[dict[str, Any], datetime]]:
    """*count* records one hour apart, the newest created at *newest*; each written 10 minutes after."""
    made = {}
    for index in range(count):
        created = newest - timedelta(hours=index)
        name = f"rec-{index:03d}"
        made[name] = (
            record(name, created, "failed" if index % 2 else "succeeded"),
            created + timedelta(minutes=10),
        )
    return made


async def test_pages_are_newest_first_and_read_only_the_records_they_need() -> None:
    live = [
        (job("live-running", T0 + timedelta(hours=2)), [pod("Running")]),
        (job("live-done", T0 - timedelta(minutes=30), condition="Complete", recorded=True), []),
    ]
    store = FakeStore(_records(200, newest=T0))
    page = await newest_jobs(FakeAdmin(live), store, limit=3)
    assert [row.name for row in page.jobs] == ["live-running", "rec-000", "live-done"]
    assert page.next == (T0 - timedelta(minutes=30), "live-done")
    # Records are read newest-written first, a batch at a time, and only until the page is known.
    assert len(store.reads) == 32
    assert store.reads[:3] == ["rec-000", "rec-001", "rec-002"]


async def test_following_the_cursor_lists_every_job_once_in_order() -> None:
    live = [(job(f"live-{i}", T0 - timedelta(minutes=30 + 60 * i), condition="Failed"), []) for i in range(5)]
    store = FakeStore(_records(70, newest=T0))
    seen: list[str] = []
    page = Page([], None)
    before = None
    for _ in range(100):
        page = await newest_jobs(FakeAdmin(live), FakeStore(store.records), limit=7, before=before)
        seen += [row.name for row in page.jobs]
        if page.next is None:
            break
        before = page.next
    assert page.next is None
    everything = (await newest_jobs(FakeAdmin(live), FakeStore(store.records), limit=0)).jobs
    assert seen == [row.name for row in everything]
    assert len(seen) == len(set(seen)) == 75
    created = [row.created_at for row in everything]
    assert created == sorted(created, reverse=True)


async def test_status_and_service_filters_apply_to_jobs_and_records_alike() -> None:
    live = [
        (job("a-pending", T0, service="a"), []),
        (job("b-failed", T0, condition="Failed", service="b"), []),
    ]
    store = FakeStore(
        {
            "a-old-failed": (record("a-old-failed", T0 - timedelta(days=1), "deadline-exceeded", "a"), T0),
            "a-old-ok": (record("a-old-ok", T0 - timedelta(days=2), "succeeded", "a"), T0),
        }
    )
    failed = await newest_jobs(FakeAdmin(live), store, service="a", statuses={JobStatus.FAILED})
    assert [(row.name, row.outcome) for row in failed.jobs] == [("a-old-failed", "deadline-exceeded")]
    pending = await newest_jobs(FakeAdmin(live), store, statuses={JobStatus.PENDING, JobStatus.RUNNING})
    assert [row.name for row in pending.jobs] == ["a-pending"]


async def test_a_job_that_still_exists_is_shown_from_where_it_runs_not_from_its_record() -> None:
    live = [(job("both", T0, condition="Complete", recorded=True), [])]
    store = FakeStore({"both": (record("both", T0, "succeeded"), T0 + timedelta(minutes=1))})
    page = await newest_jobs(FakeAdmin(live), store)
    assert [(row.name, row.live, row.recorded) for row in page.jobs] == [("both", True, True)]
    assert store.reads == []


@pytest.mark.parametrize(
    ("condition", "recorded", "force", "unstoppable", "left_alone"),
    [
        ("Complete", True, False, None, False),
        ("Failed", False, False, None, True),  # not recorded yet: the watcher is about to
        ("Failed", False, True, None, False),
        (None, False, False, None, True),  # still running
        (None, False, True, None, False),
        (None, False, True, "it runs in serve", True),  # --force cannot stop what runs elsewhere
        ("Complete", True, False, "it runs in serve", False),  # finished Jobs go at any time
    ],
)
def test_delete_leaves_unfinished_and_unrecorded_jobs_alone_unless_forced(
    condition, recorded, force, unstoppable, left_alone
) -> None:
    summary = summarize(job("j", T0, condition=condition, recorded=recorded), [])
    why = refusal(summary, force=force, unstoppable=unstoppable)
    assert (why is not None) == left_alone
    if unstoppable and left_alone:
        assert unstoppable in why


def test_a_record_only_job_is_always_deletable() -> None:
    assert refusal(summarize_record(record("gone", T0)), force=False, unstoppable="busy") is None


@pytest.mark.parametrize(
    ("key", "is_record"),
    [
        ("upper/upper-abc/status.json", True),
        ("upper/upper-abc/outputs.json", True),
        ("upper/upper-abc/logs/run.log", True),
        ("upper/upper-abc/logs/run.txt", False),
        ("upper/upper-abc/other.bin", False),
        ("README.txt", False),
        ("upper/status.json", False),
        ("upper/upper-abc/logs/deeper/run.log", False),
    ],
)
def test_the_sweep_recognises_a_record_s_files_only(key: str, is_record: bool) -> None:
    assert is_record_file(key) is is_record


def test_expired_keys_are_record_files_under_the_prefix_older_than_the_cutoff() -> None:
    def info(key: str, age_days: float) -> ObjectInfo:
        return ObjectInfo("b", key, 1, None, None, None, T0 - timedelta(days=age_days))

    infos = [
        info("records/upper/old/status.json", 31),
        info("records/upper/old/logs/run.log", 31),
        info("records/upper/new/status.json", 29),
        info("records/notes.txt", 400),
        info("elsewhere/upper/old/status.json", 400),
    ]
    cutoff = T0 - timedelta(days=30)
    assert expired_keys(infos, "records/", cutoff) == [
        "records/upper/old/status.json",
        "records/upper/old/logs/run.log",
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["jobs", "delete"],  # neither names nor a selection
        ["jobs", "delete", "upper-abc", "--service", "upper", "--status", "all"],  # both
        ["jobs", "delete", "--service", "upper"],  # a selection without --status
        ["jobs", "logs"],  # neither a name nor --latest
        ["jobs", "logs", "--latest"],  # --latest without --service
        ["jobs", "logs", "upper-abc", "--latest", "--service", "upper"],  # both
        ["jobs", "list", "--continue", "page-2"],  # no token a page printed
        ["jobs", "list", "--status", "done"],  # not one of the four
        ["jobs", "list", "--limit", "-1"],
        ["jobs", "logs", "upper-abc", "--all", "--container", "run"],
    ],
)
def test_usage_errors_exit_2_before_anything_is_contacted(argv, monkeypatch, capsys) -> None:
    from bucketrun.cli.main import main  # noqa: PLC0415

    # Nothing listens there: a command that contacted the store or cluster would fail otherwise (4).
    monkeypatch.setenv("BUCKETRUN_STORAGE__ACCESS_KEY", "unused")
    monkeypatch.setenv("BUCKETRUN_STORAGE__SECRET_KEY", "unused")
    monkeypatch.setenv("BUCKETRUN_STORAGE__ENDPOINT", "127.0.0.1:9")
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own refusals
        code = exit_.code
    assert code == 2
    assert capsys.readouterr().err
