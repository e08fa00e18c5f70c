"""Job records (pure parts): the record, output keys from the manifest or the stage-out log, tails, the
overlap check."""

from __future__ import annotations

import json

import pytest

from dispatcher.domain.outcome import Outcome, OutcomeKind
from dispatcher.domain.record import (
    MAX_OUTPUTS,
    OutputList,
    OutputsSource,
    build_record,
    encode,
    finished_at,
    manifest_outputs,
    output_keys,
    record_folder,
    tail,
)
from dispatcher.fdl import (
    InputPath,
    RecordsOverlapError,
    ServiceDefinition,
    check_records_location,
    load_services,
)
from job_templates.stager.stage_out import Uploaded, manifest_bytes

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
        JOB,
        outcome,
        outputs=OutputList(({"bucket": "out", "key": "x/y"},), OutputsSource.MANIFEST),
        logs={"run": "…"},
        logs_missing={"stage-in": "unreadable: HTTP 503"},
        records_prefix="records/",
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
        "outputs_source": "manifest",
        "outputs_truncated": False,
        "logs": {"run": "records/upper/upper-abc/logs/run.log"},
        "logs_missing": {"stage-in": "unreadable: HTTP 503"},
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
    assert output_keys(log) == OutputList(
        ({"bucket": "b", "key": "out/1.txt"}, {"bucket": "c", "key": "deep/ü.bin"}), OutputsSource.LOG
    )
    assert output_keys("") == OutputList((), OutputsSource.LOG)


def uploads(count: int, bucket: str = "out") -> list[Uploaded]:
    return [Uploaded(bucket, f"res/{index:05d}.txt", index) for index in range(count)]


def test_a_manifest_of_5000_outputs_gives_all_of_them_in_order() -> None:
    written = uploads(5000)
    found = manifest_outputs(manifest_bytes(written))
    assert found.source is OutputsSource.MANIFEST
    assert not found.truncated
    assert list(found.entries) == [{"bucket": u.bucket, "key": u.key} for u in written]


def test_manifest_lines_survive_keys_with_newlines_and_unicode_line_separators() -> None:
    written = [Uploaded("b", "a\nb", 1), Uploaded("b", "c\u2028d\x85e", 2), Uploaded("b", "ü 写真", 3)]
    document = manifest_bytes(written)
    assert json.loads(document) == [{"bucket": u.bucket, "key": u.key, "size": u.size} for u in written]
    assert [e["key"] for e in manifest_outputs(document).entries] == [u.key for u in written]
    assert manifest_outputs(manifest_bytes([])) == OutputList((), OutputsSource.MANIFEST)


def test_a_manifest_cut_short_keeps_its_whole_lines_and_says_it_is_truncated() -> None:
    document = manifest_bytes(uploads(100))
    cut = document[: document.index(b"res/00050.txt") + 3]  # in the middle of line 51
    found = manifest_outputs(cut, cut=True)
    assert found.truncated
    assert [e["key"] for e in found.entries] == [f"res/{index:05d}.txt" for index in range(50)]


def test_a_record_lists_at_most_max_outputs_and_says_so() -> None:
    found = manifest_outputs(manifest_bytes(uploads(MAX_OUTPUTS + 1)))
    assert (len(found.entries), found.truncated) == (MAX_OUTPUTS, True)
    exactly = manifest_outputs(manifest_bytes(uploads(MAX_OUTPUTS)))
    assert (len(exactly.entries), exactly.truncated) == (MAX_OUTPUTS, False)


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
"""


@pytest.fixture
def services(tmp_path):
    path = tmp_path / "fdl.yaml"
    path.write_text(FDL)
    # A whole-bucket input: no FDL path names one since OSCAR 4.1, but the model holds it.
    beta = ServiceDefinition(
        name="beta", image="busybox", script="echo hi", inputs=(InputPath(bucket="archive"),)
    )
    return (*load_services([path]).services, beta)


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
