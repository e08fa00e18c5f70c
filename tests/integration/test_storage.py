"""The storage adapter against a real S3 server over HTTP: grants used as a job's stager uses them.

The general S3 server (`s3_endpoint`; moto where nothing else answers, which checks no signature or
policy) proves the URLs and forms are well-formed and aimed at the right objects. What the grants forbid
is proved against the MinIO built from source (`minio_s3`, `make servers`), which enforces signatures and
POST policies, in every run including CI: each refusal comes with the legitimate request it differs from
by one thing, accepted by the same server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from minio.commonconfig import ENABLED  # noqa: TID251 - test set-up talks to S3 directly
from minio.versioningconfig import VersioningConfig  # noqa: TID251

from dispatcher.adapters.s3.storage import Storage
from dispatcher.domain.errors import PermanentError, TransientError
from dispatcher.fdl import ServiceDefinition
from dispatcher.rendering.context import OutputGrant
from dispatcher.runtime.settings import StorageSettings
from tests.backends import free_port
from tests.backends.s3 import S3Endpoint, S3Scope

pytestmark = pytest.mark.integration


def storage_for(
    s3_server: S3Endpoint, *, clock: Callable[[], datetime] | None = None, **overrides
) -> Storage:
    values = {
        "endpoint": s3_server.endpoint,
        "access_key": s3_server.access_key,
        "secret_key": s3_server.secret_key,
        "region": s3_server.region,
        "secure": s3_server.secure,
        "request_timeout": 5.0,
    }
    settings = StorageSettings.model_validate(values | overrides)
    return Storage(settings) if clock is None else Storage(settings, clock=clock)


def service_for(inputs: str, outputs: str) -> ServiceDefinition:
    return ServiceDefinition.model_validate(
        {
            "name": "copy",
            "image": "alpine:3",
            "script": "cp $INPUT_FILE_PATH $TMP_OUTPUT_DIR/",
            "inputs": [{"bucket": inputs, "folder": "in"}],
            "outputs": [{"bucket": outputs, "folder": "results/copy"}],
        }
    )


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a presigned http(s) URL
        return response.read()


def download_status(url: str) -> tuple[int, str]:
    """The HTTP status and body of a GET, refusals included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a presigned http(s) URL
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        with error:  # an error answer holds its connection open until closed
            return error.code, error.read().decode(errors="replace")


@dataclass(frozen=True)
class Post:
    """One form POST made with an output grant: where to, with which fields, which key and what content."""

    url: str
    fields: dict[str, str]
    key: str
    data: bytes


async def post(attempt: Post) -> tuple[int, str]:
    """POST a file the way a browser (and the stager) does: the policy's fields, then the file last."""
    form = aiohttp.FormData()
    for name, value in attempt.fields.items():
        form.add_field(name, value)
    form.add_field("key", attempt.key)
    form.add_field("Content-Type", "text/plain")
    form.add_field("file", attempt.data, filename="out.txt", content_type="text/plain")
    async with aiohttp.ClientSession() as session, session.post(attempt.url, data=form) as response:
        return response.status, await response.text()


async def upload(grant: OutputGrant, key: str, data: bytes) -> tuple[int, str]:
    """POST *data* as *key* with the grant as it was given."""
    return await post(Post(grant.url, dict(grant.form_fields), key, data))


@pytest.fixture
def buckets(s3: S3Scope) -> tuple[str, str]:
    return s3.bucket("in"), s3.bucket("out")


async def test_presigned_get_downloads_exactly_the_object(s3_endpoint, buckets):
    inputs, outputs = buckets
    storage = storage_for(s3_endpoint)
    await storage.put_object(inputs, "in/a b+c.txt", b"the input")
    await storage.put_object(inputs, "in/other.txt", b"not this one")
    grants = storage.grants_for(
        service_for(inputs, outputs), inputs, "in/a b+c.txt", expires=timedelta(hours=1)
    )
    assert await asyncio.to_thread(download, grants.input_url) == b"the input"


