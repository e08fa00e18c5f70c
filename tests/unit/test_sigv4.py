"""bucketrun's own SigV4 presigning gives exactly what the minio SDK gives for the same inputs.

`dispatcher.adapters.s3.sigv4` replaced the SDK's presigning on the hot path (it rebuilt the signing
key on every call). These differential tests hold it to the SDK byte for byte: presigned GET URLs for
ordinary and hostile keys, versions, path-style, virtual-host and https endpoints, and POST policy form
fields.
That moto and the stager accept them is shown by the integration and end-to-end tests.
"""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from minio import Minio  # noqa: TID251 - the SDK is the reference these tests compare with
from minio.datatypes import PostPolicy  # noqa: TID251

from dispatcher.adapters.s3 import sigv4
from dispatcher.adapters.s3.storage import Storage
from dispatcher.fdl import ServiceDefinition
from dispatcher.runtime.settings import StorageSettings

ACCESS = "AKIDEXAMPLE0123"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
EXPIRES = timedelta(hours=2)


def _service(output_bucket: str = "results", folder: str = "upper/done") -> ServiceDefinition:
    return ServiceDefinition.model_validate(
        {
            "name": "upper",
            "image": "alpine:3",
            "script": "true",
            "inputs": [{"bucket": "incoming", "folder": "in"}],
            "outputs": [{"bucket": output_bucket, "folder": folder}],
        }
    )


def _storage(endpoint: str = "127.0.0.1:9000", *, secure: bool = False, region: str = "eu-test-1") -> Storage:
    values = {
        "endpoint": endpoint,
        "access_key": ACCESS,
        "secret_key": SECRET,
        "region": region,
        "secure": secure,
    }
    return Storage(StorageSettings.model_validate(values), clock=lambda: NOW)


def _sdk(endpoint: str = "127.0.0.1:9000", *, secure: bool = False, region: str = "eu-test-1") -> Minio:
    return Minio(endpoint, access_key=ACCESS, secret_key=SECRET, region=region, secure=secure)


def _sdk_get(client: Minio, bucket: str, key: str, version_id: str | None = None) -> str:
    return client.presigned_get_object(bucket, key, expires=EXPIRES, request_date=NOW, version_id=version_id)


ENDPOINTS = [
    ("127.0.0.1:9000", False, "eu-test-1"),
    ("minio.example:9443", True, "us-east-1"),
    ("s3.amazonaws.com", True, "eu-west-3"),  # virtual-host style URLs
]


@pytest.mark.parametrize(("endpoint", "secure", "region"), ENDPOINTS)
@pytest.mark.parametrize(
    ("key", "version"),
    [
        ("in/photo.jpg", None),
        ("in/photo.jpg", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"),
        ("in/a b/ü+%2F?#&=.txt", "null-ish=&"),
        ("in/" + "x" * 900, None),
        ("in/~tilde/*star*/'quote'/\"dq\"", None),
    ],
)
def test_presigned_get_equals_the_sdk(endpoint, secure, region, key, version):
    storage = _storage(endpoint, secure=secure, region=region)
    ours = storage.grants_for(_service(), "incoming", key, expires=EXPIRES, version_id=version).input_url
    assert ours == _sdk_get(_sdk(endpoint, secure=secure, region=region), "incoming", key, version)


@settings(max_examples=150, deadline=None)
@given(
    key=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=60),
    version=st.none()
    | st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20),
)
@example(key=" ", version=None)  # refused by the SDK with an empty message
@example(key="a/../b", version="v")
def test_presigned_get_equals_the_sdk_for_any_key(key, version):
    storage, client = _storage(), _sdk()
    try:
        expected = _sdk_get(client, "incoming", key, version)
    except ValueError as refused:
        with pytest.raises(ValueError, match=f"^{re.escape(str(refused))}$"):
            storage.grants_for(_service(), "incoming", key, expires=EXPIRES, version_id=version)
        return
    assert (
        storage.grants_for(_service(), "incoming", key, expires=EXPIRES, version_id=version).input_url
        == expected
    )


