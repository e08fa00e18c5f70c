"""Job records (pure parts): the record, output keys from the stage-out log, tails, the overlap check."""

from __future__ import annotations

import json

import pytest

from dispatcher.services import RecordsOverlapError, check_records_location, load_services
from watcher.outcome import Outcome, OutcomeKind
from watcher.records import (
    build_record,
    encode,
    finished_at,
    output_keys,
    record_folder,
    tail,
)

JOB = {
    "metadata": {
        "name": "upper-abc",
        "namespace": "bucketrun",
        "uid": "1234",
        "creationTimestamp": "2026-01-01T00:00:00Z",
        "labels": {"bucketrun.io/service": "upper"},
        "annotations": {
            "bucketrun.io/bucket": "photos",
            "bucketrun.io/key": "in/a b+ü.txt",
            "bucketrun.io/object-version": "",
        },
    },
    "spec": {
        "template": {"spec": {"initContainers": [{"name": "stage-in"}], "containers": [{"name": "run"}]}}
    },
    "status": {
        "startTime": "2026-01-01T00:00:01Z",
        "conditions": [
            {"type": "FailureTarget", "status": "True", "lastTransitionTime": "2026-01-01T00:00:09Z"},
            {"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"},
        ],
    },
}


def test_the_record_holds_input_job_outcome_timings_outputs_and_log_keys() -> None:
    outcome = Outcome(OutcomeKind.FAILED, "ScriptFailed", "the script exited with code 1", 1)
    record = build_record(
        JOB, outcome, outputs=[{"bucket": "out", "key": "x/y"}], logs={"run": "…"}, records_prefix="records/"
    )
    assert record == {
        "schema": "bucketrun.io/job-record/v1",
        "service": "upper",
        "bucket": "photos",
        "key": "in/a b+ü.txt",
        "version": None,
        "job": "upper-abc",
        "namespace": "bucketrun",
        "uid": "1234",
        "outcome": "failed",
        "reason": "ScriptFailed",
        "message": "the script exited with code 1",
        "exit_code": 1,
        "created": "2026-01-01T00:00:00Z",
        "started": "2026-01-01T00:00:01Z",
        "finished": "2026-01-01T00:00:10Z",
        "outputs": [{"bucket": "out", "key": "x/y"}],
        "logs": {"run": "records/upper/upper-abc/logs/run.log"},
    }
    assert json.loads(encode(record)) == record


def test_finished_prefers_completion_time() -> None:
    done = {**JOB, "status": {**JOB["status"], "completionTime": "2026-01-01T00:00:05Z"}}
    assert finished_at(done) == "2026-01-01T00:00:05Z"
    assert finished_at({"status": {}}) is None


def test_output_keys_come_from_the_stage_out_upload_lines_once_each() -> None:
    log = "\n".join(
        [
            "stage-out: waiting for the script",
            json.dumps({"event": "uploaded", "bucket": "b", "key": "out/1.txt", "size": 3}),
            '{"event": "skipped", "bucket": "b", "key": "out/2.txt"}',
            json.dumps({"event": "uploaded", "bucket": "b", "key": "out/1.txt", "size": 3}),
            "{not json",
            json.dumps({"event": "uploaded", "bucket": "c", "key": "deep/ü.bin"}),
        ]
    )
    assert output_keys(log) == [{"bucket": "b", "key": "out/1.txt"}, {"bucket": "c", "key": "deep/ü.bin"}]
    assert output_keys("") == []


@pytest.mark.parametrize(
    ("text", "lines", "kept"), [("a\nb\nc\n", 2, "b\nc\n"), ("a\nb", 5, "a\nb"), ("a\n", 0, "")]
)
def test_tail(text, lines, kept) -> None:
    assert tail(text, lines) == kept


def test_record_folder() -> None:
    assert record_folder("records/", "upper", "j") == "records/upper/j/"


FDL = """
functions:
  oscar:
  - a:
      name: alpha
      image: busybox
      script: echo hi
      input: [{storage_provider: minio, path: photos/in}]
  - b:
      name: beta
      image: busybox
      script: echo hi
      input: [{storage_provider: minio, path: archive}]
"""


@pytest.fixture
def services(tmp_path):
    path = tmp_path / "fdl.yaml"
    path.write_text(FDL)
    return load_services([path]).services


@pytest.mark.parametrize(
    ("bucket", "prefix", "named"),
    [
        ("photos", "in/records/", ["alpha"]),
        ("photos", "", ["alpha"]),
        ("archive", "records/", ["beta"]),
    ],
)
def test_a_records_location_overlapping_an_input_is_refused_naming_the_service(
    services, bucket, prefix, named
):
    with pytest.raises(RecordsOverlapError) as refused:
        check_records_location(bucket, prefix, services)
    for name in named:
        assert f"service {name!r}" in str(refused.value)
    assert "RECORDS_BUCKET" in str(refused.value)


@pytest.mark.parametrize(
    ("bucket", "prefix"), [("photos", "input/"), ("photos", "records/"), ("records", "")]
)
def test_records_elsewhere_are_accepted(services, bucket, prefix) -> None:
    check_records_location(bucket, prefix, services)