async def test_presigned_get_pins_the_version_that_triggered_the_job(s3_endpoint, s3, buckets):
    inputs, outputs = buckets
    s3.endpoint.client().set_bucket_versioning(inputs, VersioningConfig(ENABLED))
    storage = storage_for(s3_endpoint)
    first = await storage.put_object(inputs, "in/doc.txt", b"version one")
    await storage.put_object(inputs, "in/doc.txt", b"version two")
    assert first.version_id
    grants = storage.grants_for(
        service_for(inputs, outputs),
        inputs,
        "in/doc.txt",
        expires=timedelta(hours=1),
        version_id=first.version_id,
    )
    assert await asyncio.to_thread(download, grants.input_url) == b"version one"


async def test_presigned_post_uploads_under_the_output_folder(s3_endpoint, buckets):
    inputs, outputs = buckets
    storage = storage_for(s3_endpoint)
    grants = storage.grants_for(service_for(inputs, outputs), inputs, "in/x.txt", expires=timedelta(hours=1))
    (grant,) = grants.outputs
    status, body = await upload(grant, "results/copy/x.txt", b"the result")
    assert status in {200, 201, 204}, body
    info = await storage.stat(outputs, "results/copy/x.txt")
    assert info.size == len(b"the result")
    assert await storage.get_object(outputs, "results/copy/x.txt") == b"the result"
    listed = await storage.list(outputs, "results/")
    assert [item.key for item in listed] == ["results/copy/x.txt"]


async def test_missing_object_and_bucket_are_permanent(s3_endpoint, buckets):
    inputs, _ = buckets
    storage = storage_for(s3_endpoint)
    with pytest.raises(PermanentError) as missing_key:
        await storage.get_object(inputs, "in/never-written.txt")
    assert missing_key.value.reason == "storage-not-found"
    assert "in/never-written.txt" in str(missing_key.value)
    with pytest.raises(PermanentError) as missing_bucket:
        await storage.stat("no-such-bucket-bucketrun-test", "k")
    assert missing_bucket.value.reason == "storage-not-found"


async def test_unreachable_server_is_transient(s3_endpoint):
    storage = storage_for(s3_endpoint, endpoint=f"127.0.0.1:{free_port()}")
    with pytest.raises(TransientError) as caught:
        await storage.stat("some-bucket", "k")
    assert caught.value.kind == "storage-connection"
    assert isinstance(caught.value.__cause__, Exception)


# -- what only a real server enforces: the MinIO built from source (`make servers`) ------------------------

MAX_BYTES = 16  # the grants' content-length-range in these tests
KEY = "results/copy/x.txt"  # inside the output folder of service_for()


@pytest.fixture
def minio_buckets(minio_s3: S3Scope) -> tuple[str, str]:
    return minio_s3.bucket("in"), minio_s3.bucket("out")


def output_grant(
    endpoint: S3Endpoint,
    buckets: tuple[str, str],
    *,
    clock: Callable[[], datetime] | None = None,
    expires: timedelta = timedelta(hours=1),
) -> OutputGrant:
    """The grant a job gets for its one output, with uploads limited to MAX_BYTES."""
    inputs, outputs = buckets
    storage = storage_for(endpoint, clock=clock, max_upload_bytes=MAX_BYTES)
    (grant,) = storage.grants_for(service_for(inputs, outputs), inputs, "in/x.txt", expires=expires).outputs
    return grant


def widened(fields: dict[str, str]) -> dict[str, str]:
    """The form fields with the signed policy rewritten to allow any key, the signature left as it was."""
    policy = json.loads(base64.b64decode(fields["policy"]))
    policy["conditions"] = [
        ["starts-with", "$key", ""] if cond[:2] == ["starts-with", "$key"] else cond
        for cond in policy["conditions"]
    ]
    return fields | {"policy": base64.b64encode(json.dumps(policy).encode()).decode()}


def other_signature(fields: dict[str, str]) -> dict[str, str]:
    """The form fields with the last hex digit of the signature changed."""
    signature = fields["x-amz-signature"]
    return fields | {"x-amz-signature": signature[:-1] + ("0" if signature[-1] != "0" else "1")}