@pytest.mark.parametrize(("endpoint", "secure", "region"), ENDPOINTS)
@pytest.mark.parametrize("job", ["upper-0123456789abcdef", "a" * 63])
def test_presigned_manifest_put_equals_the_sdk(endpoint, secure, region, job):
    storage = _storage(endpoint, secure=secure, region=region)
    ours = storage.grants_for(_service(), "incoming", "in/x", expires=EXPIRES, job=job).outputs_manifest_url
    key = f"records/upper/{job}/outputs.json"  # the default records location
    client = _sdk(endpoint, secure=secure, region=region)
    assert ours == client.get_presigned_url(
        "PUT", "bucketrun-records", key, expires=EXPIRES, request_date=NOW
    )


def _sdk_post_fields(
    monkeypatch: pytest.MonkeyPatch, client: Minio, bucket: str, prefix: str, max_bytes: int
) -> dict[str, str]:
    import minio.datatypes  # noqa: PLC0415, TID251 - the SDK's own clock, frozen for the comparison

    class Frozen(datetime):
        @classmethod
        def utcnow(cls) -> datetime:  # type: ignore[override]
            return NOW.replace(tzinfo=None)

    policy = PostPolicy(bucket, NOW + EXPIRES)
    policy.add_starts_with_condition("key", prefix)
    policy.add_starts_with_condition("Content-Type", "")
    policy.add_content_length_range_condition(0, max_bytes)
    monkeypatch.setattr(minio.datatypes, "datetime", Frozen)  # after PostPolicy's isinstance check
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "datetime.datetime.utcnow", DeprecationWarning)
        return client.presigned_post_policy(policy)


@pytest.mark.parametrize(("endpoint", "secure", "region"), ENDPOINTS)
@pytest.mark.parametrize("folder", ["upper/done", "", 'ünï/cødé "q"'])
def test_post_policy_equals_the_sdk(monkeypatch, endpoint, secure, region, folder):
    storage = _storage(endpoint, secure=secure, region=region)
    (grant,) = storage.grants_for(_service("results", folder), "incoming", "in/x", expires=EXPIRES).outputs
    prefix = f"{folder}/" if folder else ""
    max_bytes = StorageSettings.model_validate(
        {"endpoint": endpoint, "access_key": ACCESS, "secret_key": SECRET}
    ).max_upload_bytes
    expected = _sdk_post_fields(
        monkeypatch, _sdk(endpoint, secure=secure, region=region), "results", prefix, max_bytes
    )
    assert dict(grant.form_fields) == expected


def test_signing_key_is_made_once_per_day_and_changes_with_it():
    keys = sigv4.SigningKeys(ACCESS, SECRET, "eu-test-1")
    first = keys.key("20260304")
    assert keys.key("20260304") is first
    assert keys.key("20260305") != first
    assert SECRET not in repr(keys)
    assert ACCESS not in repr(keys)


def test_a_new_day_signs_with_the_new_days_key():
    """A process running past midnight must not sign with yesterday's key: compare with the SDK after."""
    moments = iter([NOW, NOW + timedelta(days=1)])
    storage = Storage(
        StorageSettings.model_validate(
            {"endpoint": "127.0.0.1:9000", "access_key": ACCESS, "secret_key": SECRET, "region": "eu-test-1"}
        ),
        clock=lambda: next(moments),
    )
    storage.grants_for(_service(), "incoming", "in/a", expires=EXPIRES)
    later = storage.grants_for(_service(), "incoming", "in/a", expires=EXPIRES).input_url
    expected = _sdk().presigned_get_object(
        "incoming", "in/a", expires=EXPIRES, request_date=NOW + timedelta(days=1)
    )
    assert later == expected


@pytest.mark.parametrize("bucket", ["a", "192.168.1.1", "a..b", "-leading", "x" * 64])
def test_invalid_bucket_names_are_refused_as_the_sdk_does(bucket):
    with pytest.raises(ValueError, match="bucket name"):
        _sdk_get(_sdk(), bucket, "in/x")
    with pytest.raises(ValueError, match="bucket name"):
        _storage().grants_for(_service(), bucket, "in/x", expires=EXPIRES)
