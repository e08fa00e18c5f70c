"""`POST /job/{service}`'s pure parts: the request id, telling a storage event from an opaque body as
OSCAR's FaaS Supervisor does, the task built for each, and the service token's shape and check."""

from __future__ import annotations

import base64
import json

import pytest

from bucketrun.admin.tokens import TOKEN_KEY, TOKEN_LENGTH, new_token, token_of, token_secret_name
from bucketrun.api.invocations import is_service_token, service_definition
from dispatcher.domain.events import build_message
from dispatcher.domain.identity import job_name, object_version
from dispatcher.domain.invocation import (
    BINARY_CONTENT,
    JSON_CONTENT,
    InvocationError,
    check_request_id,
    input_content,
    invocation_key,
    plan_invocation,
    storage_source,
)
from dispatcher.fdl import ServiceDefinition, load_services_text
from dispatcher.rendering.secrets import secret_name

FDL = """\
functions:
  oscar:
  - oscar:
      name: upper
      image: alpine:3.20
      script: "#!/bin/sh\\ncat \\"$INPUT_FILE_PATH\\"\\n"
      input:
      - storage_provider: minio.default
        path: photos/in
        suffix: [.txt]
      output:
      - storage_provider: minio.default
        path: photos/out
"""
BUCKET = "bucketrun-api"
RID = "0b8f5c3e-6a35-4a8e-9a38-8c1f7c4f1d2a"


@pytest.fixture
def service() -> ServiceDefinition:
    (loaded,) = load_services_text(FDL, source="test", base_dir=None).services
    return loaded


def minio_event(key: str, *, bucket: str = "photos", source: str = "minio:s3") -> bytes:
    body = json.loads(
        build_message(event_name="s3:ObjectCreated:Put", bucket=bucket, key=key, etag="e1", sequencer="17A0")
    )
    body["Records"][0]["eventSource"] = source
    return json.dumps(body).encode()


@pytest.mark.parametrize("value", [RID, "a", "job.1_2-3", "x" * 128])
def test_safe_request_ids_pass(value: str) -> None:
    assert check_request_id(value) == value


@pytest.mark.parametrize("value", ["", "-a", ".hidden", "..", "a/b", "a b", "é", "x" * 129, "a\n"])
def test_unsafe_request_ids_are_refused_by_name(value: str) -> None:
    with pytest.raises(InvocationError, match="X-Request-ID") as refused:
        check_request_id(value)
    assert repr(value)[:40] in str(refused.value) or len(value) > 40


def test_invocation_key_is_one_segment_per_part() -> None:
    assert invocation_key("upper", RID) == f"invocations/upper/{RID}"
    with pytest.raises(InvocationError):
        invocation_key("upper", "../records")


@pytest.mark.parametrize(
    ("body", "source"),
    [
        (minio_event("in/a.txt"), "minio:s3"),
        (minio_event("in/a.txt", source="aws:s3"), "aws:s3"),
        (minio_event("in/a.txt", source="OneTrigger"), "OneTrigger"),
        (minio_event("in/a.txt", source="elsewhere"), None),
        (b'{"Records": []}', None),
        (b'{"Records": [{"eventName": "x"}]}', None),
        (b'{"name": "value"}', None),
        (b"[1, 2]", None),
        (base64.b64encode(b"hello"), None),
        (b"\xff\xfe", None),
    ],
)
def test_storage_events_are_told_apart_as_the_supervisor_does(body: bytes, source: str | None) -> None:
    assert storage_source(body) == source


def test_a_json_body_is_the_input_as_it_is() -> None:
    body = b'{"text": "caf\\u00e9",  "n": 1}\n'
    assert input_content(body) is body


def test_any_other_body_is_base64_decoded_whitespace_ignored() -> None:
    content = bytes(range(256)) * 3
    encoded = base64.encodebytes(content)  # wrapped at 76 columns, as base64(1) writes it
    assert b"\n" in encoded.strip()
    assert input_content(encoded) == content
    assert input_content(b"") == b""


def test_a_body_neither_json_nor_base64_is_refused() -> None:
    with pytest.raises(InvocationError, match="neither JSON nor base64"):
        input_content(b"hello world!")


