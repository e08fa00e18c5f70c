"""The storage adapter against a real S3 server over HTTP: grants used as a job's stager uses them.

Against moto (no signature or policy checks) these prove the URLs and forms are well-formed and aimed at
the right objects; what a policy forbids is checked on the signed document in tests/unit/test_storage.py,
and for real by the refusal test below where a MinIO answers.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from datetime import timedelta

import aiohttp
import pytest
from minio.commonconfig import ENABLED  # noqa: TID251 - test set-up talks to S3 directly
from minio.versioningconfig import VersioningConfig  # noqa: TID251

from dispatcher.errors import PermanentError, TransientError
from dispatcher.rendering.context import OutputGrant
from dispatcher.services import ServiceDefinition
from dispatcher.settings import StorageSettings
from dispatcher.storage import Storage
from tests.backends import free_port
from tests.backends.s3 import S3Endpoint, S3Scope

pytestmark = pytest.mark.integration


def storage_for(s3_server: S3Endpoint, **overrides) -> Storage:
    values = {
        "endpoint": s3_server.endpoint,
        "access_key": s3_server.access_key,
        "secret_key": s3_server.secret_key,
        "region": s3_server.region,
        "secure": s3_server.secure,
        "request_timeout": 5.0,
    }
    return Storage(StorageSettings.model_validate(values | overrides))


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


async def upload(grant: OutputGrant, key: str, data: bytes) -> tuple[int, str]:
    """POST a file the way a browser (and the stager) does: the policy's fields, then the file last."""
    form = aiohttp.FormData()
    for name, value in grant.form_fields.items():
        form.add_field(name, value)
    form.add_field("key", key)
    form.add_field("Content-Type", "text/plain")
    form.add_field("file", data, filename="out.txt", content_type="text/plain")
    async with aiohttp.ClientSession() as session, session.post(grant.url, data=form) as response:
        return response.status, await response.text()


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


async def test_presigned_post_outside_the_folder_is_refused(s3_endpoint, buckets):
    # The MinIO variant (testcontainers where a Docker engine answers, or BUCKETRUN_TEST_S3_ENDPOINT):
    # only a real S3 server enforces the policy; moto checks none. Decided at run time, since which
    # server the fixture picked is known only once it has run.
    if s3_endpoint.backend == "moto":
        pytest.skip(
            "MinIO variant (testcontainers, needs a Docker engine, or BUCKETRUN_TEST_S3_ENDPOINT): moto "
            "enforces no POST policy; the policy document is unit-tested in tests/unit/test_storage.py"
        )
    inputs, outputs = buckets
    storage = storage_for(s3_endpoint)
    grants = storage.grants_for(service_for(inputs, outputs), inputs, "in/x.txt", expires=timedelta(hours=1))
    status, _ = await upload(grants.outputs[0], "elsewhere/x.txt", b"sneaky")
    assert status == 403
    assert await storage.list(outputs, "elsewhere/") == ()


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
