"""Soak with faults (issue #9): events through the real stack while RabbitMQ, dispatcher replicas, the
watcher leader, the Kubernetes API and S3 fail on purpose; nothing may be lost or done twice.

CI runs the reduced profile (1,000 events, every fault once or more; a few minutes on 2 cores).
`BUCKETRUN_SOAK_EVENTS=10000` runs the full one; `BUCKETRUN_SOAK_REPORT=path.json` keeps the report.
The same run from the command line: `python -m tests.reliability.soak --events N --report PATH`.
The verdict's accounting is checked first on canned facts, so a broken accounting cannot pass a run.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from minio.versioningconfig import ENABLED, VersioningConfig  # noqa: TID251 - a versioned bucket, as the soak's

from tests.backends.rabbit_node import PrivateRabbitNode
from tests.backends.s3 import S3Scope
from tests.reliability.soak import Profile, record_versions, run_soak, summarise
from tests.reliability.soak_report import (
    FaultRecord,
    JobSeen,
    Observed,
    SentEvent,
    broken_targets,
    build_report,
    render_table,
)

EVENTS = int(os.environ.get("BUCKETRUN_SOAK_EVENTS", "1000"))
TIMEOUT = int(1200 + EVENTS * 0.6)
"""The whole soak's bound: generous for a loaded 2-core machine, finite so a stuck run fails."""


def _sent() -> list[SentEvent]:
    return [
        SentEvent(0, "job", "in-a", "in/0.txt", "a", "a-job0"),
        SentEvent(1, "job", "in-b", "in/1.txt", "b", "b-job1"),
        SentEvent(2, "ignore", "in-a", "in/gone.txt"),
        SentEvent(3, "dead-letter", "nowhere", "in/stray.txt"),
    ]


def _observed(**changes: object) -> Observed:
    facts: dict[str, object] = {
        "jobs": [
            JobSeen("a-job0", "a", "in-a", "in/0.txt", "v0"),
            JobSeen("b-job1", "b", "in-b", "in/1.txt", "v1"),
        ],
        "record_versions": {"a-job0": 1, "b-job1": 1},
        "dead_letters": [("unknown-bucket", "nowhere", "in/stray.txt")],
        "creates_created": 2,
        "creates_existing": 3,
    }
    facts.update(changes)
    return Observed(**facts)  # type: ignore[arg-type]


def _broken(observed: Observed, faults: list[FaultRecord] | None = None) -> list[str]:
    return broken_targets(build_report(_sent(), observed, faults or [], profile={}))


@pytest.mark.reliability
def test_the_accounting_passes_a_clean_run_and_prints_every_figure() -> None:
    report = build_report(_sent(), _observed(), [FaultRecord("f", 1.0, 2.0, "creates", 0.5)], profile={})
    assert broken_targets(report) == []
    assert report["accounted_for"] == report["events_in"] == 4
    assert report["creates_answered_409"] == 3  # redeliveries meeting their Job are no duplicates
    table = render_table(report)
    for figure in ("duplicate Jobs", "lost: events without a Job", "DLQ entries", "recovered after"):
        assert figure in table


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("observed", "target"),
    [
        (
            _observed(jobs=[JobSeen("a-job0", "a", "in-a", "in/0.txt", "v0")], creates_created=1),
            "lost_jobs=1",
        ),
        (_observed(record_versions={"a-job0": 1}), "lost_records=1"),
        (_observed(record_versions={"a-job0": 2, "b-job1": 1}), "duplicate_records=1"),
        (
            _observed(
                jobs=[
                    JobSeen("a-job0", "a", "in-a", "in/0.txt", "v0"),
                    JobSeen("b-job1", "b", "in-b", "in/1.txt", "v1"),
                    JobSeen("a-other", "a", "in-a", "in/0.txt", "v0"),
                ],
                creates_created=3,
            ),
            "duplicate_jobs=1",
        ),
        (_observed(creates_created=3), "duplicate_jobs=1"),  # a 201 more than there are Jobs
        (_observed(dead_letters=[]), "dlq_missing=1"),
        (_observed(dead_letters=[("unknown-bucket", "nowhere", "in/stray.txt")] * 2), "dlq_unexpected=1"),
        (_observed(undrained={"q.ingress": 3}), "queues not drained"),
    ],
    ids=[
        "lost-job",
        "lost-record",
        "duplicate-record",
        "duplicate-job",
        "extra-201",
        "dlq-missing",
        "dlq-extra",
        "undrained",
    ],
)
def test_the_accounting_names_each_missed_target(observed: Observed, target: str) -> None:
    broken = _broken(observed)
    assert any(target in line for line in broken), broken


@pytest.mark.reliability
def test_a_fault_after_which_nothing_moved_fails_the_soak() -> None:
    stuck = FaultRecord(
        "dispatcher SIGKILL #1", 1.0, 1.0, "creates", None, "killed pid 1; NO PROGRESS AFTERWARDS"
    )
    never = FaultRecord("forced 410 Gone", 5.0, 5.0, "records", None)
    broken = _broken(_observed(), [stuck, never])
    assert any("dispatcher SIGKILL #1" in line for line in broken)
    assert any("forced 410 Gone" in line for line in broken)


@pytest.mark.reliability
@pytest.mark.integration
def test_record_versions_reads_every_version_of_every_record(s3: S3Scope) -> None:
    """More records than one page of a listing holds, logs among them; a rewrite of the same bytes is
    one record, a second status.json with other contents is a second record."""
    bucket = s3.bucket("records")
    client = s3.endpoint.client()
    client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))

    def put(key: str, body: bytes) -> None:
        client.put_object(bucket, key, io.BytesIO(body), len(body))

    def write(index: int) -> None:
        folder = f"records/svc{index % 3}/job-{index:04d}/"
        put(folder + "logs/run.log", b"")
        put(folder + "status.json", b'{"job": %d}' % index)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(1100)))
    put("records/svc1/job-0007/status.json", b'{"job": 7}')  # the same record, written twice
    put("records/svc2/job-1001/status.json", b'{"job": 1001, "again": true}')  # a second record
    stack = SimpleNamespace(
        settings=SimpleNamespace(storage=SimpleNamespace(records_bucket=bucket, records_prefix="records/")),
        minio=s3.endpoint.client,
    )
    found = record_versions(stack)  # type: ignore[arg-type]
    assert len(found) == 1100
    assert found["job-1001"] == 2
    assert found["job-0007"] == 1
    assert sum(found.values()) == 1101


@pytest.mark.reliability
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
# aio-pika leaves an un-awaited close() behind when a connect races the broker going down (the soak
# stops it on purpose); the soak's publisher looks before connecting, this covers the rare race.
@pytest.mark.filterwarnings("ignore:coroutine 'Connection.close' was never awaited:RuntimeWarning")
async def test_soak_with_faults_loses_nothing_and_does_nothing_twice(
    private_rabbitmq: PrivateRabbitNode, tmp_path: Path
) -> None:
    profile = Profile(events=EVENTS, services=5, rate=60.0 if EVENTS >= 5000 else 40.0)
    report = await run_soak(profile, tmp_path / "soak", node=private_rabbitmq)
    table, broken = summarise(report)
    print(table)
    kept = Path(os.environ.get("BUCKETRUN_SOAK_REPORT") or tmp_path / "soak-report.json")
    await asyncio.to_thread(kept.write_text, json.dumps(report, indent=2) + "\n")
    assert not broken, "targets missed:\n" + "\n".join(broken) + "\n\n" + table
    assert report["events_in"] == EVENTS
    assert len(report["faults"]) == 12  # every fault was injected, none skipped