def test_an_opaque_body_becomes_a_task_for_its_stored_content(service: ServiceDefinition) -> None:
    task, content = plan_invocation(service, base64.b64encode(b"abc"), RID, bucket=BUCKET, max_bytes=1 << 20)
    assert content == b"abc"
    event = task.event
    assert (task.service, event.bucket, event.key) == ("upper", BUCKET, f"invocations/upper/{RID}")
    assert (event.size, event.content_type, event.event_name) == (3, BINARY_CONTENT, "s3:ObjectCreated:Put")
    json_task, json_content = plan_invocation(service, b'{"a": 1}', RID, bucket=BUCKET, max_bytes=1 << 20)
    assert json_content == b'{"a": 1}'
    assert json_task.event.content_type == JSON_CONTENT


def test_one_request_id_names_one_job_whatever_the_body(service: ServiceDefinition) -> None:
    def name(body: bytes, request_id: str) -> str:
        event = plan_invocation(service, body, request_id, bucket=BUCKET, max_bytes=1 << 20)[0].event
        return job_name("upper", event.bucket, event.key, object_version(event))

    first = name(b'{"a": 1}', RID)
    assert name(b'{"a": 1}', RID) == first
    assert name(base64.b64encode(b"other"), RID) == first
    assert name(b'{"a": 1}', RID + "x") != first


def test_a_storage_event_routes_its_record_to_the_service(service: ServiceDefinition) -> None:
    body = minio_event("in/a.txt")
    task, content = plan_invocation(service, body, RID, bucket=BUCKET, max_bytes=1 << 20)
    assert content is None
    assert (task.service, task.event.bucket, task.event.key) == ("upper", "photos", "in/a.txt")
    # The same Job as MinIO's own notification of that object version.
    assert object_version(task.event) == ":e1:17A0"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (minio_event("in/a.txt", bucket="records"), "no service watches bucket 'records'"),
        (minio_event("out/a.txt"), "is not an input of service 'upper'"),
        (minio_event("in/a.jpg"), "suffixes"),
        (minio_event("in/a.txt", source="OneTrigger"), "Onedata"),
    ],
)
def test_a_storage_event_outside_the_service_inputs_is_refused(
    service: ServiceDefinition, body: bytes, why: str
) -> None:
    with pytest.raises(InvocationError, match=why):
        plan_invocation(service, body, RID, bucket=BUCKET, max_bytes=1 << 20)


def test_a_storage_event_takes_exactly_one_identifiable_record(service: ServiceDefinition) -> None:
    document = json.loads(minio_event("in/a.txt"))
    document["Records"] *= 2
    with pytest.raises(InvocationError, match="2 records"):
        plan_invocation(service, json.dumps(document).encode(), RID, bucket=BUCKET, max_bytes=1 << 20)
    del document["Records"][1]
    del document["Records"][0]["s3"]["object"]["sequencer"]
    with pytest.raises(InvocationError, match="cannot be identified"):
        plan_invocation(service, json.dumps(document).encode(), RID, bucket=BUCKET, max_bytes=1 << 20)


def test_tokens_are_oscars_shape_and_kept_apart_from_secrets() -> None:
    token = new_token()
    assert len(token) == TOKEN_LENGTH == 64
    assert int(token, 16) >= 0
    assert new_token() != token
    assert token_secret_name("a") not in {secret_name("a"), secret_name("a-token")}
    encoded = base64.b64encode(token.encode()).decode()
    assert token_of({"data": {TOKEN_KEY: encoded}}) == token
    assert token_of({"data": {TOKEN_KEY: base64.b64encode(b"short").decode()}}) == ""
    assert token_of({"data": {TOKEN_KEY: "not base64!"}}) == ""
    assert token_of(None) == ""


def test_service_token_check() -> None:
    token = new_token()
    assert is_service_token(token, token)
    assert not is_service_token(token[:-1] + ("0" if token[-1] != "0" else "1"), token)
    assert not is_service_token(None, token)
    assert not is_service_token("", "")  # a service without a token takes no bearer
    assert not is_service_token(token, "")


def test_a_kept_definition_loads_as_the_applied_service() -> None:
    kept = {
        "name": "upper",
        "image": "alpine:3.20",
        "script": "#!/bin/sh\ncat $INPUT_FILE_PATH\n",
        "token": new_token(),
        "environment": {"secrets": {"KEY": ""}},
        "input": [{"storage_provider": "minio.default", "path": "photos/in"}],
    }
    loaded = service_definition(kept, cluster=None)
    assert loaded.name == "upper"
    assert [(item.bucket, item.folder) for item in loaded.inputs] == [("photos", "in")]
