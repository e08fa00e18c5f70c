"""Storage grants without a server: the POST policy document, expiry, URLs, secrets, error mapping.

moto (the S3 server of the integration tests) checks neither signatures nor policies, so what a policy
allows is checked here, on the document this adapter signs.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3
from minio.error import S3Error, ServerError  # noqa: TID251 - building the SDK's errors to map them

from dispatcher.adapters.s3.storage import Storage, output_key_prefix, storage_error
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.fdl import ServiceDefinition
from dispatcher.runtime.settings import StorageSettings
from job_templates.stager import transfer

ACCESS = "AKIDEXAMPLE0123"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
OTHER_SECRET = "other-provider-secret-value"
NOW = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Presigning must be pure computation: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("presigning tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def settings(**overrides) -> StorageSettings:
    values = {"endpoint": "127.0.0.1:1", "access_key": ACCESS, "secret_key": SECRET, "region": "eu-test-1"}
    return StorageSettings.model_validate(values | overrides)


def service(**overrides) -> ServiceDefinition:
    values = {
        "name": "upper",
        "image": "alpine:3",
        "script": "tr a-z A-Z < $INPUT_FILE_PATH > $TMP_OUTPUT_DIR/out.txt",
        "inputs": [{"bucket": "incoming", "folder": "in"}],
        "outputs": [
            {"bucket": "results", "folder": "upper/done", "suffix": [".txt"]},
            {"bucket": "archive"},
        ],
    }
    return ServiceDefinition.model_validate(values | overrides)


def grants(storage=None, svc=None, **kwargs):
    storage = storage or Storage(settings(), clock=lambda: NOW)
    kwargs.setdefault("expires", timedelta(hours=2))
    return storage.grants_for(svc or service(), "incoming", "in/photo 1+2.jpg", **kwargs)


def test_the_manifest_grant_is_a_put_of_exactly_the_jobs_outputs_json_in_its_record_folder():
    storage = Storage(settings(records_bucket="recs", records_prefix="/deep/records/"), clock=lambda: NOW)
    result = grants(storage, job="upper-0123")
    url = urlsplit(result.outputs_manifest_url)
    assert (url.netloc, url.path) == ("127.0.0.1:1", "/recs/deep/records/upper/upper-0123/outputs.json")
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["7200"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert SECRET not in result.outputs_manifest_url
    assert result.outputs_manifest_url not in repr(result)
    assert grants().outputs_manifest_url is None  # no Job name, no manifest grant


def policy_of(grant) -> dict:
    return json.loads(base64.b64decode(grant.form_fields["policy"]))


def conditions(policy: dict) -> list:
    return policy["conditions"]


def test_input_url_is_a_get_for_exactly_that_object_and_expiry():
    result = grants()
    url = urlsplit(result.input_url)
    assert url.scheme == "http"
    assert url.netloc == "127.0.0.1:1"
    assert url.path == "/incoming/in/photo%201%2B2.jpg"  # path-style, key escaped
    query = parse_qs(url.query)
    assert query["X-Amz-Expires"] == ["7200"]
    assert query["X-Amz-Date"] == ["20260304T050607Z"]  # the injected clock, whole seconds
    assert query["X-Amz-Credential"][0].startswith(f"{ACCESS}/20260304/eu-test-1/s3/aws4_request")
    assert "versionId" not in query
    assert result.expires_at == "2026-03-04T07:06:07Z"


def test_input_url_pins_the_version_when_given():
    query = parse_qs(urlsplit(grants(version_id="3f9c-v2").input_url).query)
    assert query["versionId"] == ["3f9c-v2"]


def test_one_post_policy_per_output_restricted_to_bucket_and_folder():
    result = grants()
    assert [(o.bucket, o.folder) for o in result.outputs] == [("results", "upper/done"), ("archive", "")]
    first, second = result.outputs
    assert first.url == "http://127.0.0.1:1/results"
    assert second.url == "http://127.0.0.1:1/archive"
    assert first.suffix == (".txt",)
    policy = policy_of(first)
    assert ["eq", "$bucket", "results"] in conditions(policy)
    assert ["starts-with", "$key", "upper/done/"] in conditions(policy)
    assert ["content-length-range", 0, 5 * 1024**3] in conditions(policy)
    assert ["starts-with", "$key", ""] in conditions(policy_of(second))  # no folder: the whole bucket


def test_policy_expires_with_the_get_url():
    result = grants(expires=timedelta(minutes=90))
    for output in result.outputs:
        assert policy_of(output)["expiration"] == "2026-03-04T06:36:07.000Z"
    assert result.expires_at == "2026-03-04T06:36:07Z"


def test_policy_form_fields_are_what_s3_needs():
    fields = grants().outputs[0].form_fields
    assert set(fields) == {"policy", "x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"}
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"
    policy_conditions = conditions(policy_of(grants().outputs[0]))
    assert ["eq", "$x-amz-credential", fields["x-amz-credential"]] in policy_conditions


def test_upload_size_bound_comes_from_settings():
    storage = Storage(settings(max_upload_bytes=1024), clock=lambda: NOW)
    assert ["content-length-range", 0, 1024] in conditions(policy_of(grants(storage).outputs[0]))


def test_no_long_lived_secret_in_any_field():
    result = grants()
    texts = [result.input_url, result.expires_at]
    for output in result.outputs:
        texts += [
            output.url,
            *output.form_fields.values(),
            base64.b64decode(output.form_fields["policy"]).decode(),
        ]
    assert not any(SECRET in text for text in texts)
    # The access key id appears, but only as the head of a credential scope (S3 needs it to find the key).
    scope = re.compile(re.escape(ACCESS) + r"(/|%2F)\d{8}(/|%2F)eu-test-1(/|%2F)s3(/|%2F)aws4_request")
    assert any(scope.search(text) for text in texts)
    assert not any(ACCESS in scope.sub("", text) for text in texts)


def test_storage_repr_shows_no_key():
    shown = repr(Storage(settings()))
    assert SECRET not in shown
    assert ACCESS not in shown
    assert "127.0.0.1:1" in shown


def test_outputs_on_another_provider_are_signed_with_its_credentials():
    svc = service(
        outputs=[{"bucket": "results"}, {"provider": "minio.edge", "bucket": "elsewhere", "folder": "out"}],
        storage_providers={
            "minio.edge": {
                "kind": "minio",
                "id": "edge",
                "endpoint": "https://edge.example:9443",
                "region": "edge-1",
                "access_key": "EDGEKEY",
                "secret_key": OTHER_SECRET,
            }
        },
    )
    _, other = grants(svc=svc).outputs
    assert other.provider == "minio.edge"
    assert other.url == "https://edge.example:9443/elsewhere"
    credential = other.form_fields["x-amz-credential"].split("/")
    assert (credential[0], credential[2]) == ("EDGEKEY", "edge-1")  # [1] is the signing day (the SDK's clock)
    assert OTHER_SECRET not in json.dumps(dict(other.form_fields))


def test_aws_provider_without_endpoint_uses_virtual_host_urls():
    svc = service(
        outputs=[{"provider": "s3.aws", "bucket": "my-results"}],
        storage_providers={
            "s3.aws": {"kind": "s3", "id": "aws", "region": "eu-west-3", "access_key": "A", "secret_key": "B"}
        },
    )
    (output,) = grants(svc=svc).outputs
    assert output.url == "https://my-results.s3.eu-west-3.amazonaws.com/"


def test_secure_endpoint_gives_https_urls():
    storage = Storage(settings(secure=True, endpoint="minio.example:443"), clock=lambda: NOW)
    assert grants(storage).input_url.startswith("https://minio.example/incoming/")


@pytest.mark.parametrize("expires", [timedelta(0), timedelta(days=8)])
def test_expiry_outside_s3_limits_is_refused(expires):
    with pytest.raises(ValueError, match="expire within"):
        grants(expires=expires)


def test_output_key_prefix():
    with_folder, bucket_root = service().outputs
    assert output_key_prefix(with_folder) == "upper/done/"
    assert output_key_prefix(bucket_root) == ""


def s3_error(status: int, code: str, headers: dict | None = None) -> S3Error:
    response = urllib3.HTTPResponse(status=status, headers=headers or {})
    return S3Error(response, code, "message", "/bucket/key", "req-1", "host-1", "bucket", "key")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (s3_error(503, "SlowDown"), "storage-5xx"),
        (s3_error(500, "InternalError"), "storage-5xx"),
        (s3_error(400, "RequestTimeout"), "storage-5xx"),
        (ServerError("bad gateway", 502), "storage-5xx"),
        (urllib3.exceptions.MaxRetryError(None, "/x", reason=None), "storage-connection"),
        (ConnectionRefusedError(111, "refused"), "storage-connection"),
    ],
)
def test_transient_failures(error, kind):
    mapped = storage_error("get incoming/a", error)
    assert isinstance(mapped, TransientError)
    assert mapped.kind == kind
    assert "incoming/a" in str(mapped)


def test_what_the_stager_retries_is_transient_here_too():
    # The stager keeps its own list (it imports nothing of bucketrun): the two must not drift apart.
    for code in transfer._TRANSIENT_CODES:
        assert isinstance(storage_error("get b/k", s3_error(400, code)), TransientError), code
    for status in transfer._TRANSIENT_STATUSES:
        assert isinstance(storage_error("get b/k", s3_error(status, "")), TransientError), status
    assert isinstance(storage_error("put b/k", s3_error(409, "OperationAborted")), TransientError)


def test_retry_after_is_carried():
    mapped = storage_error("put b/k", s3_error(503, "SlowDown", {"Retry-After": "7"}))
    assert isinstance(mapped, TransientError)
    assert mapped.retry_after == 7.0


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (s3_error(404, "NoSuchBucket"), "storage-not-found"),
        (s3_error(404, "NoSuchKey"), "storage-not-found"),
        (s3_error(403, "AccessDenied"), "storage-access-denied"),
        (s3_error(403, "SignatureDoesNotMatch"), "storage-access-denied"),
        (s3_error(400, "InvalidBucketName"), "storage-refused"),
    ],
)
def test_permanent_failures(error, reason):
    mapped = storage_error("stat b/k", error)
    assert isinstance(mapped, PermanentError)
    assert mapped.reason == reason
    assert error.code in str(mapped)