CONDITION_FAILED = ("<Code>AccessDenied</Code>", "Invalid according to Policy: Policy Condition failed")
SIGNATURE_WRONG = ("<Code>SignatureDoesNotMatch</Code>",)

# Each attempt differs from the legitimate upload (KEY, MAX_BYTES bytes, the grant as given) by one thing;
# the server's answer: status and what its error body must say.
ATTEMPTS: dict[str, tuple[Callable[[Post, str], Post], int, tuple[str, ...]]] = {
    "within the grant": (lambda p, _: p, 204, ()),
    "key outside the folder": (lambda p, _: replace(p, key="elsewhere/x.txt"), 403, CONDITION_FAILED),
    "key in a sibling folder": (lambda p, _: replace(p, key="results/copycat/x.txt"), 403, CONDITION_FAILED),
    "one byte over the size limit": (
        lambda p, _: replace(p, data=p.data + b"x"),
        400,
        ("<Code>EntityTooLarge</Code>",),
    ),
    "another bucket": (
        lambda p, inputs: replace(p, url=p.url.rsplit("/", 1)[0] + f"/{inputs}"),
        403,
        CONDITION_FAILED,
    ),
    "policy widened after signing": (
        lambda p, _: replace(p, key="elsewhere/x.txt", fields=widened(p.fields)),
        403,
        SIGNATURE_WRONG,
    ),
    "signature altered": (lambda p, _: replace(p, fields=other_signature(p.fields)), 403, SIGNATURE_WRONG),
}


@pytest.mark.parametrize("attempt", list(ATTEMPTS))
async def test_minio_enforces_the_post_policy(minio_endpoint, minio_buckets, attempt):
    inputs, outputs = minio_buckets
    grant = output_grant(minio_endpoint, minio_buckets)
    change, status, says = ATTEMPTS[attempt]
    made = change(Post(grant.url, dict(grant.form_fields), KEY, b"x" * MAX_BYTES), inputs)

    answer, body = await post(made)

    assert answer == status, body
    assert all(text in body for text in says), body
    storage = storage_for(minio_endpoint)
    written = [item.key for bucket in (inputs, outputs) for item in await storage.list(bucket, "")]
    assert written == ([KEY] if status == 204 else [])


async def test_minio_refuses_an_expired_post_policy(minio_endpoint, minio_buckets):
    signed = datetime.now(UTC) - timedelta(minutes=2)  # within the clock skew S3 allows for signing
    grant = output_grant(minio_endpoint, minio_buckets, clock=lambda: signed, expires=timedelta(minutes=1))

    status, body = await upload(grant, KEY, b"late")

    assert status == 403, body
    assert "<Code>AccessDenied</Code>" in body
    assert "Invalid according to Policy: Policy expired" in body
    assert await storage_for(minio_endpoint).list(minio_buckets[1], "") == ()


async def test_minio_serves_a_presigned_get_for_exactly_one_object_until_it_expires(
    minio_endpoint, minio_buckets
):
    inputs, outputs = minio_buckets
    storage = storage_for(minio_endpoint)
    await storage.put_object(inputs, "in/x.txt", b"the input")
    await storage.put_object(inputs, "in/other.txt", b"not this one")
    service = service_for(inputs, outputs)
    url = storage.grants_for(service, inputs, "in/x.txt", expires=timedelta(hours=1)).input_url
    signed = datetime.now(UTC) - timedelta(minutes=2)
    late = storage_for(minio_endpoint, clock=lambda: signed)
    expired = late.grants_for(service, inputs, "in/x.txt", expires=timedelta(minutes=1)).input_url

    assert await asyncio.to_thread(download_status, url) == (200, "the input")
    status, body = await asyncio.to_thread(download_status, url.replace("/in/x.txt?", "/in/other.txt?"))
    assert (status, "<Code>SignatureDoesNotMatch</Code>" in body) == (403, True), body
    status, body = await asyncio.to_thread(download_status, expired)
    assert (status, "<Message>Request has expired</Message>" in body) == (403, True), body
